/**
 * Users' connections to per-user backends, in Deno KV at `["backend_connection", sub, backend]`:
 * the tokens (oauth) or the secret (user-secret) AES-GCM sealed for that row (encryption.ts),
 * beside what is not secret (when connected, when the access token expires, where to refresh).
 *
 * A row that does not open (altered, copied from another row, or sealed under another key) is
 * refused: deleted, logged, and the user is asked to connect again. Connects and drops (not
 * refreshes) are announced to the isolate's listeners (the aggregated endpoint's per-user
 * clients, see pool.ts).
 */
import { type AuditContext, auditEvent } from "../admin/audit.ts";
import type { Deps } from "../deps.ts";
import {
  backendConnectionKey,
  type BackendConnectionRecord,
  backendConnectionsPrefix,
  type BackendOAuthInfo,
} from "../store.ts";
import { CredentialIntegrityError, seal, unseal } from "./encryption.ts";
import type { BackendTokens } from "./token_client.ts";

/** The sealed part of an oauth connection. */
export interface OAuthSecrets {
  accessToken: string;
  refreshToken?: string;
}

/** The sealed part of a user-secret connection. */
export interface UserSecret {
  secret: string;
}

/** A connection read and opened. */
export interface LoadedConnection {
  entry: Deno.KvEntry<BackendConnectionRecord>;
  secrets: OAuthSecrets | UserSecret;
}

type ConnectionDeps = Pick<Deps, "kv" | "now" | "log" | "settings"> & AuditContext;

/** Why a connection was dropped (logged). */
export type DropReason =
  | "disconnected"
  | "invalid_grant"
  | "backend_401"
  | "expired"
  | "integrity"
  | "client_gone";

const listeners = new WeakMap<Deno.Kv, Set<(sub: string, backend: string) => void>>();

/** Calls `listener` whenever this isolate changes a connection of this gateway's KV. */
export function onConnectionChange(
  kv: Deno.Kv,
  listener: (sub: string, backend: string) => void,
): () => void {
  let set = listeners.get(kv);
  if (!set) listeners.set(kv, set = new Set());
  set.add(listener);
  return () => void set.delete(listener);
}

function announce(kv: Deno.Kv, sub: string, backend: string): void {
  for (const listener of listeners.get(kv) ?? []) listener(sub, backend);
}

function key(deps: ConnectionDeps): CryptoKey {
  const k = deps.settings.encryptionKey;
  if (!k) throw new Error("GATEWAY_ENCRYPTION_KEY is not set");
  return k;
}

/**
 * The connection of `sub` to `backend`, opened, or `null` (none, or refused by its integrity
 * check: then deleted and logged).
 */
export async function loadConnection(
  deps: ConnectionDeps,
  sub: string,
  backend: string,
): Promise<LoadedConnection | null> {
  const rowKey = backendConnectionKey(sub, backend);
  const entry = await deps.kv.get<BackendConnectionRecord>(rowKey);
  if (entry.value === null) return null;
  try {
    const secrets = await unseal<OAuthSecrets | UserSecret>(key(deps), rowKey, entry.value.sealed);
    return { entry: entry as Deno.KvEntry<BackendConnectionRecord>, secrets };
  } catch (e) {
    if (!(e instanceof CredentialIntegrityError)) throw e;
    await dropConnection(deps, sub, backend, entry.versionstamp, "integrity");
    return null;
  }
}

/**
 * Stores (or replaces) an oauth connection. With `previous`, only if the row is still that
 * version (a refresh must not resurrect a connection dropped meanwhile); returns whether it was
 * stored.
 */
export async function saveOAuthConnection(
  deps: ConnectionDeps,
  sub: string,
  backend: string,
  tokens: BackendTokens,
  info: BackendOAuthInfo,
  previous?: { entry: Deno.KvEntry<BackendConnectionRecord>; refreshToken?: string },
): Promise<boolean> {
  const rowKey = backendConnectionKey(sub, backend);
  const now = deps.now();
  // RFC 6749 §6: a refresh answer without a new refresh token keeps the old one.
  const refreshToken = tokens.refreshToken ?? previous?.refreshToken;
  const secrets: OAuthSecrets = {
    accessToken: tokens.accessToken,
    ...(refreshToken ? { refreshToken } : {}),
  };
  const record: BackendConnectionRecord = {
    type: "oauth",
    sealed: await seal(key(deps), rowKey, secrets),
    connectedAt: previous?.entry.value.connectedAt ?? now,
    oauth: tokens.scope ? { ...info, scope: tokens.scope } : info,
    refreshable: refreshToken !== undefined,
    ...(previous ? { refreshedAt: now } : {}),
    ...(tokens.expiresIn !== undefined ? { accessExpiresAt: now + tokens.expiresIn * 1000 } : {}),
  };
  const op = deps.kv.atomic();
  if (previous) op.check(previous.entry);
  const { ok } = await op.set(rowKey, record).commit();
  // A refresh changes no client: each request reads the current credential.
  if (ok && !previous) announce(deps.kv, sub, backend);
  return ok;
}

/** Stores (or replaces) a user-secret connection. */
export async function saveSecretConnection(
  deps: ConnectionDeps,
  sub: string,
  backend: string,
  secret: string,
): Promise<void> {
  const rowKey = backendConnectionKey(sub, backend);
  const record: BackendConnectionRecord = {
    type: "user-secret",
    sealed: await seal(key(deps), rowKey, { secret } satisfies UserSecret),
    connectedAt: deps.now(),
  };
  await deps.kv.set(rowKey, record);
  announce(deps.kv, sub, backend);
}

/**
 * Deletes a connection — only the version `versionstamp` when given (a 401 seen with an old
 * token must not drop the connection the user just made again). Logged with `reason`.
 */
export async function dropConnection(
  deps: ConnectionDeps,
  sub: string,
  backend: string,
  versionstamp: string | null,
  reason: DropReason,
): Promise<boolean> {
  const rowKey = backendConnectionKey(sub, backend);
  const op = deps.kv.atomic();
  if (versionstamp !== null) op.check({ key: rowKey, versionstamp });
  const { ok } = await op.delete(rowKey).commit();
  if (ok) {
    deps.log({
      level: reason === "disconnected" ? "info" : "warn",
      event: "backend_connection_dropped",
      user: sub,
      backend,
      reason,
    });
    auditEvent(deps, "backend_disconnect", { user: sub, backend, method: reason, outcome: "ok" });
    announce(deps.kv, sub, backend);
  }
  return ok;
}

/** Which of `backends` the user has a stored connection to (one KV read, nothing opened). */
export async function connectedBackends(
  deps: Pick<Deps, "kv">,
  sub: string,
  backends: readonly string[],
): Promise<Set<string>> {
  const out = new Set<string>();
  if (backends.length === 0) return out;
  const keys = backends.map((b) => backendConnectionKey(sub, b));
  for (let i = 0; i < keys.length; i += 10) {
    const entries = await deps.kv.getMany<BackendConnectionRecord[]>(keys.slice(i, i + 10));
    for (const e of entries) if (e.value !== null) out.add(String(e.key[2]));
  }
  return out;
}

/** Every stored connection of a user, by backend (nothing opened). */
export async function listConnections(
  deps: Pick<Deps, "kv">,
  sub: string,
): Promise<Map<string, BackendConnectionRecord>> {
  const out = new Map<string, BackendConnectionRecord>();
  for await (
    const e of deps.kv.list<BackendConnectionRecord>({ prefix: backendConnectionsPrefix(sub) })
  ) {
    out.set(String(e.key[2]), e.value);
  }
  return out;
}
