/**
 * The grants of the token endpoint (RFC 6749 §4.1.3, §6; OAuth 2.1 §4.3): `grant_type` parsed,
 * the client authenticated as registered, its grant run, the issue audited.
 */
import { z } from "zod";
import { auditEvent, auditUser } from "../admin/audit.ts";
import type { RouteContext } from "../deps.ts";
import { jsonResponse } from "../infra/http.ts";
import { authenticateClient, parseFormFields } from "./client_auth.ts";
import { codeRequestSchema, exchangeCode } from "./code_exchange.ts";
import { OAuthError } from "./oauth_error.ts";
import { resolveResource } from "./resources.ts";
import { rotateRefreshToken, tokenResponseBody } from "./tokens.ts";

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

/** Authenticates the client and runs its grant (RFC 6749 §3.2.1): the client id and the answer. */
export async function issueTokens(
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
  auditEvent(ctx, grantType === "authorization_code" ? "token" : "refresh", {
    user: auditUser(minted.user),
    clientId: client.clientId,
    grantId: minted.grantId,
    method: grantType,
    outcome: "ok",
  });
  const response = jsonResponse(tokenResponseBody(minted), 200, { pragma: "no-cache" });
  return { clientId: client.clientId, response };
}
