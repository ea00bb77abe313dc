/**
 * `GET /.well-known/oauth-authorization-server` (RFC 8414 §3) and
 * `GET /.well-known/openid-configuration` (the MCP spec asks servers to serve both).
 */
import type { RouteContext } from "../lib/deps.ts";
import { jsonResponse } from "../lib/infra/http.ts";
import { authorizationServerMetadata } from "../lib/oauth/metadata.ts";

/** The same RFC 8414 document on both paths; cacheable for an hour. */
export function handler(_req: Request, ctx: RouteContext): Response {
  return jsonResponse(authorizationServerMetadata(ctx), 200, {}, "public, max-age=3600");
}
