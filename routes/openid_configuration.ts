/**
 * `GET /.well-known/openid-configuration`: 404. The gateway is an OAuth 2.1 authorization
 * server, not an OpenID Provider: it issues no ID tokens and has no `jwks_uri`, so it cannot
 * serve a true OpenID Provider Metadata document (OpenID Connect Discovery 1.0 §3 requires
 * `jwks_uri`, `subject_types_supported`, `id_token_signing_alg_values_supported`). MCP
 * (2025-11-25 Authorization §Authorization Server Metadata Discovery) asks for either RFC 8414
 * or OpenID discovery, and clients try `/.well-known/oauth-authorization-server` first and take
 * a 4xx on the OpenID path as "try the next one"; a copy of the RFC 8414 document here is
 * refused by strict clients (the MCP SDK parses it with the OpenID schema and fails).
 */
import type { RouteContext } from "../lib/deps.ts";
import { jsonResponse } from "../lib/infra/http.ts";

/** 404 with a pointer to the RFC 8414 document; CORS-readable like the other discovery URLs. */
export function handler(_req: Request, ctx: RouteContext): Response {
  return jsonResponse({
    error: "not_found",
    error_description: "this authorization server issues no ID tokens; its metadata is at " +
      `${ctx.settings.publicUrl}/.well-known/oauth-authorization-server (RFC 8414)`,
  }, 404);
}
