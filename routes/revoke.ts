/**
 * `POST /revoke`: token revocation (RFC 7009). The client authenticates as registered and can
 * revoke only its own tokens; unknown or foreign tokens still get 200 (RFC 7009 §2.2).
 */
import { z } from "zod";
import { authenticateClient, parseFormFields } from "../lib/oauth/client_auth.ts";
import { sha256Hex } from "../lib/infra/crypto.ts";
import { limitPerIp } from "../lib/oauth/endpoint_limits.ts";
import type { Deps, RouteContext } from "../lib/deps.ts";
import { jsonResponse, readForm } from "../lib/infra/http.ts";
import { accessKey, grantTokenKey, refreshKey, type TokenRecord } from "../lib/store.ts";
import { revokeGrant } from "../lib/oauth/tokens.ts";
import { auditEvent, auditUser } from "../lib/admin/audit.ts";

/** RFC 7009 §2.1 request; `token_type_hint` is only a hint: both kinds are searched. */
const revokeRequestSchema = z.object({
  token: z.string().min(1, "must not be empty"),
  token_type_hint: z.string().optional(),
}).transform((f) => ({ token: f.token }));

/**
 * Revokes `token` if it belongs to `clientId`: a refresh token takes its whole grant with it
 * (RFC 7009 §2.1); an access token is deleted with its index entry and dropped from the
 * per-isolate cache at once. Returns what was revoked (nothing for unknown or foreign tokens).
 */
async function revokeToken(
  deps: Deps,
  clientId: string,
  token: string,
): Promise<{ kind: "refresh_token" | "access_token"; record: TokenRecord } | null> {
  const hash = await sha256Hex(token);
  const [access, refresh] = await deps.kv.getMany<[TokenRecord, TokenRecord]>([
    accessKey(hash),
    refreshKey(hash),
  ]);
  const refreshRecord = refresh.value;
  if (refreshRecord && refreshRecord.clientId === clientId) {
    await revokeGrant(deps, refreshRecord.grantId);
    return { kind: "refresh_token", record: refreshRecord };
  }
  const accessRecord = access.value;
  if (accessRecord && accessRecord.clientId === clientId) {
    await deps.kv.atomic()
      .delete(accessKey(hash))
      .delete(grantTokenKey(accessRecord.grantId, "access", hash))
      .commit();
    deps.tokenCache.revoke({ tokenHashes: [hash] });
    return { kind: "access_token", record: accessRecord };
  }
  return null;
}

/** Handles `POST /revoke`: limited per client IP before any client lookup. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  await limitPerIp(ctx, "revoke", ctx.clientIp, ctx.config.rateLimits.revokePerIpPerMinute);
  const form = await readForm(req);
  const client = await authenticateClient(ctx, req, form);
  ctx.logFields.client_id = client.clientId;
  const { token } = parseFormFields(revokeRequestSchema, form);
  const revoked = await revokeToken(ctx, client.clientId, token);
  if (revoked) {
    auditEvent(ctx, "revocation", {
      user: auditUser(revoked.record.user),
      clientId: client.clientId,
      grantId: revoked.record.grantId,
      method: revoked.kind,
      outcome: "ok",
    });
  }
  return jsonResponse({}, 200);
}
