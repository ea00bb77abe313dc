/**
 * `GET /.well-known/oauth-protected-resource[/mcp[/<backend>]]` (RFC 9728 §3): each document's
 * `resource` is the URL it was fetched for (§3.3): the root form describes `<PUBLIC_URL>` (the
 * gateway's MCP endpoints as a whole), `/mcp` the aggregated endpoint, `/mcp/<backend>` that
 * backend's endpoint.
 */
import type { RouteContext } from "../lib/deps.ts";
import { jsonResponse } from "../lib/infra/http.ts";
import { protectedResourceMetadata } from "../lib/oauth/metadata.ts";
import {
  aggregateResource,
  backendResource,
  backendScope,
  supportedScopes,
} from "../lib/oauth/resources.ts";

/** `resource` is the URL the document describes (RFC 9728 §3.3). */
export function handler(req: Request, ctx: RouteContext): Response {
  const backend = ctx.params.backend;
  const base = ctx.settings.publicUrl;
  if (backend === undefined) {
    const root = !new URL(req.url).pathname.endsWith("/mcp");
    return jsonResponse(
      protectedResourceMetadata(
        ctx,
        root ? base : aggregateResource(base),
        supportedScopes(ctx.config),
      ),
      200,
      {},
      "public, max-age=3600",
    );
  }
  if (!ctx.config.backends.some((b) => b.name === backend)) {
    return jsonResponse({ error: "not_found", error_description: "unknown backend" }, 404);
  }
  return jsonResponse(
    protectedResourceMetadata(ctx, backendResource(base, backend), ["mcp", backendScope(backend)]),
    200,
    {},
    "public, max-age=3600",
  );
}
