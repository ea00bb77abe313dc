/**
 * Redirect URI rules: what a client may register (RFC 7591 §2, RFC 8252 §7, OAuth 2.1 §2.3.1),
 * how a requested URI is matched against the registered ones (OAuth 2.1 §4.1.1.3: exact string
 * match; RFC 8252 §7.3: any port on loopback), and how authorization responses are built.
 */
import { OAuthError } from "./oauth_error.ts";
import { isDangerousScheme, privateUseSchemeProblem } from "./redirect_schemes.ts";

/** Longest redirect URI accepted (keeps KV values and URLs small). */
export const MAX_REDIRECT_URI_LENGTH = 2000;

/** Loopback host names (as WHATWG URL spells them) on which plain http is allowed (RFC 8252 §7.3). */
export const LOOPBACK_HOSTS: readonly string[] = ["127.0.0.1", "[::1]", "localhost"];

/** Whether `hostname` (as `URL.hostname` gives it) is a loopback host. */
export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOSTS.includes(hostname);
}

/**
 * Whether a redirect URI belongs to a native app (RFC 8252 §7): a loopback interface redirect
 * (§7.3) or a private-use URI scheme (§7.1). Anything else (https on a real host) is a web
 * redirect; a claimed https URI (§7.2) cannot be told apart from one and counts as web.
 */
export function isNativeRedirectUri(uri: string): boolean {
  try {
    const url = new URL(uri);
    return url.protocol !== "https:" || isLoopbackHost(url.hostname);
  } catch {
    return false;
  }
}

/**
 * The `application_type` of a client that did not state one (OpenID Connect Dynamic Client
 * Registration 1.0 §2, echoed in the RFC 7591 §3.2.1 response): `native` when every redirect
 * URI is a native one ({@linkcode isNativeRedirectUri}), else `web`.
 */
export function defaultApplicationType(redirectUris: readonly string[]): "web" | "native" {
  return redirectUris.length > 0 && redirectUris.every(isNativeRedirectUri) ? "native" : "web";
}

/**
 * Checks a redirect URI a client wants to register: `https`; `http` only on a loopback host
 * (RFC 8252 §7.3); or a private-use scheme (RFC 8252 §7.1) that contains a period
 * (`com.example.app:/cb`) or is allowed by name (`allowedSchemes`, the config's
 * `allowedPrivateUseSchemes`), and is not one that hands URIs to another program
 * (lib/oauth/redirect_schemes.ts). Never a fragment (RFC 6749 §3.1.2), a wildcard or userinfo.
 * @throws {OAuthError} `invalid_redirect_uri` naming the rule broken.
 */
export function validateRedirectUri(uri: string, allowedSchemes?: readonly string[]): string {
  const bad = (why: string) =>
    new OAuthError("invalid_redirect_uri", `redirect URI ${JSON.stringify(uri)} ${why}`);
  if (uri.length === 0 || uri.length > MAX_REDIRECT_URI_LENGTH) {
    throw bad(`must have 1 to ${MAX_REDIRECT_URI_LENGTH} characters`);
  }
  if ([...uri].some((c) => c.charCodeAt(0) <= 0x20 || c.charCodeAt(0) === 0x7f)) {
    throw bad("must not contain whitespace or control characters");
  }
  if (uri.includes("#")) throw bad("must not contain a fragment (RFC 6749 §3.1.2)");
  if (uri.includes("*")) throw bad("must not contain a wildcard");
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw bad("is not an absolute URI");
  }
  if (!/^[a-z][a-z0-9+.-]*:/i.test(uri)) throw bad("is not an absolute URI");
  if (isDangerousScheme(url.protocol)) throw bad(`must not use the ${url.protocol} scheme`);
  if (url.username || url.password) throw bad("must not contain userinfo");
  if (url.protocol === "https:") return uri;
  if (url.protocol === "http:") {
    if (isLoopbackHost(url.hostname)) return uri;
    throw bad("must use https (http is allowed only on 127.0.0.1, [::1] or localhost)");
  }
  const problem = privateUseSchemeProblem(url.protocol, allowedSchemes);
  if (problem) throw bad(problem);
  return uri;
}

/** An http loopback URI: scheme + host, then an optional port, then path or query or end. */
const LOOPBACK_HTTP = /^(http:\/\/(?:127\.0\.0\.1|\[::1\]|localhost))(?::(\d{1,5}))?(?=[/?]|$)/;

/**
 * Whether a requested redirect URI matches a registered one: exact string comparison
 * (OAuth 2.1 §4.1.1.3), except that for http loopback URIs the port is ignored (RFC 8252 §7.3)
 * — as long as it is a port (1 to 65535, RFC 6335 §6): `http://localhost:99999/cb` matches
 * nothing, so it gets the error page of an unknown redirect URI, not a redirect that cannot be
 * built.
 */
export function redirectUriMatches(registered: string, requested: string): boolean {
  if (registered === requested) return true;
  const match = LOOPBACK_HTTP.exec(requested);
  if (!match || !LOOPBACK_HTTP.test(registered)) return false;
  const port = match[2];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return false;
  return registered.replace(LOOPBACK_HTTP, "$1") === requested.replace(LOOPBACK_HTTP, "$1");
}

/**
 * Picks the redirect URI of an authorization request (RFC 6749 §3.1.2.3): the requested one if
 * it matches a registered one; when omitted, the only registered one. `null` when neither.
 */
export function selectRedirectUri(
  registered: readonly string[],
  requested: string | undefined,
): string | null {
  if (requested === undefined) return registered.length === 1 ? registered[0]! : null;
  return registered.some((r) => redirectUriMatches(r, requested)) ? requested : null;
}

/**
 * Builds an authorization response URL (RFC 6749 §4.1.2): the redirect URI with `params`
 * appended to its query, keeping the query parameters it already has (RFC 6749 §3.1.2).
 * Undefined values are left out.
 */
export function buildRedirectUrl(
  redirectUri: string,
  params: Record<string, string | undefined>,
): string {
  const url = new URL(redirectUri);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined) url.searchParams.append(k, v);
  }
  return url.href;
}
