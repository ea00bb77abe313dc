/**
 * Issuing, rotating and revoking tokens (OAuth 2.1 §4.1, §4.3; RFC 6749 §6, §10.4; RFC 7009).
 * Tokens are opaque random strings; KV holds only their SHA-256 hashes.
 */
import { randomToken, sha256Hex } from "../infra/crypto.ts";
import type { Deps } from "../deps.ts";
import { OAuthError } from "./oauth_error.ts";
import { audienceCovers } from "./resources.ts";
import {
  accessKey,
  grantKey,
  type GrantRecord,
  grantTokenKey,
  grantTokensPrefix,
  refreshKey,
  type TokenRecord,
  ttl,
  userGrantKey,
  type UserRef,
} from "../store.ts";
import { recheckGrant } from "../identity/users.ts";
import { auditEvent, auditUser } from "../admin/audit.ts";

/** Prefix of access tokens (helps secret scanners; carries no information). */
export const ACCESS_PREFIX = "gwat_";
/** Prefix of refresh tokens. */
export const REFRESH_PREFIX = "gwrt_";

/** A token pair freshly minted, with the KV writes that store it. */
export interface MintedTokens {
  accessToken: string;
  refreshToken: string;
  accessHash: string;
  refreshHash: string;
  expiresIn: number;
  scope: string;
  /** The grant's user (for the log line; never in the response). */
  user?: UserRef;
  /** The grant the tokens belong to (for the audit trail; never in the response). */
  grantId: string;
}

/** RFC 6749 §5.1 token response body. */
export function tokenResponseBody(t: MintedTokens): Record<string, unknown> {
  return {
    access_token: t.accessToken,
    token_type: "Bearer",
    expires_in: t.expiresIn,
    refresh_token: t.refreshToken,
    scope: t.scope,
  };
}

/**
 * Mints an access and a refresh token for a grant and adds their records and grant-index
 * entries to `op`, so that they land in the same atomic commit as the rest of the exchange.
 */
export async function mintTokens(
  deps: Deps,
  op: Deno.AtomicOperation,
  grant: Pick<GrantRecord, "grantId" | "clientId" | "scope" | "resource" | "user" | "tools">,
  narrowed: { resource?: string; scope?: string } = {},
): Promise<MintedTokens> {
  const accessResource = narrowed.resource ?? grant.resource;
  const accessScope = narrowed.scope ?? grant.scope;
  const now = deps.now();
  const accessToken = ACCESS_PREFIX + randomToken();
  const refreshToken = REFRESH_PREFIX + randomToken();
  const [accessHash, refreshHash] = await Promise.all([
    sha256Hex(accessToken),
    sha256Hex(refreshToken),
  ]);
  const accessExpiresAt = now + deps.config.accessTokenTtlSeconds * 1000;
  const refreshExpiresAt = now + deps.config.refreshTokenTtlSeconds * 1000;
  const base: Pick<TokenRecord, "grantId" | "clientId" | "user" | "tools"> = {
    grantId: grant.grantId,
    clientId: grant.clientId,
  };
  if (grant.user) base.user = grant.user;
  if (grant.tools) base.tools = grant.tools;
  const access: TokenRecord = {
    ...base,
    scope: accessScope,
    resource: accessResource,
    expiresAt: accessExpiresAt,
  };
  const refresh: TokenRecord = {
    ...base,
    scope: grant.scope,
    resource: grant.resource,
    expiresAt: refreshExpiresAt,
  };
  op.set(accessKey(accessHash), access, { expireIn: ttl(accessExpiresAt, now) })
    .set(grantTokenKey(grant.grantId, "access", accessHash), accessExpiresAt, {
      expireIn: ttl(accessExpiresAt, now),
    })
    .set(refreshKey(refreshHash), refresh, { expireIn: ttl(refreshExpiresAt, now) })
    .set(grantTokenKey(grant.grantId, "refresh", refreshHash), refreshExpiresAt, {
      expireIn: ttl(refreshExpiresAt, now),
    });
  return {
    accessToken,
    refreshToken,
    accessHash,
    refreshHash,
    expiresIn: deps.config.accessTokenTtlSeconds,
    scope: accessScope,
    grantId: grant.grantId,
    ...(grant.user ? { user: grant.user } : {}),
  };
}

/**
 * Stores a grant record in `op` (it lives as long as its newest refresh token), with the
 * `["user_grant", sub, grantId]` index entry of its user in the same commit.
 */
export function putGrant(deps: Deps, op: Deno.AtomicOperation, grant: GrantRecord): void {
  const expireIn = ttl(grant.expiresAt, deps.now());
  op.set(grantKey(grant.grantId), grant, { expireIn });
  if (grant.user) {
    op.set(userGrantKey(grant.user.sub, grant.grantId), grant.createdAt, { expireIn });
  }
}

/**
 * Revokes a grant and every token issued under it (RFC 6749 §4.1.2 code replay, §10.4 refresh
 * reuse; RFC 7009 §2.1 revoking a refresh token also revokes its access tokens).
 */
export async function revokeGrant(
  deps: Pick<Deps, "kv" | "tokenCache">,
  grantId: string,
): Promise<void> {
  const keys: Deno.KvKey[] = [grantKey(grantId)];
  const user = (await deps.kv.get<GrantRecord>(grantKey(grantId))).value?.user;
  if (user) keys.push(userGrantKey(user.sub, grantId));
  const accessHashes: string[] = [];
  for await (const entry of deps.kv.list({ prefix: grantTokensPrefix(grantId) })) {
    const [, , kind, hash] = entry.key as [string, string, "access" | "refresh", string];
    keys.push(entry.key, kind === "access" ? accessKey(hash) : refreshKey(hash));
    if (kind === "access") accessHashes.push(hash);
  }
  for (let i = 0; i < keys.length; i += 200) {
    const op = deps.kv.atomic();
    for (const key of keys.slice(i, i + 200)) op.delete(key);
    await op.commit();
  }
  deps.tokenCache.revoke({ grantIds: [grantId], tokenHashes: accessHashes });
}

/**
 * Exchanges a refresh token (RFC 6749 §6) with rotation (OAuth 2.1 §4.3.1): the presented token
 * is marked rotated in the same atomic commit that stores the new pair; presenting a rotated
 * token again revokes the whole grant (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2).
 */
export async function rotateRefreshToken(
  deps: Deps,
  clientId: string,
  refreshToken: string,
  narrowScope: string | undefined,
  resource: string | undefined,
): Promise<MintedTokens> {
  const now = deps.now();
  const hash = await sha256Hex(refreshToken);
  const entry = await deps.kv.get<TokenRecord>(refreshKey(hash));
  const record = entry.value;
  if (!record || record.expiresAt <= now) {
    throw new OAuthError("invalid_grant", "refresh token is invalid or expired");
  }
  if (record.clientId !== clientId) {
    throw new OAuthError("invalid_grant", "refresh token was issued to another client");
  }
  if (record.rotatedAt !== undefined) {
    await revokeGrant(deps, record.grantId);
    auditEvent(deps, "reuse_detected", {
      user: auditUser(record.user),
      clientId,
      grantId: record.grantId,
      method: "refresh_token",
      outcome: "invalid_grant",
    });
    throw new OAuthError(
      "invalid_grant",
      "refresh token was already used; the grant has been revoked",
    );
  }
  const grantEntry = await deps.kv.get<GrantRecord>(grantKey(record.grantId));
  const grant = grantEntry.value;
  if (!grant || grant.expiresAt <= now) {
    throw new OAuthError("invalid_grant", "the grant of this refresh token was revoked");
  }
  const refreshExpiresAt = now + deps.config.refreshTokenTtlSeconds * 1000;
  if (
    resource !== undefined && !audienceCovers(grant.resource, resource, deps.settings.publicUrl)
  ) {
    throw new OAuthError(
      "invalid_target",
      '"resource" is outside the original grant (RFC 8707 §2.2)',
    );
  }
  // Issue 8 §7: access is re-checked against the current rules at every refresh.
  const allowed = await recheckGrant(deps, grant);
  if (!allowed) {
    await revokeGrant(deps, grant.grantId);
    auditEvent(deps, "revocation", {
      user: auditUser(grant.user),
      clientId,
      grantId: grant.grantId,
      method: "access_rules",
      outcome: "ok",
    });
    throw new OAuthError(
      "invalid_grant",
      "the user of this grant no longer has access to this gateway; the grant has been revoked",
    );
  }
  const current: GrantRecord = { ...grant, scope: allowed.scope, expiresAt: refreshExpiresAt };
  if (allowed.tools) current.tools = allowed.tools;
  else delete current.tools;
  let scope = current.scope;
  if (narrowScope !== undefined) {
    const granted = new Set(current.scope.split(" "));
    const asked = narrowScope.split(" ").filter((s) => s && s !== "offline_access");
    if (asked.length === 0 || asked.some((s) => !granted.has(s))) {
      throw new OAuthError(
        "invalid_scope",
        "scope may only narrow the original grant (RFC 6749 §6)",
      );
    }
    scope = [...new Set(asked)].join(" ");
  }
  const op = deps.kv.atomic()
    .check(entry)
    .check(grantEntry)
    .set(refreshKey(hash), { ...record, rotatedAt: now }, { expireIn: ttl(record.expiresAt, now) });
  putGrant(deps, op, current);
  const minted = await mintTokens(deps, op, current, { resource, scope });
  if (!(await op.commit()).ok) {
    throw new OAuthError("invalid_grant", "refresh token was used concurrently; try again");
  }
  return minted;
}
