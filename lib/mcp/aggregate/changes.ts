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

/** Debounced fan-out of backend list changes to the open change streams. */
export class ChangeHub {
  #listeners = new Set<ChangeListener>();
  #pending = new Set<ListKind>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #debounceMs: number;

  constructor(debounceMs = DEBOUNCE_MS) {
    this.#debounceMs = debounceMs;
  }

  /** Records a change of `kind`; listeners hear of it once the debounce window ends. */
  publish(kind: ListKind): void {
    this.#pending.add(kind);
    this.#timer ??= setTimeout(() => this.#flush(), this.#debounceMs);
  }

  /** Registers a stream; returns its unsubscribe function. */
  subscribe(listener: ChangeListener): () => void {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  /** Ends every stream and drops pending changes (shutdown, tests). */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pending.clear();
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
 * Messages meant for one session (resource updates, log messages; relay_hub.ts): `attach`
 * registers the stream's writer and returns its removal.
 */
export type SessionFeed = (write: (message: unknown) => void) => () => void;

/**
 * A legacy (2025) server-to-client SSE stream for a GET on `/mcp` (MCP 2025-11-25
 * Transports §Listening for Messages from the Server) carrying `notifications/<kind>/list_changed`
 * and what `feed` sends this session, with a keep-alive comment every `keepAliveMs`.
 */
export function legacyChangeStream(
  hub: ChangeHub,
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
