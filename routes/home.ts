/**
 * `GET /`: what this service is and how to connect to it — HTML for browsers, JSON when the
 * client prefers `application/json` (RFC 9110 §12.5.1). Unauthenticated: it shows only public
 * facts (the gateway's own URLs and each backend's up/down status from a cached probe).
 */
import type { RouteContext } from "../lib/deps.ts";
import { backendStatuses } from "../lib/home/backend_status.ts";
import { homeDocument, renderHomePage } from "../lib/home/home_page.ts";
import { htmlResponse, jsonResponse } from "../lib/infra/http.ts";
import { VERSION } from "../lib/startup/version.ts";

/** How long the page waits for a backend's first probe before saying "unknown". */
const PROBE_WAIT_MS = 2000;

/** The q-value (RFC 9110 §12.4.2) `accept` gives `type`, by exact match, `type/*` or `*\/*`. */
function quality(accept: string, type: string): number {
  let best = -1;
  let q = 0;
  for (const part of accept.split(",")) {
    const [range = "", ...params] = part.trim().toLowerCase().split(";");
    const specificity = range === type
      ? 3
      : range === `${type.split("/")[0]}/*`
      ? 2
      : range === "*/*"
      ? 1
      : 0;
    if (specificity <= best || specificity === 0) continue;
    best = specificity;
    const qParam = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    q = qParam ? Number(qParam.slice(2)) || 0 : 1;
  }
  return q;
}

/** JSON only when the client ranks `application/json` above `text/html`. */
export function prefersJson(accept: string | null): boolean {
  if (!accept) return false;
  return quality(accept, "application/json") > quality(accept, "text/html");
}

/** The home page or its JSON. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const statuses = await backendStatuses(ctx, PROBE_WAIT_MS);
  const doc = homeDocument(ctx.settings.publicUrl, ctx.config, statuses, VERSION);
  const vary = { vary: "Accept" };
  return prefersJson(req.headers.get("accept"))
    ? jsonResponse(doc, 200, vary)
    : htmlResponse(renderHomePage(doc), 200, vary);
}
