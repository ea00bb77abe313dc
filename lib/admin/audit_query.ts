/**
 * Reading the audit trail (`["audit", time, id]`, lib/admin/audit.ts): records of a time range,
 * filtered by user, backend, tool, outcome or event, newest or oldest first, and exported as
 * JSON Lines. Expired records (past `expiresAt`) are skipped even while KV still holds them.
 */
import type { AuditRecord, StoredAuditRecord } from "../store.ts";
import type { AdminDeps } from "./admin_deps.ts";

/** Which records to read. */
export interface AuditFilter {
  /** A user's `sub` (exact). */
  user?: string;
  backend?: string;
  /** The tool (prompt, URI): exact, or a glob with `*`. */
  tool?: string;
  /** `ok`, `denied`, `error` (anything else), or an exact outcome (`-32602`, `timeout`…). */
  outcome?: string;
  event?: string;
  /** Inclusive bounds, ms since epoch. */
  since?: number;
  until?: number;
  /** At most this many records (after filtering). */
  limit?: number;
  /** `desc` (default): newest first. */
  order?: "asc" | "desc";
}

function globMatcher(glob: string): (value: string | null) => boolean {
  if (!glob.includes("*")) return (v) => v === glob;
  const re = new RegExp(
    `^${glob.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`,
  );
  return (v) => v !== null && re.test(v);
}

function outcomeMatcher(outcome: string): (value: string) => boolean {
  if (outcome === "error") return (v) => v !== "ok" && v !== "denied";
  return (v) => v === outcome;
}

/** The records of `filter`, as stored minus `expiresAt`. */
export async function* queryAudit(
  deps: Pick<AdminDeps, "kv" | "now">,
  filter: AuditFilter = {},
): AsyncGenerator<AuditRecord> {
  const now = deps.now();
  const tool = filter.tool === undefined ? undefined : globMatcher(filter.tool);
  const outcome = filter.outcome === undefined ? undefined : outcomeMatcher(filter.outcome);
  const selector = {
    start: ["audit", filter.since ?? 0],
    end: ["audit", (filter.until ?? Number.MAX_SAFE_INTEGER - 1) + 1],
  };
  let left = filter.limit ?? Infinity;
  if (left <= 0) return;
  const entries = deps.kv.list<StoredAuditRecord>(selector, {
    reverse: (filter.order ?? "desc") === "desc",
    batchSize: 500,
  });
  for await (const { value } of entries) {
    if (value.expiresAt <= now) continue;
    if (filter.user !== undefined && value.user !== filter.user) continue;
    if (filter.backend !== undefined && value.backend !== filter.backend) continue;
    if (filter.event !== undefined && value.event !== filter.event) continue;
    if (tool && !tool(value.tool)) continue;
    if (outcome && !outcome(value.outcome)) continue;
    const { expiresAt: _, ...record } = value;
    yield record;
    if (--left <= 0) return;
  }
}

/** The records of `filter` as JSON Lines (one record per line, each line ends with `\n`). */
export function auditJsonLines(
  deps: Pick<AdminDeps, "kv" | "now">,
  filter: AuditFilter = {},
): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  const records = queryAudit(deps, filter);
  return new ReadableStream({
    async pull(controller) {
      const next = await records.next();
      if (next.done) return controller.close();
      controller.enqueue(encoder.encode(JSON.stringify(next.value) + "\n"));
    },
    async cancel() {
      await records.return(undefined);
    },
  });
}

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A point in time from `1h`, `30m`, `45s`, `7d` (that long before `now`) or an ISO 8601 date;
 * `null` when it is neither.
 */
export function parseSince(text: string, now: number): number | null {
  const m = /^(\d{1,6})([smhd])$/.exec(text.trim());
  if (m) return now - Number(m[1]) * UNITS[m[2]!]!;
  if (!/^\d{4}-\d{2}-\d{2}/.test(text)) return null;
  const t = Date.parse(text);
  return Number.isFinite(t) ? t : null;
}
