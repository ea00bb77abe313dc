/**
 * Finding a backend's authorization server the way an MCP client does (MCP 2025-11-25
 * Authorization §Authorization Server Discovery):
 *
 * 1. an unauthenticated request to the backend; its 401 `WWW-Authenticate: Bearer` may name the
 *    protected-resource metadata (`resource_metadata`, RFC 9728 §5.1) and the `scope` to ask;
 * 2. that metadata, else the well-known URIs (RFC 9728 §3.1: path form, then root): its
 *    `resource` must identify the backend (RFC 9728 §3.3) and `authorization_servers` names the
 *    issuer — or the configured `auth.authorizationServer` skips steps 1–2;
 * 3. the issuer's metadata: RFC 8414 §3.1 (path-inserted well-known URI), then OpenID Connect
 *    Discovery (path-inserted, then appended); `issuer` must equal the issuer exactly (RFC 8414
 *    §3.3) and `code_challenge_methods_supported` must list `S256` (MCP: clients MUST refuse
 *    otherwise).
 *
 * Every request goes through lib/credentials/outbound.ts (the SSRF guard). A result is kept per
 * isolate for {@linkcode DISCOVERY_TTL_MS}; failures are not kept.
 */
import { z } from "zod";
import type { BackendConfig, GatewayConfig } from "../config.ts";
import type { Deps } from "../deps.ts";
import type { OAuthBackendAuth } from "./auth_config.ts";
import { BackendAuthError, jsonObject, outboundRequest } from "./outbound.ts";

/** How long a discovery result is reused by an isolate. */
export const DISCOVERY_TTL_MS = 60 * 60 * 1000;

/** What the gateway needs of a backend's authorization server (RFC 8414 §2). */
export interface AuthServerInfo {
  issuer: string;
  authorizationEndpoint: string;
  tokenEndpoint: string;
  registrationEndpoint?: string;
  revocationEndpoint?: string;
  /** `client_id_metadata_document_supported` (MCP 2025-11-25). */
  metadataDocumentSupported: boolean;
  /** `authorization_response_iss_parameter_supported` (RFC 9207 §3). */
  issParameterSupported: boolean;
  /** `token_endpoint_auth_methods_supported` (RFC 8414 §2; absent = client_secret_basic). */
  authMethods?: string[];
}

/** How to ask a backend's authorization server for a user's tokens. */
export interface BackendOAuthPlan {
  server: AuthServerInfo;
  /** The RFC 8707 `resource`: the metadata's `resource`, else the backend's URL. */
  resource: string;
  /** Space-separated scopes to request, if any. */
  scope?: string;
}

const url = z.string().max(2000).refine((s) => {
  try {
    return ["https:", "http:"].includes(new URL(s).protocol);
  } catch {
    return false;
  }
}, "must be an http(s) URL");

const resourceMetadataSchema = z.object({
  resource: url,
  authorization_servers: z.array(url).min(1),
  scopes_supported: z.array(z.string()).optional(),
});

const serverMetadataSchema = z.object({
  issuer: z.string(),
  authorization_endpoint: url,
  token_endpoint: url,
  registration_endpoint: url.optional(),
  revocation_endpoint: url.optional(),
  code_challenge_methods_supported: z.array(z.string()).optional(),
  client_id_metadata_document_supported: z.boolean().optional(),
  authorization_response_iss_parameter_supported: z.boolean().optional(),
  token_endpoint_auth_methods_supported: z.array(z.string()).optional(),
});

/** The parameters of the `Bearer` challenge of a `WWW-Authenticate` value (RFC 9110 §11.6.1). */
export function bearerChallengeParams(header: string | null): Map<string, string> {
  const params = new Map<string, string>();
  const at = (header ?? "").search(/(^|[\s,])Bearer(\s|$)/i);
  if (at < 0) return params;
  const rest = header!.slice(at).replace(/^[\s,]*Bearer/i, "");
  const re = /\s*,?\s*([A-Za-z0-9_.-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^\s,"]+)/y;
  let m: RegExpExecArray | null;
  while ((m = re.exec(rest)) !== null) {
    const name = m[1]!.toLowerCase();
    if (params.has(name)) break; // the next challenge's parameters
    params.set(name, m[3] !== undefined ? m[3].replace(/\\(.)/g, "$1") : m[2]!);
  }
  return params;
}

/** Whether metadata for `resource` may describe the backend at `backendUrl` (RFC 9728 §3.3). */
export function resourceCovers(resource: string, backendUrl: string): boolean {
  const r = new URL(resource);
  const b = new URL(backendUrl);
  if (r.origin !== b.origin || r.search || r.hash) return false;
  const withSlash = (p: string) => p.endsWith("/") ? p : `${p}/`;
  return withSlash(b.pathname).startsWith(withSlash(r.pathname));
}

/** The well-known URIs of a resource's metadata (RFC 9728 §3.1): path form, then root. */
function resourceMetadataUrls(backendUrl: string): string[] {
  const u = new URL(backendUrl);
  const root = `${u.origin}/.well-known/oauth-protected-resource`;
  const path = u.pathname.replace(/\/$/, "");
  return path ? [`${root}${path}`, root] : [root];
}

/** The metadata URIs of an issuer: RFC 8414 §3.1, then OpenID Connect Discovery 1.0 §4. */
export function serverMetadataUrls(issuer: string): string[] {
  const u = new URL(issuer);
  const path = u.pathname.replace(/\/$/, "");
  if (!path) {
    return [
      `${u.origin}/.well-known/oauth-authorization-server`,
      `${u.origin}/.well-known/openid-configuration`,
    ];
  }
  return [
    `${u.origin}/.well-known/oauth-authorization-server${path}`,
    `${u.origin}/.well-known/openid-configuration${path}`,
    `${u.origin}${path}/.well-known/openid-configuration`,
  ];
}

/** GETs JSON metadata; `null` on 4xx (try the next URI). @throws {BackendAuthError} */
async function getMetadata(
  backend: BackendConfig,
  target: string,
  what: string,
): Promise<Record<string, unknown> | null> {
  const res = await outboundRequest(backend, target, {
    headers: { accept: "application/json" },
  }, what);
  if (res.status >= 500) throw new BackendAuthError(`${what} answered HTTP ${res.status}`, true);
  if (res.status !== 200) return null;
  const body = jsonObject(res.text);
  if (!body) throw new BackendAuthError(`${what} (${target}) is not a JSON object`);
  return body;
}

/** The 401 challenge of the backend (MCP Authorization §Protected Resource Metadata Discovery). */
async function probeBackend(
  backend: BackendConfig,
): Promise<Map<string, string>> {
  const res = await outboundRequest(backend, backend.url, {
    method: "POST",
    headers: {
      ...backend.headers,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    },
    body: JSON.stringify({ jsonrpc: "2.0", id: "gateway-discovery", method: "ping" }),
  }, `backend ${backend.name}`);
  return res.status === 401
    ? bearerChallengeParams(res.headers.get("www-authenticate"))
    : new Map();
}

/** The backend's protected-resource metadata. @throws {BackendAuthError} */
async function resourceMetadata(
  backend: BackendConfig,
  advertised: string | undefined,
): Promise<z.output<typeof resourceMetadataSchema>> {
  const what = `the protected-resource metadata of backend ${backend.name}`;
  for (const target of advertised ? [advertised] : resourceMetadataUrls(backend.url)) {
    const body = await getMetadata(backend, target, what);
    if (!body) continue;
    const parsed = resourceMetadataSchema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new BackendAuthError(`${what}: "${issue.path.join(".")}" ${issue.message}`);
    }
    if (!resourceCovers(parsed.data.resource, backend.url)) {
      throw new BackendAuthError(
        `${what} is for another resource (${parsed.data.resource}), not ${backend.url}`,
      );
    }
    return parsed.data;
  }
  throw new BackendAuthError(
    `backend ${backend.name} advertises no protected-resource metadata (RFC 9728); ` +
      "set auth.authorizationServer",
  );
}

/** The authorization server metadata of `issuer`. @throws {BackendAuthError} */
export async function authServerInfo(
  backend: BackendConfig,
  issuer: string,
): Promise<AuthServerInfo> {
  const what = `the authorization server ${issuer} of backend ${backend.name}`;
  for (const target of serverMetadataUrls(issuer)) {
    const body = await getMetadata(backend, target, what);
    if (!body) continue;
    const parsed = serverMetadataSchema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new BackendAuthError(`${what}: metadata "${issue.path.join(".")}" ${issue.message}`);
    }
    const m = parsed.data;
    if (m.issuer !== issuer) {
      throw new BackendAuthError(`${what}: metadata names another issuer (${m.issuer})`);
    }
    if (!m.code_challenge_methods_supported?.includes("S256")) {
      throw new BackendAuthError(`${what} does not support PKCE with S256`);
    }
    return {
      issuer,
      authorizationEndpoint: m.authorization_endpoint,
      tokenEndpoint: m.token_endpoint,
      ...(m.registration_endpoint ? { registrationEndpoint: m.registration_endpoint } : {}),
      ...(m.revocation_endpoint ? { revocationEndpoint: m.revocation_endpoint } : {}),
      metadataDocumentSupported: m.client_id_metadata_document_supported === true,
      issParameterSupported: m.authorization_response_iss_parameter_supported === true,
      ...(m.token_endpoint_auth_methods_supported
        ? { authMethods: m.token_endpoint_auth_methods_supported }
        : {}),
    };
  }
  throw new BackendAuthError(`${what} publishes no metadata (RFC 8414, OpenID Discovery)`);
}

async function discover(
  backend: BackendConfig,
  auth: OAuthBackendAuth,
): Promise<BackendOAuthPlan> {
  const configuredScope = auth.scopes?.length ? auth.scopes.join(" ") : undefined;
  if (auth.authorizationServer) {
    const server = await authServerInfo(backend, auth.authorizationServer);
    return {
      server,
      resource: backend.url,
      ...(configuredScope ? { scope: configuredScope } : {}),
    };
  }
  const challenge = await probeBackend(backend);
  const metadata = await resourceMetadata(backend, challenge.get("resource_metadata"));
  const server = await authServerInfo(backend, metadata.authorization_servers[0]!);
  // MCP 2025-11-25 §Scope Selection Strategy: the challenge's scope, else scopes_supported.
  const scope = configuredScope ?? challenge.get("scope") ??
    (metadata.scopes_supported?.length ? metadata.scopes_supported.join(" ") : undefined);
  return { server, resource: metadata.resource, ...(scope ? { scope } : {}) };
}

const cache = new WeakMap<GatewayConfig, Map<string, { plan: BackendOAuthPlan; until: number }>>();

/**
 * How to get a user's tokens for an `oauth` backend (see the module doc), from the isolate's
 * cache when fresh.
 * @throws {BackendAuthError}
 */
export async function backendOAuthPlan(
  deps: Pick<Deps, "now" | "config">,
  backend: BackendConfig,
): Promise<BackendOAuthPlan> {
  if (backend.auth?.type !== "oauth") throw new Error(`backend ${backend.name} is not oauth`);
  let byName = cache.get(deps.config);
  if (!byName) cache.set(deps.config, byName = new Map());
  const hit = byName.get(backend.name);
  const now = deps.now();
  if (hit && hit.until > now) return hit.plan;
  const plan = await discover(backend, backend.auth);
  byName.set(backend.name, { plan, until: now + DISCOVERY_TTL_MS });
  return plan;
}

/** Forgets a backend's discovery result (its server refused what it said: look again). */
export function forgetBackendOAuthPlan(config: GatewayConfig, backend: string): void {
  cache.get(config)?.delete(backend);
}
