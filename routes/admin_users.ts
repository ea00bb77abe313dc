/**
 * `GET /admin/users?page=`: the admin console's users (last seen, grants) with "revoke
 * everything". Administrators only (lib/admin/console/gate.ts); bad parameters → 400 page.
 */
import type { RouteContext } from "../lib/deps.ts";
import { listUsers } from "../lib/admin/users_view.ts";
import { openConsole } from "../lib/admin/console/gate.ts";
import { badRequestPage } from "../lib/admin/console/layout.ts";
import { parseQuery } from "../lib/admin/console/params.ts";
import { usersPage, usersQuery } from "../lib/admin/console/users_page.ts";

/** The users page, or the way to sign in. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const admin = await openConsole(req, ctx);
  if (admin instanceof Response) return admin;
  const q = parseQuery(new URL(req.url).searchParams, usersQuery);
  if (!q.ok) return badRequestPage(admin.viewer, "users", q.message);
  return usersPage(admin.viewer, q.value, await listUsers(ctx));
}
