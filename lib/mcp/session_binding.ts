/**
 * Binding of legacy MCP session ids to the principal that opened them, so that a session id
 * seen by someone else cannot be used with another token (MCP 2025-11-25 Security Best
 * Practices §Session Hijacking: "MCP servers MUST NOT use sessions for authentication" and
 * SHOULD bind session ids to user-specific information).
 *
 * KV holds `["session", backend, sha256(id)]` → {@linkcode SessionRecord} for 24 h (shared by
 * every isolate); a bounded per-isolate map keeps the hot path free of KV reads and hashing.
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

  /** Binds `sessionId` to `principalId` unless this isolate already knows that binding. */
  async bind(deps: Deps_, backend: string, sessionId: string, principalId: string) {
    const now = deps.now();
    const memKey = `${backend} ${sessionId}`;
    const known = this.#memory.get(memKey);
    if (known && known.principalId === principalId && known.expiresAt > now) return;
    const record: SessionRecord = { principalId, expiresAt: now + SESSION_TTL_MS };
    await deps.kv.set(sessionKey(backend, await sha256Hex(sessionId)), record, {
      expireIn: ttl(record.expiresAt, now),
    });
    this.#remember(memKey, record);
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
