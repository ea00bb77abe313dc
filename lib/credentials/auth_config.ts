/**
 * `backends[].auth`: a backend that acts for each user with that user's own credential, instead
 * of the configured `headers` shared by everyone (issue 9).
 *
 * - `oauth`: the gateway is an OAuth client of the backend's authorization server (RFC 6749,
 *   PKCE RFC 7636, resource indicators RFC 8707, as MCP 2025-11-25 Authorization asks of an MCP
 *   client); each user connects once at `/connect/<backend>`.
 * - `user-secret`: each user types a secret (an API key) once; it is sent in `header`, written
 *   as `template` with `{secret}` replaced.
 *
 * Either needs `GATEWAY_ENCRYPTION_KEY` (see {@linkcode requireEncryptionKey}): every stored
 * token or secret is encrypted with it.
 */
import { z } from "zod";

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Headers a per-user secret may not be sent in (framing, content negotiation, MCP's own). */
const RESERVED_HEADERS =
  /^(host|content-length|content-type|accept|transfer-encoding|connection|te|upgrade|mcp-.*|last-event-id)$/i;

const oauthAuthSchema = z.strictObject({
  type: z.literal("oauth"),
  scopes: z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, "must be a scope token"))
    .optional()
    .describe(
      "Scopes asked of the backend's authorization server (default: the backend's 401 " +
        "`scope`, else its protected-resource metadata's `scopes_supported`).",
    ),
  clientId: z.string().min(1).max(500).optional()
    .describe(
      "A client registered by hand at the backend's authorization server (default: the " +
        "gateway's Client ID Metadata Document, else dynamic registration).",
    ),
  clientSecret: z.string().min(1).optional().describe("Its secret (use ${VAR})."),
  tokenEndpointAuthMethod: z.enum(["client_secret_basic", "client_secret_post", "none"])
    .optional()
    .describe("How the configured client authenticates (default: basic with a secret)."),
  authorizationServer: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" })
    .optional()
    .describe(
      "The authorization server's issuer, for a backend that does not advertise it " +
        "(RFC 9728 protected-resource metadata).",
    ),
});

const userSecretAuthSchema = z.strictObject({
  type: z.literal("user-secret"),
  label: z.string().min(1).max(100).describe('What the connect page asks for ("Search API key").'),
  header: z.string().regex(HEADER_NAME, "must be a header name")
    .refine((h) => !RESERVED_HEADERS.test(h), "this header cannot carry a secret")
    .default("Authorization")
    .describe("The header the secret is sent in."),
  template: z.string().min(1).max(500)
    .refine((t) => t.includes("{secret}"), 'must contain "{secret}"')
    .refine((t) => /^[\x20-\x7e]*$/.test(t), "must be printable ASCII")
    .default("Bearer {secret}")
    .describe("The header's value, `{secret}` standing for the user's secret."),
});

/** Zod schema of `backends[].auth`. */
export const backendAuthSchema = z.discriminatedUnion("type", [
  oauthAuthSchema,
  userSecretAuthSchema,
]).optional().describe(
  "Each user signs in to this backend with their own account (oauth) or secret (user-secret).",
);

/** `backends[].auth` of type `oauth`. */
export type OAuthBackendAuth = z.output<typeof oauthAuthSchema>;
/** `backends[].auth` of type `user-secret`. */
export type UserSecretBackendAuth = z.output<typeof userSecretAuthSchema>;
/** `backends[].auth`. */
export type BackendAuth = OAuthBackendAuth | UserSecretBackendAuth;

/** The header a backend's per-user credential travels in (lower-case). */
export function credentialHeaderName(auth: BackendAuth): string {
  return auth.type === "oauth" ? "authorization" : auth.header.toLowerCase();
}

/**
 * Cross-field rules of one backend's `auth`: a secret goes with a client id and a secret-based
 * method (RFC 7591 §2), and the configured `headers` do not also set the credential's header.
 */
export function checkBackendAuth(
  backend: { auth?: BackendAuth; headers: Record<string, string> },
  path: PropertyKey[],
  ctx: z.RefinementCtx,
): void {
  const auth = backend.auth;
  if (!auth) return;
  const issue = (at: PropertyKey[], message: string) =>
    ctx.addIssue({ code: "custom", path: [...path, ...at], message });
  const header = credentialHeaderName(auth);
  for (const name of Object.keys(backend.headers)) {
    if (name.toLowerCase() === header) {
      issue(["headers", name], `must not be set: auth sends each user's own ${header}`);
    }
  }
  if (auth.type !== "oauth") return;
  if (auth.clientSecret !== undefined && auth.clientId === undefined) {
    issue(["auth", "clientSecret"], "needs auth.clientId");
  }
  const method = auth.tokenEndpointAuthMethod;
  if (method !== undefined && auth.clientId === undefined) {
    issue(["auth", "tokenEndpointAuthMethod"], "needs auth.clientId");
  }
  if (method === "none" && auth.clientSecret !== undefined) {
    issue(["auth", "clientSecret"], 'must be absent when tokenEndpointAuthMethod is "none"');
  }
  if (method !== undefined && method !== "none" && auth.clientSecret === undefined) {
    issue(["auth", "clientSecret"], `is required with tokenEndpointAuthMethod "${method}"`);
  }
}

/** Whether any backend of a config uses per-user credentials. */
export function usesPerUserCredentials(config: { backends: readonly { auth?: unknown }[] }) {
  return config.backends.some((b) => b.auth !== undefined);
}

/**
 * Fails the start when a backend uses per-user credentials and `GATEWAY_ENCRYPTION_KEY` is not
 * set (its format is checked when the environment is read).
 * @throws {Error} naming the variable and the backends that need it.
 */
export function requireEncryptionKey(
  config: { backends: readonly { name: string; auth?: unknown }[] },
  settings: { encryptionKey?: CryptoKey },
): void {
  if (!usesPerUserCredentials(config) || settings.encryptionKey) return;
  const names = config.backends.filter((b) => b.auth !== undefined).map((b) => b.name);
  throw new Error(
    `GATEWAY_ENCRYPTION_KEY: required because backend(s) ${names.join(", ")} use per-user ` +
      "credentials (auth); set it to 32 random bytes in base64 (openssl rand -base64 32)",
  );
}
