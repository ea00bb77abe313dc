/**
 * `POST /token`: the token endpoint (RFC 6749 §3.2, §4.1.3, §6; OAuth 2.1 §3.2, §4.3).
 * Form-encoded only; the client authenticates as registered; every answer is `no-store`.
 */
import type { RouteContext } from "../lib/deps.ts";
import { readForm } from "../lib/infra/http.ts";
import { presentedClientId } from "../lib/oauth/client_auth.ts";
import {
  checkTokenLimits,
  countTokenFailure,
  countTokenSuccess,
  limitPerIp,
} from "../lib/oauth/endpoint_limits.ts";
import { OAuthError } from "../lib/oauth/oauth_error.ts";
import { issueTokens } from "../lib/oauth/token_request.ts";

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
