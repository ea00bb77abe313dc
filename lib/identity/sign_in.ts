/**
 * The end of a sign-in (issue 8 §4): the access rules decide. Not allowed → the "access denied"
 * page naming the account (and a link back to the application, whose pending request is
 * dropped); allowed → the user record is upserted, the browser gets a new session, and goes on
 * to the consent page of its pending request or to its `return_to` path.
 * Also the sign-in page of a `return_to` sign-in and its CSRF check (double submit).
 */
import { csrfCookieName, parseCookies, serializeCookie } from "../infra/cookies.ts";
import { randomToken, timingSafeEqual } from "../infra/crypto.ts";
import { originAllowed } from "../infra/http.ts";
import type { RouteContext } from "../deps.ts";
import { getPendingConsent } from "../oauth/authorization.ts";
import { authzKey } from "../store.ts";
import { evaluateAccess, type Identity } from "./access_rules.ts";
import { providerLinks, viaLabel } from "./authorize_sign_in.ts";
import { startBrowserSession } from "./browser_session.ts";
import { type LoginTarget, targetQuery } from "./login_flow.ts";
import { backToClient, pendingAuthorization, returnToUrl } from "./pending_request.ts";
import { accessDeniedResponse, signInPageResponse } from "./sign_in_page.ts";
import { upsertUser } from "./users.ts";
import { auditEvent } from "../admin/audit.ts";

/** A 303 redirect (after a form post or a callback) with cookies to set. */
export function seeOther(location: string, cookies: string[] = []): Response {
  const headers = new Headers({ location, "cache-control": "no-store" });
  for (const c of cookies) headers.append("set-cookie", c);
  return new Response(null, { status: 303, headers });
}

/** Where a signed-in browser goes next: the consent page of its request, or its path. */
export function afterSignIn(ctx: RouteContext, target: LoginTarget): string {
  return "requestId" in target
    ? signInEntry(ctx, target)
    : returnToUrl(target.returnTo, ctx.settings.publicUrl);
}

/** The sign-in entry (`GET /login`) of a target: where "Try again" and sign-out lead. */
export function signInEntry(ctx: RouteContext, target: LoginTarget): string {
  return `${ctx.settings.publicUrl}/login?${targetQuery(target)}`;
}

/**
 * Decides a finished sign-in by the access rules. `cookies` (e.g. clearing the flow cookie)
 * are set on every answer. Logs the user's `sub` (never an email or token).
 */
export async function completeSignIn(
  req: Request,
  ctx: RouteContext,
  target: LoginTarget,
  identity: Identity,
  cookies: string[] = [],
): Promise<Response> {
  const access = evaluateAccess(ctx.config, identity);
  ctx.logFields.user = identity.user.sub;
  ctx.logFields.sign_in = access ? "allowed" : "denied";
  auditEvent(ctx, "sign_in", {
    user: identity.user.sub,
    method: identity.providerId,
    outcome: access ? "ok" : "denied",
  });
  if (!access) {
    const headers = new Headers();
    for (const c of cookies) headers.append("set-cookie", c);
    let back;
    if ("requestId" in target) {
      const entry = await getPendingConsent(ctx.kv, target.requestId, ctx.now());
      if (entry) {
        const pending = await pendingAuthorization(ctx, target.requestId, entry.value, "");
        back = backToClient(pending, ctx.settings.publicUrl, "the signed-in user has no access");
        await ctx.kv.delete(authzKey(target.requestId));
      }
    }
    return accessDeniedResponse({
      user: identity.user,
      via: viaLabel(ctx, identity),
      reason: "This gateway does not give this account access. Ask its operator to add you.",
      back,
    }, headers);
  }
  await upsertUser(ctx, identity, access);
  const session = await startBrowserSession(req, ctx, identity);
  return seeOther(afterSignIn(ctx, target), [...cookies, session]);
}

/** The sign-in page of a `return_to` sign-in (providers, and the owner password form). */
export function signInPage(
  ctx: RouteContext,
  returnTo: string,
  options: { error?: string; status?: number } = {},
): Response {
  const password = ctx.settings.ownerPassword
    ? {
      action: `${ctx.settings.publicUrl}/login`,
      signinId: randomToken(12),
      csrfToken: randomToken(),
      returnTo,
    }
    : undefined;
  return signInPageResponse({
    providers: providerLinks(ctx, { returnTo }),
    password,
    error: options.error,
    secure: ctx.settings.secureCookies,
  }, options.status);
}

/**
 * CSRF check of the `return_to` password form: the `Origin` is allowed ({@linkcode
 * originAllowed}), and the form's token equals the cookie named by its
 * `signin_id` (double submit; the cookie is HttpOnly, `__Host-` on https).
 */
export function checkSignInCsrf(
  req: Request,
  ctx: RouteContext,
  form: { signinId: string; csrfToken: string },
): boolean {
  if (!originAllowed(req, ctx.settings.publicUrl)) return false;
  const name = csrfCookieName(form.signinId, ctx.settings.secureCookies);
  const cookie = parseCookies(req.headers.get("cookie")).get(name);
  return cookie !== undefined && timingSafeEqual(cookie, form.csrfToken);
}

/** Clears the CSRF cookie of a `return_to` password form. */
export function clearSignInCsrf(ctx: RouteContext, signinId: string): string {
  const secure = ctx.settings.secureCookies;
  return serializeCookie(csrfCookieName(signinId, secure), "", { secure, maxAge: 0 });
}
