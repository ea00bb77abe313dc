/**
 * Fixtures of the audit-trail suites: the records in KV (after a flush) and access tokens
 * minted straight into KV (a grant of a user, with tool globs when given), as `/token` would.
 */
import { assert, assertEquals } from "./_assert.ts";
import { mintTokens, putGrant } from "../lib/oauth/tokens.ts";
import type { AuditRecord, GrantRecord, StoredAuditRecord } from "../lib/store.ts";
import type { ServedGateway } from "./_helpers.ts";

/** Every audit record in KV, oldest first (after writing what is pending). */
export async function records(deps: ServedGateway["deps"]): Promise<AuditRecord[]> {
  await deps.audit.flush();
  const out: AuditRecord[] = [];
  for await (const e of deps.kv.list<StoredAuditRecord>({ prefix: ["audit"] })) {
    const { expiresAt: _, ...r } = e.value;
    out.push(r);
  }
  return out;
}

/** The one new record since `before` matching `pick`. */
export async function newRecord(
  deps: ServedGateway["deps"],
  before: number,
  pick: (r: AuditRecord) => boolean,
): Promise<AuditRecord> {
  const found = (await records(deps)).slice(before).filter(pick);
  assertEquals(found.length, 1, `one matching record, got ${JSON.stringify(found)}`);
  return found[0]!;
}

/** Stores a grant (of `user`, with tool globs `tools` when given) and mints its access token. */
export async function token(
  deps: ServedGateway["deps"],
  o: { scope?: string; resource?: string; user?: string; tools?: string[] } = {},
): Promise<{ token: string; grantId: string }> {
  const now = deps.now();
  const grant: GrantRecord = {
    grantId: crypto.randomUUID(),
    clientId: "audit-client",
    scope: o.scope ?? "mcp",
    resource: o.resource ?? `${deps.settings.publicUrl}/mcp`,
    createdAt: now,
    expiresAt: now + 86_400_000,
    ...(o.user ? { user: { sub: o.user } } : {}),
    ...(o.tools ? { tools: o.tools } : {}),
  };
  const op = deps.kv.atomic();
  putGrant(deps, op, grant);
  const minted = await mintTokens(deps, op, grant);
  assert((await op.commit()).ok);
  return { token: minted.accessToken, grantId: grant.grantId };
}
