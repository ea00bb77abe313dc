/**
 * The people who signed in (`["user", sub]`, upserted at every sign-in by lib/identity/), with
 * how many live grants each holds. Grants made before team sign-in count as the owner's.
 */
import { OWNER_SUB } from "../identity/access_rules.ts";
import type { GrantRecord, UserRecord } from "../store.ts";
import { type AdminDeps, iso } from "./admin_deps.ts";
import { auditUser } from "./audit.ts";

/** One user, as `users list --json` prints it. */
export interface UserView {
  sub: string;
  email: string | null;
  login: string | null;
  name: string | null;
  admin: boolean;
  firstSeenAt: string | null;
  lastSeenAt: string | null;
  /** Live grants of this user. */
  grants: number;
}

/** Users, most recently seen first (the owner's grants without a user record listed as `owner`). */
export async function listUsers(deps: AdminDeps): Promise<UserView[]> {
  const now = deps.now();
  const grants = new Map<string, number>();
  for await (const e of deps.kv.list<GrantRecord>({ prefix: ["grant"] })) {
    if (e.value.expiresAt <= now) continue;
    const sub = auditUser(e.value.user);
    grants.set(sub, (grants.get(sub) ?? 0) + 1);
  }
  const out: UserView[] = [];
  for await (const e of deps.kv.list<UserRecord>({ prefix: ["user"] })) {
    const u = e.value;
    out.push({
      sub: u.sub,
      email: u.email ?? null,
      login: u.login ?? null,
      name: u.name ?? null,
      admin: u.admin,
      firstSeenAt: iso(u.firstSeenAt),
      lastSeenAt: iso(u.lastSeenAt),
      grants: grants.get(u.sub) ?? 0,
    });
  }
  if (!out.some((u) => u.sub === OWNER_SUB) && grants.has(OWNER_SUB)) {
    out.push({
      sub: OWNER_SUB,
      email: null,
      login: null,
      name: null,
      admin: true,
      firstSeenAt: null,
      lastSeenAt: null,
      grants: grants.get(OWNER_SUB)!,
    });
  }
  return out.sort((a, b) => (b.lastSeenAt ?? "").localeCompare(a.lastSeenAt ?? ""));
}
