/**
 * Binding of legacy MCP session ids to the principal that opened them, so that a session id
 * seen by someone else cannot be used with another token (MCP 2025-11-25 Security Best
 * Practices §Session Hijacking: "MCP servers MUST NOT use sessions for authentication" and
 * SHOULD bind session ids to user-specific information).
 *
 * KV holds `["session", backend, sha256(id)]` → {@linkcode SessionRecord} for 24 h (shared by
 * every isolate); a bounded per-isolate map keeps the hot path free of KV reads and hashing.
 * A binding is written with an atomic check and never replaces another principal's live one.
 */
import { z } from "zod";
import { sha256Hex } from "../infra/crypto.ts";
import type { Deps } from "../deps.ts";
import { sessionKey, type SessionRecord, ttl } from "../store.ts";

/** How long a binding lives after the backend issued the session id. */
export const SESSION_TTL_MS = 24 * 60 * 60 * 1000;

/** `Mcp-Session-Id` must be visible ASCII (MCP 2025-11-25 Transports §Session Management). */
export const SESSION_ID = /^[\x21-\x7E]{1,512}$/;

const sessionRecordSchema = z.object({ principalId: z.string(), expiresAt: z.number() });

type Deps_ = Pick<Deps, "kv" | "now">;

/** Commits tried by {@linkcode SessionBindings.bind} before it gives up under contention. */
const MAX_BIND_ATTEMPTS = 8;

/** Bindings of one KV store, with an in-memory front of at most `maxEntries`. */
export class SessionBindings {
  #memory = new Map<string, SessionRecord>();
  readonly maxEntries: number;

  constructor(maxEntries = 10_000) {
    this.maxEntries = maxEntries;
  }

  /** Whether `sessionId` of `backend` is bound to `principalId` (and not expired). */
  async check(deps: Deps_, backend: string, sessionId: string, principalId: string) {
    const now = deps.now();
    const memKey = `${backend} ${sessionId}`;
    let record = this.#memory.get(memKey);
    if (record && record.expiresAt <= now) {
      this.#memory.delete(memKey);
      record = undefined;
    }
    if (!record) {
      const entry = await deps.kv.get(sessionKey(backend, await sha256Hex(sessionId)));
      const parsed = sessionRecordSchema.safeParse(entry.value);
      if (!parsed.success || parsed.data.expiresAt <= now) return false;
      record = parsed.data;
      this.#remember(memKey, record);
    }
    return record.principalId === principalId;
  }

  /**
   * Binds `sessionId` to `principalId` when the id is not bound to anyone (or its binding
   * expired), in one atomic commit checked against the read (retried on conflict). Never
   * overwrites another principal's live binding: a backend that hands the same session id to two
   * callers (by mistake or on purpose) would otherwise let the second take over the first's
   * session. Returns `true` when the id is bound to `principalId` (now or already), `false`
   * when it belongs to someone else.
   */
  async bind(deps: Deps_, backend: string, sessionId: string, principalId: string) {
    const now = deps.now();
    const memKey = `${backend} ${sessionId}`;
    const known = this.#memory.get(memKey);
    if (known && known.expiresAt > now) return known.principalId === principalId;
    const key = sessionKey(backend, await sha256Hex(sessionId));
    for (let attempt = 0; attempt < MAX_BIND_ATTEMPTS; attempt++) {
      const entry = await deps.kv.get(key);
      const current = sessionRecordSchema.safeParse(entry.value);
      if (current.success && current.data.expiresAt > now) {
        this.#remember(memKey, current.data);
        return current.data.principalId === principalId;
      }
      const record: SessionRecord = { principalId, expiresAt: now + SESSION_TTL_MS };
      const { ok } = await deps.kv.atomic().check(entry)
        .set(key, record, { expireIn: ttl(record.expiresAt, now) }).commit();
      if (ok) {
        this.#remember(memKey, record);
        return true;
      }
    }
    return false;
  }

  /** Removes a binding (the session was ended with DELETE). */
  async unbind(deps: Deps_, backend: string, sessionId: string) {
    this.#memory.delete(`${backend} ${sessionId}`);
    await deps.kv.delete(sessionKey(backend, await sha256Hex(sessionId)));
  }

  #remember(memKey: string, record: SessionRecord) {
    if (this.#memory.size >= this.maxEntries) {
      const oldest = this.#memory.keys().next().value;
      if (oldest !== undefined) this.#memory.delete(oldest);
    }
    this.#memory.set(memKey, record);
  }
}

const perStore = new WeakMap<Deno.Kv, SessionBindings>();

/** The bindings of a KV store (one in-memory front per store, so tests do not share one). */
export function sessionBindings(kv: Deno.Kv): SessionBindings {
  let bindings = perStore.get(kv);
  if (!bindings) {
    bindings = new SessionBindings();
    perStore.set(kv, bindings);
  }
  return bindings;
}
