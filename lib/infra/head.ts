/**
 * HEAD (RFC 9110 §9.3.2): "identical to GET except that the server MUST NOT send content in the
 * response". The dispatcher runs a GET route's handler and turns its answer into a bodyless one
 * with the same status and header fields, `Content-Length` included when the body is finite
 * and small enough to count.
 */

/** Largest body counted for a HEAD answer's `Content-Length`; longer ones go without it. */
export const HEAD_COUNT_LIMIT = 1024 * 1024;

/** Counts a body's bytes up to `limit`; `undefined` (and the rest cancelled) beyond it. */
async function byteLength(body: ReadableStream<Uint8Array>, limit: number) {
  const reader = body.getReader();
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return total;
      total += value.byteLength;
      if (total > limit) return undefined;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/**
 * The answer to a HEAD request: `res` without its body. The body is read (at most
 * {@linkcode HEAD_COUNT_LIMIT} bytes) to state its length when `res` has none; an event stream
 * is never read (it has no end). RFC 9110 §9.3.2 lets a server omit header fields "determined
 * only while generating the content", which covers the length of an over-long body.
 */
export async function withoutBody(res: Response): Promise<Response> {
  const headers = new Headers(res.headers);
  const stream = (headers.get("content-type") ?? "").startsWith("text/event-stream");
  if (res.body && !headers.has("content-length") && !stream) {
    const length = await byteLength(res.body, HEAD_COUNT_LIMIT).catch(() => undefined);
    if (length !== undefined) headers.set("content-length", String(length));
  } else {
    await res.body?.cancel().catch(() => {});
  }
  return new Response(null, { status: res.status, statusText: res.statusText, headers });
}
