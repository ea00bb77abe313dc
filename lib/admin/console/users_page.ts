/**
 * The console's users page: the people who signed in (lib/admin/users_view.ts, as `deno task
 * admin users list`), most recently seen first, with their live grants, links to their grants and
 * audit records, and "revoke everything" — every grant, token and browser session of the user
 * (a POST form with the session's CSRF token and a confirmation box) — and what that form posts.
 */
import { z } from "zod";
import type { UserView } from "../users_view.ts";
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

const SUB = z.string().min(1).max(256);
const COUNT = z.coerce.number().int().min(0).max(1_000_000);

/** The users page's query parameters (`revoked`, `grants`, `sessions`: set after a revocation). */
export const usersQuery = z.strictObject({
  page: pageParam,
  revoked: SUB.optional(),
  grants: COUNT.optional(),
  sessions: COUNT.optional(),
});

/** What the users page was asked for. */
export type UsersQuery = z.infer<typeof usersQuery>;

/** The "revoke everything" form's fields. */
export const revokeUserForm = z.object({
  sub: SUB,
  csrf_token: z.string(),
  confirm: z.literal("yes", "tick the box to confirm"),
});

/** Where a user's revocation goes: the users page, saying what was revoked. */
export function afterUserRevoked(
  publicUrl: string,
  sub: string,
  done: { grants: number; browserSessions: number },
): string {
  return consoleUrl(publicUrl, SECTIONS.users.path, {
    revoked: sub,
    grants: done.grants,
    sessions: done.browserSessions,
  });
}

function who(u: UserView, viewer: Viewer) {
  const label = u.name && u.email ? `${u.name} (${u.email})` : u.email ?? u.login ?? u.name;
  const badges = [
    u.admin
      ? html`
        <span class="badge warn">admin</span>
      `
      : "",
    u.sub === viewer.sub
      ? html`
        <span class="badge unknown">you</span>
      `
      : "",
  ];
  return html`${label ?? ""}${badges}<div class="mono">${u.sub}</div>`;
}

function revokeForm(u: UserView, viewer: Viewer) {
  const self = u.sub === viewer.sub ? " (signs you out)" : "";
  return html`<form method="post" action="${viewer.publicUrl}/admin/users/revoke" class="inline">
${csrfField(viewer)}<input type="hidden" name="sub" value="${u.sub}">
<label><input type="checkbox" name="confirm" value="yes" required> sure${self}</label>
<button type="submit" class="danger" aria-label="Revoke everything of ${u.sub}">Revoke everything</button></form>`;
}

/** The users page. */
export function usersPage(viewer: Viewer, q: UsersQuery, users: UserView[]): Response {
  const p = pageOf(users, q.page ?? 1);
  const columns: Column<UserView>[] = [
    { label: "User", cell: (u) => who(u, viewer) },
    { label: "First seen", cell: (u) => when(u.firstSeenAt), nowrap: true },
    { label: "Last seen", cell: (u) => when(u.lastSeenAt), nowrap: true },
    {
      label: "Grants",
      cell: (u) =>
        u.grants === 0 ? "0" : filterLink(viewer, "grants", { user: u.sub }, String(u.grants)),
      numeric: true,
    },
    {
      label: "Activity",
      cell: (u) => filterLink(viewer, "audit", { user: u.sub }, "audit trail"),
      nowrap: true,
    },
    { label: "Action", cell: (u) => revokeForm(u, viewer) },
  ];
  const notice = q.revoked === undefined ? "" : html`
    <p class="notice"
      role="status">Revoked everything of <code>${q.revoked}</code>: ${q.grants ??
        0} grant(s) with their tokens, and ${q.sessions ?? 0} browser session(s).</p>
  `;
  const link = (n: number) => consoleUrl(viewer.publicUrl, SECTIONS.users.path, { page: n });
  const body = html`<h1>Users</h1>
<p class="sub">People who signed in, most recently seen first. "Revoke everything" ends a user's
grants, tokens and browser sessions; it is not a ban: the access rules still decide their next
sign-in.</p>${notice}
${table(columns, p.items, "Nobody has signed in yet.")}${pager(p, link)}`;
  return consolePage({ title: "Users", section: "users", viewer, body });
}
