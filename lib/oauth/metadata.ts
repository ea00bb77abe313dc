/**
 * Discovery documents: authorization server metadata (RFC 8414 §2; not OpenID discovery, see
 * routes/openid_configuration.ts) and protected resource metadata (RFC 9728 §2).
 */
import type { Deps } from "../deps.ts";
import { supportedScopes } from "./resources.ts";

/** RFC 8414 §2 metadata; `issuer` is `PUBLIC_URL` exactly (RFC 8414 §3.3). */
export function authorizationServerMetadata(deps: Deps): Record<string, unknown> {
  const base = deps.settings.publicUrl;
  const metadata: Record<string, unknown> = {
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
    // MCP 2025-11-25 Authorization §Client ID Metadata Documents.
    client_id_metadata_document_supported: deps.config.clientIdMetadataDocuments.enabled,
    authorization_response_iss_parameter_supported: true,
    service_documentation: `${base}/`,
  };
  // RFC 8414 §2: `registration_endpoint` is OPTIONAL; not advertised while registration is off.
  if (deps.config.registration.mode === "off") delete metadata.registration_endpoint;
  return metadata;
}

/**
 * RFC 9728 §2 metadata of one MCP endpoint. `authorization_servers` lists this gateway first,
 * then every configured external issuer whose JWT access tokens are accepted.
 */
export function protectedResourceMetadata(
  deps: Deps,
  resource: string,
  scopes: string[],
): Record<string, unknown> {
  return {
    resource,
    authorization_servers: [
      deps.settings.publicUrl,
      ...deps.config.externalIssuers.map((i) => i.issuer),
    ],
    scopes_supported: scopes,
    bearer_methods_supported: ["header"],
    resource_name: deps.config.serverName,
  };
}
