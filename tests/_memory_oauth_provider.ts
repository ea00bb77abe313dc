/**
 * An in-memory OAuth client provider for the MCP SDK clients (v1 and v2 share the interface):
 * "redirecting" records the authorization URL for the test to open, the rest is kept in fields
 * (MCP 2025-11-25 Authorization: the client side of discovery, registration and PKCE).
 */
// deno-lint-ignore-file no-explicit-any
import type { OAuthClientProvider, OAuthDiscoveryState } from "@modelcontextprotocol/client";

/** A public client with one redirect URI, its `client_name` and its fixed `state`. */
export class MemoryOAuthProvider implements OAuthClientProvider {
  info?: any;
  savedTokens?: any;
  verifier = "";
  authorizationUrl?: URL;
  // Kept so the v2 SDK binds the callback leg to the authorization server (SEP-2352).
  discovery?: OAuthDiscoveryState;

  constructor(
    private readonly callback: string,
    private readonly name: string,
    private readonly stateValue: string,
  ) {}

  get redirectUrl() {
    return this.callback;
  }
  get clientMetadata() {
    return {
      client_name: this.name,
      redirect_uris: [this.callback],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  state() {
    return this.stateValue;
  }
  clientInformation() {
    return this.info;
  }
  saveClientInformation(info: unknown) {
    this.info = info;
  }
  tokens() {
    return this.savedTokens;
  }
  saveTokens(tokens: unknown) {
    this.savedTokens = tokens;
  }
  redirectToAuthorization(url: URL) {
    this.authorizationUrl = url;
  }
  saveCodeVerifier(v: string) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
  saveDiscoveryState(state: OAuthDiscoveryState) {
    this.discovery = state;
  }
  discoveryState() {
    return this.discovery;
  }
}
