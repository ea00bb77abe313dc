/**
 * `GET /admin/grants?user=&client=&page=`: the admin console's grants (user, client, scopes,
 * created, last used), each with a revoke form. Administrators only (lib/admin/console/gate.ts);
 * bad parameters → 400 page.
 */
import type { RouteContext } from "../lib/deps.ts";
import { openConsole } from "../lib/admin/console/gate.ts";
import { grantsOf, grantsPage, grantsQuery } from "../lib/admin/console/grants_page.ts";
import { badRequestPage } from "../lib/admin/console/layout.ts";
import { parseQuery } from "../lib/admin/console/params.ts";

/** The grants page, or the way to sign in. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const admin = await openConsole(req, ctx);
  if (admin instanceof Response) return admin;
  const q = parseQuery(new URL(req.url).searchParams, grantsQuery);
  if (!q.ok) return badRequestPage(admin.viewer, "grants", q.message);
  return grantsPage(admin.viewer, q.value, await grantsOf(ctx, q.value));
}
