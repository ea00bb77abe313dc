/**
 * `GET /authorize`: the authorization endpoint (OAuth 2.1 §4.1.1). Rate-limited per IP (429
 * page with `Retry-After`); phase-1 errors (unknown client, metadata document that cannot be
 * fetched, bad redirect URI) are an error page, phase-2 errors a redirect with `error`, `state`
 * and `iss` (RFC 6749 §4.1.2.1, RFC 9207) for pre-registered clients and an error page linking
 * to that redirect for the others (RFC 9700 §4.11.2). A valid request is stored (its CSRF cookie set)
 * and gets the sign-in page (identity providers, owner password) or, in a signed-in browser,
 * the consent page (lib/identity/authorize_sign_in.ts). HEAD runs the same checks (and counts
 * against the same limit) and answers a valid request with 200 and no body, storing nothing.
 */
import {
  AuthorizePageError,
  echoableState,
  errorRedirectUrl,
  limitAuthorizeRequests,
  parseAuthorizeParams,
  startConsent,
  type VerifiedTarget,
  verifyTarget,
} from "../lib/oauth/authorization.ts";
import { isPreRegistered } from "../lib/oauth/clients.ts";
import { linkedPageResponse } from "../lib/identity/sign_in_page.ts";
import { renderErrorPage } from "../lib/oauth/consent_page.ts";
import { authorizePage, signInUnavailable } from "../lib/identity/authorize_sign_in.ts";
import type { RouteContext } from "../lib/deps.ts";
import { htmlResponse } from "../lib/infra/http.ts";
import { OAuthError } from "../lib/oauth/oauth_error.ts";

/**
 * A phase-2 error (RFC 6749 §4.1.2.1): redirected at once for a pre-registered client, whose
 * redirect URIs the operator wrote. Any other client's URI was chosen by whoever registered it,
 * so an automatic redirect would make the gateway an open redirector (RFC 9700 §4.11.2): the
 * browser gets an error page whose link carries the same error response.
 */
function phase2Error(
  ctx: RouteContext,
  target: VerifiedTarget,
  error: OAuthError,
  state: string | undefined,
): Response {
  const location = errorRedirectUrl(target.redirectUri, error, state, ctx.settings.publicUrl);
  if (isPreRegistered(ctx.config, target.client.clientId)) {
    return new Response(null, { status: 302, headers: { location, "cache-control": "no-store" } });
  }
  const name = target.client.clientName ?? target.client.clientId;
  return linkedPageResponse(
    "The application's request is invalid",
    `${name} sent an authorization request this gateway cannot accept: ${error.message}.`,
    400,
    [{ label: `Return to ${name}`, href: location }],
  );
}

/** Validates the request and renders the consent page. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const params = new URL(req.url).searchParams;
  let target;
  try {
    await limitAuthorizeRequests(ctx, ctx.clientIp);
    target = await verifyTarget(ctx, params);
  } catch (e) {
    if (!(e instanceof AuthorizePageError)) throw e;
    const retry = e.retryAfterSeconds;
    const headers: HeadersInit = retry ? { "retry-after": String(retry) } : {};
    return htmlResponse(renderErrorPage(e.title, e.message), e.status, headers);
  }
  ctx.logFields.client_id = target.client.clientId;
  let request;
  try {
    request = parseAuthorizeParams(params, ctx, target.client);
  } catch (e) {
    if (!(e instanceof OAuthError)) throw e;
    return phase2Error(ctx, target, e, echoableState(params));
  }
  const unavailable = signInUnavailable(ctx);
  if (unavailable) return unavailable;
  // HEAD (RFC 9110 §9.3.2): the same checks, but nothing is stored and no cookie is set.
  if (req.method === "HEAD") return htmlResponse("", 200);
  const pending = await startConsent(ctx.kv, target, request, ctx.now());
  return await authorizePage(req, ctx, { ...pending, client: target.client });
}
