/**
 * `GET /admin/audit?user=&backend=&tool=&outcome=&event=&since=&until=&before=&skip=`: the admin
 * console's audit trail, filtered and paged (lib/admin/console/audit_page.ts). Administrators only
 * (lib/admin/console/gate.ts); a bad filter → the page with the error, status 400.
 */
import type { RouteContext } from "../lib/deps.ts";
import {
  auditFilter,
  auditPage,
  auditQuery,
  auditTrailPage,
  filterValues,
} from "../lib/admin/console/audit_page.ts";
import { openConsole } from "../lib/admin/console/gate.ts";
import { parseQuery } from "../lib/admin/console/params.ts";

/** The audit trail page, or the way to sign in. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const admin = await openConsole(req, ctx);
  if (admin instanceof Response) return admin;
  const params = new URL(req.url).searchParams;
  const backends = ctx.config.backends.map((b) => b.name);
  const refuse = (error: string) =>
    auditTrailPage(admin.viewer, {
      values: filterValues(params),
      page: { records: [] },
      paged: false,
      backends,
      error,
    });
  const q = parseQuery(params, auditQuery);
  if (!q.ok) return refuse(q.message);
  const filter = auditFilter(q.value, ctx.now());
  if (typeof filter === "string") return refuse(filter);
  return auditTrailPage(admin.viewer, {
    values: filterValues(Object.entries(q.value)),
    page: await auditPage(ctx, filter, q.value),
    paged: q.value.before !== undefined,
    backends,
  });
}
