/**
 * `POST /token`: the token endpoint (RFC 6749 §3.2, §4.1.3, §6; OAuth 2.1 §3.2, §4.3).
 * Form-encoded only; the client authenticates as registered; every answer is `no-store`.
 */
import { z } from "zod";
import {
  authenticateClient,
  parseFormFields,
  presentedClientId,
} from "../lib/oauth/client_auth.ts";
import { codeRequestSchema, exchangeCode } from "../lib/oauth/code_exchange.ts";
import type { RouteContext } from "../lib/deps.ts";
import { jsonResponse, readForm } from "../lib/infra/http.ts";
import { OAuthError } from "../lib/oauth/oauth_error.ts";
import {
  checkTokenLimits,
  countTokenFailure,
  countTokenSuccess,
  limitPerIp,
} from "../lib/oauth/endpoint_limits.ts";
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

/** Authenticates the client and runs its grant; returns the client and the tokens' answer. */
async function issueTokens(
  req: Request,
  ctx: RouteContext,
  form: Map<string, string>,
): Promise<{ clientId: string; response: Response }> {
  const grantType = parseGrantType(form);
  ctx.logFields.grant_type = grantType;
  const client = await authenticateClient(ctx, req, form);
  ctx.logFields.client_id = client.clientId;
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
  const response = jsonResponse(tokenResponseBody(minted), 200, { pragma: "no-cache" });
  return { clientId: client.clientId, response };
}

/**
 * Handles `POST /token`: the per-IP limit before anything else (no client lookup, so no
 * metadata document fetch, for a flood), then failures counted per (stated client, IP) and
 * issued tokens per client (lib/oauth/endpoint_limits.ts).
 */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  await limitPerIp(ctx, "token", ctx.clientIp, ctx.config.rateLimits.tokenPerIpPerMinute);
  const form = await readForm(req);
  const stated = presentedClientId(req, form);
  if (stated !== undefined) await checkTokenLimits(ctx, stated, ctx.clientIp);
  try {
    const { clientId, response } = await issueTokens(req, ctx, form);
    await countTokenSuccess(ctx, clientId);
    return response;
  } catch (e) {
    // Client mistakes (4xx below 429) count; storage outages and limits do not.
    if (e instanceof OAuthError && e.status < 429 && stated !== undefined) {
      await countTokenFailure(ctx, stated, ctx.clientIp);
    }
    throw e;
  }
}
