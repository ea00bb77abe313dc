/**
 * Pages of per-user backend connections: `/connections` (every per-user backend the signed-in
 * user may use, connected or not, with connect and disconnect) and the secret form of a
 * `user-secret` backend. Everything from config or a request is escaped; pages carry the
 * security headers of `htmlResponse` (no framing, no referrer, `no-store`); every form posts the
 * session's CSRF token.
 */
import { escapeHtml, htmlResponse } from "../infra/http.ts";
import { accountLabel } from "../identity/sign_in_page.ts";
import { layout } from "../oauth/consent_page.ts";
import type { UserRef } from "../store.ts";

/** One backend's line on `/connections`. */
export interface ConnectionLine {
  name: string;
  description?: string;
  type: "oauth" | "user-secret";
  /** What a user-secret backend asks for ("Search API key"). */
  label?: string;
  /** When the user connected it; absent = not connected. */
  connectedAt?: number;
}

/** What `/connections` shows. */
export interface ConnectionsView {
  /** `PUBLIC_URL`: the base of every link and form action. */
  base: string;
  user: UserRef;
  lines: ConnectionLine[];
  csrfToken: string;
  /** A confirmation ("docs is connected."). */
  notice?: string;
}

const PAGE_STYLE = `<style>
ul.connections{list-style:none;padding:0;margin:16px 0}
ul.connections li{border:1px solid #e5e7eb;border-radius:8px;padding:12px 14px;margin:0 0 10px}
.name{font-weight:600}.state{font-size:.85rem;color:#6b7280}
.state.on{color:#15803d}.actions{display:flex;gap:12px;align-items:center;margin-top:8px}
.actions a{font-weight:600;color:#2563eb}
.notice{background:#f0fdf4;color:#14532d;border:1px solid #bbf7d0;border-radius:8px;
  padding:8px 12px;margin:0 0 16px}
</style>`;

const when = (ms: number) => `${new Date(ms).toISOString().slice(0, 16).replace("T", " ")} UTC`;

function line(base: string, l: ConnectionLine, csrfToken: string): string {
  const name = escapeHtml(l.name);
  const at = escapeHtml(base);
  const what = l.type === "oauth"
    ? `you sign in at ${name}`
    : `your own ${escapeHtml(l.label ?? "secret")}`;
  const description = l.description ? ` — ${escapeHtml(l.description)}` : "";
  const state = l.connectedAt !== undefined
    ? `<span class="state on">Connected since ${when(l.connectedAt)}</span>`
    : `<span class="state">Not connected</span>`;
  const connect = `<a href="${at}/connect/${name}">${
    l.connectedAt !== undefined ? "Connect again" : "Connect"
  }</a>`;
  const disconnect = l.connectedAt !== undefined
    ? `<form method="post" action="${at}/connections/${name}/disconnect">
<input type="hidden" name="csrf_token" value="${escapeHtml(csrfToken)}">
<button type="submit" class="link">Disconnect</button></form>`
    : "";
  return `<li data-backend="${name}"><div><span class="name">${name}</span>${description}</div>
<div>${state} <span class="state">(${what})</span></div>
<div class="actions">${connect}${disconnect}</div></li>`;
}

/** The `/connections` page. */
export function connectionsPage(view: ConnectionsView): Response {
  const notice = view.notice
    ? `<p class="notice" role="status">${escapeHtml(view.notice)}</p>`
    : "";
  const list = view.lines.length
    ? `<ul class="connections">${
      view.lines.map((l) => line(view.base, l, view.csrfToken)).join("\n")
    }</ul>`
    : `<p class="sub">No backend of this gateway needs your own account.</p>`;
  const body = `${PAGE_STYLE}<h1>Your connections</h1>
<p class="sub">Backends that work with your own account. Signed in as
<strong>${escapeHtml(accountLabel(view.user))}</strong>.</p>
${notice}${list}
<form class="note" method="post" action="${escapeHtml(view.base)}/logout">
<input type="hidden" name="csrf_token" value="${escapeHtml(view.csrfToken)}">
<input type="hidden" name="return_to" value="/connections">
<button type="submit" class="link">Sign out</button></form>`;
  return htmlResponse(layout("Your connections", body));
}

/** What the secret form of a `user-secret` backend shows. */
export interface SecretFormView {
  base: string;
  backend: string;
  label: string;
  user: UserRef;
  csrfToken: string;
  connected: boolean;
  error?: string;
}

/** The form of a `user-secret` backend (`POST /connect/{backend}`). */
export function secretFormPage(view: SecretFormView, status = 200): Response {
  const name = escapeHtml(view.backend);
  const at = escapeHtml(view.base);
  const error = view.error ? `<p class="error" role="alert">${escapeHtml(view.error)}</p>` : "";
  const replacing = view.connected
    ? `<p class="note">You are connected already; a new value replaces the stored one.</p>`
    : "";
  const body = `<h1>Connect ${name}</h1>
<p class="sub">${name} works with your own ${escapeHtml(view.label)}. Signed in as
<strong>${escapeHtml(accountLabel(view.user))}</strong>. It is stored encrypted and sent only to
${name}, never shown again.</p>
${error}${replacing}<form method="post" action="${at}/connect/${name}">
<input type="hidden" name="csrf_token" value="${escapeHtml(view.csrfToken)}">
<label for="secret">${escapeHtml(view.label)}</label>
<input type="password" id="secret" name="secret" autocomplete="off" required maxlength="4096">
<div class="buttons"><button type="submit" class="approve">Save</button></div>
</form>
<p class="note"><a href="${at}/connections">Your connections</a></p>`;
  return htmlResponse(layout(`Connect ${view.backend}`, body), status);
}
