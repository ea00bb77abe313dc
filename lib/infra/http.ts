/**
 * HTTP helpers shared by the routes: JSON responses, bounded body reading, form parsing,
 * CORS and the security headers of HTML pages.
 */
import { OAuthError } from "../oauth/oauth_error.ts";

/** A JSON response; `no-store` unless `cache` says otherwise. */
export function jsonResponse(
  body: unknown,
  status = 200,
  headers: HeadersInit = {},
  cache = "no-store",
): Response {
  const h = new Headers(headers);
  h.set("content-type", "application/json");
  if (!h.has("cache-control")) h.set("cache-control", cache);
  return new Response(JSON.stringify(body), { status, headers: h });
}

/**
 * A JSON-RPC 2.0 §5 error response with `id: null` (the request's id is not read on these
 * paths), `no-store`. Used for every HTTP-level refusal on the MCP routes.
 */
export function jsonRpcErrorResponse(
  status: number,
  code: number,
  message: string,
  options: { data?: unknown; headers?: HeadersInit } = {},
): Response {
  const error = options.data === undefined
    ? { code, message }
    : { code, message, data: options.data };
  return jsonResponse({ jsonrpc: "2.0", id: null, error }, status, options.headers);
}

/** Thrown when a request body is over its limit; rendered as 413. */
export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`request body is larger than ${limit} bytes`);
    this.name = "BodyTooLargeError";
  }
}

/** Largest body of an MCP request (the MCP SDKs' default bound, 4 MiB). */
export const MCP_BODY_LIMIT = 4 * 1024 * 1024;
/** Largest body of any other route (forms and registration read less: their own limits). */
export const DEFAULT_BODY_LIMIT = 64 * 1024;

/** A request whose body is capped by {@linkcode limitRequestBody}. */
export interface LimitedRequest {
  /** The request to hand on (the same one when nothing needed wrapping). */
  request: Request;
  /** Whether the body went past the limit (its stream then errored with BodyTooLargeError). */
  overflowed: () => boolean;
}

/**
 * Caps a request body at `limit` bytes without buffering it (RFC 9110 §15.5.14, 413):
 * - a declared `Content-Length` above the limit throws {@linkcode BodyTooLargeError} at once;
 * - a declared length within the limit needs nothing more (the server reads no further than
 *   the declared length, RFC 9112 §6.3), so the request is returned as is (no cost);
 * - a body without a length (chunked) is wrapped in a counting stream that errors with
 *   {@linkcode BodyTooLargeError} once more than `limit` bytes went through; whoever reads
 *   it (a route, or `fetch` streaming it upstream) fails, and `overflowed()` says why.
 * @throws {BodyTooLargeError}
 */
export function limitRequestBody(req: Request, limit: number): LimitedRequest {
  const declared = req.headers.get("content-length");
  if (declared !== null) {
    const n = Number(declared);
    if (!Number.isFinite(n) || n > limit) throw new BodyTooLargeError(limit);
    return { request: req, overflowed: () => false };
  }
  if (!req.body) return { request: req, overflowed: () => false };
  let size = 0;
  let over = false;
  const counter = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      size += chunk.byteLength;
      if (size > limit) {
        over = true;
        controller.error(new BodyTooLargeError(limit));
        return;
      }
      controller.enqueue(chunk);
    },
  });
  const init: RequestInit & { duplex: "half" } = {
    body: req.body.pipeThrough(counter),
    duplex: "half",
  };
  return { request: new Request(req, init), overflowed: () => over };
}

/**
 * Reads a request (or response) body as text, refusing more than `limit` bytes (without
 * buffering more).
 */
export async function readBodyText(
  req: Pick<Request, "headers" | "body">,
  limit: number,
): Promise<string> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > limit) throw new BodyTooLargeError(limit);
  if (!req.body) return "";
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw new BodyTooLargeError(limit);
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    all.set(c, offset);
    offset += c.byteLength;
  }
  return new TextDecoder("utf-8", { fatal: false }).decode(all);
}

/** The media type of a request, lower-cased, without parameters. */
export function mediaType(req: Request): string {
  return (req.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
}

/**
 * Reads an `application/x-www-form-urlencoded` body (RFC 6749 §3.2). A parameter sent more
 * than once is an error (RFC 6749 §3.1: "Request and response parameters MUST NOT be
 * included more than once").
 */
export async function readForm(req: Request, limit = 16 * 1024): Promise<Map<string, string>> {
  if (mediaType(req) !== "application/x-www-form-urlencoded") {
    throw new OAuthError(
      "invalid_request",
      "content-type must be application/x-www-form-urlencoded",
    );
  }
  const text = await readBodyText(req, limit);
  return uniqueParams(new URLSearchParams(text));
}

/** Turns URLSearchParams into a map, refusing repeated parameters (RFC 6749 §3.1). */
export function uniqueParams(params: URLSearchParams): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of params) {
    if (out.has(k)) throw new OAuthError("invalid_request", `"${k}" is repeated`);
    out.set(k, v);
  }
  return out;
}

/** Headers a browser client may read from our responses. */
const EXPOSED = "WWW-Authenticate, Mcp-Session-Id, Mcp-Protocol-Version, Retry-After";
/** Headers a browser client may send. */
const ALLOWED =
  "Authorization, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, Mcp-Method, Mcp-Name, Last-Event-ID";

/**
 * Adds CORS headers for browser-based MCP clients (Fetch standard). Credentials are never
 * allowed: these routes use bearer tokens, not cookies.
 */
export function withCors(res: Response, req: Request): Response {
  const origin = req.headers.get("origin") ?? "*";
  try {
    // Responses built by the gateway have mutable headers: no copy on the hot path.
    res.headers.set("access-control-allow-origin", origin);
    res.headers.append("vary", "Origin");
    res.headers.set("access-control-expose-headers", EXPOSED);
    return res;
  } catch {
    // Immutable headers (a response straight from fetch): copy them.
    const headers = new Headers(res.headers);
    headers.set("access-control-allow-origin", origin);
    headers.append("vary", "Origin");
    headers.set("access-control-expose-headers", EXPOSED);
    return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
  }
}

/** Answers a CORS preflight (`OPTIONS`). `Mcp-Param-*` request headers are allowed too. */
export function preflight(req: Request, methods: string): Response {
  const requested = req.headers.get("access-control-request-headers") ?? "";
  const extra = requested.split(",").map((h) => h.trim()).filter((h) =>
    /^mcp-param-[a-z0-9-]+$/i.test(h)
  );
  return new Response(null, {
    status: 204,
    headers: {
      "access-control-allow-origin": req.headers.get("origin") ?? "*",
      "access-control-allow-methods": methods,
      "access-control-allow-headers": [ALLOWED, ...extra].join(", "),
      "access-control-expose-headers": EXPOSED,
      "access-control-max-age": "600",
      "vary": "Origin",
    },
  });
}

/** Security headers of every HTML page (consent, errors): no framing, no sniffing, no referrer. */
export function htmlResponse(html: string, status = 200, headers: HeadersInit = {}): Response {
  const h = new Headers(headers);
  h.set("content-type", "text/html; charset=utf-8");
  h.set("cache-control", "no-store");
  h.set(
    "content-security-policy",
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
  );
  h.set("x-frame-options", "DENY");
  h.set("x-content-type-options", "nosniff");
  h.set("referrer-policy", "no-referrer");
  return new Response(html, { status, headers: h });
}

/**
 * CSRF check of a form post's `Origin` (RFC 6454 §7): absent, or our own. `Origin: null` counts
 * as absent: browsers send it for form posts from pages served with `Referrer-Policy:
 * no-referrer` (Fetch §3.1 "serializing a request origin"), as ours are. The SameSite=Lax
 * cookie and a token only our page can read carry the rest of the protection.
 */
export function originAllowed(req: Request, publicUrl: string): boolean {
  const origin = req.headers.get("origin");
  return origin === null || origin === "null" || origin === new URL(publicUrl).origin;
}

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );
}
