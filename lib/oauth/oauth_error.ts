/**
 * One error type for every OAuth endpoint, rendered in one place.
 *
 * RFC 6749 §5.2 (token endpoint error response), RFC 7591 §3.2.2 (registration errors),
 * RFC 7009 §2.2.1, RFC 6750 §3 (bearer errors carry `WWW-Authenticate`).
 */

/** Error codes used by this gateway (RFC 6749 §4.1.2.1, §5.2; RFC 7591 §3.2.2; RFC 8707 §2). */
export type OAuthErrorCode =
  | "invalid_request"
  | "invalid_client"
  | "invalid_grant"
  | "unauthorized_client"
  | "unsupported_grant_type"
  | "unsupported_response_type"
  | "invalid_scope"
  | "invalid_target"
  | "access_denied"
  | "invalid_redirect_uri"
  | "invalid_client_metadata"
  | "invalid_token"
  | "insufficient_scope"
  | "unsupported_token_type"
  | "server_error"
  | "temporarily_unavailable";

/** Options of an {@linkcode OAuthError}. */
export interface OAuthErrorOptions {
  status?: number;
  headers?: HeadersInit;
}

/** An OAuth error a route throws; {@linkcode oauthErrorResponse} renders it (RFC 6749 §5.2). */
export class OAuthError extends Error {
  readonly code: OAuthErrorCode;
  readonly status: number;
  readonly headers: Headers;

  constructor(code: OAuthErrorCode, description: string, options: OAuthErrorOptions = {}) {
    super(description);
    this.name = "OAuthError";
    this.code = code;
    this.status = options.status ?? defaultStatus(code);
    this.headers = new Headers(options.headers);
  }
}

function defaultStatus(code: OAuthErrorCode): number {
  switch (code) {
    case "invalid_client":
    case "invalid_token":
      return 401;
    case "insufficient_scope":
    case "access_denied":
      return 403;
    case "server_error":
      return 500;
    case "temporarily_unavailable":
      return 503;
    default:
      return 400;
  }
}

/**
 * A rate limit's refusal: 429 (RFC 6585 §4) with `Retry-After` (RFC 9110 §10.2.3) and the
 * RFC 6749 §5.2 body `temporarily_unavailable` (the registered code closest to "not now"; the
 * status tells it from a 503).
 */
export function rateLimited(description: string, retryAfterSeconds: number): OAuthError {
  return new OAuthError("temporarily_unavailable", description, {
    status: 429,
    headers: { "retry-after": String(retryAfterSeconds) },
  });
}

/**
 * Renders an error as RFC 6749 §5.2 JSON `{ error, error_description }` with
 * `Cache-Control: no-store` (RFC 6749 §5.1).
 */
export function oauthErrorResponse(error: OAuthError): Response {
  const headers = new Headers(error.headers);
  headers.set("content-type", "application/json");
  headers.set("cache-control", "no-store");
  headers.set("pragma", "no-cache");
  return new Response(
    JSON.stringify({ error: error.code, error_description: error.message }),
    { status: error.status, headers },
  );
}
