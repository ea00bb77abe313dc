/**
 * Authentication of MCP routes: Bearer access tokens issued by this gateway (RFC 6750 §2.1,
 * audience-checked per RFC 8707 and MCP 2025-11-25 Authorization §Token Audience Binding), JWT
 * access tokens of a configured external issuer (RFC 9068), or a static API key; the Origin
 * rule of MCP 2025-11-25 Transports §Security Warning; and the MCP rate limit per grant.
 */
import { decodeJwt } from "jose";
import { findHash, sha256HexSync } from "../infra/crypto.ts";
import type { Deps } from "../deps.ts";
import { looksLikeJwt } from "./external_jwt.ts";
import { jsonResponse, jsonRpcErrorResponse } from "../infra/http.ts";
import type { RateLimitResult } from "../infra/rate_limit.ts";
import { OAuthError } from "./oauth_error.ts";
import {
  audienceCovers,
  backendScope,
  resourceMetadataUrl,
  scopeCoversBackend,
  supportedScopes,
} from "./resources.ts";
import { accessKey, type TokenRecord, type UserRef } from "../store.ts";

/** Who is calling an MCP route. */
export interface Principal {
  /**
   * Stable id: the grant id for tokens, `apikey:<hash prefix>` for API keys,
   * `jwt:<iss>:<sub>` for external JWTs.
   */
  id: string;
  kind: "token" | "api_key" | "external_jwt";
  clientId?: string;
  grantId?: string;
  /** Space-separated scopes; API keys hold `mcp` (everything). */
  scope: string;
  /** Audience of the token (the resource URL it was issued for). */
  audience: string;
  /** Who the token acts for (copied from the token record); undefined for API keys and external JWTs. */
  user?: UserRef;
  /** Tool globs over the names exposed on `/mcp` ("docs__*"); absent = no narrowing. */
  tools?: string[];
}

/** Raw bearer strings → their SHA-256, for at most {@linkcode HASH_MEMO_MS} (see tokenHash). */
const hashMemo = new Map<string, { hash: string; until: number }>();
const HASH_MEMO_MS = 1000;
const HASH_MEMO_MAX = 1000;

/**
 * The SHA-256 hex of a presented bearer string, memoized per isolate for at most a second and
 * 1,000 strings (oldest dropped first), so that a client's burst of calls hashes its token once.
 * The mapping is pure (a hash never changes), so the memo cannot outlive a revocation: every
 * decision is still made on the hash, by the token cache and KV. The raw strings live only in
 * this process's memory (an expired one until the next new bearer string comes in); they are
 * never stored, logged or shared between isolates.
 */
export function tokenHash(token: string, now: number = performance.now()): string {
  const memo = hashMemo.get(token);
  if (memo !== undefined && memo.until > now) return memo.hash;
  const hash = sha256HexSync(token);
  if (memo !== undefined) hashMemo.delete(token);
  // Insertion order is expiry order: drop the expired entries, and the oldest when full.
  for (const [k, v] of hashMemo) {
    if (hashMemo.size >= HASH_MEMO_MAX || v.until <= now) hashMemo.delete(k);
    else break;
  }
  hashMemo.set(token, { hash, until: now + HASH_MEMO_MS });
  return hash;
}

/** Looks up an access token (through the per-isolate cache) and checks its expiry. */
export async function lookupAccessToken(
  deps: Deps,
  token: string,
  hash: string = sha256HexSync(token),
): Promise<TokenRecord | null> {
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
  const parts = [
    `resource_metadata=${quote(resourceMetadataUrl(deps.settings.publicUrl, resource))}`,
  ];
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
  const scopeHint = backend ? backendScope(backend) : "mcp";
  // Parsed only when there is a query at all (the common request has none).
  if (req.url.includes("?") && new URL(req.url).searchParams.has("access_token")) {
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
  const token = bearerToken(header);
  if (token === null) {
    return challengeResponse(
      deps,
      resource,
      401,
      "invalid_token",
      "Authorization must be a Bearer token",
      scopeHint,
    );
  }
  // One SHA-256 of the token serves both lookups (memoized for a second: a client's burst).
  const hash = tokenHash(token);
  const apiKey = matchApiKey(deps, token, hash);
  if (apiKey) return apiKey;
  const record = await lookupAccessToken(deps, token, hash);
  let principal: Principal;
  if (record) {
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
    principal = {
      id: record.grantId,
      kind: "token",
      clientId: record.clientId,
      grantId: record.grantId,
      scope: record.scope,
      audience: record.resource,
    };
    if (record.user) principal.user = record.user;
    if (record.tools) principal.tools = record.tools;
    deps.audit?.grantUsed(record.grantId);
  } else {
    const external = await verifyExternalJwt(deps, token, resource);
    if (external instanceof Response) return external;
    if (!external) {
      return challengeResponse(
        deps,
        resource,
        401,
        "invalid_token",
        "token is invalid or expired",
        scopeHint,
      );
    }
    principal = external;
  }
  if (backend && !scopeCoversBackend(principal.scope, backend)) {
    return challengeResponse(
      deps,
      resource,
      403,
      "insufficient_scope",
      `scope ${scopeHint} is required`,
      scopeHint,
    );
  }
  noteInLog(deps, principal);
  const limited = enforceMcpRateLimit(deps, principal);
  return (limited instanceof Promise ? await limited : limited) ?? principal;
}

/** Adds the caller's identifiers (never its token) to the request's log line, if any. */
function noteInLog(deps: Deps, principal: Principal): void {
  const fields = (deps as Deps & { logFields?: Record<string, unknown> }).logFields;
  if (!fields) return;
  if (principal.clientId) fields.client_id = principal.clientId;
  if (principal.grantId) fields.grant_id = principal.grantId;
  if (principal.user) fields.user = principal.user.sub;
  fields.auth = principal.kind;
}

/**
 * MCP calls per grant (or external principal) and minute, `rateLimits.mcpPerGrantPerMinute`:
 * 429 with `Retry-After` (RFC 6585 §4, RFC 9110 §10.2.3) and a JSON-RPC error body (JSON-RPC
 * 2.0 §5.1, implementation-defined server error -32000). API keys (the operator's own) are
 * not limited. Counted per isolate and flushed to KV in batches (see `BatchedRateLimiter`).
 */
function enforceMcpRateLimit(
  deps: Deps,
  principal: Principal,
): Response | null | Promise<Response | null> {
  if (principal.kind === "api_key") return null;
  const result = deps.mcpRateLimiter.check(deps.kv, principal.id, deps.now());
  if (result instanceof Promise) return result.then((r) => rateLimitedResponse(deps, r));
  return rateLimitedResponse(deps, result);
}

function rateLimitedResponse(deps: Deps, result: RateLimitResult): Response | null {
  if (result.allowed) return null;
  return jsonRpcErrorResponse(
    429,
    RATE_LIMITED,
    `rate limit exceeded: at most ${deps.mcpRateLimiter.limit} MCP requests ` +
      `per minute for this grant; retry after ${result.retryAfterSeconds} s`,
    {
      data: { retryAfterSeconds: result.retryAfterSeconds },
      headers: { "retry-after": String(result.retryAfterSeconds) },
    },
  );
}

/** JSON-RPC error code of the MCP rate limit (JSON-RPC 2.0 §5.1 server error range). */
export const RATE_LIMITED = -32000;

/**
 * Tries the external issuers (RFC 9068 JWT access tokens) whose `iss` matches the token's
 * unverified `iss` claim. `null` when none accepts it; a 503 `temporarily_unavailable` with
 * `Retry-After` when an issuer's JWKS cannot be fetched (an outage is not the caller's fault).
 */
async function verifyExternalJwt(
  deps: Deps,
  token: string,
  resource: string,
): Promise<Principal | Response | null> {
  const verifiers = deps.externalJwtVerifiers ?? [];
  if (verifiers.length === 0 || !looksLikeJwt(token)) return null;
  let iss: unknown;
  try {
    iss = decodeJwt(token).iss;
  } catch {
    return null;
  }
  const target = {
    resource,
    publicUrl: deps.settings.publicUrl,
    knownScopes: supportedScopes(deps.config),
  };
  let outage: OAuthError | null = null;
  for (const verifier of verifiers) {
    if (verifier.issuer !== iss) continue;
    try {
      const found = await verifier.verify(token, target);
      if (found) return { ...found };
    } catch (e) {
      if (!(e instanceof OAuthError)) throw e;
      outage = e;
    }
  }
  if (!outage) return null;
  const headers = new Headers(outage.headers);
  return jsonResponse(
    { error: outage.code, error_description: outage.message },
    outage.status,
    headers,
  );
}

/** The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1 b64token), or null. */
export function bearerToken(header: string | null): string | null {
  return /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header ?? "")?.[1] ?? null;
}

/** The principal of a static API key (`GATEWAY_API_KEY`), compared as hashes in constant time. */
export function matchApiKey(
  deps: Deps,
  token: string,
  hash?: string,
): Principal | null {
  if (deps.settings.apiKeyHashes.length === 0) return null;
  const found = findHash(hash ?? sha256HexSync(token), deps.settings.apiKeyHashes);
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
  return jsonRpcErrorResponse(403, -32600, `Origin ${origin} is not allowed`);
}
