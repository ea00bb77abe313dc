/**
 * `GET /admin/config`: the admin console's view of the running configuration, without secrets.
 * Administrators only (lib/admin/console/gate.ts).
 */
import type { RouteContext } from "../lib/deps.ts";
import { configPage } from "../lib/admin/console/config_page.ts";
import { openConsole } from "../lib/admin/console/gate.ts";
import { VERSION } from "../lib/startup/version.ts";

/** The configuration page, or the way to sign in. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const admin = await openConsole(req, ctx);
  if (admin instanceof Response) return admin;
  return configPage(admin.viewer, ctx, VERSION);
}
