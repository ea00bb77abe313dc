/**
 * `POST /authorize`: the consent form's target. Checks CSRF, then denies (RFC 6749 §4.1.2.1
 * `access_denied`) or approves — as the signed-in user, or with the owner password
 * (rate-limited, RFC 6749 §10.10) — and issues a code (RFC 6749 §4.1.2) with `iss` (RFC 9207)
 * for the scope narrowed to what the user may use.
 */
import {
  AuthorizePageError,
  checkCsrf,
  codeRedirectUrl,
  type DecisionForm,
  dropPendingConsent,
  errorRedirectUrl,
  getPendingConsent,
  issueCode,
  parseDecisionForm,
} from "../lib/oauth/authorization.ts";
import { confirmClientUse } from "../lib/oauth/clients.ts";
import { renderErrorPage } from "../lib/oauth/consent_page.ts";
import { approveRequest } from "../lib/identity/authorize_sign_in.ts";
import { csrfCookieName, serializeCookie } from "../lib/infra/cookies.ts";
import type { RouteContext } from "../lib/deps.ts";
import { htmlResponse, readForm } from "../lib/infra/http.ts";
import { OAuthError } from "../lib/oauth/oauth_error.ts";
import { auditEvent } from "../lib/admin/audit.ts";

const page = (title: string, message: string, status: number, headers: HeadersInit = {}) =>
  htmlResponse(renderErrorPage(title, message), status, headers);

function redirect(location: string, clearCookie: string, sessionCookie?: string): Response {
  const headers = new Headers({ location, "cache-control": "no-store", "set-cookie": clearCookie });
  if (sessionCookie) headers.append("set-cookie", sessionCookie);
  return new Response(null, { status: 303, headers });
}

async function readDecision(req: Request): Promise<DecisionForm> {
  try {
    return parseDecisionForm(await readForm(req));
  } catch (e) {
    if (e instanceof OAuthError) throw new AuthorizePageError("Invalid form", e.message);
    throw e;
  }
}

/** Handles Approve / Deny. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  let form: DecisionForm;
  try {
    form = await readDecision(req);
  } catch (e) {
    if (!(e instanceof AuthorizePageError)) throw e;
    return page(e.title, e.message, e.status);
  }
  const now = ctx.now();
  const entry = await getPendingConsent(ctx.kv, form.requestId, now);
  if (!entry) {
    return page("Request expired", "This authorization request has expired or was used.", 400);
  }
  const record = entry.value;
  ctx.logFields.client_id = record.clientId;
  if (!await checkCsrf(req, form, record, ctx.settings)) {
    return page("Forbidden", "The form could not be verified (CSRF check failed).", 403);
  }
  const secure = ctx.settings.secureCookies;
  const cookieName = csrfCookieName(form.requestId, secure);
  const clear = serializeCookie(cookieName, "", { secure, maxAge: 0 });
  const issuer = ctx.settings.publicUrl;
  if (form.decision === "deny") {
    await dropPendingConsent(ctx.kv, entry);
    auditEvent(ctx, "consent", { clientId: record.clientId, outcome: "denied" });
    const denied = new OAuthError("access_denied", "the resource owner denied the request");
    return redirect(errorRedirectUrl(record.redirectUri, denied, record.state, issuer), clear);
  }
  const approval = await approveRequest(req, ctx, entry, form);
  if (approval instanceof Response) return approval;
  ctx.logFields.user = approval.user.sub;
  const code = await issueCode(ctx.kv, entry, now, { ...approval.grant, user: approval.user });
  if (!code) return page("Request expired", "This authorization request was already used.", 400);
  await confirmClientUse(ctx, record.clientId);
  auditEvent(ctx, "consent", { user: approval.user.sub, clientId: record.clientId, outcome: "ok" });
  return redirect(codeRedirectUrl(record, code, issuer), clear, approval.setCookie);
}
