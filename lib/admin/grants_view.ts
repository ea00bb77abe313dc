/**
 * Grants for the operator: list them (who, which client, which scopes, created, last used) and
 * revoke one, or everything of a user. A revocation deletes the grant and its tokens in KV
 * (lib/oauth/tokens.ts `revokeGrant`); gateways that cached one of its access tokens refuse it
 * within the token cache's bound (1 s), and at once in the isolate that revoked it.
 */
import { revokeGrant } from "../oauth/tokens.ts";
import {
  browserSessionKey,
  type BrowserSessionRecord,
  grantKey,
  type GrantRecord,
  grantUsedKey,
  userGrantKey,
} from "../store.ts";
import { type AdminDeps, getManyChunked, iso } from "./admin_deps.ts";
import { auditEvent, auditUser } from "./audit.ts";
import { clientNameLookup } from "./clients_view.ts";

/** One grant, as `grants list --json` prints it (exactly these fields). */
export interface GrantView {
  id: string;
  /** The user's `sub` (`"owner"` for grants made before team sign-in). */
  user: string;
  clientId: string;
  clientName: string | null;
  scopes: string[];
  createdAt: string;
  /** Last bearer use (`["grant_used", id]`, written at most once a minute), or `null`. */
  lastUsedAt: string | null;
}

/** The live grant records, all of them or those of user `sub`. */
async function grantRecords(deps: AdminDeps, sub?: string): Promise<GrantRecord[]> {
  const now = deps.now();
  const live = (g: GrantRecord | null): g is GrantRecord => g !== null && g.expiresAt > now;
  if (sub !== undefined && sub !== auditUser(undefined)) {
    // Team users: through the `["user_grant", sub, grantId]` index written with each grant.
    const ids: string[] = [];
    for await (const e of deps.kv.list({ prefix: ["user_grant", sub] })) {
      ids.push(e.key[2] as string);
    }
    const entries = await getManyChunked<GrantRecord>(deps.kv, ids.map(grantKey));
    return entries.map((e) => e.value).filter(live);
  }
  const out: GrantRecord[] = [];
  for await (const e of deps.kv.list<GrantRecord>({ prefix: ["grant"] })) {
    if (live(e.value) && (sub === undefined || auditUser(e.value.user) === sub)) out.push(e.value);
  }
  return out;
}

/** Grants, newest first; only user `sub`'s when given. */
export async function listGrants(deps: AdminDeps, filter: { user?: string } = {}): Promise<
  GrantView[]
> {
  const records = await grantRecords(deps, filter.user);
  records.sort((a, b) => b.createdAt - a.createdAt);
  const used = await getManyChunked<number>(deps.kv, records.map((g) => grantUsedKey(g.grantId)));
  const name = clientNameLookup(deps);
  const out: GrantView[] = [];
  for (const [i, g] of records.entries()) {
    out.push({
      id: g.grantId,
      user: auditUser(g.user),
      clientId: g.clientId,
      clientName: await name(g.clientId),
      scopes: g.scope.split(" ").filter(Boolean),
      createdAt: iso(g.createdAt)!,
      lastUsedAt: iso(used[i]?.value),
    });
  }
  return out;
}

/**
 * Revokes grant `grantId` and its tokens, recording the revocation (event `revocation`, method
 * `admin`, `actor`: the administrator's `sub`, or `"cli"`). `null` when there is no live grant
 * of that id.
 */
export async function revokeGrantAsAdmin(
  deps: AdminDeps,
  grantId: string,
  actor: string,
): Promise<GrantRecord | null> {
  const grant = (await deps.kv.get<GrantRecord>(grantKey(grantId))).value;
  if (!grant || grant.expiresAt <= deps.now()) return null;
  await revokeGrant(deps, grantId);
  await deps.kv.delete(grantUsedKey(grantId));
  auditEvent(deps, "revocation", {
    user: auditUser(grant.user),
    clientId: grant.clientId,
    grantId,
    method: "admin",
    outcome: "ok",
    actor,
  });
  return grant;
}

/** What revoking a user took away. */
export interface UserRevocation {
  grants: number;
  browserSessions: number;
}

/**
 * Revokes everything of user `sub`: every grant (and so every token) and every signed-in browser
 * session, recorded as one revocation per grant (method `admin`) and one for the user (method
 * `admin_user`), each with `actor` (the administrator's `sub`, or `"cli"`). The user may sign in
 * again while the access rules let them; this is a revocation, not a ban.
 */
export async function revokeUserAsAdmin(
  deps: AdminDeps,
  sub: string,
  actor: string,
): Promise<UserRevocation> {
  const grants = await grantRecords(deps, sub);
  for (const g of grants) await revokeGrantAsAdmin(deps, g.grantId, actor);
  // Index entries of grants that expired without being revoked.
  for await (const e of deps.kv.list({ prefix: ["user_grant", sub] })) {
    const grantId = e.key[2] as string;
    if (!(await deps.kv.get(grantKey(grantId))).value) {
      await deps.kv.delete(userGrantKey(sub, grantId));
    }
  }
  let browserSessions = 0;
  for await (const e of deps.kv.list<BrowserSessionRecord>({ prefix: ["browser_session"] })) {
    if (e.value.user.sub !== sub) continue;
    await deps.kv.delete(browserSessionKey(e.key[1] as string));
    browserSessions++;
  }
  auditEvent(deps, "revocation", { user: sub, method: "admin_user", outcome: "ok", actor });
  return { grants: grants.length, browserSessions };
}
