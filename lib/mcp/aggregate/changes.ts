/**
 * list_changed relay (MCP 2025-11-25 Server/Tools §List Changed Notification; 2026-07-28
 * `subscriptions/listen`): backends' list changes seen by this isolate's backend clients are
 * collected for {@linkcode DEBOUNCE_MS} and then announced once per kind to the open change
 * streams of this isolate (legacy GET streams and modern listen streams) whose scope covers a
 * backend that changed: a session scoped to `mcp:alpha` never hears of changes in `beta`. Each
 * isolate that holds streams also holds its own backend connections, so no cross-isolate state
 * is needed.
 */
import type { ServerEventBus } from "@modelcontextprotocol/server";

/** A list whose changes are relayed. */
export type ListKind = "tools" | "prompts" | "resources";

/** Time during which changes are merged into one notification per kind. */
export const DEBOUNCE_MS = 200;

/** An open change stream. */
export interface ChangeListener {
  change: (kinds: ReadonlySet<ListKind>) => void;
  close: () => void;
  /** The backends whose changes this stream may hear of (its scope); absent = every backend. */
  backends?: ReadonlySet<string>;
}

/** Hears every backend list change at once, with the backend's name (caches). */
export type BackendChangeWatcher = (backend: string, kind: ListKind) => void;

/** Debounced fan-out of backend list changes to the open change streams. */
export class ChangeHub {
  #listeners = new Set<ChangeListener>();
  #watchers = new Set<BackendChangeWatcher>();
  /** Changed kinds, each with the backends that changed it (`undefined`: not known). */
  #pending = new Map<ListKind, Set<string | undefined>>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #debounceMs: number;

  constructor(debounceMs = DEBOUNCE_MS) {
    this.#debounceMs = debounceMs;
  }

  /**
   * Records a change of `kind` in `backend`: watchers hear of it at once; listeners whose scope
   * covers it once the debounce window ends. A change of no known backend reaches only unscoped
   * listeners.
   */
  publish(kind: ListKind, backend?: string): void {
    if (backend !== undefined) { for (const w of this.#watchers) w(backend, kind); }
    let sources = this.#pending.get(kind);
    if (!sources) this.#pending.set(kind, sources = new Set());
    sources.add(backend);
    this.#timer ??= setTimeout(() => this.#flush(), this.#debounceMs);
  }

  /** Registers a stream; returns its unsubscribe function. */
  subscribe(listener: ChangeListener): () => void {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  /** Registers a watcher of every change (not debounced); returns its unsubscribe function. */
  watchBackends(watcher: BackendChangeWatcher): () => void {
    this.#watchers.add(watcher);
    return () => void this.#watchers.delete(watcher);
  }

  /** Ends every stream and drops pending changes (shutdown, tests). */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pending.clear();
    this.#watchers.clear();
    for (const l of [...this.#listeners]) l.close();
    this.#listeners.clear();
  }

  #flush(): void {
    this.#timer = undefined;
    const pending = [...this.#pending];
    this.#pending.clear();
    for (const l of [...this.#listeners]) {
      const scope = l.backends;
      const kinds = new Set<ListKind>();
      for (const [kind, sources] of pending) {
        if (!scope || [...sources].some((b) => b !== undefined && scope.has(b))) kinds.add(kind);
      }
      if (kinds.size === 0) continue;
      try {
        l.change(kinds);
      } catch {
        // a broken stream is dropped by its own cancel()
      }
    }
  }
}

/**
 * The `subscriptions/listen` event bus of the modern SDK handler (`createMcpHandler`'s `bus`),
 * fed by a {@linkcode ChangeHub} and scoped per stream: the SDK subscribes one listener per open
 * listen stream, synchronously while it serves that request, and `scope()` then names the
 * backends the request's token covers (the caller runs the SDK inside that scope, e.g. with
 * `AsyncLocalStorage`). A subscription made outside any scope hears no backend's changes.
 * `publish` (the SDK's `notify` sugar) reaches every stream: use it only for events that carry
 * their own filter.
 */
export class ScopedListenBus implements ServerEventBus {
  #hub: ChangeHub;
  #scope: () => ReadonlySet<string> | undefined;
  #direct = new Set<Parameters<ServerEventBus["subscribe"]>[0]>();

  constructor(hub: ChangeHub, scope: () => ReadonlySet<string> | undefined) {
    this.#hub = hub;
    this.#scope = scope;
  }

  publish(event: Parameters<ServerEventBus["publish"]>[0]): void {
    for (const listener of [...this.#direct]) listener(event);
  }

  subscribe(listener: Parameters<ServerEventBus["subscribe"]>[0]): () => void {
    const backends = this.#scope() ?? new Set<string>();
    this.#direct.add(listener);
    const unsubscribe = this.#hub.subscribe({
      backends,
      change: (kinds) => {
        for (const kind of kinds) listener({ kind: `${kind}_list_changed` });
      },
      close: () => {},
    });
    return () => {
      this.#direct.delete(listener);
      unsubscribe();
    };
  }
}

/**
 * Messages meant for one session (resource updates, log messages; relay_hub.ts, which filters
 * them by the session's scope too): `feed` registers the stream's writer and returns its removal.
 */
export type SessionFeed = (write: (message: unknown) => void) => () => void;

/**
 * A legacy (2025) server-to-client SSE stream for a GET on `/mcp` (MCP 2025-11-25
 * Transports §Listening for Messages from the Server) carrying `notifications/<kind>/list_changed`
 * of the `backends` the session's scope covers, and what `feed` sends this session, with a
 * keep-alive comment every `keepAliveMs`.
 */
export function legacyChangeStream(
  hub: ChangeHub,
  backends: ReadonlySet<string>,
  keepAliveMs = 15_000,
  feed?: SessionFeed,
): Response {
  const encoder = new TextEncoder();
  let unsubscribe = () => {};
  let detach = () => {};
  let keepAlive: ReturnType<typeof setInterval> | undefined;
  const stop = () => {
    unsubscribe();
    detach();
    detach = () => {};
    clearInterval(keepAlive);
  };
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const write = (text: string) => {
        try {
          controller.enqueue(encoder.encode(text));
        } catch {
          stop();
        }
      };
      unsubscribe = hub.subscribe({
        backends,
        change: (kinds) => {
          for (const kind of kinds) {
            const message = { jsonrpc: "2.0", method: `notifications/${kind}/list_changed` };
            write(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
          }
        },
        close: () => {
          stop();
          try {
            controller.close();
          } catch {
            // already closed
          }
        },
      });
      if (feed) {
        const off = feed((message) =>
          write(
            `event: message\ndata: ${JSON.stringify({ jsonrpc: "2.0", ...message as object })}\n\n`,
          )
        );
        detach = () => void off();
      }
      keepAlive = setInterval(() => write(": keep-alive\n\n"), keepAliveMs);
      write(": stream open\n\n");
    },
    cancel: stop,
  });
  return new Response(body, {
    status: 200,
    headers: {
      "content-type": "text/event-stream",
      "cache-control": "no-cache, no-store",
      "connection": "keep-alive",
    },
  });
}
