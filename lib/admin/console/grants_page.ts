/**
 * The console's grants page — who holds access through which client: user, client name and id,
 * scopes, created, last used (lib/admin/grants_view.ts, as `deno task admin grants list`), newest
 * first, filtered by user or client, paged — each with a revoke button (a POST form with the
 * session's CSRF token) — and what a revocation posts.
 */
import { z } from "zod";
import { type GrantView, listGrants } from "../grants_view.ts";
import type { AdminDeps } from "../admin_deps.ts";
import { parseReturnTo } from "../../identity/pending_request.ts";
import { consoleUrl, html, when } from "./html.ts";
import {
  type Column,
  consolePage,
  csrfField,
  filterLink,
  pageOf,
  pager,
  SECTIONS,
  table,
  type Viewer,
} from "./layout.ts";
import { pageParam } from "./params.ts";

/** A grant id as the gateway makes them (UUIDs) — and nothing that could be a path or markup. */
const GRANT_ID = z.string().regex(/^[A-Za-z0-9_-]{1,100}$/, "not a grant id");

/** The grants page's query parameters. */
export const grantsQuery = z.strictObject({
  user: z.string().max(256).optional(),
  client: z.string().max(2048).optional(),
  page: pageParam,
  /** Set by the revocation's redirect: the grant just revoked. */
  revoked: GRANT_ID.optional(),
});

/** What the grants page was asked for. */
export type GrantsQuery = z.infer<typeof grantsQuery>;

/** The revoke form's fields. */
export const revokeGrantForm = z.object({
  grant_id: GRANT_ID,
  csrf_token: z.string(),
  return_to: z.string().max(512).optional(),
});

/** Grants matching the query (all pages). */
export async function grantsOf(deps: AdminDeps, q: GrantsQuery): Promise<GrantView[]> {
  const grants = await listGrants(deps, q.user === undefined ? {} : { user: q.user });
  return q.client === undefined ? grants : grants.filter((g) => g.clientId === q.client);
}

/** The page a revocation goes back to: the listing it was posted from, with `revoked` set. */
export function afterGrantRevoked(
  publicUrl: string,
  returnTo: string | undefined,
  grantId: string,
): string {
  const path = parseReturnTo(returnTo ?? null);
  const listing = path !== null &&
    (path === SECTIONS.grants.path || path.startsWith(`${SECTIONS.grants.path}?`));
  const back = listing ? path : SECTIONS.grants.path;
  const url = new URL(`${publicUrl}${back}`);
  url.searchParams.set("revoked", grantId);
  return url.href;
}

/** The grants page. */
export function grantsPage(viewer: Viewer, q: GrantsQuery, grants: GrantView[]): Response {
  const { page: _page, revoked: _revoked, ...filters } = q;
  const link = (page: number) =>
    consoleUrl(viewer.publicUrl, SECTIONS.grants.path, { ...filters, page });
  const p = pageOf(grants, q.page ?? 1);
  const here = `${SECTIONS.grants.path}${new URL(link(p.page)).search}`;
  const revoke = (g: GrantView) =>
    html`<form method="post" action="${viewer.publicUrl}/admin/grants/revoke" class="inline">
${csrfField(viewer)}<input type="hidden" name="grant_id" value="${g.id}">
<input type="hidden" name="return_to" value="${here}">
<button type="submit" class="danger" aria-label="Revoke grant ${g.id}">Revoke</button></form>`;
  const columns: Column<GrantView>[] = [
    { label: "User", cell: (g) => filterLink(viewer, "grants", { user: g.user }, g.user) },
    {
      label: "Client",
      cell: (g) =>
        html`${g.clientName ?? ""}<div>${
          filterLink(viewer, "grants", { client: g.clientId }, g.clientId)
        }</div>`,
    },
    { label: "Scopes", cell: (g) => html`<code>${g.scopes.join(" ")}</code>` },
    { label: "Created", cell: (g) => when(g.createdAt), nowrap: true },
    { label: "Last used", cell: (g) => when(g.lastUsedAt), nowrap: true },
    { label: "Grant", cell: (g) => html`<span class="mono">${g.id}</span>` },
    { label: "Action", cell: revoke },
  ];
  const filtered = Object.keys(filters).length > 0
    ? html`<p class="muted">Filtered by ${
      Object.entries(filters).map(([k, v]) =>
        html`
          ${k} <code>${v}</code>
        `
      )
    }· <a href="${viewer.publicUrl}${SECTIONS.grants.path}">show all</a></p>`
    : "";
  const notice = q.revoked
    ? html`
      <p class="notice"
        role="status">Grant <code>${q
          .revoked}</code> revoked: its access and refresh tokens are refused from now on.</p>
    `
    : "";
  const body = html`<h1>Grants</h1>
<p class="sub">What each consent gave a client. Revoking a grant deletes it and its tokens; the
client must ask for consent again.</p>${notice}${filtered}
${table(columns, p.items, "No live grant.")}${pager(p, link)}`;
  return consolePage({ title: "Grants", section: "grants", viewer, body });
}
