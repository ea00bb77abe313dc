/**
 * Team sign-in at the authorization endpoint (issue 8 §1, §4, §5). `GET /authorize` shows the
 * consent page to a signed-in browser (who is signed in, the scopes narrowed to what the user
 * may use) and the sign-in page to anyone else (one button per identity provider, and the owner
 * password form when `GATEWAY_OWNER_PASSWORD` is set). `POST /authorize` approves as the
 * signed-in user, or checks the owner password as before and signs the browser in as the owner.
 */
import { checkPasswordAttempt, type DecisionForm, renewCsrf } from "../oauth/authorization.ts";
import { clientView, consentPageResponse, type ProviderLink } from "../oauth/consent_page.ts";
import type { RouteContext } from "../deps.ts";
import { authzKey, type AuthzRequestRecord, type UserRef } from "../store.ts";
import {
  type Access,
  evaluateAccess,
  type GrantScope,
  grantScopeFor,
  type Identity,
  isOwner,
  OWNER,
} from "./access_rules.ts";
import {
  type BrowserSession,
  currentBrowserSession,
  startBrowserSession,
} from "./browser_session.ts";
import { findProvider, type LoginTarget, targetQuery } from "./login_flow.ts";
import {
  backToClient,
  type PendingAuthorization,
  pendingAuthorization,
} from "./pending_request.ts";
import {
  accessDeniedResponse,
  accountLabel,
  linkedPageResponse,
  providerLabel,
  tooManyAttemptsResponse,
} from "./sign_in_page.ts";
import { upsertUser } from "./users.ts";
import { auditEvent } from "../admin/audit.ts";

/** The sign-in buttons of every configured provider, for a pending request or a path. */
export function providerLinks(ctx: RouteContext, target: LoginTarget): ProviderLink[] {
  return ctx.config.login.providers.map((p) => ({
    label: providerLabel(p),
    href: `${ctx.settings.publicUrl}/login/${p.id}?${targetQuery(target)}`,
  }));
}

/** How a signed-in identity signed in, as shown on pages. */
export function viaLabel(ctx: RouteContext, identity: Identity): string {
  if (isOwner(identity.user)) return "owner password";
  const p = findProvider(ctx, identity.providerId);
  return p ? providerLabel(p) : identity.providerId;
}

/** 503 when nobody can sign in (no provider, no owner password); else `null`. */
export function signInUnavailable(ctx: RouteContext): Response | null {
  if (ctx.settings.ownerPassword || ctx.config.login.providers.length > 0) return null;
  return linkedPageResponse(
    "Consent is disabled",
    "This gateway has no identity provider and no owner password, so nobody can approve " +
      "access. The operator must configure login.providers or set GATEWAY_OWNER_PASSWORD " +
      "and restart the gateway.",
    503,
  );
}

/** The narrowed grant, or the "access denied" page (the pending request is dropped). */
async function grantOrDenied(
  ctx: RouteContext,
  pending: PendingAuthorization,
  identity: Identity,
  access: Access,
  headers: HeadersInit = {},
): Promise<GrantScope | Response> {
  const grant = grantScopeFor(pending.record.scope, access);
  if (grant) return grant;
  await ctx.kv.delete(authzKey(pending.requestId));
  const reason =
    `This account may not use what the application asks for (${pending.record.scope}).`;
  return accessDeniedResponse({
    user: identity.user,
    via: viaLabel(ctx, identity),
    reason,
    back: backToClient(
      pending,
      ctx.settings.publicUrl,
      "the signed-in user may not use the requested scopes",
    ),
  }, headers);
}

/**
 * The page of a pending request: consent for a signed-in browser, sign-in for anyone else.
 * `error`/`status` re-show the sign-in page after a wrong password.
 */
export async function authorizePage(
  req: Request,
  ctx: RouteContext,
  pending: PendingAuthorization,
  options: { error?: string; status?: number; session?: BrowserSession | null } = {},
): Promise<Response> {
  const session = options.session !== undefined
    ? options.session
    : await currentBrowserSession(req, ctx);
  const r = pending.record;
  const view = {
    ...clientView(pending.client),
    redirectUri: r.redirectUri,
    scope: r.scope,
    resource: r.resource,
    action: `${ctx.settings.publicUrl}/authorize`,
    requestId: pending.requestId,
    csrfToken: pending.csrfToken,
  };
  const cookie = {
    secure: ctx.settings.secureCookies,
    maxAgeSeconds: (r.expiresAt - ctx.now()) / 1000,
    status: options.status,
  };
  if (!session) {
    return consentPageResponse({
      ...view,
      error: options.error,
      providers: providerLinks(ctx, { requestId: pending.requestId }),
      ownerPassword: Boolean(ctx.settings.ownerPassword),
    }, cookie);
  }
  const grant = await grantOrDenied(ctx, pending, session.identity, session.access);
  if (grant instanceof Response) return grant;
  return consentPageResponse({
    ...view,
    scope: grant.scope,
    signedIn: {
      account: accountLabel(session.user),
      via: viaLabel(ctx, session.identity),
      signOutAction: `${ctx.settings.publicUrl}/logout`,
      signOutCsrf: session.csrfToken,
    },
  }, cookie);
}

/** An approval: who approved, what they are granted, and the owner's new session cookie. */
export interface Approval {
  user: UserRef;
  grant: GrantScope;
  setCookie?: string;
}

/**
 * Approve on the consent form: the signed-in user, or else the owner password (checked with
 * {@linkcode checkPasswordAttempt}: rate-limited, RFC 6749 §10.10), which also signs the browser
 * in as the owner. Returns the approval, or the page to show instead.
 */
export async function approveRequest(
  req: Request,
  ctx: RouteContext,
  entry: Deno.KvEntry<AuthzRequestRecord>,
  form: DecisionForm,
): Promise<Approval | Response> {
  const session = await currentBrowserSession(req, ctx);
  const record = entry.value;
  if (session) {
    const pending = await pendingAuthorization(ctx, form.requestId, record, form.csrfToken);
    const grant = await grantOrDenied(ctx, pending, session.identity, session.access);
    return grant instanceof Response ? grant : { user: session.user, grant };
  }
  const attempt = ctx.settings.ownerPassword
    ? await checkPasswordAttempt(ctx, record.clientId, ctx.clientIp, form.password)
    : { result: "wrong" as const };
  if (attempt.result === "blocked") {
    return tooManyAttemptsResponse(attempt.retryAfterSeconds);
  }
  if (attempt.result === "wrong") {
    if (ctx.settings.ownerPassword) {
      auditEvent(ctx, "sign_in", { user: OWNER.sub, method: "owner", outcome: "wrong_password" });
    }
    const csrfToken = await renewCsrf(ctx.kv, entry, ctx.now());
    if (!csrfToken) {
      return linkedPageResponse("Request expired", "This authorization request was used.", 400);
    }
    const pending = await pendingAuthorization(ctx, form.requestId, record, csrfToken);
    const error = ctx.settings.ownerPassword ? "Wrong password. Try again." : "Sign in first.";
    return authorizePage(req, ctx, pending, { error, status: 401, session: null });
  }
  const identity: Identity = { providerId: "owner", user: OWNER };
  auditEvent(ctx, "sign_in", { user: OWNER.sub, method: "owner", outcome: "ok" });
  const access = evaluateAccess(ctx.config, identity)!;
  await upsertUser(ctx, identity, access);
  const setCookie = await startBrowserSession(req, ctx, identity);
  return { user: OWNER, grant: grantScopeFor(record.scope, access)!, setCookie };
}
