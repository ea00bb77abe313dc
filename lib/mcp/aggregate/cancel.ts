/**
 * Cancellation of in-flight backend calls by a legacy client's `notifications/cancelled`
 * (MCP 2025-11-25 Basic/Utilities/Cancellation). On the stateless legacy leg that notification
 * arrives in its own POST, maybe at another isolate than the call it cancels: each isolate keeps
 * its in-flight calls by `<sha256(session id)>:<request id>` and a cancellation is applied locally
 * and broadcast (BroadcastChannel reaches every isolate of a Deno Deploy deployment).
 * Modern clients cancel by closing the request's stream; the SDK turns that into the handler's
 * abort signal, no registry needed.
 */

/** The abort reason of a call cancelled by `notifications/cancelled`. */
export const CANCELLED = "cancelled";

/** Whether `signal` (of {@linkcode CancelRegistry.track}) was aborted by a cancellation. */
export const wasCancelled = (signal: AbortSignal): boolean =>
  signal.aborted && signal.reason === CANCELLED;

interface CancelMessage {
  key: string;
}

/** In-flight calls of this isolate, cancellable by key. */
export class CancelRegistry {
  #inflight = new Map<string, AbortController>();
  #channel: BroadcastChannel | null;

  constructor(channel?: BroadcastChannel) {
    this.#channel = channel ?? null;
    if (this.#channel) {
      this.#channel.onmessage = (e: MessageEvent<CancelMessage>) => {
        if (typeof e.data?.key === "string") this.#inflight.get(e.data.key)?.abort(CANCELLED);
      };
    }
  }

  /**
   * Tracks a call; `signal` aborts when it is cancelled (reason {@linkcode CANCELLED}) or, given
   * a `parent` (the client's request signal), when that aborts (the parent's reason: one signal
   * for both, without `AbortSignal.any`); call `done()` when it settles.
   */
  track(key: string, parent?: AbortSignal): { signal: AbortSignal; done: () => void } {
    const controller = new AbortController();
    this.#inflight.set(key, controller);
    if (parent) {
      if (parent.aborted) controller.abort(parent.reason);
      else parent.addEventListener("abort", () => controller.abort(parent.reason), { once: true });
    }
    return {
      signal: controller.signal,
      done: () => {
        if (this.#inflight.get(key) === controller) this.#inflight.delete(key);
      },
    };
  }

  /** Cancels the call `key` here and in every other isolate. */
  cancel(key: string): void {
    this.#inflight.get(key)?.abort(CANCELLED);
    try {
      this.#channel?.postMessage({ key } satisfies CancelMessage);
    } catch {
      // closed channel: only this isolate is reached
    }
  }

  /** Closes the broadcast channel. */
  close(): void {
    this.#channel?.close();
    this.#channel = null;
  }
}

/** The registry key of request `id` in the session whose id hashes to `sessionHash`. */
export function cancelKey(sessionHash: string, id: unknown): string {
  return `${sessionHash}:${JSON.stringify(id)}`;
}
