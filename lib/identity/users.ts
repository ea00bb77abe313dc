/**
 * User records (`["user", sub]`): upserted at every sign-in, read again at every refresh to
 * re-check the user's access against the current rules (issue 8 §7).
 */
import type { Deps } from "../deps.ts";
import { type GrantRecord, userKey, type UserRecord } from "../store.ts";
import {
  type Access,
  evaluateAccess,
  type GrantScope,
  grantScopeFor,
  type Identity,
  isOwner,
  providerIdOf,
} from "./access_rules.ts";

/**
 * Records a sign-in: creates or updates `["user", sub]` with the identity's display fields,
 * the facts the rules match on, `admin` from the rules and the times seen.
 */
export async function upsertUser(
  deps: Pick<Deps, "kv" | "now">,
  identity: Identity,
  access: Access,
): Promise<UserRecord> {
  const key = userKey(identity.user.sub);
  const now = deps.now();
  const before = await deps.kv.get<UserRecord>(key);
  const record: UserRecord = {
    ...identity.user,
    admin: access.admin,
    firstSeenAt: before.value?.firstSeenAt ?? now,
    lastSeenAt: now,
  };
  if (identity.groups) record.groups = identity.groups;
  if (identity.githubOrgs) record.githubOrgs = identity.githubOrgs;
  await deps.kv.set(key, record);
  return record;
}

/** The identity a user record stands for (for re-checking the rules). */
export function identityOfUser(record: UserRecord): Identity {
  const identity: Identity = {
    providerId: providerIdOf(record.sub),
    user: { sub: record.sub, email: record.email, login: record.login, name: record.name },
  };
  if (record.groups) identity.groups = record.groups;
  if (record.githubOrgs) identity.githubOrgs = record.githubOrgs;
  return identity;
}

/**
 * Re-checks a grant against the current access rules (at every refresh): the grant's scope
 * narrowed to what its user may use now, with the user's current tool globs. Grants of the
 * owner, and grants made before team sign-in (no user), keep their scope. `null` when the user
 * lost access: no rule matches any more, the provider was removed, or the user record is gone.
 */
export async function recheckGrant(
  deps: Pick<Deps, "kv" | "config">,
  grant: Pick<GrantRecord, "scope" | "user" | "tools">,
): Promise<GrantScope | null> {
  if (!grant.user || isOwner(grant.user)) {
    return grant.tools ? { scope: grant.scope, tools: grant.tools } : { scope: grant.scope };
  }
  const record = (await deps.kv.get<UserRecord>(userKey(grant.user.sub))).value;
  if (!record) return null;
  const access = evaluateAccess(deps.config, identityOfUser(record));
  return access ? grantScopeFor(grant.scope, access) : null;
}
