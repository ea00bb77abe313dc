/**
 * Fixtures of the operator's views: KV written exactly as the contracts between branches fix it
 * (BRIEF "Contracts"): `["user", sub]` → `UserRecord`, `["user_grant", sub, grantId]` →
 * createdAt with the grant's `expireIn`, in the same atomic commit as the grant; grants made
 * before team sign-in have no `user`. Tokens are minted with lib/oauth/tokens.ts so that a
 * revocation can be seen at the bearer check.
 */
import type { Deps } from "../lib/deps.ts";
import { mintTokens } from "../lib/oauth/tokens.ts";
import type { GrantRecord, UserRecord } from "../lib/store.ts";

/** Writes `["user", sub]` as team sign-in does at every sign-in. */
export async function putUser(
  deps: Deps,
  user: Partial<UserRecord> & { sub: string },
): Promise<UserRecord> {
  const now = deps.now();
  const record: UserRecord = { admin: false, firstSeenAt: now, lastSeenAt: now, ...user };
  await deps.kv.set(["user", user.sub], record);
  return record;
}

/** A grant written with its keys, and the clear access token of it. */
export interface StoredGrant {
  grant: GrantRecord;
  accessToken: string;
}

/**
 * Writes a grant (of `sub`, or without user when `sub` is undefined) with
 * `["user_grant", sub, grantId]` in the same atomic commit, and one token pair.
 */
export async function putGrantOf(
  deps: Deps,
  sub: string | undefined,
  options: { clientId?: string; scope?: string; createdAt?: number; ttlMs?: number } = {},
): Promise<StoredGrant> {
  const now = deps.now();
  const ttlMs = options.ttlMs ?? 86_400_000;
  const grant: GrantRecord = {
    grantId: crypto.randomUUID(),
    clientId: options.clientId ?? "client-a",
    scope: options.scope ?? "mcp",
    resource: `${deps.settings.publicUrl}/mcp`,
    createdAt: options.createdAt ?? now,
    expiresAt: now + ttlMs,
  };
  if (sub !== undefined) grant.user = { sub };
  const op = deps.kv.atomic().set(["grant", grant.grantId], grant, { expireIn: ttlMs });
  if (sub !== undefined) {
    op.set(["user_grant", sub, grant.grantId], grant.createdAt, { expireIn: ttlMs });
  }
  const minted = await mintTokens(deps, op, grant);
  if (!(await op.commit()).ok) throw new Error("putGrantOf: commit failed");
  return { grant, accessToken: minted.accessToken };
}
