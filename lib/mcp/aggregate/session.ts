/**
 * Legacy (2025-era) sessions of the aggregated `/mcp` endpoint, kept in Deno KV so that any
 * isolate can serve any request (MCP 2025-11-25 Transports §Session Management).
 *
 * The session id is a random 256-bit token handed to the client in `Mcp-Session-Id`; KV holds
 * only its SHA-256 under `["mcp_session", hash]`, with the principal that opened it, the
 * negotiated protocol version and the client's declared capabilities, and a 24 h expiry
 * (`expiresAt` checked on read, `expireIn` for clean-up). Another principal presenting the id
 * gets 404, like an unknown or ended session.
 *
 * {@linkcode loadSessionCached} keeps validated sessions per isolate for at most
 * {@linkcode SESSION_CACHE_MS} (never past their expiry), so that the hot path of a session's
 * requests skips the KV read; a DELETE drops the entry at once in its own isolate, and within that
 * bound in the others (the same rule as lib/oauth/token_cache.ts for access tokens).
 */
import { randomToken, sha256Hex } from "../../infra/crypto.ts";
import type { Deps } from "../../deps.ts";
import { getLive, ttl, type UserRef } from "../../store.ts";

/** Lifetime of a legacy session. */
export const SESSION_TTL_MS = 24 * 60 * 60 * 1000;

/** What a legacy session remembers across requests. */
export interface AggregateSessionRecord {
  principalId: string;
  protocolVersion: string;
  clientCapabilities: Record<string, unknown>;
  /** The user of the principal that opened the session (team sign-in); absent otherwise. */
  user?: UserRef;
  /** The level set by `logging/setLevel` (MCP 2025-11-25 Server/Utilities/Logging), if any. */
  logLevel?: string;
  expiresAt: number;
}

/** KV key of an aggregated-endpoint session, by hash of its id. */
export const aggregateSessionKey = (hash: string): Deno.KvKey => ["mcp_session", hash];

/** Opens a session for `principalId`; returns the id to send in `Mcp-Session-Id`. */
export async function openSession(
  deps: Deps,
  principalId: string,
  init: { protocolVersion: string; clientCapabilities: Record<string, unknown>; user?: UserRef },
): Promise<string> {
  const id = randomToken();
  const now = deps.now();
  const record: AggregateSessionRecord = {
    principalId,
    protocolVersion: init.protocolVersion,
    clientCapabilities: init.clientCapabilities,
    expiresAt: now + SESSION_TTL_MS,
  };
  if (init.user) record.user = init.user;
  await deps.kv.set(aggregateSessionKey(await sha256Hex(id)), record, {
    expireIn: ttl(record.expiresAt, now),
  });
  return id;
}

/** The live session `id` of `principalId`, or `null` (unknown, expired, ended or foreign). */
export async function loadSession(
  deps: Deps,
  id: string,
  principalId: string,
): Promise<AggregateSessionRecord | null> {
  if (!/^[\x21-\x7e]{1,200}$/.test(id)) return null;
  const entry = await getLive<AggregateSessionRecord>(
    deps.kv,
    aggregateSessionKey(await sha256Hex(id)),
    deps.now(),
  );
  if (!entry || entry.value.principalId !== principalId) return null;
  return entry.value;
}

/** Ends a session (DELETE); `false` when it was not a live session of this principal. */
export async function endSession(deps: Deps, id: string, principalId: string): Promise<boolean> {
  cachesOf(deps).delete(id);
  if (!(await loadSession(deps, id, principalId))) return false;
  await deps.kv.delete(aggregateSessionKey(await sha256Hex(id)));
  cachesOf(deps).delete(id);
  return true;
}

/**
 * Records the log level session `hash` set (`logging/setLevel`): in KV for every isolate, and in
 * this isolate's cache at once. `false` when the session is gone.
 */
export async function setSessionLogLevel(
  deps: Pick<Deps, "kv" | "now">,
  hash: string,
  level: string,
): Promise<boolean> {
  const key = aggregateSessionKey(hash);
  for (let attempt = 0; attempt < 3; attempt++) {
    const now = deps.now();
    const entry = await getLive<AggregateSessionRecord>(deps.kv, key, now);
    if (!entry) return false;
    const record = { ...entry.value, logLevel: level };
    const res = await deps.kv.atomic().check(entry).set(key, record, {
      expireIn: ttl(record.expiresAt, now),
    }).commit();
    if (!res.ok) continue;
    for (const cached of cachesOf(deps).values()) {
      if (cached.hash === hash) cached.record = record;
    }
    return true;
  }
  return false;
}

/** How long an isolate may trust a session it validated without reading KV again. */
export const SESSION_CACHE_MS = 1000;
const SESSION_CACHE_MAX = 10_000;

/** A validated live session, with the hash of its id (the key of its in-flight calls). */
export interface ValidatedSession {
  record: AggregateSessionRecord;
  hash: string;
}

interface CachedSession extends ValidatedSession {
  until: number;
}

// Keyed by the KV handle (one cache per gateway instance), then by session id.
const caches = new WeakMap<Deno.Kv, Map<string, CachedSession>>();

function cachesOf(deps: Pick<Deps, "kv">): Map<string, CachedSession> {
  let cache = caches.get(deps.kv);
  if (!cache) caches.set(deps.kv, cache = new Map());
  return cache;
}

/**
 * {@linkcode loadSession} through the isolate's short cache of validated sessions: the same
 * answers (unknown, ended, expired or foreign → `null`), a session ended elsewhere seen within
 * {@linkcode SESSION_CACHE_MS}. Only live sessions are cached.
 */
export async function loadSessionCached(
  deps: Deps,
  id: string,
  principalId: string,
): Promise<ValidatedSession | null> {
  const cache = cachesOf(deps);
  const now = deps.now();
  const hit = cache.get(id);
  if (hit) {
    if (hit.until > now) return hit.record.principalId === principalId ? hit : null;
    cache.delete(id);
  }
  const record = await loadSession(deps, id, principalId);
  if (!record) return null;
  const session = { record, hash: await sha256Hex(id) };
  if (cache.size >= SESSION_CACHE_MAX) {
    const oldest = cache.keys().next().value;
    if (oldest !== undefined) cache.delete(oldest);
  }
  cache.set(id, { ...session, until: Math.min(now + SESSION_CACHE_MS, record.expiresAt) });
  return session;
}
