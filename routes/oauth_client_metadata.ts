/**
 * `GET /oauth/client.json`: the gateway's own Client ID Metadata Document, its identity at the
 * authorization servers of `oauth` backends that accept one (MCP 2025-11-25 Authorization
 * §Client ID Metadata Documents; backend_client_identity.ts). 404 when no backend uses oauth.
 */
import type { RouteContext } from "../lib/deps.ts";
import { clientMetadataDocument } from "../lib/credentials/backend_client_identity.ts";
import { jsonResponse } from "../lib/infra/http.ts";

/** Serves the document (cacheable for an hour). */
export function handler(_req: Request, ctx: RouteContext): Response {
  const document = clientMetadataDocument(ctx);
  if (!document) return jsonResponse({ error: "not_found" }, 404);
  return jsonResponse(document, 200, {}, "public, max-age=3600");
}
