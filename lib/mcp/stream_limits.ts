/**
 * Caps on long-lived SSE streams (security review issue 13 §9): a stream holds a connection, a
 * timer and, for the pass-through, an upstream connection for as long as the client keeps it
 * open, so one session or one principal may hold only so many at once:
 * `rateLimits.openStreamsPerSession` (default 4) and `rateLimits.openStreamsPerPrincipal`
 * (default 32), for tokens, external JWTs and API keys alike. Beyond them: 429 with a JSON-RPC
 * error (RFC 6585 §4). Covered: `GET /mcp` (the legacy change stream), `GET /mcp/<backend>`
 * and modern `subscriptions/listen` streams on `/mcp`.
 *
 * Counts live in the isolate's memory, not in KV: a stream is held by the isolate serving it,
 * and a count in KV would outlive a crashed isolate (nothing would take it back). The bound is
 * therefore per isolate: on Deno Deploy a principal spread over N isolates may hold up to
 * N × the cap. A stream is counted from the moment it is accepted until its body ends, errors
 * or is cancelled (the client went away).
 * @module
 */
import type { Deps } from "../deps.ts";
import { jsonRpcErrorResponse } from "../infra/http.ts";

/** JSON-RPC error code of a refused stream (JSON-RPC 2.0 §5.1 server error range). */
export const TOO_MANY_STREAMS = -32000;

/** Open streams per session and per principal, in one isolate. */
export class OpenStreams {
  #sessions = new Map<string, number>();
  #principals = new Map<string, number>();

  constructor(readonly perSession: number, readonly perPrincipal: number) {}

  /**
   * Counts a new stream of `principalId` (and of `session`, when it has one), or says which
   * cap refuses it. The returned `release` takes it back (idempotent).
   */
  acquire(
    principalId: string,
    session?: string,
  ): { release: () => void } | { refused: "session" | "principal" } {
    const sessionKey = session === undefined ? undefined : `${principalId}\n${session}`;
    if (sessionKey !== undefined && (this.#sessions.get(sessionKey) ?? 0) >= this.perSession) {
      return { refused: "session" };
    }
    if ((this.#principals.get(principalId) ?? 0) >= this.perPrincipal) {
      return { refused: "principal" };
    }
    add(this.#principals, principalId, 1);
    if (sessionKey !== undefined) add(this.#sessions, sessionKey, 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        add(this.#principals, principalId, -1);
        if (sessionKey !== undefined) add(this.#sessions, sessionKey, -1);
      },
    };
  }

  /** Streams open now for a principal (tests, diagnostics). */
  openFor(principalId: string): number {
    return this.#principals.get(principalId) ?? 0;
  }
}

function add(map: Map<string, number>, key: string, delta: number): void {
  const next = (map.get(key) ?? 0) + delta;
  if (next <= 0) map.delete(key);
  else map.set(key, next);
}

const perGateway = new WeakMap<Deno.Kv, OpenStreams>();

/** The isolate's stream counts of one gateway instance (keyed by its KV handle). */
export function openStreams(deps: Pick<Deps, "kv" | "config">): OpenStreams {
  let streams = perGateway.get(deps.kv);
  if (!streams) {
    const limits = deps.config.rateLimits;
    streams = new OpenStreams(limits.openStreamsPerSession, limits.openStreamsPerPrincipal);
    perGateway.set(deps.kv, streams);
  }
  return streams;
}

/** A response whose body calls `release` once it ends, errors or is cancelled. */
export function releaseWhenClosed(res: Response, release: () => void): Response {
  const body = res.body;
  if (!body) {
    release();
    return res;
  }
  const reader = body.getReader();
  const wrapped = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          release();
          controller.close();
        } else controller.enqueue(value);
      } catch (error) {
        release();
        controller.error(error);
      }
    },
    cancel(reason) {
      release();
      return reader.cancel(reason);
    },
  });
  return new Response(wrapped, {
    status: res.status,
    statusText: res.statusText,
    headers: res.headers,
  });
}

/**
 * Opens a long-lived stream under the caps: refused with 429 (JSON-RPC error) past either cap,
 * else `open()`'s response, counted until its body closes when it is a 2xx event stream (any
 * other answer — an error, a JSON body — is not a long-lived stream and is released at once).
 */
export async function openCappedStream(
  deps: Pick<Deps, "kv" | "config">,
  principalId: string,
  session: string | undefined,
  open: () => Promise<Response>,
): Promise<Response> {
  const streams = openStreams(deps);
  const slot = streams.acquire(principalId, session);
  if ("refused" in slot) {
    const which = slot.refused === "session"
      ? `this session (at most ${streams.perSession})`
      : `this grant or key (at most ${streams.perPrincipal})`;
    return jsonRpcErrorResponse(
      429,
      TOO_MANY_STREAMS,
      `too many open streams for ${which}; close one first`,
    );
  }
  let res: Response;
  try {
    res = await open();
  } catch (error) {
    slot.release();
    throw error;
  }
  const type = (res.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (res.status >= 300 || type !== "text/event-stream") {
    slot.release();
    return res;
  }
  return releaseWhenClosed(res, slot.release);
}
