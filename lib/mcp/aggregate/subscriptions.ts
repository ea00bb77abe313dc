/**
 * Resource subscriptions on the aggregated `/mcp` (MCP 2025-11-25 Server/Resources
 * §Subscriptions; 2026-07-28 `subscriptions/listen` with `resourceSubscriptions`).
 *
 * A client subscribes to the gateway's URI (`mcpgw-<backend>+<uri>`, uri.ts); the gateway
 * subscribes to `<uri>` at the owning backend (2025 backend: `resources/subscribe` on its
 * connection; 2026-07-28 backend: a `subscriptions/listen` stream for that URI) and relays each
 * `notifications/resources/updated` with the gateway's URI, to the sessions that subscribed only.
 *
 * Subscriptions follow the streams that deliver them. A 2025-era session's subscriptions are kept
 * in KV (`["mcp_sub", sha256(session id), uri]`, expiring with the session), because its
 * `resources/subscribe` POST and its GET stream may reach different isolates: the isolate that
 * holds a session's stream holds the backend subscriptions of that session (read from KV when the
 * stream opens, told of later changes over the relay bus), and drops them when the stream closes.
 * A 2026-07-28 listen stream holds the URIs of its filter while it is open. Backend subscriptions
 * are counted per isolate: the backend hears one subscribe for the first holder and one
 * unsubscribe after the last, and a reconnected backend is subscribed again.
 */
import type { McpSubscription } from "@modelcontextprotocol/client";
import { ProtocolError, ProtocolErrorCode } from "@modelcontextprotocol/server";
import type { Deps } from "../../deps.ts";
import { ttl } from "../../store.ts";
import type { BackendConnection, BackendPool } from "./pool.ts";
import type { RelayBus } from "./relay_bus.ts";
import type { SessionFeeds } from "./session_feed.ts";
import { unwrapUri, wrapUri } from "./uri.ts";

/** Subscriptions one session may hold. */
export const MAX_SUBSCRIPTIONS = 100;

/** Longest URI (as the client sends it) that may be subscribed (keeps KV keys small). */
export const MAX_SUBSCRIBED_URI = 1024;

/** KV key of a session's subscription to gateway URI `uri`. */
export const subscriptionKey = (sessionHash: string, uri: string): Deno.KvKey => [
  "mcp_sub",
  sessionHash,
  uri,
];

/** What KV keeps per subscription. */
export interface SubscriptionRecord {
  expiresAt: number;
}

/** A 2025-era session as the subscription methods see it. */
export interface SubscribingSession {
  hash: string;
  expiresAt: number;
}

interface Held {
  holders: Set<string>;
  ready: Promise<void>;
  connection?: BackendConnection;
  listen?: McpSubscription;
}

const heldKey = (backend: string, uri: string) => `${backend} ${uri}`;

/** What the subscriptions need from the gateway. */
export interface SubscriptionDeps extends Pick<Deps, "kv" | "now" | "log"> {
  pool: BackendPool;
  feeds: SessionFeeds;
  bus: RelayBus;
  /** Announces an update to the 2026-07-28 listen streams whose filter names `uri`. */
  resourceUpdated: (uri: string) => void;
}

/** The isolate's resource subscriptions. */
export class ResourceSubscriptions {
  #deps: SubscriptionDeps;
  #held = new Map<string, Held>();
  #closing = new Map<string, Promise<void>>();

  constructor(deps: SubscriptionDeps) {
    this.#deps = deps;
    deps.bus.on("session_sub", (m) => {
      const t = unwrapUri(m.uri);
      if (t && deps.feeds.has(m.session)) this.#quietHold(m.session, t.backend, t.uri);
    });
    deps.bus.on("session_unsub", (m) => {
      const t = unwrapUri(m.uri);
      if (t) this.release(m.session, t.backend, t.uri);
    });
    deps.bus.on("session_end", (m) => this.releaseAll(m.session));
  }

  /** A backend's `notifications/resources/updated`: relayed to whoever holds the URI here. */
  updated(backend: string, uri: string): void {
    const held = this.#held.get(heldKey(backend, uri));
    if (!held) return;
    const exposed = wrapUri(backend, uri);
    const message = { method: "notifications/resources/updated", params: { uri: exposed } };
    let listens = false;
    for (const holder of held.holders) {
      if (holder.startsWith("listen:")) listens = true;
      else this.#deps.feeds.send(holder, backend, message);
    }
    if (listens) this.#deps.resourceUpdated(exposed);
  }

  /** A backend (re)connected: its held URIs are subscribed again on the new connection. */
  connected(connection: BackendConnection): void {
    for (const [key, held] of this.#held) {
      if (!key.startsWith(`${connection.name} `) || !held.connection) continue;
      if (held.connection === connection) continue;
      const uri = key.slice(connection.name.length + 1);
      held.ready = this.#subscribe(connection.name, uri, held);
      held.ready.catch((error) => this.#warn(connection.name, "resubscribe", error));
    }
  }

  /** `holder` needs updates of `uri` at `backend`; resolves once the backend subscribed. */
  hold(holder: string, backend: string, uri: string): Promise<void> {
    const key = heldKey(backend, uri);
    let held = this.#held.get(key);
    if (!held) {
      const fresh: Held = { holders: new Set(), ready: Promise.resolve() };
      fresh.ready = (this.#closing.get(key) ?? Promise.resolve()).then(() =>
        this.#subscribe(backend, uri, fresh)
      );
      fresh.ready.catch(() => {
        if (this.#held.get(key) === fresh) this.#held.delete(key);
      });
      this.#held.set(key, held = fresh);
    }
    held.holders.add(holder);
    return held.ready;
  }

  /** `holder` no longer needs updates of `uri`; the last one unsubscribes the backend. */
  release(holder: string, backend: string, uri: string): void {
    const key = heldKey(backend, uri);
    const held = this.#held.get(key);
    if (!held?.holders.delete(holder) || held.holders.size > 0) return;
    this.#held.delete(key);
    const closing = held.ready.then(async () => {
      if (held.listen) await held.listen.close();
      else {await held.connection?.client.unsubscribeResource({ uri }, {
          timeout: this.#limit(backend),
        });}
    }, () => {}).catch((error) => this.#warn(backend, "unsubscribe", error)).finally(() => {
      if (this.#closing.get(key) === closing) this.#closing.delete(key);
    });
    this.#closing.set(key, closing);
  }

  /** Drops every URI `holder` holds here. */
  releaseAll(holder: string): void {
    for (const [key, held] of [...this.#held]) {
      if (!held.holders.has(holder)) continue;
      const space = key.indexOf(" ");
      this.release(holder, key.slice(0, space), key.slice(space + 1));
    }
  }

  /**
   * `resources/subscribe` of a 2025-era session to gateway URI `exposed` of `backend`: the
   * backend's verdict first (its error is the client's), then the record in KV; the isolate
   * holding the session's stream holds the backend subscription.
   */
  async subscribe(
    session: SubscribingSession,
    exposed: string,
    target: { backend: string; uri: string },
  ): Promise<void> {
    const { kv } = this.#deps;
    if (exposed.length > MAX_SUBSCRIBED_URI) {
      throw new ProtocolError(ProtocolErrorCode.InvalidParams, "Resource URI is too long");
    }
    const key = subscriptionKey(session.hash, exposed);
    if ((await kv.get(key)).value === null) {
      let count = 0;
      for await (
        const _ of kv.list({ prefix: ["mcp_sub", session.hash] }, { limit: MAX_SUBSCRIPTIONS })
      ) count++;
      if (count >= MAX_SUBSCRIPTIONS) {
        throw new ProtocolError(
          ProtocolErrorCode.InvalidParams,
          `A session may hold at most ${MAX_SUBSCRIPTIONS} resource subscriptions`,
        );
      }
    }
    try {
      await this.hold(session.hash, target.backend, target.uri);
    } catch (error) {
      this.release(session.hash, target.backend, target.uri);
      throw this.#relayed(target.backend, error);
    }
    const now = this.#deps.now();
    await kv.set(key, { expiresAt: session.expiresAt } satisfies SubscriptionRecord, {
      expireIn: ttl(session.expiresAt, now),
    });
    if (!this.#deps.feeds.has(session.hash)) {
      this.release(session.hash, target.backend, target.uri);
    }
    this.#deps.bus.post({ t: "session_sub", session: session.hash, uri: exposed });
  }

  /** `resources/unsubscribe`: the record goes, and every isolate drops the session's hold. */
  async unsubscribe(
    session: SubscribingSession,
    exposed: string,
    target: { backend: string; uri: string },
  ): Promise<void> {
    await this.#deps.kv.delete(subscriptionKey(session.hash, exposed));
    this.release(session.hash, target.backend, target.uri);
    this.#deps.bus.post({ t: "session_unsub", session: session.hash, uri: exposed });
  }

  /** A stream of session `hash` opened here: hold its subscriptions (from KV). */
  async attachSession(hash: string): Promise<void> {
    const now = this.#deps.now();
    const list = this.#deps.kv.list<SubscriptionRecord>({ prefix: ["mcp_sub", hash] }, {
      limit: MAX_SUBSCRIPTIONS,
    });
    for await (const entry of list) {
      if (!(entry.value.expiresAt > now)) continue;
      const t = unwrapUri(String(entry.key[2]));
      if (t && this.#deps.feeds.has(hash)) this.#quietHold(hash, t.backend, t.uri);
    }
  }

  /** Session `hash` ended (DELETE): its records go, and every isolate drops its holds. */
  async endSession(hash: string): Promise<void> {
    const list = this.#deps.kv.list({ prefix: ["mcp_sub", hash] }, { limit: MAX_SUBSCRIPTIONS });
    for await (const entry of list) await this.#deps.kv.delete(entry.key);
    this.releaseAll(hash);
    this.#deps.bus.post({ t: "session_end", session: hash });
  }

  /**
   * A 2026-07-28 listen stream naming gateway URIs: held while it is open; returns the release.
   * URIs that are not the gateway's, or whose backend does not support subscriptions, never fire.
   */
  listen(uris: readonly string[]): () => void {
    const holder = `listen:${crypto.randomUUID()}`;
    const targets = uris.flatMap((u) => {
      const t = unwrapUri(u);
      return t && this.#deps.pool.backend(t.backend) ? [t] : [];
    });
    for (const t of targets) this.#quietHold(holder, t.backend, t.uri);
    return () => {
      for (const t of targets) this.release(holder, t.backend, t.uri);
    };
  }

  #quietHold(holder: string, backend: string, uri: string): void {
    this.hold(holder, backend, uri).catch((error) => {
      this.release(holder, backend, uri);
      this.#warn(backend, "subscribe", error);
    });
  }

  async #subscribe(backend: string, uri: string, held: Held): Promise<void> {
    const connection = await this.#deps.pool.get(backend);
    if (!connection.capabilities.resources?.subscribe) {
      throw new ProtocolError(
        ProtocolErrorCode.InvalidParams,
        `Backend ${backend} does not support resource subscriptions`,
      );
    }
    const timeout = this.#limit(backend);
    if (connection.era === "modern") {
      const previous = held.listen;
      held.listen = await connection.client.listen({ resourceSubscriptions: [uri] }, { timeout });
      previous?.close().catch(() => {});
    } else {
      await connection.client.subscribeResource({ uri }, { timeout });
    }
    held.connection = connection;
  }

  #limit(backend: string): number {
    return this.#deps.pool.backend(backend)?.timeoutMs ?? 10_000;
  }

  /** A backend failure as the client sees it: its own JSON-RPC error, else "unavailable". */
  #relayed(backend: string, error: unknown): ProtocolError {
    if (error instanceof ProtocolError) return error;
    this.#warn(backend, "subscribe", error);
    return new ProtocolError(ProtocolErrorCode.InternalError, `Backend ${backend} is unavailable`);
  }

  #warn(backend: string, what: string, error: unknown): void {
    this.#deps.log({
      level: "warn",
      event: "backend_subscription_failed",
      backend,
      what,
      error: error instanceof Error ? error.message.slice(0, 200) : "unknown",
    });
  }
}
