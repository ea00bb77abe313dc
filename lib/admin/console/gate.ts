/**
 * Who may open the admin console, checked on every request: a browser signed in (the sign-in
 * session of the consent flow, lib/identity/browser_session.ts) as a user whom the CURRENT access
 * rules make an administrator (`admin: true` on a matching rule), or as the owner (the owner
 * password). A signed-out browser is sent to the sign-in entry with `return_to` the page it
 * asked for; a signed-in non-administrator gets a 403 page.
 *
 * Forms (POST only, for every change) are checked for CSRF: the `Origin` (absent, `null` or
 * ours: lib/infra/http.ts `originAllowed`) and the session's CSRF token, which only a page of
 * this session can know (OWASP CSRF Prevention: synchronizer token; the session cookie is also
 * SameSite=Lax, so a cross-site post arrives signed out).
 */
import type { RouteContext } from "../../deps.ts";
import { type BrowserSession, currentBrowserSession } from "../../identity/browser_session.ts";
import { parseReturnTo } from "../../identity/pending_request.ts";
import { accountLabel } from "../../identity/sign_in_page.ts";
import { timingSafeEqual } from "../../infra/crypto.ts";
import { originAllowed, readForm } from "../../infra/http.ts";
import { OAuthError } from "../../oauth/oauth_error.ts";
import { consoleErrorPage, type Viewer } from "./layout.ts";

/** A request the console may serve: the administrator's session and the page header's view. */
export interface AdminRequest {
  session: BrowserSession;
  viewer: Viewer;
}

function viewerOf(ctx: RouteContext, session: BrowserSession): Viewer {
  return {
    publicUrl: ctx.settings.publicUrl,
    account: accountLabel(session.user),
    sub: session.user.sub,
    csrfToken: session.csrfToken,
  };
}

/** The sign-in entry that comes back to `path` (or to `/admin` when `path` cannot travel). */
function toSignIn(ctx: RouteContext, path: string, status: 302 | 303): Response {
  const returnTo = parseReturnTo(path) ?? "/admin";
  const location = `${ctx.settings.publicUrl}/login?${new URLSearchParams({
    return_to: returnTo,
  })}`;
  return new Response(null, { status, headers: { location, "cache-control": "no-store" } });
}

function notAdmin(ctx: RouteContext, session: BrowserSession): Response {
  return consoleErrorPage({
    title: "Not an administrator",
    message: `You are signed in as ${accountLabel(session.user)}, who is not an administrator ` +
      `of this gateway. Administrators are the owner (owner password) and the users an access ` +
      `rule with "admin": true matches. Sign out to use another account.`,
    status: 403,
    viewer: viewerOf(ctx, session),
    showNav: false,
  });
}

async function adminSession(
  req: Request,
  ctx: RouteContext,
  signInPath: string,
  status: 302 | 303,
): Promise<AdminRequest | Response> {
  const session = await currentBrowserSession(req, ctx);
  if (!session) return toSignIn(ctx, signInPath, status);
  if (!session.admin) return notAdmin(ctx, session);
  ctx.logFields.user = session.user.sub;
  return { session, viewer: viewerOf(ctx, session) };
}

/** A console page request: the administrator, or the redirect to sign-in (302) / the 403 page. */
export function openConsole(req: Request, ctx: RouteContext): Promise<AdminRequest | Response> {
  const url = new URL(req.url);
  return adminSession(req, ctx, `${url.pathname}${url.search}`, 302);
}

/** A console form post, CSRF-checked: the administrator and the form's fields. */
export interface AdminForm extends AdminRequest {
  form: Map<string, string>;
}

/**
 * A console form post: signed out → 303 to sign-in (back to `page`), not an administrator →
 * 403, not a form → 400, failed CSRF check → 403; else the form.
 */
export async function openConsoleForm(
  req: Request,
  ctx: RouteContext,
  page: string,
): Promise<AdminForm | Response> {
  const admin = await adminSession(req, ctx, page, 303);
  if (admin instanceof Response) return admin;
  let form;
  try {
    form = await readForm(req);
  } catch (e) {
    if (!(e instanceof OAuthError)) throw e;
    return consoleErrorPage({
      title: "Invalid form",
      message: e.message,
      status: 400,
      viewer: admin.viewer,
    });
  }
  const token = (form.get("csrf_token") ?? "").slice(0, 256);
  if (
    !originAllowed(req, ctx.settings.publicUrl) || !timingSafeEqual(token, admin.session.csrfToken)
  ) {
    return consoleErrorPage({
      title: "Forbidden",
      message: "The form could not be verified (CSRF check failed). Reload the page and try again.",
      status: 403,
      viewer: admin.viewer,
      back: { label: "Back", href: `${ctx.settings.publicUrl}${page}` },
    });
  }
  return { ...admin, form };
}
