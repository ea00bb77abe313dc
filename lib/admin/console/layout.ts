/**
 * The admin console's page frame: navigation, who is signed in (with a sign-out form carrying
 * the session's CSRF token), a little CSS that turns tables into cards on a phone, tables,
 * pagination and messages. Pages are served with `htmlResponse` (CSP `default-src 'none';
 * frame-ancestors 'none'`, `X-Frame-Options: DENY`, `no-store`, no referrer): no script at all.
 */
import { htmlResponse } from "../../infra/http.ts";
import { consoleUrl, type Html, html, trustedHtml } from "./html.ts";

/** The console's sections, in navigation order: path and label. */
export const SECTIONS = {
  backends: { path: "/admin", label: "Backends" },
  grants: { path: "/admin/grants", label: "Grants" },
  clients: { path: "/admin/clients", label: "Clients" },
  users: { path: "/admin/users", label: "Users" },
  audit: { path: "/admin/audit", label: "Audit trail" },
  config: { path: "/admin/config", label: "Configuration" },
} as const;

/** A section of the console. */
export type Section = keyof typeof SECTIONS;

/** Who looks at the page, for its header and forms. */
export interface Viewer {
  publicUrl: string;
  /** The signed-in account as people read it. */
  account: string;
  /** The `sub` of the signed-in user (to mark "you" in lists). */
  sub: string;
  /** The session's CSRF token (every form carries it). */
  csrfToken: string;
}

const STYLE = trustedHtml(`
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  background:#f3f4f6;color:#111827}
header{background:#111827;color:#f9fafb;padding:10px 16px;display:flex;flex-wrap:wrap;
  align-items:center;gap:8px 16px}
header .brand{font-weight:700;margin-right:auto}
header form{margin:0}
header .who{color:#d1d5db;font-size:.85rem}
nav{background:#fff;border-bottom:1px solid #e5e7eb;padding:0 12px;display:flex;flex-wrap:wrap}
nav a{padding:10px 8px;color:#374151;text-decoration:none;border-bottom:2px solid transparent}
nav a[aria-current=page]{color:#1d4ed8;border-color:#1d4ed8;font-weight:600}
main{max-width:1200px;margin:0 auto;padding:16px}
h1{font-size:1.3rem;margin:4px 0 12px}
h2{font-size:1.05rem;margin:20px 0 8px}
p.sub{color:#4b5563;margin:0 0 12px}
a{color:#1d4ed8}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85em;
  overflow-wrap:break-word}
table{width:100%;border-collapse:collapse;background:#fff;border:1px solid #e5e7eb;
  border-radius:8px;overflow:hidden}
th,td{text-align:left;padding:7px 10px;border-bottom:1px solid #e5e7eb;vertical-align:top}
th{background:#f9fafb;font-size:.78rem;text-transform:uppercase;letter-spacing:.03em;
  color:#4b5563}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.nowrap{white-space:nowrap}
.muted{color:#6b7280;font-size:.85em}
.badge{display:inline-block;border-radius:999px;padding:1px 8px;font-size:.8rem;font-weight:600}
.ok{background:#dcfce7;color:#166534}.bad{background:#fee2e2;color:#991b1b}
.unknown{background:#e5e7eb;color:#374151}.warn{background:#fef3c7;color:#92400e}
.notice{background:#ecfdf5;color:#065f46;border:1px solid #a7f3d0;border-radius:8px;
  padding:8px 12px;margin:0 0 12px}
.error{background:#fef2f2;color:#991b1b;border:1px solid #fecaca;border-radius:8px;
  padding:8px 12px;margin:0 0 12px}
form.filters{display:flex;flex-wrap:wrap;gap:8px 12px;align-items:flex-end;background:#fff;
  border:1px solid #e5e7eb;border-radius:8px;padding:12px;margin:0 0 12px}
form.filters label{display:flex;flex-direction:column;font-size:.8rem;color:#374151;gap:2px}
input,select{font:inherit;padding:6px 8px;border:1px solid #d1d5db;border-radius:6px;
  background:#fff;min-width:0}
button{font:inherit;font-weight:600;padding:6px 12px;border-radius:6px;cursor:pointer;
  border:1px solid #1d4ed8;background:#1d4ed8;color:#fff}
button.danger{border-color:#b91c1c;background:#b91c1c}
button.plain{border-color:#6b7280;background:transparent;color:inherit;font-weight:400}
form.inline{display:flex;flex-wrap:wrap;gap:6px;align-items:center;margin:0}
.pager{display:flex;gap:16px;justify-content:space-between;margin:12px 0}
pre{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px;overflow:auto;
  font-size:.85rem}
@media (max-width:720px){
  main{padding:10px}
  table,thead,tbody,tr,th,td{display:block}
  thead{display:none}
  table{border:none;background:none}
  tr{background:#fff;border:1px solid #e5e7eb;border-radius:8px;margin:0 0 10px;padding:6px 0}
  td{border:none;padding:3px 12px;display:flex;gap:10px}
  td.num{text-align:left}
  td.nowrap{white-space:normal}
  td .v{flex:1;min-width:0}
  td::before{content:attr(data-label);flex:0 0 38%;color:#6b7280;font-size:.78rem;
    text-transform:uppercase;letter-spacing:.03em;padding-top:2px}
}
`);

function frame(
  title: string,
  viewer: Viewer | null,
  section: Section | null,
  body: Html,
  showNav = true,
): Html {
  const nav = viewer && showNav
    ? html`<nav aria-label="Console">${
      Object.entries(SECTIONS).map(([key, s]) =>
        html`
          <a href="${viewer.publicUrl}${s.path}" ${key === section
            ? trustedHtml(' aria-current="page"')
            : ""}>${s.label}</a>
        `
      )
    }</nav>`
    : "";
  const who = viewer
    ? html`<span class="who">Signed in as ${viewer.account}</span>
<form method="post" action="${viewer.publicUrl}/logout">
<input type="hidden" name="csrf_token" value="${viewer.csrfToken}">
<input type="hidden" name="return_to" value="/admin">
<button type="submit" class="plain">Sign out</button></form>`
    : "";
  return html`
    <!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width,initial-scale=1">
        <meta name="robots" content="noindex">
        <title>${title} · MCP gateway admin</title>
        <style>${STYLE}</style>
      </head>
      <body><header><span class="brand">MCP gateway admin</span>${who}</header>${nav}
    <main>${body}</main></body>
    </html>
  `;
}

/** A console page (200 unless `status` says otherwise). */
export function consolePage(
  view: { title: string; section: Section; viewer: Viewer; body: Html; status?: number },
): Response {
  return htmlResponse(frame(view.title, view.viewer, view.section, view.body).value, view.status);
}

/**
 * An error page of the console (400 bad filter, 403 not an administrator or a failed CSRF
 * check, 404): the message, and the way back (`back`) or out (sign out, for a non-admin).
 */
export function consoleErrorPage(
  view: {
    title: string;
    message: string;
    status: number;
    viewer: Viewer | null;
    section?: Section;
    back?: { label: string; href: string };
    /** Whether to show the console's navigation (not to a signed-in non-administrator). */
    showNav?: boolean;
  },
): Response {
  const back = view.back ? html`<p><a href="${view.back.href}">${view.back.label}</a></p>` : "";
  const body = html`<h1>${view.title}</h1><p class="error" role="alert">${view.message}</p>${back}`;
  const page = frame(view.title, view.viewer, view.section ?? null, body, view.showNav ?? true);
  return htmlResponse(page.value, view.status);
}

/** One column of a {@linkcode table}. */
export interface Column<T> {
  label: string;
  cell: (row: T) => Html | string | number | null;
  /** Right-aligned figures. */
  numeric?: boolean;
  /** Kept on one line on a wide screen (times, short links). */
  nowrap?: boolean;
}

function cellClass<T>(c: Column<T>): string {
  return [c.numeric ? "num" : "", c.nowrap ? "nowrap" : ""].filter(Boolean).join(" ");
}

/** A table that reads as cards on a narrow screen (each cell labelled by its column). */
export function table<T>(columns: Column<T>[], rows: readonly T[], empty: string): Html {
  if (rows.length === 0) return html`<p class="muted">${empty}</p>`;
  const head = columns.map((c) => html`<th scope="col">${c.label}</th>`);
  const body = rows.map((row) =>
    html`<tr>${
      columns.map((c) => {
        const value = c.cell(row);
        const cls = cellClass(c);
        return html`
          <td data-label="${c.label}" ${cls
            ? html`
              class="${cls}"
            `
            : ""}>
            <div class="v">${value ?? "—"}</div>
          </td>
        `;
      })
    }</tr>`
  );
  return html`
    <table>
      <thead>
        <tr>${head}</tr>
      </thead>
      <tbody>${body}</tbody>
    </table>
  `;
}

/** A slice of a list: one page of it. */
export interface PageOf<T> {
  items: T[];
  page: number;
  pages: number;
  total: number;
}

/** Rows per page of the console's lists. */
export const PAGE_SIZE = 50;

/** Page `page` (from 1; past the end: the last page) of `items`. */
export function pageOf<T>(items: readonly T[], page: number, size = PAGE_SIZE): PageOf<T> {
  const pages = Math.max(1, Math.ceil(items.length / size));
  const p = Math.min(Math.max(1, page), pages);
  return { items: items.slice((p - 1) * size, p * size), page: p, pages, total: items.length };
}

/** "Newer / page x of y / Older" links of a paged list; `link(page)` builds a page's URL. */
export function pager<T>(p: PageOf<T>, link: (page: number) => string): Html {
  if (p.pages <= 1) return html``;
  const prev = p.page > 1 ? html`<a href="${link(p.page - 1)}" rel="prev">← Previous</a>` : "";
  const next = p.page < p.pages ? html`<a href="${link(p.page + 1)}" rel="next">Next →</a>` : "";
  return html`
    <div
      class="pager"><span>${prev}</span><span class="muted">page ${p.page} of ${p.pages} (${p
        .total})</span><span>${next}</span></div>
  `;
}

/** The hidden CSRF field of a console form. */
export function csrfField(viewer: Viewer): Html {
  return html`<input type="hidden" name="csrf_token" value="${viewer.csrfToken}">`;
}

/** A link to a console page with a filter (e.g. the audit trail of a user). */
export function filterLink(
  viewer: Viewer,
  section: Section,
  params: Record<string, string>,
  text: string,
): Html {
  return html`<a href="${
    consoleUrl(viewer.publicUrl, SECTIONS[section].path, params)
  }">${text}</a>`;
}

/** 400: a page's query or a form did not validate (`message` names the parameter). */
export function badRequestPage(viewer: Viewer, section: Section, message: string): Response {
  const s = SECTIONS[section];
  return consoleErrorPage({
    title: "Invalid request",
    message,
    status: 400,
    viewer,
    section,
    back: { label: `Back to ${s.label.toLowerCase()}`, href: `${viewer.publicUrl}${s.path}` },
  });
}
