/**
 * `GET /login/{providerId}`: starts a sign-in at an identity provider — authorization code with
 * PKCE S256, `state` and (OIDC) `nonce` — for a pending authorization request of this browser
 * (`?request=<id>`) or a same-origin path (`?return_to=`). Rate-limited per IP like
 * `/authorize`. A provider that cannot be reached gets an error page, and nothing is stored.
 */
import type { RouteContext } from "../lib/deps.ts";
import { AUTHORIZE_WINDOW_MS } from "../lib/oauth/authorization.ts";
import {
  findProvider,
  LoginError,
  type LoginTarget,
  startLogin,
} from "../lib/identity/login_flow.ts";
import { boundPendingRequest, parseReturnTo } from "../lib/identity/pending_request.ts";
import { ProviderError } from "../lib/identity/providers/provider_http.ts";
import { seeOther } from "../lib/identity/sign_in.ts";
import { linkedPageResponse } from "../lib/identity/sign_in_page.ts";
import { ipLimitSubject } from "../lib/infra/client_ip.ts";
import { hit } from "../lib/infra/rate_limit.ts";

async function targetOf(req: Request, ctx: RouteContext): Promise<LoginTarget> {
  const params = new URL(req.url).searchParams;
  const requestId = params.get("request");
  if (requestId !== null) {
    await boundPendingRequest(req, ctx, requestId);
    return { requestId };
  }
  const returnTo = parseReturnTo(params.get("return_to") ?? "/");
  if (returnTo === null) {
    throw new LoginError("Invalid request", '"return_to" must be a path on this gateway.');
  }
  return { returnTo };
}

/** Redirects the browser to the provider. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const provider = findProvider(ctx, ctx.params.provider);
  if (!provider) {
    return linkedPageResponse("Not found", "This gateway has no such sign-in provider.", 404);
  }
  ctx.logFields.provider = provider.id;
  const limit = ctx.config.rateLimits.authorizePerIpPerMinute;
  const r = await hit(
    ctx.kv,
    "login",
    ipLimitSubject(ctx.clientIp),
    limit,
    AUTHORIZE_WINDOW_MS,
    ctx.now(),
  );
  if (!r.allowed) {
    const headers = { "retry-after": String(r.retryAfterSeconds) };
    const message = "Too many sign-ins from your address. Try again in a minute.";
    return linkedPageResponse("Too many requests", message, 429, [], headers);
  }
  try {
    const { location, cookie } = await startLogin(ctx, provider, await targetOf(req, ctx));
    return seeOther(location, [cookie]);
  } catch (e) {
    if (e instanceof LoginError) return linkedPageResponse(e.title, e.message, e.status);
    if (!(e instanceof ProviderError)) throw e;
    ctx.logFields.sign_in_error = e.reason;
    return linkedPageResponse("Sign-in unavailable", e.message, 502);
  }
}
