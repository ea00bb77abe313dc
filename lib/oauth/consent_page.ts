/**
 * HTML of the login + consent page and of the authorization error pages. Every value that
 * comes from a client or a request is escaped. Pages are served with `htmlResponse` (CSP
 * `frame-ancestors 'none'`, `X-Frame-Options: DENY`: MCP 2025-11-25 security best practices).
 */
import { allRedirectUrisLoopback } from "./client_id_metadata.ts";
import { csrfCookieName, serializeCookie } from "../infra/cookies.ts";
import { escapeHtml, htmlResponse } from "../infra/http.ts";
import { ALL_BACKENDS_SCOPE } from "./resources.ts";
import type { ClientRecord } from "../store.ts";

const STYLE = `
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  background:#f3f4f6;color:#111827;display:flex;min-height:100vh;align-items:center;
  justify-content:center;padding:24px}
main{background:#fff;max-width:460px;width:100%;border-radius:12px;padding:28px 32px;
  box-shadow:0 1px 3px rgba(0,0,0,.08),0 8px 24px rgba(0,0,0,.06)}
h1{font-size:1.3rem;margin:0 0 4px}
.sub{color:#4b5563;margin:0 0 20px}
.client{font-weight:600;word-break:break-word}
.host{display:block;font:600 1.15rem ui-monospace,SFMono-Regular,Menlo,monospace;
  background:#eef2ff;color:#1e3a8a;border-radius:8px;padding:8px 12px;margin:6px 0 2px;
  word-break:break-all}
.uri{color:#6b7280;font-size:.8rem;word-break:break-all;margin:0}
dl{margin:16px 0}dt{font-size:.8rem;text-transform:uppercase;letter-spacing:.04em;
  color:#6b7280;margin-top:12px}dd{margin:2px 0 0}
ul{margin:4px 0 0;padding-left:20px}code{font-family:ui-monospace,Menlo,monospace;font-size:.9em}
.note{font-size:.8rem;color:#6b7280}
.fine{display:block;font-size:.8rem;line-height:1.4;color:#6b7280;margin-top:4px}
.warning{background:#fffbeb;color:#92400e;border:1px solid #fde68a;border-radius:8px;
  padding:8px 12px;margin:0 0 16px}
.error{background:#fef2f2;color:#991b1b;border:1px solid #fecaca;border-radius:8px;
  padding:8px 12px;margin:0 0 16px}
label{display:block;font-weight:600;margin:20px 0 6px}
input[type=password]{width:100%;padding:10px 12px;font-size:1rem;border:1px solid #d1d5db;
  border-radius:8px}
input[type=password]:focus{outline:2px solid #2563eb;border-color:#2563eb}
.buttons{display:flex;gap:12px;margin-top:20px}
.who{background:#f0fdf4;color:#14532d;border:1px solid #bbf7d0;border-radius:8px;
  padding:8px 12px;margin:0 0 16px}
.providers{display:flex;flex-direction:column;gap:10px;margin:20px 0 4px}
a.provider{display:block;text-align:center;padding:10px 16px;font-weight:600;border-radius:8px;
  border:1px solid #2563eb;background:#2563eb;color:#fff;text-decoration:none}
a.provider:focus-visible{outline:2px solid #1e3a8a;outline-offset:2px}
.or{text-align:center;color:#6b7280;font-size:.85rem;margin:16px 0 0}
form.note{margin:12px 0 0}
button.link{flex:none;border:none;background:none;color:#2563eb;padding:0;font-size:.85rem;
  font-weight:400;text-decoration:underline}
button{flex:1;padding:10px 16px;font-size:1rem;font-weight:600;border-radius:8px;cursor:pointer;
  border:1px solid #d1d5db;background:#fff;color:#111827}
button.approve{background:#2563eb;border-color:#2563eb;color:#fff}
button:focus-visible{outline:2px solid #1e3a8a;outline-offset:2px}
`;

/** A page of the gateway: the shared layout and style around `body` (trusted HTML). */
export function layout(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex">
<title>${escapeHtml(title)}</title><style>${STYLE}</style></head>
<body><main>${body}</main></body></html>`;
}

/** What the consent page shows and carries. */
export interface ConsentView {
  /** Self-asserted name from registration (RFC 7591 §2); the client id is shown without one. */
  clientName?: string;
  clientId: string;
  /**
   * Metadata-document clients: the host serving the document, the one verified identity
   * (draft-ietf-oauth-client-id-metadata-document §6.1: consent shows it prominently).
   */
  metadataDocumentHost?: string;
  /** Metadata-document clients whose every redirect URI is on localhost: show a warning. */
  loopbackOnly?: boolean;
  redirectUri: string;
  scope: string;
  resource: string;
  /** Absolute URL the form posts to (`<PUBLIC_URL>/authorize`). */
  action: string;
  requestId: string;
  csrfToken: string;
  /** Shown above the form (e.g. a wrong password). */
  error?: string;
  /** The signed-in user who approves (no password asked); absent: nobody is signed in. */
  signedIn?: SignedInView;
  /** Nobody signed in: the identity providers' sign-in links. */
  providers?: ProviderLink[];
  /** Nobody signed in: whether the owner password form is offered (default true). */
  ownerPassword?: boolean;
}

/** Who is signed in, and how to sign out (team sign-in, lib/identity/). */
export interface SignedInView {
  /** The account as shown: name and email, or login, or the subject. */
  account: string;
  /** The provider's label, or "owner password". */
  via: string;
  /** `POST` target of the sign-out form, and its CSRF token. */
  signOutAction: string;
  signOutCsrf: string;
}

/** A sign-in button of an identity provider. */
export interface ProviderLink {
  label: string;
  /** `<PUBLIC_URL>/login/<providerId>?request=<requestId>` */
  href: string;
}

/** The client part of a {@linkcode ConsentView}. */
export function clientView(
  client: Pick<ClientRecord, "clientId" | "clientName" | "metadataDocumentHost" | "redirectUris">,
): Pick<ConsentView, "clientId" | "clientName" | "metadataDocumentHost" | "loopbackOnly"> {
  const view: ReturnType<typeof clientView> = {
    clientId: client.clientId,
    clientName: client.clientName,
  };
  if (client.metadataDocumentHost !== undefined) {
    view.metadataDocumentHost = client.metadataDocumentHost;
    view.loopbackOnly = client.redirectUris.length > 0 && allRedirectUrisLoopback(client);
  }
  return view;
}

/** Where the browser will be sent: the host of the redirect URI, or the URI's scheme. */
export function redirectTarget(redirectUri: string): string {
  const url = new URL(redirectUri);
  return url.host || url.protocol;
}

/**
 * The redirect URI in full, prominently (a scheme or host alone hides what follows, e.g.
 * `microsoft-edge:https://evil.example/`), then what receives it: a web host, or a program on
 * this computer for a private-use scheme (RFC 8252 §7.1).
 */
function redirectDetails(redirectUri: string): string {
  const url = new URL(redirectUri);
  const web = url.protocol === "https:" || url.protocol === "http:";
  const target = `<b id="redirect-host">${escapeHtml(redirectTarget(redirectUri))}</b>`;
  return `<span class="host" id="redirect-uri">${escapeHtml(redirectUri)}</span>
<p class="uri">${
    web ? `on the web site ${target}` : `a program on this computer that opens ${target} links`
  }</p>`;
}

function describeScope(scope: string): string {
  if (scope === ALL_BACKENDS_SCOPE) return "Use every MCP server behind this gateway";
  if (scope.startsWith("mcp:")) return `Use the MCP server “${scope.slice(4)}”`;
  return scope;
}

/**
 * The login + consent page (MCP 2025-11-25 security best practices: consent names the client,
 * its scopes and where the browser goes next).
 */
export function renderConsentPage(v: ConsentView): string {
  const name = v.clientName ?? v.clientId;
  const scopes = v.scope.split(" ").map((s) =>
    `<li>${escapeHtml(describeScope(s))} <code>${escapeHtml(s)}</code></li>`
  ).join("");
  const error = v.error ? `<p class="error" role="alert">${escapeHtml(v.error)}</p>` : "";
  const host = v.metadataDocumentHost === undefined ? "" : `<p class="sub">Client identified by
<span class="host" id="client-host">${escapeHtml(v.metadataDocumentHost)}</span></p>`;
  const loopback = v.loopbackOnly
    ? `<p class="warning" id="loopback-warning" role="note">Every redirect URI of this
application is on localhost: the authorization goes to a program running on this computer, not
to ${escapeHtml(v.metadataDocumentHost ?? "a web site")}. Approve only if you are running that
program yourself.</p>`
    : "";
  return layout(
    "Authorize access",
    `<h1>Authorize <span class="client">${escapeHtml(name)}</span>?</h1>
<p class="sub">This application asks to use your MCP gateway on your behalf.</p>
${host}${loopback}${error}${signedInNote(v)}
<dl>
<dt>After approval you will be sent to</dt>
<dd>${redirectDetails(v.redirectUri)}</dd>
<dt>Access requested</dt><dd><ul>${scopes}</ul></dd>
<dt>Resource</dt><dd><code>${escapeHtml(v.resource)}</code></dd>
<dt>Application</dt><dd>${escapeHtml(name)}${
      v.clientName
        ? ` <span class="note">(client id <code>${escapeHtml(v.clientId)}</code>)</span>`
        : ""
    }<span class="fine">The name is chosen by the application itself and is not verified.
Approve only if you started this sign-in and trust where it sends you.</span></dd>
</dl>
${signInChoices(v)}<form method="post" action="${escapeHtml(v.action)}">
<input type="hidden" name="request_id" value="${escapeHtml(v.requestId)}">
<input type="hidden" name="csrf_token" value="${escapeHtml(v.csrfToken)}">
${approveControls(v)}
<button type="submit" name="decision" value="deny" formnovalidate>Deny</button>
</div>
</form>${signOutForm(v)}`,
  );
}

/** Who is signed in (above the details). */
function signedInNote(v: ConsentView): string {
  if (!v.signedIn) return "";
  return `<p class="who" id="signed-in">Signed in as <b>${escapeHtml(v.signedIn.account)}</b>
<span class="note">(${escapeHtml(v.signedIn.via)})</span></p>`;
}

/** Nobody signed in: one button per identity provider, then "or" before the password form. */
function signInChoices(v: ConsentView): string {
  if (v.signedIn || !v.providers?.length) return "";
  const links = v.providers.map((p) =>
    `<a class="provider" href="${escapeHtml(p.href)}">Continue with ${escapeHtml(p.label)}</a>`
  ).join("\n");
  const or = v.ownerPassword === false ? "" : `<p class="or">or, as the gateway owner</p>`;
  return `<p class="sub">Sign in to continue.</p><div class="providers">${links}</div>${or}`;
}

/** The password field and Approve (owner), Approve alone (signed in), or nothing. */
function approveControls(v: ConsentView): string {
  const approve =
    `<button type="submit" name="decision" value="approve" class="approve">Approve</button>`;
  if (v.signedIn) return `<div class="buttons">${approve}`;
  if (v.ownerPassword === false) return `<div class="buttons">`;
  return `<label for="password">Gateway owner password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required
 autofocus>
<div class="buttons">${approve}`;
}

/** "Not you? Sign out" for a signed-in user. */
function signOutForm(v: ConsentView): string {
  if (!v.signedIn) return "";
  return `
<form method="post" action="${escapeHtml(v.signedIn.signOutAction)}" class="note">Not you?
<input type="hidden" name="csrf_token" value="${escapeHtml(v.signedIn.signOutCsrf)}">
<input type="hidden" name="request_id" value="${escapeHtml(v.requestId)}">
<button type="submit" class="link" id="sign-out">Sign out</button></form>`;
}

/** An error page of the authorization flow (nothing is redirected from it). */
export function renderErrorPage(title: string, message: string): string {
  return layout(
    title,
    `<h1>${escapeHtml(title)}</h1><p class="sub">${escapeHtml(message)}</p>
<p class="note">You can close this window and start again from your application.</p>`,
  );
}

/**
 * The consent page as a response, with the request's CSRF cookie (HttpOnly, SameSite=Lax,
 * `__Host-` + Secure on https: MCP 2025-11-25 security best practices).
 */
export function consentPageResponse(
  view: ConsentView,
  options: { secure: boolean; maxAgeSeconds: number; status?: number },
): Response {
  const cookie = serializeCookie(csrfCookieName(view.requestId, options.secure), view.csrfToken, {
    secure: options.secure,
    maxAge: options.maxAgeSeconds,
  });
  return htmlResponse(renderConsentPage(view), options.status ?? 200, { "set-cookie": cookie });
}
