/**
 * What every per-user connection page checks: the backend is a per-user one, the browser is
 * signed in (else it goes through `GET /login?return_to=…` and comes back), the user's access
 * rules cover the backend, and a form carries the session's CSRF token from our own origin.
 */
import type { BackendConfig } from "../config.ts";
import type { RouteContext } from "../deps.ts";
import { type BrowserSession, currentBrowserSession } from "../identity/browser_session.ts";
import { seeOther } from "../identity/sign_in.ts";
import { linkedPageResponse } from "../identity/sign_in_page.ts";
import { timingSafeEqual } from "../infra/crypto.ts";
import { scopeCoversBackend } from "../oauth/resources.ts";

/** The per-user backend called `name`, or `null`. */
export function perUserBackend(ctx: RouteContext, name: string | undefined): BackendConfig | null {
  return ctx.config.backends.find((b) => b.name === name && b.auth !== undefined) ?? null;
}

/** The 404 page of a name that is not a per-user backend. */
export function unknownBackendPage(ctx: RouteContext): Response {
  return linkedPageResponse("Unknown backend", "This gateway has no such per-user backend.", 404, [
    connectionsLink(ctx),
  ]);
}

/** The link back to `/connections`. */
export function connectionsLink(ctx: RouteContext): { label: string; href: string } {
  return { label: "Your connections", href: `${ctx.settings.publicUrl}/connections` };
}

/** Whether the user's access rules let them use `backend`. */
export function sessionMayUse(session: BrowserSession, backend: BackendConfig): boolean {
  return scopeCoversBackend(session.access.scopes.join(" "), backend.name);
}

/** The 403 page of a backend the user's access rules do not cover. */
export function notAllowedPage(ctx: RouteContext, backend: BackendConfig): Response {
  return linkedPageResponse(
    "Not allowed",
    `Your account may not use ${backend.name} on this gateway. Ask its operator.`,
    403,
    [connectionsLink(ctx)],
  );
}

/**
 * The signed-in session, or the redirect to the sign-in entry that comes back to `returnTo`
 * (a same-origin path).
 */
export async function sessionOrSignIn(
  req: Request,
  ctx: RouteContext,
  returnTo: string,
): Promise<BrowserSession | Response> {
  const session = await currentBrowserSession(req, ctx);
  if (session) return session;
  return seeOther(`${ctx.settings.publicUrl}/login?return_to=${encodeURIComponent(returnTo)}`);
}

/**
 * CSRF check of a connection form: a present `Origin` is ours (`null` counts as absent, as on
 * the consent form), and the form's token is the session's (derived from its HttpOnly cookie).
 */
export function formCsrfOk(
  req: Request,
  ctx: RouteContext,
  session: BrowserSession,
  token: string | undefined,
): boolean {
  const origin = req.headers.get("origin");
  if (origin !== null && origin !== "null" && origin !== new URL(ctx.settings.publicUrl).origin) {
    return false;
  }
  return token !== undefined && timingSafeEqual(token, session.csrfToken);
}

/** The 403 page of a form that failed its CSRF check. */
export function csrfFailedPage(ctx: RouteContext): Response {
  return linkedPageResponse(
    "Forbidden",
    "The form could not be verified (CSRF check failed).",
    403,
    [connectionsLink(ctx)],
  );
}
