/**
 * SSE priming on `/mcp` (issue 15 item 5). MCP 2025-11-25 Transports §Sending Messages to the
 * Server (6) and §Listening for Messages from the Server: when the server starts an SSE stream it
 * SHOULD immediately send an event with an event ID and an empty `data` field, priming the client
 * to reconnect with that ID as `Last-Event-ID`; the `retry` field tells it how long to wait.
 *
 * Which streams get it: those of a 2025-11-25 client (its `MCP-Protocol-Version`), POST responses
 * and GET streams alike, fast path and SDK path alike (applied to the route's response). Not:
 * - 2025-03-26 / 2025-06-18 clients: the priming event came with 2025-11-25 and older clients
 *   fail on an empty `data` (the SDKs' own servers skip it below 2025-11-25 for that reason);
 * - 2026-07-28 clients: that revision has no SSE resumability (Transports §Receiving Messages:
 *   "Resumable SSE streams via `Last-Event-ID` are not supported");
 * - the response to `initialize` (no `MCP-Protocol-Version` yet: the version is being agreed).
 *
 * The gateway replays nothing. A GET carrying a `Last-Event-ID` of a GET stream opens a fresh
 * stream; one naming a POST's stream (IDs say which: `p-…` / `g-…`) gets 405, the answer a 2025
 * client takes as "no stream to open here" without retrying (SDK v1 clients try to resume a POST
 * stream that ended with a JSON-RPC error response; a fresh GET stream each time would pile up).
 */
import { jsonResponse } from "../../infra/http.ts";

/** `retry` sent in the priming event (ms a client waits before reconnecting). */
export const SSE_RETRY_MS = 3000;

/** The protocol revision that introduced priming events. */
const PRIMING_SINCE = "2025-11-25";
/** The first revision without SSE resumability. */
const MODERN_SINCE = "2026-07-28";

/** Whether a stream for protocol revision `version` is primed. */
export function primedVersion(version: string | null): boolean {
  return version !== null && version >= PRIMING_SINCE && version < MODERN_SINCE;
}

/** The priming event: a fresh ID (`p-`/`g-` for POST/GET streams), `retry`, empty data. */
export function primingEvent(kind: "p" | "g"): string {
  return `id: ${kind}-${crypto.randomUUID()}\nretry: ${SSE_RETRY_MS}\ndata: \n\n`;
}

/**
 * A GET that tries to resume a POST's stream (its `Last-Event-ID` is a POST stream's priming
 * ID): 405, since nothing is replayed; otherwise `undefined`.
 */
export function refusedResume(req: Request): Response | undefined {
  if (req.method !== "GET" || !req.headers.get("last-event-id")?.startsWith("p-")) {
    return undefined;
  }
  return jsonResponse(
    {
      jsonrpc: "2.0",
      id: null,
      error: { code: -32000, message: "Method Not Allowed: /mcp does not resume a POST's stream" },
    },
    405,
    { allow: "POST, DELETE" },
  );
}

/**
 * Responses whose body already starts with the priming event (the `tools/call` fast path writes
 * a one-message answer as one string, fast_call.ts): {@linkcode primeSse} leaves them alone.
 */
const alreadyPrimed = new WeakSet<Response>();

/**
 * An SSE answer holding `text` (complete events) for a request of protocol revision `version`:
 * with the priming event in front when that revision is primed, as {@linkcode primeSse} would
 * put it, without a stream transform.
 */
export function primedSseResponse(
  version: string | null,
  text: string,
  headers: HeadersInit,
): Response {
  if (!primedVersion(version)) return new Response(text, { status: 200, headers });
  return markPrimed(new Response(primingEvent("p") + text, { status: 200, headers }));
}

/** Notes that `res`'s body already starts with the priming event (its maker put it there). */
export function markPrimed(res: Response): Response {
  alreadyPrimed.add(res);
  return res;
}

/**
 * `res` with the priming event in front of its body when it is an SSE stream of a 2025-11-25
 * client (see the module doc); any other response unchanged. Cancelling the returned body
 * cancels the original one.
 */
export function primeSse(req: Request, res: Response): Response {
  // `res.body` last: reading it turns a string body into a stream (Deno.serve then loses its
  // one-shot write of a string body).
  if (
    res.status !== 200 || alreadyPrimed.has(res) ||
    !primedVersion(req.headers.get("mcp-protocol-version")) ||
    !(res.headers.get("content-type") ?? "").startsWith("text/event-stream") || !res.body
  ) return res;
  const prime = new TextEncoder().encode(primingEvent(req.method === "GET" ? "g" : "p"));
  const body = res.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({ start: (c) => c.enqueue(prime) }),
  );
  return new Response(body, {
    status: res.status,
    statusText: res.statusText,
    headers: res.headers,
  });
}
