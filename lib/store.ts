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
 * | ["cimd", clientIdUrl]                 | validated metadata document, written only once a code was issued to its client (lib/oauth/client_id_metadata.ts) | Cache-Control, 60 s–24 h |
 * | ["rate", bucket, subject, window]     | count (Deno.KvU64); buckets: `register`, `authorize`, `login`, `token_ip`, `revoke_ip` (per IP, IPv6 /64), `token` (successes per client), `token_fail` ("clientId ip"), `health` (per principal), `cimd_fetch_host`, `cimd_fetch`, `mcp`, `guess:<secret>:subject_ip` / `:ip` / `:global` (lib/infra/guess_limit.ts) | the window |
 * | ["user", sub]                         | {@linkcode UserRecord}    | none (upserted at every sign-in) |
 * | ["user_grant", sub, grantId]          | createdAt (number): index from a user to their grants, written with the grant | as the grant |
 * | ["browser_session", sha256(id)]       | {@linkcode BrowserSessionRecord} (lib/identity/browser_session.ts) | 12 h |
 * | ["login_flow", sha256(state)]         | {@linkcode LoginFlowRecord}: a sign-in at an identity provider in progress (lib/identity/login_flow.ts) | 10 min, single use |
 * | ["backend_connection", sub, backend]   | {@linkcode BackendConnectionRecord}: a user's own credential at a backend, its tokens or secret AES-GCM sealed under `GATEWAY_ENCRYPTION_KEY` (lib/credentials/connections.ts) | none (deleted on disconnect, `invalid_grant`, or the backend's 401) |
 * | ["backend_client", backend, issuer]   | {@linkcode BackendClientRecord}: the gateway's dynamic registration (RFC 7591) at a backend's authorization server, its secret sealed; or that the server refused the gateway's metadata document (lib/credentials/backend_client_identity.ts) | none |
 * | ["connect_flow", sha256(state)]       | {@linkcode ConnectFlowRecord}: a connect at a backend's authorization server in progress, its PKCE verifier sealed (lib/credentials/connect_flow.ts) | 10 min, single use |
 * | ["backend_refresh_lease", sub, backend] | {@linkcode RefreshLeaseRecord}: the one isolate refreshing a user's backend token (lib/credentials/refresh.ts) | 30 s |
 * | ["list_cache", backend, kind]        | {@linkcode ListCacheMeta}: a backend's cached tool or prompt list as a client that declared neither elicitation nor sampling sees it (lib/mcp/aggregate/list_cache.ts) | `catalog.cacheTtlSeconds` |
 * | ["list_cache", backend, kind, profile] | the same list as a client of relay profile `e`, `s` or `es` sees it (declared elicitation, sampling, both; lib/mcp/aggregate/relay_profile.ts) | `catalog.cacheTtlSeconds` |
 * | ["list_cache_part", backend, kind, generation, i] | one ≤ 30 000-character slice of that list's JSON | as its meta |
 * | ["audit", time, id]                   | {@linkcode StoredAuditRecord}: the audit trail, time-ordered (ms since epoch, then a per-isolate id); written in batches (lib/admin/audit.ts) | `audit.retentionDays` |
 * | ["grant_used", grantId]               | lastUsedAt (number): last bearer use of a grant, written at most once a minute per isolate (never in the grant record: rotation checks its versionstamp) | refresh-token lifetime |
 * | ["secret", "telemetry_user_salt"]     | 16 random bytes: salt of the hashed user ids in telemetry (lib/admin/telemetry.ts) | none |
 * | ["secret", "request_state_key"]       | 32 random bytes: AES-GCM key of relayed `requestState`s (lib/mcp/aggregate/request_state.ts; the one secret kept in the clear, because it must be used, not compared) | none |
 *
 * Every expiring record stores `expiresAt` (ms since epoch) and is checked on read: `expireIn`
 * is only a clean-up hint (Deno KV may keep a key past it).
 */

/** A person signed in through an identity provider or the built-in owner password. */
export interface UserRef {
  /** "{providerId}:{subject}" (e.g. "corp:248289761001", "github:583231"); "owner" for the owner password. */
  sub: string;
  /** Verified email only (OIDC `email_verified: true`, GitHub primary and verified). */
  email?: string;
  /** GitHub login / OIDC `preferred_username`. */
  login?: string;
  name?: string;
}

/**
 * A user as last seen at sign-in. `groups` and `githubOrgs` are the facts the access rules
 * match besides the email and login: kept so that access can be re-checked at every refresh.
 */
export interface UserRecord extends UserRef {
  admin: boolean;
  firstSeenAt: number;
  lastSeenAt: number;
  /** OIDC providers with `groupsClaim`: the groups (of those the rules name) at the last sign-in. */
  groups?: string[];
  /** GitHub providers: the organizations of `githubOrgs` rules the user was an active member of. */
  githubOrgs?: string[];
}

/** A signed-in browser (the `__Host-gw_session` cookie holds the clear id). */
export interface BrowserSessionRecord {
  user: UserRef;
  /** The identity provider id, or "owner". */
  providerId: string;
  groups?: string[];
  githubOrgs?: string[];
  /** Owner sessions: SHA-256 of the session id and the owner password (a new password ends them). */
  ownerCheck?: string;
  createdAt: number;
  expiresAt: number;
}

/** A sign-in at an identity provider in progress, keyed by the hash of its `state`. */
export interface LoginFlowRecord {
  providerId: string;
  /** The pending authorization request (`["authz", requestId]`) the sign-in continues. */
  requestId?: string;
  /** Same-origin path to return to when there is no pending authorization request. */
  returnTo?: string;
  /** S256 of the PKCE verifier, whose clear value is the flow's browser cookie (RFC 7636). */
  codeChallenge: string;
  /** SHA-256 of the OIDC `nonce` (OpenID Connect Core §3.1.2.1). */
  nonceHash?: string;
  expiresAt: number;
}

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
  /** Who approved (absent on codes issued before team sign-in). */
  user?: UserRef;
  /** Tool globs of the user's access rules; absent = no narrowing. */
  tools?: string[];
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
  /** Who approved; absent on grants made before team sign-in (treat as the owner). */
  user?: UserRef;
  /** Per-user tool globs from the access rules (issue 10); absent = no narrowing. */
  tools?: string[];
}

/** An access or refresh token, keyed by its hash. */
export interface TokenRecord {
  grantId: string;
  clientId: string;
  scope: string;
  /** The audience (RFC 8707): the MCP resource URL the token is for. */
  resource: string;
  expiresAt: number;
  /** The user of the grant (absent on tokens issued before team sign-in). */
  user?: UserRef;
  /** The grant's tool globs; absent = no narrowing. */
  tools?: string[];
  /** Refresh tokens only: set once the token was rotated; presenting it again revokes the grant. */
  rotatedAt?: number;
}

/** What happened, in the audit trail (README: Operating the gateway). */
export type AuditEvent =
  | "mcp"
  | "sign_in"
  | "consent"
  | "token"
  | "refresh"
  | "reuse_detected"
  | "revocation"
  | "rate_limited"
  | "backend_connect"
  | "backend_disconnect";

/**
 * One audit record, as stored (without `expiresAt`) and exported (JSON Lines). Every field is
 * present; `null` when it does not apply. Times are ISO 8601 (UTC).
 */
export interface AuditRecord {
  time: string;
  event: AuditEvent;
  /** The user's `sub`; `"owner"` for grants without a user; the principal id for API keys. */
  user: string | null;
  clientId: string | null;
  grantId: string | null;
  backend: string | null;
  /** The JSON-RPC method (event `mcp`), or what the event acted through (e.g. the grant type). */
  method: string | null;
  /** The tool, prompt, resource URI or completion reference, as the client named it. */
  tool: string | null;
  /** `ok`, `denied`, or an error code (JSON-RPC code, `tool_error`, `timeout`, OAuth error…). */
  outcome: string;
  latencyMs: number | null;
  /** The gateway's id of the HTTP request (the `request_id` of its log line). */
  requestId: string | null;
  /** Only with `"audit": { "arguments": "redacted" }`: the call's arguments, redacted. */
  arguments?: Record<string, unknown>;
  /** Revocations by an administrator: who (`sub` of the console's user, or `"cli"`). */
  actor?: string;
}

/** An audit record in KV: with its expiry (checked on read; `expireIn` is only clean-up). */
export interface StoredAuditRecord extends AuditRecord {
  expiresAt: number;
}

/** A legacy MCP session id bound to the principal that opened it. */
export interface SessionRecord {
  principalId: string;
  expiresAt: number;
}

/** An AES-GCM sealed value (lib/credentials/encryption.ts). */
export interface SealedValue {
  v: 1;
  iv: Uint8Array;
  ct: Uint8Array;
}

/** Where an OAuth connection's tokens come from, for refresh and revocation (nothing secret). */
export interface BackendOAuthInfo {
  issuer: string;
  tokenEndpoint: string;
  revocationEndpoint?: string;
  /** The RFC 8707 `resource` the tokens were issued for. */
  resource: string;
  /** How the gateway identified itself: configured client, metadata document, or registration. */
  clientMethod: "configured" | "cimd" | "dcr";
  clientId: string;
  scope?: string;
}

/**
 * A user's connection to a per-user backend. `sealed` holds `{ accessToken, refreshToken? }`
 * (oauth) or `{ secret }` (user-secret), bound to this row's key.
 */
export interface BackendConnectionRecord {
  type: "oauth" | "user-secret";
  sealed: SealedValue;
  connectedAt: number;
  /** Last refresh of the access token. */
  refreshedAt?: number;
  /** When the access token expires (from `expires_in`); absent = unknown (used until a 401). */
  accessExpiresAt?: number;
  /** Whether a refresh token is sealed too. */
  refreshable?: boolean;
  oauth?: BackendOAuthInfo;
}

/** The gateway as a client of one backend's authorization server (issuer). */
export interface BackendClientRecord {
  /** A dynamic registration (RFC 7591); its secret, if any, sealed as `{ clientSecret }`. */
  registration?: {
    clientId: string;
    sealedSecret?: SealedValue;
    authMethod: "none" | "client_secret_basic" | "client_secret_post";
    redirectUri: string;
    registeredAt: number;
  };
  /** Set when the server refused the gateway's Client ID Metadata Document. */
  metadataDocumentRefusedAt?: number;
}

/** A connect at a backend's authorization server in progress, keyed by the hash of `state`. */
export interface ConnectFlowRecord {
  /** The signed-in user who started it: only they may finish it. */
  sub: string;
  backend: string;
  issuer: string;
  clientMethod: BackendOAuthInfo["clientMethod"];
  clientId: string;
  resource: string;
  scope?: string;
  tokenEndpoint: string;
  revocationEndpoint?: string;
  /** The server sends `iss` in its answers (RFC 9207 §3): a missing one is refused. */
  issRequired: boolean;
  /** `{ verifier }`: the PKCE code verifier (RFC 7636), sealed. */
  sealedVerifier: SealedValue;
  expiresAt: number;
}

/** The lease of the isolate refreshing one user's token at one backend. */
export interface RefreshLeaseRecord {
  holder: string;
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

/** What a backend's cached list kind is. */
export type ListCacheKind = "tools" | "prompts";

/** Head of a cached backend list; the list's JSON is in `parts` slices of one generation. */
export interface ListCacheMeta {
  /** SHA-256 prefix of the backend URL the list came from (a changed URL misses). */
  source: string;
  generation: string;
  parts: number;
  expiresAt: number;
}

/**
 * Key of a backend's cached list as clients of relay `profile` see it (`""`: declared neither
 * elicitation nor sampling; lib/mcp/aggregate/relay_profile.ts).
 */
export const listCacheKey = (backend: string, kind: ListCacheKind, profile = ""): Deno.KvKey =>
  profile ? ["list_cache", backend, kind, profile] : ["list_cache", backend, kind];
/** Key of one slice of a cached list. */
export const listCachePartKey = (
  backend: string,
  kind: ListCacheKind,
  generation: string,
  i: number,
): Deno.KvKey => ["list_cache_part", backend, kind, generation, i];

/** Key of a user record. */
export const userKey = (sub: string): Deno.KvKey => ["user", sub];
/** Index entry from a user to one of their grants (written in the grant's atomic commit). */
export const userGrantKey = (sub: string, grantId: string): Deno.KvKey => [
  "user_grant",
  sub,
  grantId,
];
/** Key of a browser sign-in session, by hash of its id. */
export const browserSessionKey = (hash: string): Deno.KvKey => ["browser_session", hash];
/** Key of a sign-in at an identity provider in progress, by hash of its `state`. */
export const loginFlowKey = (stateHash: string): Deno.KvKey => ["login_flow", stateHash];

/** Key of a user's connection to a per-user backend. */
export const backendConnectionKey = (sub: string, backend: string): Deno.KvKey => [
  "backend_connection",
  sub,
  backend,
];
/** Prefix of every connection of a user. */
export const backendConnectionsPrefix = (sub: string): Deno.KvKey => ["backend_connection", sub];
/** Key of the gateway's client record at a backend's authorization server. */
export const backendClientKey = (backend: string, issuer: string): Deno.KvKey => [
  "backend_client",
  backend,
  issuer,
];
/** Key of a connect in progress, by hash of its `state`. */
export const connectFlowKey = (stateHash: string): Deno.KvKey => ["connect_flow", stateHash];
/** Key of the refresh lease of a user's connection. */
export const refreshLeaseKey = (sub: string, backend: string): Deno.KvKey => [
  "backend_refresh_lease",
  sub,
  backend,
];
/** Key of an audit record: time-ordered (ms since epoch), then unique per isolate. */
export const auditKey = (time: number, id: string): Deno.KvKey => ["audit", time, id];
/** Key of a grant's last bearer use (ms since epoch). */
export const grantUsedKey = (grantId: string): Deno.KvKey => ["grant_used", grantId];

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
