/**
 * `/mcp/{backend}` (GET, POST, DELETE): the authenticated pass-through to one backend over
 * Streamable HTTP, both protocol eras (MCP 2025-11-25 and 2026-07-28 Transports).
 * Order: Origin (403) → unknown backend (404) → bearer (400/401/403) → proxy; a GET (a
 * long-lived SSE stream) counts against the open-stream caps (429 beyond).
 */
import { authenticate, checkOrigin } from "../lib/oauth/bearer.ts";
import type { RouteContext } from "../lib/deps.ts";
import { jsonRpcErrorResponse } from "../lib/infra/http.ts";
import { findBackend, INVALID_REQUEST, proxyToBackend } from "../lib/mcp/proxy.ts";
import { backendResource } from "../lib/oauth/resources.ts";
import { openCappedStream } from "../lib/mcp/stream_limits.ts";
import { startMcpOperation } from "../lib/admin/mcp_operation.ts";

/** Authenticates the caller for the backend's resource, then forwards the request to it. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const forbidden = checkOrigin(req, ctx);
  if (forbidden) return forbidden;
  const name = ctx.params.backend ?? "";
  ctx.logFields.backend = name.slice(0, 40);
  if (!findBackend(ctx.config, name)) {
    return jsonRpcErrorResponse(404, INVALID_REQUEST, `unknown backend "${name.slice(0, 40)}"`);
  }
  const principal = await authenticate(
    req,
    ctx,
    backendResource(ctx.settings.publicUrl, name),
    name,
  );
  if (principal instanceof Response) return principal;
  ctx.logFields.principal = principal.id;
  if (principal.clientId) ctx.logFields.client = principal.clientId;
  if (req.method !== "GET") {
    const operation = startMcpOperation(ctx, principal, name);
    return operation.finish(await proxyToBackend(req, ctx, name, principal, operation));
  }
  // A GET opens a long-lived stream: capped per session and per principal.
  const session = req.headers.get("mcp-session-id") ?? undefined;
  return await openCappedStream(
    ctx,
    principal.id,
    session === undefined ? undefined : `${name} ${session}`,
    () => proxyToBackend(req, ctx, name, principal),
  );
}
