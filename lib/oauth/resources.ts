/**
 * The gateway's protected resources (RFC 9728, RFC 8707) and scopes.
 *
 * Resources: `<PUBLIC_URL>/mcp` (every backend, aggregated), `<PUBLIC_URL>/mcp/<backend>`, and
 * `<PUBLIC_URL>` itself — the `resource` of the root-form protected resource metadata (RFC 9728
 * §3.3), which clients that read that document send (RFC 8707). The origin names the gateway's
 * MCP endpoints as a whole, so a token for it is worth exactly a token for `/mcp`: every MCP
 * endpoint, each backend only within the token's scopes.
 * Scopes: `mcp` (every backend) and `mcp:<backend>` (one backend); `offline_access` is accepted
 * and ignored (refresh tokens are always issued, MCP clients rarely ask for it).
 */
import type { GatewayConfig } from "../config.ts";
import { OAuthError } from "./oauth_error.ts";

/** The scope that covers every backend. */
export const ALL_BACKENDS_SCOPE = "mcp";

/** The scope that covers one backend. */
export function backendScope(backend: string): string {
  return `mcp:${backend}`;
}

/** URL of the aggregated MCP endpoint. */
export function aggregateResource(publicUrl: string): string {
  return `${publicUrl}/mcp`;
}

/** Whether `resource` names every MCP endpoint: `<PUBLIC_URL>/mcp` or `<PUBLIC_URL>` itself. */
export function coversAllEndpoints(resource: string, publicUrl: string): boolean {
  return resource === aggregateResource(publicUrl) || resource === publicUrl;
}

/** URL of one backend's MCP endpoint. */
export function backendResource(publicUrl: string, backend: string): string {
  return `${publicUrl}/mcp/${backend}`;
}

/** URL of the protected resource metadata of a resource (RFC 9728 §3.1, path form). */
export function resourceMetadataUrl(publicUrl: string, resource: string): string {
  const path = new URL(resource).pathname;
  return `${publicUrl}/.well-known/oauth-protected-resource${path}`;
}

/** Every scope this gateway knows, for `scopes_supported` (RFC 8414 §2, RFC 9728 §2). */
export function supportedScopes(config: GatewayConfig): string[] {
  return [ALL_BACKENDS_SCOPE, ...config.backends.map((b) => backendScope(b.name))];
}

/**
 * Validates a `resource` parameter (RFC 8707 §2): an absolute URI without fragment that names
 * one of this gateway's MCP endpoints or `<PUBLIC_URL>` itself. A trailing slash is tolerated.
 * Absent → `/mcp`.
 * @throws {OAuthError} `invalid_target`
 */
export function resolveResource(
  value: string | undefined,
  publicUrl: string,
  config: GatewayConfig,
): string {
  if (value === undefined || value === "") return aggregateResource(publicUrl);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new OAuthError("invalid_target", '"resource" must be an absolute URI');
  }
  if (url.hash || value.includes("#")) {
    throw new OAuthError("invalid_target", '"resource" must not contain a fragment');
  }
  const normalized = `${url.origin}${url.pathname.replace(/\/+$/, "")}${url.search}`;
  const known = [
    publicUrl,
    aggregateResource(publicUrl),
    ...config.backends.map((b) => backendResource(publicUrl, b.name)),
  ];
  if (!known.includes(normalized)) {
    throw new OAuthError("invalid_target", `"resource" is not served by this gateway`);
  }
  return normalized;
}

/**
 * Whether `scope` lies within a client's allowed scopes: listed, or a backend scope when the
 * client may have `mcp` (every backend). `offline_access` is always allowed (and ignored).
 */
export function scopeAllowed(scope: string, allowed: readonly string[] | undefined): boolean {
  if (allowed === undefined || scope === "offline_access" || allowed.includes(scope)) return true;
  return scope.startsWith("mcp:") && allowed.includes(ALL_BACKENDS_SCOPE);
}

/**
 * The default scopes of a client that asks for none (RFC 6749 §3.3: "a pre-defined default
 * value"): `defaultScopes` of the config, restricted to the client's allowed scopes, where a
 * default of `mcp` (every backend) stands for each allowed backend scope.
 */
export function defaultScopesFor(
  defaults: string,
  allowed: readonly string[] | undefined,
): string[] {
  const out: string[] = [];
  for (const d of defaults.split(" ").filter((s) => s !== "" && s !== "offline_access")) {
    const within = scopeAllowed(d, allowed)
      ? [d]
      : d === ALL_BACKENDS_SCOPE
      ? (allowed ?? []).filter((s) => s.startsWith("mcp:"))
      : [];
    for (const s of within) if (!out.includes(s)) out.push(s);
  }
  return out;
}

/**
 * Parses a requested `scope` (RFC 6749 §3.3). Unknown scopes and scopes outside the client's
 * `allowed` list are refused; absent → {@linkcode defaultScopesFor} `defaultScopes` (refused
 * when that leaves nothing, RFC 6749 §3.3 "or fail the request indicating an invalid scope").
 * `offline_access` is accepted and dropped: refresh tokens are always issued.
 * @throws {OAuthError} `invalid_scope`
 */
export function resolveScope(
  value: string | undefined,
  config: GatewayConfig,
  allowed?: readonly string[],
): string {
  const known = new Set(supportedScopes(config));
  const requested = (value ?? "").split(" ").filter((s) => s !== "");
  const granted: string[] = [];
  for (const s of requested) {
    if (s === "offline_access") continue;
    if (!known.has(s)) throw new OAuthError("invalid_scope", `unknown scope "${s}"`);
    if (!scopeAllowed(s, allowed)) {
      throw new OAuthError("invalid_scope", `this client may not request scope "${s}"`);
    }
    if (!granted.includes(s)) granted.push(s);
  }
  if (granted.length > 0) return granted.join(" ");
  const defaults = defaultScopesFor(config.defaultScopes, allowed).filter((s) => known.has(s));
  if (defaults.length === 0) {
    throw new OAuthError("invalid_scope", '"scope" is required: no default scope applies');
  }
  return defaults.join(" ");
}

/** Whether a granted scope string lets its holder use `backend`. */
export function scopeCoversBackend(scope: string, backend: string): boolean {
  const scopes = scope.split(" ");
  return scopes.includes(ALL_BACKENDS_SCOPE) || scopes.includes(backendScope(backend));
}

/**
 * Whether a token issued for `audience` may be used at `resource` (RFC 8707 §2: the token is
 * audience-restricted). A token for `/mcp` or for `<PUBLIC_URL>` covers every MCP endpoint
 * (each backend still needs its scope); a token for `/mcp/<backend>` only that endpoint.
 */
export function audienceCovers(audience: string, resource: string, publicUrl: string): boolean {
  return audience === resource || coversAllEndpoints(audience, publicUrl);
}
