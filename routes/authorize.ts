/**
 * `GET /authorize`: the authorization endpoint (OAuth 2.1 §4.1.1). Rate-limited per IP (429
 * page with `Retry-After`); phase-1 errors (unknown client, metadata document that cannot be
 * fetched, bad redirect URI) are an error page, phase-2 errors a redirect with `error`, `state`
 * and `iss` (RFC 6749 §4.1.2.1, RFC 9207); a valid request gets the login + consent page and
 * its CSRF cookie.
 */
import {
  AuthorizePageError,
  AUTHZ_REQUEST_TTL_MS,
  echoableState,
  errorRedirectUrl,
  limitAuthorizeRequests,
  parseAuthorizeParams,
  startConsent,
  verifyTarget,
} from "../lib/oauth/authorization.ts";
import { clientView, consentPageResponse, renderErrorPage } from "../lib/oauth/consent_page.ts";
import type { RouteContext } from "../lib/deps.ts";
import { htmlResponse } from "../lib/infra/http.ts";
import { OAuthError } from "../lib/oauth/oauth_error.ts";

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
    const location = errorRedirectUrl(
      target.redirectUri,
      e,
      echoableState(params),
      ctx.settings.publicUrl,
    );
    return new Response(null, { status: 302, headers: { location, "cache-control": "no-store" } });
  }
  if (!ctx.settings.ownerPassword) {
    return htmlResponse(
      renderErrorPage(
        "Consent is disabled",
        "This gateway has no owner password, so nobody can approve access. The operator must " +
          "set GATEWAY_OWNER_PASSWORD and restart the gateway.",
      ),
      503,
    );
  }
  const pending = await startConsent(ctx.kv, target, request, ctx.now());
  return consentPageResponse({
    ...clientView(target.client),
    redirectUri: target.redirectUri,
    scope: request.scope,
    resource: request.resource,
    action: `${ctx.settings.publicUrl}/authorize`,
    requestId: pending.requestId,
    csrfToken: pending.csrfToken,
  }, { secure: ctx.settings.secureCookies, maxAgeSeconds: AUTHZ_REQUEST_TTL_MS / 1000 });
}
