/**
 * The audit trail (issue 12): one record per MCP operation that reaches a backend and per OAuth
 * or sign-in event, kept in Deno KV under a time-ordered key (`["audit", time, id]`, see
 * lib/store.ts) for `audit.retentionDays`, and emitted as structured log lines
 * (`"event": "audit.<event>"`).
 *
 * Nothing is written on the request path: {@linkcode AuditWriter.record} appends to a per-isolate
 * buffer, which is written in batches (one atomic commit per 100 records) at most
 * `flushIntervalMs` after the first pending record, at once when 100 are pending, and on
 * shutdown. A failed write keeps the records for the next flush (up to 10 000 pending; the oldest
 * are dropped beyond, and counted). An isolate killed without warning loses at most one flush
 * interval of records; their log lines are written at the same flush.
 *
 * The same writer keeps `["grant_used", grantId]` (a grant's last bearer use), written at most
 * once a minute per isolate and grant.
 */
import { OWNER_SUB } from "../identity/access_rules.ts";
import type { Logger } from "../infra/log.ts";
import { REDACTED, redactRecord } from "../infra/log.ts";
import {
  type AuditEvent,
  auditKey,
  type AuditRecord,
  grantUsedKey,
  type StoredAuditRecord,
  type UserRef,
} from "../store.ts";

/** Records per atomic commit (well under Deno KV's 1000 mutations and 800 KiB per commit). */
export const AUDIT_BATCH = 100;
/** Records kept in memory while KV cannot be written; older ones are dropped beyond. */
export const AUDIT_MAX_PENDING = 10_000;
/** A grant's `["grant_used", grantId]` is written at most this often per isolate. */
export const GRANT_USED_INTERVAL_MS = 60_000;

/** Settings of an {@linkcode AuditWriter}. */
export interface AuditWriterOptions {
  kv: Deno.Kv;
  log: Logger;
  /** Clock (ms since epoch), for `expiresAt` and the once-a-minute `grant_used` writes. */
  now: () => number;
  /** `audit.enabled`: when false no record is kept (grant use is still written). */
  enabled: boolean;
  /** `audit.retentionDays` in ms. */
  retentionMs: number;
  /** How long `["grant_used", id]` lives after the last use (the refresh-token lifetime). */
  grantUsedTtlMs: number;
  /**
   * Flush at most this long after the first pending item. 0: only {@linkcode AuditWriter.flush}
   * writes (tests: nothing runs in the background between steps).
   */
  flushIntervalMs: number;
}

interface Pending {
  record: StoredAuditRecord;
  /** `record.time` in ms since epoch (parsed once). */
  at: number;
  /** Its log line was written (a record retried after a failed commit is not logged twice). */
  logged: boolean;
}

/** The per-isolate writer of the audit trail (see the module doc). */
export class AuditWriter {
  readonly enabled: boolean;
  readonly retentionMs: number;
  /** Records dropped because KV stayed unwritable for {@linkcode AUDIT_MAX_PENDING} records. */
  dropped = 0;
  #o: AuditWriterOptions;
  #pending: Pending[] = [];
  /** Grant uses waiting for the next flush: grant id → time. */
  #grantUses = new Map<string, number>();
  /** When this isolate last queued each grant's use. */
  #grantQueuedAt = new Map<string, number>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #flushing: Promise<void> | null = null;
  #closed = false;
  #idPrefix = crypto.getRandomValues(new Uint32Array(1))[0]!.toString(36);
  #seq = 0;

  constructor(options: AuditWriterOptions) {
    this.#o = options;
    this.enabled = options.enabled;
    this.retentionMs = options.retentionMs;
  }

  /** Appends a record to the buffer (synchronous; KV is written by a later flush). */
  record(record: AuditRecord): void {
    if (!this.enabled || this.#closed) return;
    const at = Date.parse(record.time);
    if (this.#pending.length >= AUDIT_MAX_PENDING) {
      this.#pending.shift();
      this.dropped++;
    }
    this.#pending.push({
      record: { ...record, expiresAt: at + this.retentionMs },
      at,
      logged: false,
    });
    this.#schedule(this.#pending.length >= AUDIT_BATCH);
  }

  /** Notes a bearer use of a grant (written at most once a minute per isolate and grant). */
  grantUsed(grantId: string): void {
    if (this.#closed) return;
    const now = this.#o.now();
    const last = this.#grantQueuedAt.get(grantId);
    if (last !== undefined && now - last < GRANT_USED_INTERVAL_MS) return;
    if (this.#grantQueuedAt.size >= AUDIT_MAX_PENDING) this.#grantQueuedAt.clear();
    this.#grantQueuedAt.set(grantId, now);
    this.#grantUses.set(grantId, now);
    this.#schedule(false);
  }

  /** Number of records waiting to be written. */
  get pending(): number {
    return this.#pending.length;
  }

  /** Writes everything pending now (tests, shutdown); resolves when KV has it or failed. */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#flushing) await this.#flushing;
    if (this.#pending.length === 0 && this.#grantUses.size === 0) return;
    await this.#startFlush();
  }

  /** Stops the timer, writes what is pending and refuses further records. */
  async close(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.flush();
    this.#closed = true;
  }

  #schedule(now: boolean): void {
    if (this.#o.flushIntervalMs <= 0 || this.#flushing) return;
    if (now) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#startFlush();
      return;
    }
    if (this.#timer !== undefined) return;
    const timer = setTimeout(() => {
      this.#timer = undefined;
      this.#startFlush();
    }, this.#o.flushIntervalMs);
    // A pending flush must not keep a process (or a test) alive; shutdown flushes explicitly.
    try {
      Deno.unrefTimer(timer);
    } catch {
      // a runtime without unref: the timer only delays the end of the process by one interval
    }
    this.#timer = timer;
  }

  #startFlush(): Promise<void> {
    const run = this.#write().finally(() => {
      this.#flushing = null;
      if (this.#pending.length > 0 || this.#grantUses.size > 0) this.#schedule(false);
    });
    this.#flushing = run;
    return run;
  }

  /** Writes the pending records in batches, and the grant uses with the first batch. */
  async #write(): Promise<void> {
    if (this.#pending.length === 0 && this.#grantUses.size === 0) return;
    const now = this.#o.now();
    const uses = [...this.#grantUses];
    this.#grantUses.clear();
    const batch = this.#pending.splice(0, this.#pending.length);
    for (const item of batch) {
      if (item.logged) continue;
      const { expiresAt: _, ...line } = item.record;
      line.event = `audit.${line.event}` as AuditEvent;
      this.#o.log(line);
      item.logged = true;
    }
    const chunks: Pending[][] = [];
    for (let i = 0; i < batch.length; i += AUDIT_BATCH) {
      chunks.push(batch.slice(i, i + AUDIT_BATCH));
    }
    if (chunks.length === 0) chunks.push([]);
    for (const [n, chunk] of chunks.entries()) {
      const op = this.#o.kv.atomic();
      for (const { record, at } of chunk) {
        const id = `${this.#idPrefix}-${(this.#seq++).toString(36)}`;
        op.set(auditKey(at, id), record, {
          expireIn: Math.max(1, record.expiresAt - now),
        });
      }
      if (n === 0) {
        for (const [grantId, at] of uses) {
          op.set(grantUsedKey(grantId), at, { expireIn: this.#o.grantUsedTtlMs });
        }
      }
      try {
        const res = await op.commit();
        if (!res.ok) throw new Error("audit commit was not applied");
      } catch (error) {
        this.#requeue(batch.slice(n * AUDIT_BATCH), n === 0 ? uses : []);
        this.#o.log({
          level: "warn",
          event: "audit_flush_failed",
          pending: this.#pending.length,
          error: error instanceof Error ? error.message.slice(0, 200) : "unknown",
        });
        return;
      }
    }
  }

  /** Puts unwritten items back in front of newer ones, within {@linkcode AUDIT_MAX_PENDING}. */
  #requeue(items: Pending[], uses: [string, number][]): void {
    if (this.#closed) return;
    const all = [...items, ...this.#pending];
    const excess = Math.max(0, all.length - AUDIT_MAX_PENDING);
    this.dropped += excess;
    this.#pending = all.slice(excess);
    for (const [grantId, at] of uses) {
      if (!this.#grantUses.has(grantId)) this.#grantUses.set(grantId, at);
    }
  }
}

/** What {@linkcode auditEvent} needs: the writer, the clock, and the request's id if any. */
export interface AuditContext {
  audit?: AuditWriter;
  now: () => number;
  requestId?: string;
}

/** The fields of an event besides time, event and request id (absent ones are `null`). */
export type AuditFields = Partial<Omit<AuditRecord, "time" | "event" | "requestId" | "outcome">> & {
  outcome: string;
};

/** A complete record from its fields (absent fields `null`). */
export function auditRecord(
  time: number,
  event: AuditEvent,
  fields: AuditFields,
  requestId?: string,
): AuditRecord {
  const record: AuditRecord = {
    time: new Date(time).toISOString(),
    event,
    user: fields.user ?? null,
    clientId: fields.clientId ?? null,
    grantId: fields.grantId ?? null,
    backend: fields.backend ?? null,
    method: fields.method ?? null,
    tool: fields.tool ?? null,
    outcome: fields.outcome,
    latencyMs: fields.latencyMs ?? null,
    requestId: requestId ?? null,
  };
  if (fields.arguments) record.arguments = fields.arguments;
  if (fields.actor) record.actor = fields.actor;
  return record;
}

/** The audit trail's user of a grant or token: its user's `sub`, `"owner"` when it has none. */
export function auditUser(user: UserRef | undefined): string {
  return user?.sub ?? OWNER_SUB;
}

/** Records an OAuth or sign-in event of the current request (one line at each event's site). */
export function auditEvent(ctx: AuditContext, event: AuditEvent, fields: AuditFields): void {
  ctx.audit?.record(auditRecord(ctx.now(), event, fields, ctx.requestId));
}

/** Longest string value kept in recorded arguments. */
const MAX_ARGUMENT_STRING = 256;
/** Largest recorded arguments object, serialized. */
export const MAX_ARGUMENTS_CHARS = 2048;
/**
 * Argument names whose values are masked, besides the log redaction's (token, secret, password,
 * code, authorization, cookie, api key, credentials…): anything that ends like a key, or speaks
 * of auth, sessions, private material, signatures or one-time codes.
 */
const SECRET_ARGUMENT = /(key|auth|authorization|session|private|passphrase|signature|otp|pin)$/i;

function shorten(value: unknown, depth: number): unknown {
  if (typeof value === "string") {
    return value.length > MAX_ARGUMENT_STRING ? `${value.slice(0, MAX_ARGUMENT_STRING)}…` : value;
  }
  if (value === null || typeof value !== "object") return value;
  if (depth > 4) return REDACTED;
  if (Array.isArray(value)) return value.slice(0, 20).map((v) => shorten(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value).slice(0, 50)) {
    out[k] = SECRET_ARGUMENT.test(k) ? REDACTED : shorten(v, depth + 1);
  }
  return out;
}

/**
 * Arguments as the audit trail keeps them (`"audit": { "arguments": "redacted" }`): values of
 * secret-looking keys masked (at any depth), tokens and credentials inside strings masked,
 * strings cut at 256 characters, arrays at 20 items, objects at 50 keys and 5 levels; if still
 * over 2 KiB serialized, `{ "[truncated]": "<the first 2 KiB of it>" }`.
 */
export function redactArguments(args: unknown): Record<string, unknown> | undefined {
  if (args === null || typeof args !== "object" || Array.isArray(args)) return undefined;
  const redacted = redactRecord(shorten(args, 0) as Record<string, unknown>);
  const text = JSON.stringify(redacted);
  if (text.length <= MAX_ARGUMENTS_CHARS) return redacted;
  return { "[truncated]": text.slice(0, MAX_ARGUMENTS_CHARS) };
}

const isObject = (v: unknown): v is Record<string, any> =>
  v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * The outcome of a JSON-RPC response (MCP semantic conventions' `error.type`): the error code as
 * a string, `tool_error` for a `tools/call` result with `isError: true`, else `ok`.
 */
export function outcomeOfMessage(message: unknown): string {
  if (!isObject(message)) return "ok";
  if (isObject(message.error)) {
    return typeof message.error.code === "number" ? String(message.error.code) : "error";
  }
  return outcomeOfResult(message.result);
}

/** `tool_error` for a result with `isError: true`, else `ok`. */
export function outcomeOfResult(result: unknown): string {
  return isObject(result) && result.isError === true ? "tool_error" : "ok";
}
