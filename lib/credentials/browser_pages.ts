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
import { readForm } from "../infra/http.ts";
import { OAuthError } from "../oauth/oauth_error.ts";
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

/** A signed-in browser's request about one per-user backend. */
export interface BackendPageRequest {
  backend: BackendConfig;
  session: BrowserSession;
}

/**
 * The per-user backend `ctx.params.backend` (of `type`, when given) and the signed-in session,
 * or the page to answer instead: 404 for any other name, the sign-in entry (coming back to
 * `returnTo`, default `/connect/<backend>`) for a signed-out browser. Logs backend and user.
 */
export async function backendPageRequest(
  req: Request,
  ctx: RouteContext,
  options: { type?: "oauth" | "user-secret"; returnTo?: string } = {},
): Promise<BackendPageRequest | Response> {
  const backend = perUserBackend(ctx, ctx.params.backend);
  if (!backend || (options.type && backend.auth?.type !== options.type)) {
    return unknownBackendPage(ctx);
  }
  ctx.logFields.backend = backend.name;
  const session = await sessionOrSignIn(req, ctx, options.returnTo ?? `/connect/${backend.name}`);
  if (session instanceof Response) return session;
  ctx.logFields.user = session.user.sub;
  return { backend, session };
}

/** The fields of a connection page's form once its CSRF check passed, or the error page. */
export async function connectionForm(
  req: Request,
  ctx: RouteContext,
  session: BrowserSession,
): Promise<Record<string, string> | Response> {
  let fields: Record<string, string>;
  try {
    fields = Object.fromEntries(await readForm(req));
  } catch (e) {
    if (!(e instanceof OAuthError)) throw e;
    return linkedPageResponse("Invalid form", e.message, 400);
  }
  return formCsrfOk(req, ctx, session, fields.csrf_token?.slice(0, 256))
    ? fields
    : csrfFailedPage(ctx);
}
