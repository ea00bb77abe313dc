/**
 * The gateway as an MCP client of each backend: one connected v2 SDK `Client` per backend and
 * isolate, created on first use and reused by every request (no per-request reconnect or era
 * probe). The era is probed once at connect (`versionNegotiation: { mode: "auto" }`:
 * `server/discover` first, 2025 `initialize` as fallback; MCP 2026-07-28 Basic/Versioning) and
 * remembered with the connection. Nothing here is needed across requests for correctness: a new
 * isolate simply connects again.
 *
 * Backend credentials are only the configured `headers` (MCP 2025-11-25 Authorization §Token
 * Passthrough: the client's token is never forwarded).
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
import { CallTap } from "./call_relay.ts";
import { ChangeHub, type ListKind } from "./changes.ts";
import { SDK_TIMEOUT_MS } from "./fanout.ts";
import { propagateTraceContext } from "../../admin/telemetry.ts";

/** A connected backend. */
export interface BackendConnection {
  name: string;
  client: Client;
  era: "legacy" | "modern";
  capabilities: ServerCapabilities;
  instructions?: string;
}

/** After a failed connect, further requests fail fast for this long before a new attempt. */
const RETRY_AFTER_MS = 1000;

/** What the pool needs from the gateway's dependencies. */
export type PoolDeps = Pick<Deps, "config" | "fetch" | "log">;

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
}

/** Connected clients of every backend of one gateway instance. */
export class BackendPool {
  #deps: PoolDeps;
  #slots = new Map<string, Slot>();
  #closed = false;
  /** Backend list changes seen by this pool's clients (debounced, see changes.ts). */
  readonly changes = new ChangeHub();
  /** Listeners of the backends' other notifications (see {@linkcode BackendListener}). */
  readonly listeners = new Set<BackendListener>();

  constructor(deps: PoolDeps) {
    this.#deps = deps;
  }

  /** The backend's config, or `undefined` when no backend has that name. */
  backend(name: string): BackendConfig | undefined {
    return this.#deps.config.backends.find((b) => b.name === name);
  }

  /** The connection of `name`, connecting if needed. Rejects when the backend is unreachable. */
  get(name: string): Promise<BackendConnection> {
    const slot = this.#slots.get(name);
    if (
      slot && (slot.failedAt === undefined || performance.now() - slot.failedAt < RETRY_AFTER_MS)
    ) {
      return slot.promise;
    }
    const backend = this.backend(name);
    if (!backend) return Promise.reject(new Error(`unknown backend ${name}`));
    const fresh: Slot = { promise: this.#connect(backend) };
    fresh.promise.then(
      (c) => void (fresh.connection = c),
      () => void (fresh.failedAt = performance.now()),
    );
    this.#slots.set(name, fresh);
    return fresh.promise;
  }

  /**
   * The live connection of `name` when it is already established (no connect, no wait), else
   * `undefined`: lets a caller use the remembered era without starting a probe.
   */
  connected(name: string): BackendConnection | undefined {
    const slot = this.#slots.get(name);
    return slot?.failedAt === undefined ? slot?.connection : undefined;
  }

  /** Forgets a broken connection (closing it) so that the next request reconnects. */
  invalidate(connection: BackendConnection): void {
    const slot = this.#slots.get(connection.name);
    if (slot?.connection === connection) this.#slots.delete(connection.name);
    connection.client.close().catch(() => {});
  }

  /** Closes every client (tests; shutdown). */
  async close(): Promise<void> {
    this.#closed = true;
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
   * `subscriptions/listen` stream, opened here once per connection.
   */
  #watchLists(connection: BackendConnection): void {
    const kinds = announcedKinds(connection.capabilities);
    for (const kind of kinds) {
      connection.client.setNotificationHandler(
        `notifications/${kind}/list_changed`,
        () => this.changes.publish(kind, connection.name),
      );
    }
    if (connection.era === "modern" && kinds.length > 0) {
      connection.client.listen({
        toolsListChanged: kinds.includes("tools"),
        promptsListChanged: kinds.includes("prompts"),
        resourcesListChanged: kinds.includes("resources"),
      }, { timeout: SDK_TIMEOUT_MS }).catch((error) =>
        this.#deps.log({
          level: "warn",
          event: "backend_listen_failed",
          backend: connection.name,
          error: error instanceof Error ? error.message.slice(0, 200) : "unknown",
        })
      );
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

  async #connect(backend: BackendConfig): Promise<BackendConnection> {
    if (this.#closed) throw new Error("backend pool is closed");
    const started = performance.now();
    const client = new Client(
      { name: this.#deps.config.serverName, version: "1.0.0" },
      { versionNegotiation: { mode: "auto" }, capabilities: RELAYED_CLIENT_CAPABILITIES },
    );
    const tap = new CallTap();
    relayServerRequests(client, backend.name, tap);
    this.#hearNotices(client, backend.name);
    const transport = new StreamableHTTPClientTransport(new URL(backend.url), {
      fetch: tap.fetch(this.#deps.fetch),
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
      client,
      era: client.getProtocolEra() === "modern" ? "modern" : "legacy",
      capabilities: client.getServerCapabilities() ?? {},
      instructions: client.getInstructions(),
    };
    this.#watchLists(connection);
    for (const l of this.listeners) l.connected?.(connection);
    this.#deps.log({
      event: "backend_connected",
      backend: backend.name,
      era: connection.era,
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
 * What the gateway declares to backends as a client: elicitation and sampling, because they are
 * relayed to the end client (input_relay.ts); whether the end client supports them is checked
 * against that client's own declaration. Modern backends see these capabilities in every
 * request's envelope.
 */
export const RELAYED_CLIENT_CAPABILITIES = { elicitation: { form: {} }, sampling: {} };

/**
 * A 2025-era backend sends elicitation/sampling as server-to-client requests on the shared
 * connection, on the SSE stream of the call they belong to: the tap (call_relay.ts) finds that
 * call, whose relay asks the end client. A request seen outside any call (on the session's GET
 * stream) is refused with a clear error, never left unanswered.
 */
function relayServerRequests(client: Client, backend: string, tap: CallTap): void {
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
  client.setRequestHandler("elicitation/create", relay("elicitation/create", "elicitation"));
  client.setRequestHandler("sampling/createMessage", relay("sampling/createMessage", "sampling"));
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
    pool = new BackendPool({ config: deps.config, fetch: deps.fetch, log: deps.log });
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
