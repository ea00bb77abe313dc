/**
 * `/mcp`: the aggregated MCP endpoint over every backend the caller's scope covers, for both
 * protocol eras (MCP 2025-11-25 and 2026-07-28 Transports §Streamable HTTP). Origin check
 * (Transports §Security Warning), then Bearer authentication with an audience covering `/mcp`
 * (MCP Authorization §Token Audience Binding); the rest lives in lib/mcp/aggregate/.
 */
import { authenticate, checkOrigin } from "../lib/oauth/bearer.ts";
import type { RouteContext } from "../lib/deps.ts";
import { serveAggregate } from "../lib/mcp/aggregate/handler.ts";
import { aggregateResource } from "../lib/oauth/resources.ts";
import { startMcpOperation } from "../lib/admin/mcp_operation.ts";
import { primeSse, refusedResume } from "../lib/mcp/aggregate/sse_priming.ts";

/** Serves GET/POST/DELETE `/mcp`. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const refused = checkOrigin(req, ctx);
  if (refused) return refused;
  const principal = await authenticate(req, ctx, aggregateResource(ctx.settings.publicUrl));
  if (principal instanceof Response) return principal;
  ctx.logFields.principal = principal.id;
  const noResume = refusedResume(req);
  if (noResume) return noResume;
  const operation = startMcpOperation(ctx, principal);
  // 2025-11-25 SSE streams start with a priming event (sse_priming.ts).
  return operation.finish(
    primeSse(req, await serveAggregate(req, ctx, principal, ctx.logFields, operation)),
  );
}
