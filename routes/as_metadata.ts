/**
 * `GET /.well-known/oauth-authorization-server` (RFC 8414 §3). The OpenID discovery path answers
 * 404 (routes/openid_configuration.ts): the gateway is no OpenID Provider.
 */
import type { RouteContext } from "../lib/deps.ts";
import { jsonResponse } from "../lib/infra/http.ts";
import { authorizationServerMetadata } from "../lib/oauth/metadata.ts";

/** The RFC 8414 document; cacheable for an hour. */
export function handler(_req: Request, ctx: RouteContext): Response {
  return jsonResponse(authorizationServerMetadata(ctx), 200, {}, "public, max-age=3600");
}
