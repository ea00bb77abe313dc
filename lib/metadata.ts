/**
 * Discovery documents: authorization server metadata (RFC 8414 §2, also served as OpenID
 * discovery) and protected resource metadata (RFC 9728 §2).
 */
import type { Deps } from "./deps.ts";
import { supportedScopes } from "./resources.ts";

/** RFC 8414 §2 metadata; `issuer` is `PUBLIC_URL` exactly (RFC 8414 §3.3). */
export function authorizationServerMetadata(deps: Deps): Record<string, unknown> {
  const base = deps.settings.publicUrl;
  return {
    issuer: base,
    authorization_endpoint: `${base}/authorize`,
    token_endpoint: `${base}/token`,
    registration_endpoint: `${base}/register`,
    revocation_endpoint: `${base}/revoke`,
    response_types_supported: ["code"],
    response_modes_supported: ["query"],
    grant_types_supported: ["authorization_code", "refresh_token"],
    code_challenge_methods_supported: ["S256"],
    token_endpoint_auth_methods_supported: ["none", "client_secret_basic", "client_secret_post"],
    revocation_endpoint_auth_methods_supported: [
      "none",
      "client_secret_basic",
      "client_secret_post",
    ],
    scopes_supported: [...supportedScopes(deps.config), "offline_access"],
    client_id_metadata_document_supported: false,
    authorization_response_iss_parameter_supported: true,
    service_documentation: `${base}/`,
  };
}

/** RFC 9728 §2 metadata of one MCP endpoint. */
export function protectedResourceMetadata(
  deps: Deps,
  resource: string,
  scopes: string[],
): Record<string, unknown> {
  return {
    resource,
    authorization_servers: [deps.settings.publicUrl],
    scopes_supported: scopes,
    bearer_methods_supported: ["header"],
    resource_name: deps.config.serverName,
  };
}
