/**
 * `GET /admin/audit.jsonl?user=&backend=&tool=&outcome=&event=&since=&until=`: the audit records
 * of the console's filters as a JSON Lines download (`application/x-ndjson`, one record per line,
 * newest first, streamed), as `deno task admin audit tail --json` prints them. Administrators only
 * (lib/admin/console/gate.ts); a bad filter → 400 page.
 */
import type { RouteContext } from "../lib/deps.ts";
import { auditJsonLines } from "../lib/admin/audit_query.ts";
import { auditExportQuery, auditFilter } from "../lib/admin/console/audit_page.ts";
import { openConsole } from "../lib/admin/console/gate.ts";
import { badRequestPage } from "../lib/admin/console/layout.ts";
import { parseQuery } from "../lib/admin/console/params.ts";

/** The download's file name: `audit-20260701T120000Z.jsonl`. */
function fileName(now: number): string {
  return `audit-${new Date(now).toISOString().replace(/[-:]|\.\d+/g, "")}.jsonl`;
}

/** The export, or the way to sign in. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const admin = await openConsole(req, ctx);
  if (admin instanceof Response) return admin;
  const q = parseQuery(new URL(req.url).searchParams, auditExportQuery);
  if (!q.ok) return badRequestPage(admin.viewer, "audit", q.message);
  const filter = auditFilter(q.value, ctx.now());
  if (typeof filter === "string") return badRequestPage(admin.viewer, "audit", filter);
  return new Response(auditJsonLines(ctx, filter), {
    headers: {
      "content-type": "application/x-ndjson",
      "content-disposition": `attachment; filename="${fileName(ctx.now())}"`,
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
    },
  });
}
