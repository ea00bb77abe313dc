/**
 * Pages of team sign-in: the sign-in page of a `return_to` sign-in (the admin console and the
 * per-user pages send signed-out browsers there), the "access denied" page naming the signed-in
 * account, and error pages with a way back. Everything from a provider or a request is escaped;
 * pages carry the security headers of `htmlResponse` (no framing, no referrer).
 */
import { csrfCookieName, serializeCookie } from "../infra/cookies.ts";
import { escapeHtml, htmlResponse } from "../infra/http.ts";
import { layout, type ProviderLink } from "../oauth/consent_page.ts";
import type { UserRef } from "../store.ts";
import type { ProviderConfig } from "./login_config.ts";

/** How long a sign-in page's password form stays valid (its CSRF cookie's lifetime). */
export const SIGN_IN_FORM_TTL_S = 10 * 60;

/** The label of a provider's button: its `name`, else "GitHub" or the issuer's host. */
export function providerLabel(p: ProviderConfig): string {
  return p.name ?? (p.type === "github" ? "GitHub" : new URL(p.issuer).host);
}

/** An account as people read it: "Name (email)", the email, the login, or the subject. */
export function accountLabel(user: UserRef): string {
  if (user.name && user.email) return `${user.name} (${user.email})`;
  return user.email ?? user.login ?? user.name ?? user.sub;
}

/** The owner password form of a `return_to` sign-in page. */
export interface PasswordFormView {
  action: string;
  /** Names the form's CSRF cookie (`gw_csrf_<signinId>`, double submit). */
  signinId: string;
  csrfToken: string;
  returnTo: string;
}

function providerButtons(providers: ProviderLink[]): string {
  if (providers.length === 0) return "";
  return `<div class="providers">${
    providers.map((p) =>
      `<a class="provider" href="${escapeHtml(p.href)}">Continue with ${escapeHtml(p.label)}</a>`
    ).join("\n")
  }</div>`;
}

/** The sign-in page of a `return_to` sign-in, with the password form's CSRF cookie. */
export function signInPageResponse(
  view: {
    providers: ProviderLink[];
    password?: PasswordFormView;
    error?: string;
    secure: boolean;
  },
  status = 200,
): Response {
  const error = view.error ? `<p class="error" role="alert">${escapeHtml(view.error)}</p>` : "";
  const f = view.password;
  const form = f
    ? `${view.providers.length ? `<p class="or">or, as the gateway owner</p>` : ""}
<form method="post" action="${escapeHtml(f.action)}">
<input type="hidden" name="signin_id" value="${escapeHtml(f.signinId)}">
<input type="hidden" name="csrf_token" value="${escapeHtml(f.csrfToken)}">
<input type="hidden" name="return_to" value="${escapeHtml(f.returnTo)}">
<label for="password">Gateway owner password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<div class="buttons"><button type="submit" class="approve">Sign in</button></div>
</form>`
    : "";
  const html = layout(
    "Sign in",
    `<h1>Sign in</h1><p class="sub">Sign in to the MCP gateway to continue.</p>
${error}${providerButtons(view.providers)}${form}`,
  );
  const headers = new Headers();
  if (f) {
    headers.append(
      "set-cookie",
      serializeCookie(csrfCookieName(f.signinId, view.secure), f.csrfToken, {
        secure: view.secure,
        maxAge: SIGN_IN_FORM_TTL_S,
      }),
    );
  }
  return htmlResponse(html, status, headers);
}

/** A link on an error page. */
export interface PageLink {
  label: string;
  href: string;
}

/** An error page with links (e.g. back to the application, or "try again"). */
export function linkedPageResponse(
  title: string,
  message: string,
  status: number,
  links: PageLink[] = [],
  headers: HeadersInit = {},
): Response {
  const list = links.map((l) =>
    `<a class="provider" href="${escapeHtml(l.href)}">${escapeHtml(l.label)}</a>`
  ).join("\n");
  const html = layout(
    title,
    `<h1>${escapeHtml(title)}</h1><p class="sub">${escapeHtml(message)}</p>${
      list
        ? `<div class="providers">${list}</div>`
        : `<p class="note">You can close this window and start again from your application.</p>`
    }`,
  );
  return htmlResponse(html, status, headers);
}

/**
 * "Access denied" (issue 8 §4): names the signed-in account and where it signed in, says why,
 * and links back to the application with `error=access_denied` when there is one.
 */
export function accessDeniedResponse(
  denied: { user: UserRef; via: string; reason: string; back?: PageLink },
  headers: HeadersInit = {},
): Response {
  return linkedPageResponse(
    "Access denied",
    `You are signed in as ${accountLabel(denied.user)} (${denied.via}). ${denied.reason}`,
    403,
    denied.back ? [denied.back] : [],
    headers,
  );
}

/** 429 after too many wrong owner passwords (`Retry-After`, RFC 6585 §4). */
export function tooManyAttemptsResponse(retryAfterSeconds: number): Response {
  return linkedPageResponse(
    "Too many attempts",
    "Too many wrong passwords. Try again later.",
    429,
    [],
    {
      "retry-after": String(retryAfterSeconds),
    },
  );
}
