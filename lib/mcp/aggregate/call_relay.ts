/**
 * Ties a 2025-era backend's server-to-client traffic to the end client's call that caused it.
 *
 * The gateway talks to each backend over one shared connection (pool.ts). A 2025-era backend
 * sends the requests and notifications that belong to a call (`elicitation/create`,
 * `sampling/createMessage`, `notifications/message` sent with a related request id) on the SSE
 * stream of that call's POST (MCP 2025-11-25 Transports §Sending Messages to the Server: "The
 * server MAY send JSON-RPC requests and notifications before sending the JSON-RPC response.
 * These messages SHOULD relate to the originating client request"). The SDK client hands them to
 * connection-wide handlers with no link to the call, so the link is made here:
 *
 * - the routed call runs inside {@linkcode runInCall} (an `AsyncLocalStorage` scope holding the
 *   call's {@linkcode CallRelay});
 * - the connection's `fetch` ({@linkcode CallTap.fetch}) reads that scope when the SDK POSTs the
 *   call, and taps the response's SSE stream: a server-to-client request seen there is recorded
 *   under its JSON-RPC id before the SDK reads it, so the connection's request handler finds the
 *   call by `ctx.mcpReq.id` ({@linkcode CallTap.take}); a `notifications/message` is taken off the
 *   stream and handed to the call's `log`.
 *
 * A server-to-client request seen outside a call's stream (many 2025-era servers send it without
 * a related request id, so it comes on the session's GET stream) belongs to the call in flight on
 * that connection only when it is the only call in flight and every call that ended on the
 * connection within {@linkcode QUIET_WINDOW_MS} was made by the same principal. A connection to
 * a shared backend serves every user, so a request left over from a call that was cancelled or
 * timed out must never reach another user's call (it may quote the first user's data); with
 * none, several, or another principal's recent call it cannot be placed and is refused. Log messages outside a call's stream go to the sessions that asked for them
 * (log_relay.ts).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { releaseWhenClosed } from "../stream_limits.ts";
import type { Hold } from "./fanout.ts";

/** Where a backend's call-related traffic goes: the end client's side of one routed call. */
export interface CallRelay {
  /**
   * Answers a server-to-client request of the backend (`elicitation/create`,
   * `sampling/createMessage`) by asking the end client; rejects with a `ProtocolError` the
   * backend gets as its error response.
   */
  ask(
    method: string,
    params: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<Record<string, unknown>>;
  /** A `notifications/message` the backend sent on the call's stream (params as sent). */
  log(params: Record<string, unknown>): void;
  /** The running call's deadline hold (set by server.ts when the backend call starts). */
  hold?: Hold;
  /** Who made the call (the principal id, set by server.ts): see {@linkcode QUIET_WINDOW_MS}. */
  owner?: string;
}

const current = new AsyncLocalStorage<CallRelay>();

/** Runs `fn` (the SDK call to the backend) with `relay` as its call scope. */
export function runInCall<T>(relay: CallRelay | undefined, fn: () => Promise<T>): Promise<T> {
  return relay ? current.run(relay, fn) : fn();
}

/** Bound of the requests recorded and not yet taken (a handler never ran: dropped message). */
const MAX_PENDING = 1000;

const idKey = (id: unknown) => JSON.stringify(id);

/**
 * How long another principal's ended call on a connection keeps a backend request that names
 * no call from being given to the call in flight (see the module doc).
 */
export const QUIET_WINDOW_MS = 60_000;

/** One backend connection's tap (see the module doc). */
export class CallTap {
  #pending = new Map<string, CallRelay>();
  /** Calls whose POST is in flight on this connection (with the number of their POSTs). */
  #inflight = new Map<CallRelay, number>();
  /** Calls that ended on this connection, with when (for {@linkcode QUIET_WINDOW_MS}). */
  #ended = new Map<CallRelay, number>();
  #now: () => number;

  /** `now` is a monotonic clock in ms (tests move their own). */
  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /**
   * The call that a server-to-client request with JSON-RPC id `id` belongs to (once): the call
   * on whose stream it came, else the only call in flight if no other principal's call ended
   * within {@linkcode QUIET_WINDOW_MS}.
   */
  take(id: unknown): CallRelay | undefined {
    const key = idKey(id);
    const relay = this.#pending.get(key);
    this.#pending.delete(key);
    if (relay) return relay;
    if (this.#inflight.size !== 1) return undefined;
    const only = this.#inflight.keys().next().value!;
    const since = this.#now() - QUIET_WINDOW_MS;
    for (const [other, at] of this.#ended) {
      if (at <= since) this.#ended.delete(other);
      else if (other !== only && (only.owner === undefined || other.owner !== only.owner)) {
        return undefined;
      }
    }
    return only;
  }

  /**
   * Counts a POST of `relay`'s call as in flight on this connection until the returned function
   * is called (once). The SDK's POSTs are counted by {@linkcode fetch}; the `tools/call` fast path
   * (fast_call.ts), which posts outside the SDK client, counts its own, so that a request from
   * outside the streams is never given to another call while one of its calls runs.
   */
  track(relay: CallRelay): () => void {
    this.#inflight.set(relay, (this.#inflight.get(relay) ?? 0) + 1);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const n = (this.#inflight.get(relay) ?? 1) - 1;
      if (n > 0) this.#inflight.set(relay, n);
      else {
        this.#inflight.delete(relay);
        this.#ended.delete(relay);
        this.#ended.set(relay, this.#now());
        if (this.#ended.size > MAX_PENDING) this.#ended.delete(this.#ended.keys().next().value!);
      }
    };
  }

  /** `base` with the response streams of calls made inside a {@linkcode runInCall} tapped. */
  fetch(base: typeof fetch): typeof fetch {
    return async (input, init) => {
      const relay = current.getStore();
      if (!relay || (init?.method ?? "GET").toUpperCase() !== "POST") {
        return await base(input, init);
      }
      const end = this.track(relay);
      let res: Response;
      try {
        res = await base(input, init);
      } catch (error) {
        end();
        throw error;
      }
      const type = (res.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
      if (type !== "text/event-stream" || !res.body) {
        end();
        return res;
      }
      const tapped = new Response(res.body.pipeThrough(this.#tap(relay)), {
        status: res.status,
        statusText: res.statusText,
        headers: res.headers,
      });
      return releaseWhenClosed(tapped, end);
    };
  }

  #tap(relay: CallRelay): TransformStream<Uint8Array, Uint8Array> {
    const decoder = new TextDecoder();
    const encoder = new TextEncoder();
    let buffer = "";
    const event = (raw: string): string | null => {
      const data = raw.split("\n").filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(l[5] === " " ? 6 : 5)).join("\n");
      // Results (often large) carry no "method": they pass without being parsed twice.
      if (data === "" || !data.includes('"method"')) return raw;
      let message: any;
      try {
        message = JSON.parse(data);
      } catch {
        return raw;
      }
      if (!message || typeof message !== "object" || typeof message.method !== "string") {
        return raw;
      }
      if ("id" in message) {
        if (this.#pending.size >= MAX_PENDING) {
          this.#pending.delete(this.#pending.keys().next().value!);
        }
        this.#pending.set(idKey(message.id), relay);
        return raw;
      }
      if (message.method === "notifications/message") {
        const params = message.params;
        if (params && typeof params === "object") relay.log(params);
        return null;
      }
      return raw;
    };
    return new TransformStream({
      transform(chunk, controller) {
        buffer = (buffer + decoder.decode(chunk, { stream: true })).replace(/\r\n/g, "\n");
        let end: number;
        let out = "";
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const kept = event(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (kept !== null) out += `${kept}\n\n`;
        }
        if (out) controller.enqueue(encoder.encode(out));
      },
      flush(controller) {
        buffer += decoder.decode();
        if (buffer) controller.enqueue(encoder.encode(buffer));
      },
    });
  }
}
