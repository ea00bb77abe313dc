/**
 * `GET /admin/clients?page=`: the admin console's clients (pre-registered, registered, by
 * metadata document) with their live grants. Administrators only (lib/admin/console/gate.ts).
 */
import type { RouteContext } from "../lib/deps.ts";
import { listClients } from "../lib/admin/clients_view.ts";
import { clientsPage, clientsQuery } from "../lib/admin/console/clients_page.ts";
import { openConsole } from "../lib/admin/console/gate.ts";
import { badRequestPage } from "../lib/admin/console/layout.ts";
import { parseQuery } from "../lib/admin/console/params.ts";

/** The clients page, or the way to sign in. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const admin = await openConsole(req, ctx);
  if (admin instanceof Response) return admin;
  const q = parseQuery(new URL(req.url).searchParams, clientsQuery);
  if (!q.ok) return badRequestPage(admin.viewer, "clients", q.message);
  return clientsPage(admin.viewer, q.value.page ?? 1, await listClients(ctx));
}
