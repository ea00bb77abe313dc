/**
 * Authentication of MCP routes: Bearer access tokens issued by this gateway (RFC 6750 §2.1,
 * audience-checked per RFC 8707 and MCP 2025-11-25 Authorization §Token Audience Binding) or a
 * static API key; the Origin rule of MCP 2025-11-25 Transports §Security Warning.
 */
import { sha256Hex, timingSafeEqual } from "./crypto.ts";
import type { Deps } from "./deps.ts";
import { jsonResponse } from "./http.ts";
import {
  audienceCovers,
  backendScope,
  resourceMetadataUrl,
  scopeCoversBackend,
} from "./resources.ts";
import { accessKey, type TokenRecord } from "./store.ts";

/** Who is calling an MCP route. */
export interface Principal {
  /** Stable id: the grant id for tokens, `apikey:<hash prefix>` for API keys. */
  id: string;
  kind: "token" | "api_key";
  clientId?: string;
  grantId?: string;
  /** Space-separated scopes; API keys hold `mcp` (everything). */
  scope: string;
  /** Audience of the token (the resource URL it was issued for). */
  audience: string;
}

/** Looks up an access token (through the per-isolate cache) and checks its expiry. */
export async function lookupAccessToken(deps: Deps, token: string): Promise<TokenRecord | null> {
  const hash = await sha256Hex(token);
  const now = deps.now();
  const cached = deps.tokenCache.get(hash, now);
  if (cached !== undefined) return cached;
  const entry = await deps.kv.get<TokenRecord>(accessKey(hash));
  const record = entry.value && entry.value.expiresAt > now ? entry.value : null;
  deps.tokenCache.set(hash, record, now);
  return record;
}

function quote(s: string): string {
  return `"${s.replace(/["\\]/g, "")}"`;
}

/** The RFC 6750 §3 / RFC 9728 §5.1 challenge for a resource. */
export function bearerChallenge(
  deps: Deps,
  resource: string,
  extra: { error?: string; description?: string; scope?: string } = {},
): string {
  const parts = [`resource_metadata=${quote(resourceMetadataUrl(deps.settings.publicUrl, resource))}`];
  if (extra.scope) parts.push(`scope=${quote(extra.scope)}`);
  if (extra.error) parts.push(`error=${quote(extra.error)}`);
  if (extra.description) parts.push(`error_description=${quote(extra.description)}`);
  return `Bearer ${parts.join(", ")}`;
}

function challengeResponse(
  deps: Deps,
  resource: string,
  status: number,
  error: string | undefined,
  description: string,
  scope: string,
): Response {
  return jsonResponse(
    { error: error ?? "invalid_token", error_description: description },
    status,
    { "www-authenticate": bearerChallenge(deps, resource, { error, description, scope }) },
  );
}

/**
 * Authenticates a request to the MCP endpoint `resource` that serves `backend` (or every
 * backend when `backend` is undefined). Returns the principal, or the 400/401/403 response.
 *
 * - no credentials → 401 with `resource_metadata` (RFC 9728 §5.1), no error code (RFC 6750 §3.1)
 * - token in the query → 400 `invalid_request` (MCP Authorization §Access Token Usage)
 * - unknown, expired or other-audience token → 401 `invalid_token`
 * - scope does not cover the backend → 403 `insufficient_scope` (RFC 6750 §3.1)
 */
export async function authenticate(
  req: Request,
  deps: Deps,
  resource: string,
  backend?: string,
): Promise<Principal | Response> {
  const url = new URL(req.url);
  const scopeHint = backend ? backendScope(backend) : "mcp";
  if (url.searchParams.has("access_token")) {
    return challengeResponse(
      deps,
      resource,
      400,
      "invalid_request",
      "access tokens are not accepted in the query string",
      scopeHint,
    );
  }
  const header = req.headers.get("authorization");
  if (!header) {
    return jsonResponse(
      { error: "invalid_token", error_description: "authentication required" },
      401,
      { "www-authenticate": bearerChallenge(deps, resource, { scope: scopeHint }) },
    );
  }
  const match = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header);
  if (!match) {
    return challengeResponse(
      deps,
      resource,
      401,
      "invalid_token",
      "Authorization must be a Bearer token",
      scopeHint,
    );
  }
  const token = match[1]!;
  const apiKey = await matchApiKey(deps, token);
  if (apiKey) return apiKey;
  const record = await lookupAccessToken(deps, token);
  if (!record) {
    return challengeResponse(deps, resource, 401, "invalid_token", "token is invalid or expired", scopeHint);
  }
  if (!audienceCovers(record.resource, resource, deps.settings.publicUrl)) {
    return challengeResponse(
      deps,
      resource,
      401,
      "invalid_token",
      "token was issued for another resource",
      scopeHint,
    );
  }
  if (backend && !scopeCoversBackend(record.scope, backend)) {
    return challengeResponse(
      deps,
      resource,
      403,
      "insufficient_scope",
      `scope ${scopeHint} is required`,
      scopeHint,
    );
  }
  return {
    id: record.grantId,
    kind: "token",
    clientId: record.clientId,
    grantId: record.grantId,
    scope: record.scope,
    audience: record.resource,
  };
}

async function matchApiKey(deps: Deps, token: string): Promise<Principal | null> {
  if (deps.settings.apiKeyHashes.length === 0) return null;
  const hash = await sha256Hex(token);
  let found: string | undefined;
  for (const known of deps.settings.apiKeyHashes) {
    if (timingSafeEqual(hash, known)) found = known;
  }
  if (!found) return null;
  return {
    id: `apikey:${found.slice(0, 16)}`,
    kind: "api_key",
    scope: "mcp",
    audience: `${deps.settings.publicUrl}/mcp`,
  };
}

/**
 * MCP 2025-11-25 Transports §Security Warning: servers MUST validate `Origin`; a present but
 * foreign one gets 403. The gateway's own origin and `allowedOrigins` pass.
 */
export function checkOrigin(req: Request, deps: Deps): Response | null {
  const origin = req.headers.get("origin");
  if (origin === null) return null;
  const own = new URL(deps.settings.publicUrl).origin;
  if (origin === own || deps.config.allowedOrigins.includes(origin)) return null;
  return jsonResponse(
    {
      jsonrpc: "2.0",
      id: null,
      error: { code: -32600, message: `Origin ${origin} is not allowed` },
    },
    403,
  );
}
