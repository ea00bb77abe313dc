/**
 * Cookies of the consent flow (RFC 6265bis): the CSRF cookie of one authorization request.
 * On https it uses the `__Host-` prefix (Secure, Path=/, no Domain: RFC 6265bis §4.1.3.2);
 * on plain http (localhost development) a plain name, since browsers refuse `Secure` there.
 */

/** Name of the CSRF cookie of authorization request `requestId` (one per tab). */
export function csrfCookieName(requestId: string, secure: boolean): string {
  return `${secure ? "__Host-" : ""}gw_csrf_${requestId}`;
}

/** Options of {@linkcode serializeCookie}. */
export interface CookieOptions {
  secure: boolean;
  /** Lifetime in seconds; 0 deletes the cookie. */
  maxAge: number;
}

/** A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/, and Secure when `secure`. */
export function serializeCookie(name: string, value: string, options: CookieOptions): string {
  const parts = [
    `${name}=${value}`,
    "Path=/",
    `Max-Age=${Math.max(0, Math.floor(options.maxAge))}`,
    "HttpOnly",
    "SameSite=Lax",
  ];
  if (options.secure) parts.push("Secure");
  return parts.join("; ");
}

/** Parses a `Cookie` request header into a map (first value wins for a repeated name). */
export function parseCookies(header: string | null): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    if (!out.has(name)) out.set(name, part.slice(eq + 1).trim());
  }
  return out;
}
