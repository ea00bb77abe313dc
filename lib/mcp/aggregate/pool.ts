/**
 * The gateway as an MCP client of each backend: one connected v2 SDK `Client` per backend and
 * isolate, created on first use and reused by every request (no per-request reconnect or era
 * probe). The era is probed once at connect (`versionNegotiation: { mode: "auto" }`:
 * `server/discover` first, 2025 `initialize` as fallback; MCP 2026-07-28 Basic/Versioning) and
 * remembered with the connection. Nothing here is needed across requests for correctness: a new
 * isolate simply connects again.
 *
 * Backend credentials are the configured `headers` (MCP 2025-11-25 Authorization §Token
 * Passthrough: the client's token is never forwarded), and for a per-user backend (`auth`) the
 * user's own credential: such a backend gets one client per (backend, user), each request
 * carrying the user's current credential (lib/credentials/credential.ts), at most
 * {@linkcode MAX_USER_CLIENTS} of them per isolate, closed after {@linkcode USER_CLIENT_IDLE_MS}
 * unused or when the user's connection changes.
 *
 * What the gateway declares to a backend depends on the caller (relay_profile.ts): a backend has
 * one client per relay profile (`""`, `"e"`, `"s"`, `"es"`) that callers used, each declaring
 * only the capabilities the gateway can relay for such a caller. The `""` client is the
 * backend's primary one: it hears the session-wide log messages and resource updates and holds
 * subscriptions and log levels; every client relays its list changes.
 */
import {
  Client,
  ProtocolError,
  ProtocolErrorCode,
  type ServerCapabilities,
  StreamableHTTPClientTransport,
} from "@modelcontextprotocol/client";
import type { BackendConfig } from "../../config.ts";
import type { Deps } from "../../deps.ts";
import { onConnectionChange } from "../../credentials/connections.ts";
import {
  credentialFetch,
  isNotConnected,
  NotConnectedError,
} from "../../credentials/credential.ts";
import type { UserRef } from "../../store.ts";
import { CallTap } from "./call_relay.ts";
import { ChangeHub, type ListKind } from "./changes.ts";
import { closableStreams, ListWatch } from "./list_watch.ts";
import { declaredCapabilities, type RelayProfile } from "./relay_profile.ts";
import { propagateTraceContext } from "../../admin/telemetry.ts";

/** A connected backend. */
export interface BackendConnection {
  name: string;
  /**
   * Its slot in the pool: the backend's name, plus the user's subject for per-user backends and
   * the relay profile unless `""`.
   */
  key: string;
  /** What it declared to the backend (relay_profile.ts). */
  profile: RelayProfile;
  client: Client;
  era: "legacy" | "modern";
  capabilities: ServerCapabilities;
  instructions?: string;
  /**
   * A 2025-era backend's wire facts as the SDK client negotiated them (its `MCP-Protocol-Version`
   * and, when the backend keeps sessions, its `Mcp-Session-Id`): the `tools/call` fast path
   * (fast_call.ts) posts on the same session. Absent for modern backends.
   */
  wire?: { protocolVersion: string; sessionId?: string };
  /** The connection's call tap (call_relay.ts): the fast path counts its calls there too. */
  tap?: CallTap;
}

/** After a failed connect, further requests fail fast for this long before a new attempt. */
const RETRY_AFTER_MS = 1000;

/** Most per-user clients an isolate keeps (the least recently used one is closed first). */
export const MAX_USER_CLIENTS = 200;
/** A per-user client unused this long is closed. */
export const USER_CLIENT_IDLE_MS = 10 * 60 * 1000;

/** What the pool needs from the gateway's dependencies. */
export type PoolDeps = Pick<Deps, "config" | "fetch" | "log" | "kv" | "now" | "settings">;

/**
 * Hears what backends send outside any call: their session-wide log messages, resource updates,
 * and each new connection (subscriptions are remade on a reconnect).
 */
export interface BackendListener {
  log?(backend: string, params: Record<string, unknown>): void;
  updated?(backend: string, uri: string): void;
  connected?(connection: BackendConnection): void;
}

interface Slot {
  promise: Promise<BackendConnection>;
  failedAt?: number;
  connection?: BackendConnection;
  /** Per-user slots: last use (performance.now()). */
  usedAt?: number;
}

/**
 * The pool as one caller sees it: per-user backends resolve to that user's clients, and every
 * backend to the client of the caller's relay profile.
 */
export interface PoolView {
  /** The caller's relay profile (relay_profile.ts). */
  readonly profile: RelayProfile;
  get(name: string): Promise<BackendConnection>;
  connected(name: string): BackendConnection | undefined;
  invalidate(connection: BackendConnection): void;
}

/** The slot of a backend: per-user backends have one per user; each has one per profile. */
const slotKey = (backend: BackendConfig, user: UserRef | undefined, profile: RelayProfile) =>
  (backend.auth && user ? `${backend.name}\n${user.sub}` : backend.name) +
  (profile ? `\t${profile}` : "");

/** Connected clients of every backend of one gateway instance. */
export class BackendPool {
  #deps: PoolDeps;
  #slots = new Map<string, Slot>();
  #userSlots = 0;
  #sweptAt = 0;
  #closed = false;
  #unsubscribe: () => void;
  /** Backend list changes seen by this pool's clients (debounced, see changes.ts). */
  readonly changes = new ChangeHub();
  /** Listeners of the backends' other notifications (see {@linkcode BackendListener}). */
  readonly listeners = new Set<BackendListener>();

  constructor(deps: PoolDeps) {
    this.#deps = deps;
    // A user connected or disconnected a backend in this isolate: their client starts afresh,
    // and clients refetch their tool lists (`{backend}__connect` ↔ the backend's tools).
    this.#unsubscribe = onConnectionChange(deps.kv, (sub, name) => {
      for (const key of [...this.#slots.keys()]) {
        if (key === `${name}\n${sub}` || key.startsWith(`${name}\n${sub}\t`)) this.#drop(key);
      }
      this.changes.publish("tools", name);
    });
  }

  /**
   * This pool as `user` sees it (undefined: a caller acting for no user), with the clients of
   * relay profile `profile` (the caller's, relay_profile.ts).
   */
  forUser(user: UserRef | undefined, profile: RelayProfile = ""): PoolView {
    return {
      profile,
      get: (name) => this.get(name, user, profile),
      connected: (name) => this.connected(name, user),
      invalidate: (connection) => this.invalidate(connection),
    };
  }

  /** The backend's config, or `undefined` when no backend has that name. */
  backend(name: string): BackendConfig | undefined {
    return this.#deps.config.backends.find((b) => b.name === name);
  }

  /**
   * The connection of `name` (for a per-user backend, `user`'s) that declared `profile`,
   * connecting if needed. Rejects when the backend is unreachable, or with `NotConnectedError`
   * when a per-user backend has no user or the user no usable connection.
   */
  get(name: string, user?: UserRef, profile: RelayProfile = ""): Promise<BackendConnection> {
    const backend = this.backend(name);
    if (!backend) return Promise.reject(new Error(`unknown backend ${name}`));
    if (backend.auth && !user) return Promise.reject(new NotConnectedError(name));
    const key = slotKey(backend, user, profile);
    const slot = this.#slots.get(key);
    if (
      slot && (slot.failedAt === undefined || performance.now() - slot.failedAt < RETRY_AFTER_MS)
    ) {
      if (slot.usedAt !== undefined) slot.usedAt = performance.now();
      return slot.promise;
    }
    if (backend.auth) this.#makeRoomForUser();
    const fresh: Slot = { promise: this.#connect(backend, key, user, profile) };
    if (backend.auth) {
      fresh.usedAt = performance.now();
      if (slot?.usedAt === undefined) this.#userSlots++;
    }
    fresh.promise.then(
      (c) => void (fresh.connection = c),
      (error) => {
        fresh.failedAt = performance.now();
        // A per-user client that found no credential is not kept: the next call checks again.
        if (isNotConnected(error) && this.#slots.get(key) === fresh) this.#drop(key);
      },
    );
    this.#slots.set(key, fresh);
    return fresh.promise;
  }

  /**
   * A live connection of `name` (for a per-user backend, `user`'s; of any profile, the primary
   * one first) when one is already established (no connect, no wait), else `undefined`: lets a
   * caller use the remembered era without starting a probe.
   */
  connected(name: string, user?: UserRef): BackendConnection | undefined {
    const backend = this.backend(name);
    if (!backend || (backend.auth && !user)) return undefined;
    for (const profile of ["", "e", "s", "es"] as const) {
      const slot = this.#slots.get(slotKey(backend, user, profile));
      if (!slot?.connection || slot.failedAt !== undefined) continue;
      if (slot.usedAt !== undefined) slot.usedAt = performance.now();
      return slot.connection;
    }
    return undefined;
  }

  /** Forgets a broken connection (closing it) so that the next request reconnects. */
  invalidate(connection: BackendConnection): void {
    const slot = this.#slots.get(connection.key);
    if (slot?.connection === connection) this.#drop(connection.key);
    connection.client.close().catch(() => {});
  }

  /** Removes a slot, closing its client. */
  #drop(key: string): void {
    const slot = this.#slots.get(key);
    if (!slot) return;
    this.#slots.delete(key);
    if (slot.usedAt !== undefined) this.#userSlots--;
    slot.promise.then((c) => c.client.close(), () => {}).catch(() => {});
  }

  /** Closes idle per-user clients (at most once a minute) and the oldest when over the bound. */
  #makeRoomForUser(): void {
    const now = performance.now();
    if (now - this.#sweptAt > 60_000) {
      this.#sweptAt = now;
      for (const [key, slot] of this.#slots) {
        if (slot.usedAt !== undefined && now - slot.usedAt > USER_CLIENT_IDLE_MS) this.#drop(key);
      }
    }
    while (this.#userSlots >= MAX_USER_CLIENTS) {
      let oldest: [string, number] | undefined;
      for (const [key, slot] of this.#slots) {
        if (slot.usedAt !== undefined && (!oldest || slot.usedAt < oldest[1])) {
          oldest = [key, slot.usedAt];
        }
      }
      if (!oldest) break;
      this.#drop(oldest[0]);
    }
  }

  /** Closes every client (tests; shutdown). */
  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe();
    this.changes.close();
    const slots = [...this.#slots.values()];
    this.#slots.clear();
    await Promise.all(slots.map(async (s) => {
      try {
        await (await s.promise).client.close();
      } catch {
        // never connected
      }
    }));
  }

  /**
   * Relays the backend's list changes to {@linkcode changes}: legacy backends send them on the
   * session's GET stream (the SDK opens it after `initialize`); modern backends only on a
   * `subscriptions/listen` stream, watched per connection with a timeout, retries and a polling
   * fallback (list_watch.ts) until the connection closes.
   */
  #watchLists(connection: BackendConnection, backend: BackendConfig): void {
    const kinds = announcedKinds(connection.capabilities);
    for (const kind of kinds) {
      connection.client.setNotificationHandler(
        `notifications/${kind}/list_changed`,
        () => this.changes.publish(kind, connection.name),
      );
    }
    if (connection.era === "modern" && kinds.length > 0) {
      const watch = new ListWatch({
        backend: connection.name,
        client: connection.client,
        kinds,
        timeoutMs: backend.timeoutMs,
        pollMs: backend.listPollSeconds * 1000,
        publish: (kind) => this.changes.publish(kind, connection.name),
        log: this.#deps.log,
      });
      const onclose = connection.client.onclose;
      connection.client.onclose = () => {
        watch.stop();
        onclose?.();
      };
      watch.start();
    }
  }

  /** Session-wide log messages and resource updates go to {@linkcode listeners}. */
  #hearNotices(client: Client, backend: string): void {
    client.setNotificationHandler("notifications/message", (n) => {
      for (const l of this.listeners) l.log?.(backend, n.params as Record<string, unknown>);
    });
    client.setNotificationHandler("notifications/resources/updated", (n) => {
      for (const l of this.listeners) l.updated?.(backend, n.params.uri);
    });
  }

  async #connect(
    backend: BackendConfig,
    key: string,
    user: UserRef | undefined,
    profile: RelayProfile,
  ): Promise<BackendConnection> {
    if (this.#closed) throw new Error("backend pool is closed");
    const started = performance.now();
    const client = new Client(
      { name: this.#deps.config.serverName, version: "1.0.0" },
      { versionNegotiation: { mode: "auto" }, capabilities: declaredCapabilities(profile) },
    );
    const tap = new CallTap();
    relayServerRequests(client, backend.name, tap, profile);
    if (profile === "") this.#hearNotices(client, backend.name);
    const transport = new StreamableHTTPClientTransport(new URL(backend.url), {
      fetch: tap.fetch(closableStreams(
        backend.auth && user ? credentialFetch(this.#deps, user, backend) : this.#deps.fetch,
      )),
      requestInit: { headers: { ...backend.headers } },
    });
    propagateTraceContext(transport);
    try {
      await client.connect(transport, { timeout: backend.timeoutMs });
    } catch (error) {
      await client.close().catch(() => {});
      this.#deps.log({
        level: "warn",
        event: "backend_connect_failed",
        backend: backend.name,
        error: error instanceof Error ? error.message.slice(0, 200) : "unknown",
      });
      throw error;
    }
    const connection: BackendConnection = {
      name: backend.name,
      key,
      profile,
      client,
      era: client.getProtocolEra() === "modern" ? "modern" : "legacy",
      capabilities: client.getServerCapabilities() ?? {},
      instructions: client.getInstructions(),
      tap,
    };
    if (connection.era === "legacy") {
      connection.wire = {
        protocolVersion: client.getNegotiatedProtocolVersion() ?? "2025-03-26",
        ...(transport.sessionId ? { sessionId: transport.sessionId } : {}),
      };
    }
    this.#watchLists(connection, backend);
    if (profile === "") { for (const l of this.listeners) l.connected?.(connection); }
    this.#deps.log({
      event: "backend_connected",
      backend: backend.name,
      era: connection.era,
      declared: profile || "none",
      protocolVersion: client.getNegotiatedProtocolVersion(),
      ms: Math.round(performance.now() - started),
    });
    if (this.#closed) {
      await client.close().catch(() => {});
      throw new Error("backend pool is closed");
    }
    return connection;
  }
}

/**
 * A 2025-era backend sends elicitation/sampling as server-to-client requests on the shared
 * connection, on the SSE stream of the call they belong to: the tap (call_relay.ts) finds that
 * call, whose relay asks the end client. A request seen outside any call (on the session's GET
 * stream) is refused with a clear error, never left unanswered. A client that did not declare
 * the capability (its `profile`) has no handler: the SDK answers such a request -32601 at once.
 */
function relayServerRequests(
  client: Client,
  backend: string,
  tap: CallTap,
  profile: RelayProfile,
): void {
  const relay = (method: string, what: string) => (request: any, ctx: any) => {
    const call = tap.take(ctx.mcpReq.id);
    if (!call) {
      throw new ProtocolError(
        ProtocolErrorCode.InvalidRequest,
        `The aggregated /mcp endpoint cannot relay ${what} from backend ${backend} outside a ` +
          `call; connect to /mcp/${backend} for this`,
      );
    }
    return call.ask(method, request.params ?? {}, ctx.mcpReq.signal) as any;
  };
  if (profile.includes("e")) {
    client.setRequestHandler("elicitation/create", relay("elicitation/create", "elicitation"));
  }
  if (profile.includes("s")) {
    client.setRequestHandler("sampling/createMessage", relay("sampling/createMessage", "sampling"));
  }
  // A backend asking anyway gets the reason at once (the SDK would say "Method not found").
  client.fallbackRequestHandler = (request) => {
    const what = request.method === "elicitation/create"
      ? "elicitation"
      : request.method === "sampling/createMessage"
      ? "sampling"
      : undefined;
    if (!what) {
      return Promise.reject(
        new ProtocolError(ProtocolErrorCode.MethodNotFound, "Method not found"),
      );
    }
    return Promise.reject(
      new ProtocolError(
        ProtocolErrorCode.InvalidRequest,
        `The client of this call did not declare the ${what} capability: the aggregated /mcp ` +
          `endpoint cannot relay ${request.method} to it`,
      ),
    );
  };
}

/** The list kinds a backend says it announces changes of. */
export function announcedKinds(capabilities: ServerCapabilities): ListKind[] {
  return (["tools", "prompts", "resources"] as const).filter((k) =>
    capabilities[k]?.listChanged === true
  );
}

// Keyed by the KV handle: route contexts are fresh objects per request, the KV is per gateway.
const pools = new WeakMap<Deno.Kv, BackendPool>();

/** The isolate's pool for this gateway instance. */
export function backendPool(deps: Deps): BackendPool {
  let pool = pools.get(deps.kv);
  if (!pool) {
    const { config, fetch, log, kv, settings } = deps;
    pool = new BackendPool({ config, fetch, log, kv, settings, now: () => deps.now() });
    pools.set(deps.kv, pool);
  }
  return pool;
}

/** Closes and forgets the pool of a gateway (tests call it before closing the gateway). */
export async function closeBackendPool(deps: Deps): Promise<void> {
  const pool = pools.get(deps.kv);
  pools.delete(deps.kv);
  await pool?.close();
}
