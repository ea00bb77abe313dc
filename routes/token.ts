/**
 * `POST /token`: the token endpoint (RFC 6749 §3.2, §4.1.3, §6; OAuth 2.1 §3.2, §4.3).
 * Form-encoded only; the client authenticates as registered; every answer is `no-store`.
 */
import { z } from "zod";
import { authenticateClient, parseFormFields } from "../lib/oauth/client_auth.ts";
import { codeRequestSchema, exchangeCode } from "../lib/oauth/code_exchange.ts";
import type { RouteContext } from "../lib/deps.ts";
import { jsonResponse, readForm } from "../lib/infra/http.ts";
import { OAuthError } from "../lib/oauth/oauth_error.ts";
import { hit } from "../lib/infra/rate_limit.ts";
import { resolveResource } from "../lib/oauth/resources.ts";
import { rotateRefreshToken, tokenResponseBody } from "../lib/oauth/tokens.ts";

const GRANT_TYPES = ["authorization_code", "refresh_token"] as const;

/** Wire fields of a refresh request (RFC 6749 §6, RFC 8707 §2.2). */
const refreshRequestSchema = z.object({
  refresh_token: z.string().min(1, "must not be empty"),
  scope: z.string().optional(),
  resource: z.string().optional(),
}).transform((f) => ({ refreshToken: f.refresh_token, scope: f.scope, resource: f.resource }));

/** Reads `grant_type` (RFC 6749 §4.1.3, §6): missing → `invalid_request`, unknown → unsupported. */
function parseGrantType(form: Map<string, string>): (typeof GRANT_TYPES)[number] {
  const value = form.get("grant_type");
  if (!value) throw new OAuthError("invalid_request", '"grant_type" is required');
  const known = GRANT_TYPES.find((g) => g === value);
  if (!known) {
    throw new OAuthError("unsupported_grant_type", `grant_type "${value}" is not supported`);
  }
  return known;
}

/**
 * Whether a client may use a grant type (RFC 7591 §2 `grant_types`). The gateway always issues
 * a refresh token with a code, so a client registered for `authorization_code` may refresh even
 * if it did not list `refresh_token` (many MCP clients and metadata documents omit it).
 */
function clientMayUse(registered: string[], grantType: (typeof GRANT_TYPES)[number]): boolean {
  if (registered.includes(grantType)) return true;
  return grantType === "refresh_token" && registered.includes("authorization_code");
}

/**
 * `rateLimits.tokenPerClientPerMinute`, counted in KV per authenticated client (so it holds
 * across isolates). Over the limit: 429 (RFC 6585 §4) with `Retry-After` (RFC 9110 §10.2.3)
 * and the RFC 6749 §5.2 body `temporarily_unavailable` (RFC 6749 §4.1.2.1's code for "cannot
 * handle the request now", the closest registered one; the status tells it from a 503).
 */
async function limitTokenRequests(ctx: RouteContext, clientId: string): Promise<void> {
  const perMinute = ctx.config.rateLimits.tokenPerClientPerMinute;
  const result = await hit(ctx.kv, "token", clientId, perMinute, 60_000, ctx.now());
  if (result.allowed) return;
  throw new OAuthError(
    "temporarily_unavailable",
    `too many token requests for this client (at most ${perMinute} per minute); ` +
      `retry after ${result.retryAfterSeconds} s`,
    { status: 429, headers: { "retry-after": String(result.retryAfterSeconds) } },
  );
}

/** Handles `POST /token`. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const form = await readForm(req);
  const grantType = parseGrantType(form);
  ctx.logFields.grant_type = grantType;
  const client = await authenticateClient(ctx, req, form);
  ctx.logFields.client_id = client.clientId;
  await limitTokenRequests(ctx, client.clientId);
  if (!clientMayUse(client.grantTypes, grantType)) {
    throw new OAuthError("unauthorized_client", `client is not registered for ${grantType}`);
  }
  let minted;
  if (grantType === "authorization_code") {
    minted = await exchangeCode(ctx, client, parseFormFields(codeRequestSchema, form));
  } else {
    const r = parseFormFields(refreshRequestSchema, form);
    const resource = r.resource === undefined
      ? undefined
      : resolveResource(r.resource, ctx.settings.publicUrl, ctx.config);
    minted = await rotateRefreshToken(ctx, client.clientId, r.refreshToken, r.scope, resource);
  }
  if (minted.user) ctx.logFields.user = minted.user.sub;
  return jsonResponse(tokenResponseBody(minted), 200, { pragma: "no-cache" });
}
