/**
 * `GET /admin`: the admin console's backends page (health, latency p50/p95 and error rate over
 * the last hour, tool count). Administrators only (lib/admin/console/gate.ts).
 */
import type { RouteContext } from "../lib/deps.ts";
import { backendsOverview, backendsPage } from "../lib/admin/console/backends_page.ts";
import { openConsole } from "../lib/admin/console/gate.ts";

/** The backends page, or the way to sign in. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const admin = await openConsole(req, ctx);
  if (admin instanceof Response) return admin;
  return backendsPage(admin.viewer, await backendsOverview(ctx));
}
