/**
 * list_changed relay (MCP 2025-11-25 Server/Tools §List Changed Notification; 2026-07-28
 * `subscriptions/listen`): backends' list changes seen by this isolate's backend clients are
 * collected for {@linkcode DEBOUNCE_MS} and then announced once per kind to every open change
 * stream of this isolate (legacy GET streams and modern listen streams). Each isolate that holds
 * streams also holds its own backend connections, so no cross-isolate state is needed.
 */

/** A list whose changes are relayed. */
export type ListKind = "tools" | "prompts" | "resources";

/** Time during which changes are merged into one notification per kind. */
export const DEBOUNCE_MS = 200;

/** An open change stream. */
export interface ChangeListener {
  change: (kinds: ReadonlySet<ListKind>) => void;
  close: () => void;
}

/** Hears every backend list change at once, with the backend's name (caches). */
export type BackendChangeWatcher = (backend: string, kind: ListKind) => void;

/** Debounced fan-out of backend list changes to the open change streams. */
export class ChangeHub {
  #listeners = new Set<ChangeListener>();
  #watchers = new Set<BackendChangeWatcher>();
  #pending = new Set<ListKind>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #debounceMs: number;

  constructor(debounceMs = DEBOUNCE_MS) {
    this.#debounceMs = debounceMs;
  }

  /**
   * Records a change of `kind` (from `backend`, when known): watchers hear of it at once,
   * listeners once the debounce window ends.
   */
  publish(kind: ListKind, backend?: string): void {
    if (backend !== undefined) { for (const w of this.#watchers) w(backend, kind); }
    this.#pending.add(kind);
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
    const kinds = new Set(this.#pending);
    this.#pending.clear();
    for (const l of [...this.#listeners]) {
      try {
        l.change(kinds);
      } catch {
        // a broken stream is dropped by its own cancel()
      }
    }
  }
}

/**
 * A legacy (2025) server-to-client SSE stream for a GET on `/mcp` (MCP 2025-11-25
 * Transports §Listening for Messages from the Server) carrying `notifications/<kind>/list_changed`,
 * with a keep-alive comment every `keepAliveMs`.
 */
export function legacyChangeStream(hub: ChangeHub, keepAliveMs = 15_000): Response {
  const encoder = new TextEncoder();
  let unsubscribe = () => {};
  let keepAlive: ReturnType<typeof setInterval> | undefined;
  const stop = () => {
    unsubscribe();
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
