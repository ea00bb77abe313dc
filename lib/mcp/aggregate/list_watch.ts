/**
 * Watching a 2026-07-28 backend's lists, bounded (issue 15 item 3). Such a backend announces list
 * changes only on a `subscriptions/listen` stream (MCP 2026-07-28 Basic/Patterns/Subscriptions),
 * so a stream that never opens (a backend answering `application/json` that never ends, or no
 * acknowledgement) or that ends must not leave `/mcp` deaf:
 *
 * - the acknowledgement is awaited for the backend's `timeoutMs` at most;
 * - every failure, and every end of an open stream, is logged (`backend_listen_failed`) and the
 *   listen is retried with exponential backoff ({@linkcode LISTEN_RETRY_MIN_MS} doubling up to
 *   {@linkcode LISTEN_RETRY_MAX_MS}; a stream that stayed open {@linkcode LISTEN_STABLE_MS}
 *   starts the backoff afresh);
 * - while no stream is open, the announced lists are polled every `listPollSeconds`: a list whose
 *   fingerprint (SHA-256 of its JSON) differs from the previous poll counts as a change, exactly
 *   as a `list_changed` would. When a stream opens again, one last poll catches what changed in
 *   between, then polling stops.
 */
import type { Client } from "@modelcontextprotocol/client";
import { sha256HexSync } from "../../infra/crypto.ts";
import type { Logger } from "../../infra/log.ts";
import type { ListKind } from "./changes.ts";

/** First retry delay of a failed listen. */
export const LISTEN_RETRY_MIN_MS = 1000;
/** Longest retry delay of a failed listen. */
export const LISTEN_RETRY_MAX_MS = 5 * 60 * 1000;
/** A stream open this long before it ended resets the backoff. */
export const LISTEN_STABLE_MS = 60 * 1000;
/** Pages walked per list when polling (the gateway's lists are bounded the same way). */
const MAX_POLL_PAGES = 50;

/** What a watch needs. */
export interface ListWatchOptions {
  backend: string;
  client: Client;
  kinds: readonly ListKind[];
  /** Time allowed for the listen acknowledgement and for each poll request (`timeoutMs`). */
  timeoutMs: number;
  /** Poll period while no stream is open (`listPollSeconds` × 1000). */
  pollMs: number;
  /** A change of `kind` was seen. */
  publish: (kind: ListKind) => void;
  log: Logger;
}

/** The change watch of one modern backend connection; {@linkcode stop} ends it. */
export class ListWatch {
  #o: ListWatchOptions;
  #stopped = false;
  #failures = 0;
  #close: (() => Promise<void>) | undefined;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #poll: ReturnType<typeof setTimeout> | undefined;
  #polling = false;
  #fingerprints = new Map<ListKind, string>();

  constructor(options: ListWatchOptions) {
    this.#o = options;
  }

  /** Opens the listen stream (and falls back to polling if it cannot). */
  start(): void {
    void this.#listen();
  }

  /** Ends the watch: closes its stream, stops retries and polling. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#retry);
    clearTimeout(this.#poll);
    this.#close?.().catch(() => {});
    this.#close = undefined;
  }

  async #listen(): Promise<void> {
    if (this.#stopped) return;
    const { kinds, client, timeoutMs } = this.#o;
    let opened: number | undefined;
    try {
      const sub = await client.listen({
        toolsListChanged: kinds.includes("tools"),
        promptsListChanged: kinds.includes("prompts"),
        resourcesListChanged: kinds.includes("resources"),
      }, { timeout: timeoutMs });
      if (this.#stopped) {
        await sub.close();
        return;
      }
      opened = performance.now();
      this.#close = () => sub.close();
      if (this.#polling) {
        this.#polling = false;
        clearTimeout(this.#poll);
        this.#o.log({ event: "backend_listen_recovered", backend: this.#o.backend });
        void this.#pollOnce(); // what changed since the last poll
      }
      const cause = await sub.closed;
      this.#close = undefined;
      if (this.#stopped || cause === "local") return;
      if (performance.now() - opened >= LISTEN_STABLE_MS) this.#failures = 0;
      this.#failed(`stream ended (${cause})`);
    } catch (error) {
      if (this.#stopped) return;
      this.#failed(error instanceof Error ? error.message : "unknown");
    }
  }

  #failed(reason: string): void {
    const delay = Math.min(LISTEN_RETRY_MAX_MS, LISTEN_RETRY_MIN_MS * 2 ** this.#failures);
    this.#failures++;
    this.#o.log({
      level: "warn",
      event: "backend_listen_failed",
      backend: this.#o.backend,
      error: reason.slice(0, 200),
      attempt: this.#failures,
      retryInMs: delay,
      pollMs: this.#o.pollMs,
    });
    this.#retry = setTimeout(() => void this.#listen(), delay);
    if (!this.#polling) {
      this.#polling = true;
      void this.#pollOnce().finally(() => this.#schedulePoll());
    }
  }

  #schedulePoll(): void {
    if (this.#stopped || !this.#polling) return;
    clearTimeout(this.#poll);
    this.#poll = setTimeout(
      () => void this.#pollOnce().finally(() => this.#schedulePoll()),
      this.#o.pollMs,
    );
  }

  /** Lists every watched kind; a fingerprint that differs from the last one is a change. */
  async #pollOnce(): Promise<void> {
    for (const kind of this.#o.kinds) {
      if (this.#stopped) return;
      let items: unknown[];
      try {
        items = await this.#list(kind);
      } catch (error) {
        this.#o.log({
          level: "warn",
          event: "backend_list_poll_failed",
          backend: this.#o.backend,
          kind,
          error: error instanceof Error ? error.message.slice(0, 200) : "unknown",
        });
        continue;
      }
      const fingerprint = sha256HexSync(JSON.stringify(items));
      const previous = this.#fingerprints.get(kind);
      this.#fingerprints.set(kind, fingerprint);
      if (previous !== undefined && previous !== fingerprint && !this.#stopped) {
        this.#o.publish(kind);
      }
    }
  }

  async #list(kind: ListKind): Promise<unknown[]> {
    const { client, timeoutMs } = this.#o;
    const items: unknown[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < MAX_POLL_PAGES; page++) {
      const params = cursor === undefined ? undefined : { cursor };
      const options = { timeout: timeoutMs };
      let result: { nextCursor?: string };
      if (kind === "tools") items.push(...(result = await client.listTools(params, options)).tools);
      else if (kind === "prompts") {
        items.push(...(result = await client.listPrompts(params, options)).prompts);
      } else items.push(...(result = await client.listResources(params, options)).resources);
      cursor = result.nextCursor;
      if (cursor === undefined) break;
    }
    return items;
  }
}

/**
 * `base` whose `text/event-stream` responses end when the request's `signal` aborts, for as long
 * as their body is read. The SDK closes a `subscriptions/listen` stream (MCP 2026-07-28
 * Basic/Patterns/Subscriptions) by aborting its request, but the signal it hands to `fetch` is an
 * `AbortSignal.any()` of that request's and the transport's, which Deno holds only weakly once the
 * response has arrived: after a garbage collection the abort no longer reaches the fetch, the
 * backend keeps the stream open and the gateway keeps hearing it — a later listen for the same
 * URI then delivered every `notifications/resources/updated` twice. Here the response body holds
 * the signal, and the abort cancels the body (closing the stream at the backend).
 */
export function closableStreams(base: typeof fetch): typeof fetch {
  return async (input, init) => {
    const res = await base(input, init);
    const signal = init?.signal;
    const type = (res.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    if (!signal || !res.ok || !res.body || type !== "text/event-stream") return res;
    const upstream = res.body.getReader();
    const cancel = () => void upstream.cancel(signal.reason).catch(() => {});
    signal.addEventListener("abort", cancel, { once: true });
    if (signal.aborted) cancel();
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const chunk = await upstream.read();
        // An aborted request's body errors as fetch's own would (reading `signal` here is what
        // keeps it alive as long as the body).
        if (signal.aborted) controller.error(signal.reason);
        else if (chunk.done) {
          signal.removeEventListener("abort", cancel);
          controller.close();
        } else controller.enqueue(chunk.value);
      },
      cancel(reason) {
        signal.removeEventListener("abort", cancel);
        return upstream.cancel(reason);
      },
    });
    return new Response(body, {
      status: res.status,
      statusText: res.statusText,
      headers: res.headers,
    });
  };
}
