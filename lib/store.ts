/**
 * Deno KV key layout and record types. Only SHA-256 hashes of secrets appear in keys or values.
 *
 * | key                                   | value                 | expiry                  |
 * |---------------------------------------|-----------------------|-------------------------|
 * | ["client", clientId]                  | {@linkcode ClientRecord}  | idle period (DCR clients) |
 * | ["authz", requestId]                  | {@linkcode AuthzRequestRecord} | 10 min (consent) |
 * | ["code", sha256(code)]                | {@linkcode CodeRecord}    | 60 s (kept 10 min once used, to detect replay) |
 * | ["grant", grantId]                    | {@linkcode GrantRecord}   | refresh-token lifetime |
 * | ["access", sha256(token)]             | {@linkcode TokenRecord}   | access-token lifetime  |
 * | ["refresh", sha256(token)]            | {@linkcode TokenRecord}   | refresh-token lifetime |
 * | ["grant_token", grantId, kind, hash]  | expiresAt (number)    | as the token            |
 * | ["session", backend, sha256(id)]      | {@linkcode SessionRecord} | 24 h                |
 * | ["mcp_session", sha256(id)]           | aggregate /mcp legacy session, with its log level (lib/mcp/aggregate/session.ts) | 24 h |
 * | ["mcp_sub", sha256(session id), uri]  | { expiresAt }: a legacy session's resource subscription to gateway URI `uri` (lib/mcp/aggregate/subscriptions.ts) | as the session |
 * | ["cimd", clientIdUrl]                 | validated metadata document (lib/oauth/client_id_metadata.ts) | Cache-Control, 60 s–24 h |
 * | ["rate", bucket, subject, window]     | count (Deno.KvU64)    | the window              |
 * | ["secret", "request_state_key"]       | 32 random bytes: AES-GCM key of relayed `requestState`s (lib/mcp/aggregate/request_state.ts; the one secret kept in the clear, because it must be used, not compared) | none |
 *
 * Every expiring record stores `expiresAt` (ms since epoch) and is checked on read: `expireIn`
 * is only a clean-up hint (Deno KV may keep a key past it).
 */

/** A registered OAuth client (RFC 7591 §2). */
export interface ClientRecord {
  clientId: string;
  /** SHA-256 hex of the client secret; absent for public clients. */
  clientSecretHash?: string;
  clientName?: string;
  clientUri?: string;
  logoUri?: string;
  redirectUris: string[];
  tokenEndpointAuthMethod: "none" | "client_secret_basic" | "client_secret_post";
  grantTypes: string[];
  responseTypes: string[];
  applicationType: "web" | "native";
  scope?: string;
  softwareId?: string;
  softwareVersion?: string;
  /** Seconds since epoch (RFC 7591 §3.2.1 `client_id_issued_at`). */
  clientIdIssuedAt: number;
  /** Clients identified by a metadata document only: the document URL's host (consent shows it). */
  metadataDocumentHost?: string;
  /** Registered (KV) clients: last use in ms since epoch, refreshed at most once a day. */
  lastUsedAt?: number;
  /** Pre-registered (config) clients only: the scopes they may receive; absent = any. */
  allowedScopes?: string[];
}

/** A validated authorization request waiting for the owner's consent. */
export interface AuthzRequestRecord {
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  scope: string;
  resource: string;
  state?: string;
  /** SHA-256 hex of the CSRF token whose clear value is in the cookie and the form. */
  csrfHash: string;
  expiresAt: number;
}

/** An authorization code (RFC 6749 §4.1.2), keyed by its hash. */
export interface CodeRecord {
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  scope: string;
  resource: string;
  expiresAt: number;
  /** Set when the code was redeemed: a second redemption revokes this grant (RFC 6749 §4.1.2). */
  redeemedGrantId?: string;
}

/** A grant: what one consent gave one client; its tokens hang from it. */
export interface GrantRecord {
  grantId: string;
  clientId: string;
  scope: string;
  resource: string;
  createdAt: number;
  expiresAt: number;
}

/** An access or refresh token, keyed by its hash. */
export interface TokenRecord {
  grantId: string;
  clientId: string;
  scope: string;
  /** The audience (RFC 8707): the MCP resource URL the token is for. */
  resource: string;
  expiresAt: number;
  /** Refresh tokens only: set once the token was rotated; presenting it again revokes the grant. */
  rotatedAt?: number;
}

/** A legacy MCP session id bound to the principal that opened it. */
export interface SessionRecord {
  principalId: string;
  expiresAt: number;
}

/** Key of a registered client. */
export const clientKey = (clientId: string): Deno.KvKey => ["client", clientId];
/** Key of a pending authorization request. */
export const authzKey = (requestId: string): Deno.KvKey => ["authz", requestId];
/** Key of an authorization code, by hash. */
export const codeKey = (codeHash: string): Deno.KvKey => ["code", codeHash];
/** Key of a grant. */
export const grantKey = (grantId: string): Deno.KvKey => ["grant", grantId];
/** Key of an access token, by hash. */
export const accessKey = (hash: string): Deno.KvKey => ["access", hash];
/** Key of a refresh token, by hash. */
export const refreshKey = (hash: string): Deno.KvKey => ["refresh", hash];
/** Index entry from a grant to one of its tokens. */
export const grantTokenKey = (
  grantId: string,
  kind: "access" | "refresh",
  hash: string,
): Deno.KvKey => ["grant_token", grantId, kind, hash];
/** Prefix of all index entries of a grant. */
export const grantTokensPrefix = (grantId: string): Deno.KvKey => ["grant_token", grantId];
/** Key of a legacy MCP session binding, by hash of the session id. */
export const sessionKey = (backend: string, sessionHash: string): Deno.KvKey => [
  "session",
  backend,
  sessionHash,
];

/** Reads a record and returns it only if it has not expired (`expiresAt` checked on read). */
export async function getLive<T extends { expiresAt: number }>(
  kv: Deno.Kv,
  key: Deno.KvKey,
  now: number,
): Promise<Deno.KvEntry<T> | null> {
  const entry = await kv.get<T>(key);
  if (entry.value === null || entry.value.expiresAt <= now) return null;
  return entry as Deno.KvEntry<T>;
}

/** Milliseconds until `expiresAt`, at least 1 (for `expireIn`). */
export function ttl(expiresAt: number, now: number): number {
  return Math.max(1, expiresAt - now);
}
