/**
 * Refreshing a user's access token at a backend before it expires (RFC 6749 §6), once at a time:
 * per isolate, concurrent callers share one promise; across isolates, a KV lease
 * (`["backend_refresh_lease", sub, backend]`, taken with an atomic check, {@linkcode LEASE_MS})
 * lets one isolate call the token endpoint while the others wait for the row to change.
 *
 * - A new refresh token replaces the old one (rotation); without one the old one is kept.
 * - `invalid_grant` (RFC 6749 §5.2: revoked, expired, or already rotated) drops the connection:
 *   the user is asked to connect again. So do `invalid_client` / `unauthorized_client` (the
 *   gateway's registration is gone: the next connect registers anew).
 * - The server unreachable: the current token is used while it is still valid, else the call
 *   fails with a retryable error (the connection is kept).
 */
import type { BackendConfig } from "../config.ts";
import type { Deps } from "../deps.ts";
import { randomToken } from "../infra/crypto.ts";
import { refreshLeaseKey, type RefreshLeaseRecord } from "../store.ts";
import { clientOfConnection, clientRefused } from "./backend_client_identity.ts";
import {
  dropConnection,
  loadConnection,
  type LoadedConnection,
  type OAuthSecrets,
  saveOAuthConnection,
} from "./connections.ts";
import { BackendAuthError } from "./outbound.ts";
import { TokenEndpointError, tokenRequest } from "./token_client.ts";

/** A token this close to its expiry is refreshed first. */
export const REFRESH_SKEW_MS = 60_000;
/** How long an isolate may hold the refresh lease. */
export const LEASE_MS = 30_000;
/** How often a waiting isolate looks at the row again, and how many times. */
const WAIT_STEP_MS = 50;
const WAIT_STEPS = 200;

type RefreshDeps = Pick<Deps, "kv" | "now" | "fetch" | "log" | "config" | "settings">;

/** Whether a connection's access token must be refreshed before use. */
export function needsRefresh(loaded: LoadedConnection, now: number): boolean {
  const expiresAt = loaded.entry.value.accessExpiresAt;
  return expiresAt !== undefined && expiresAt - now <= REFRESH_SKEW_MS;
}

const isExpired = (loaded: LoadedConnection, now: number) =>
  (loaded.entry.value.accessExpiresAt ?? Infinity) <= now;

const inflight = new WeakMap<Deno.Kv, Map<string, Promise<LoadedConnection | null>>>();

/**
 * The connection with a fresh access token, or `null` when it had to be dropped.
 * @throws {BackendAuthError} the server is unreachable and the current token has expired
 */
export function refreshConnection(
  deps: RefreshDeps,
  sub: string,
  backend: BackendConfig,
  loaded: LoadedConnection,
): Promise<LoadedConnection | null> {
  let byKey = inflight.get(deps.kv);
  if (!byKey) inflight.set(deps.kv, byKey = new Map());
  const id = `${sub}\n${backend.name}`;
  let running = byKey.get(id);
  if (!running) {
    running = acrossIsolates(deps, sub, backend, loaded).finally(() => byKey.delete(id));
    byKey.set(id, running);
  }
  return running;
}

/**
 * Takes the lease if it is free (or its holder's time is up); returns its entry, or null — also
 * when the write fails (a busy store): the caller waits and tries again.
 */
async function takeLease(
  deps: RefreshDeps,
  leaseKey: Deno.KvKey,
): Promise<Deno.KvEntry<RefreshLeaseRecord> | null> {
  const current = await deps.kv.get<RefreshLeaseRecord>(leaseKey);
  const now = deps.now();
  if (current.value && current.value.expiresAt > now) return null;
  const lease: RefreshLeaseRecord = { holder: randomToken(12), expiresAt: now + LEASE_MS };
  try {
    const res = await deps.kv.atomic().check(current).set(leaseKey, lease, { expireIn: LEASE_MS })
      .commit();
    return res.ok ? { key: leaseKey, value: lease, versionstamp: res.versionstamp } : null;
  } catch {
    return null;
  }
}

async function acrossIsolates(
  deps: RefreshDeps,
  sub: string,
  backend: BackendConfig,
  loaded: LoadedConnection,
): Promise<LoadedConnection | null> {
  const leaseKey = refreshLeaseKey(sub, backend.name);
  for (let step = 0; step < WAIT_STEPS; step++) {
    const lease = await takeLease(deps, leaseKey);
    if (lease) {
      try {
        return await refreshHoldingLease(deps, sub, backend, loaded);
      } finally {
        // Best effort: an unreleased lease expires by itself.
        await deps.kv.atomic().check(lease).delete(leaseKey).commit().catch(() => {});
      }
    }
    await new Promise((r) => setTimeout(r, WAIT_STEP_MS));
    const now = await loadConnection(deps, sub, backend.name);
    if (!now) return null;
    if (now.entry.versionstamp !== loaded.entry.versionstamp) return now;
  }
  if (!isExpired(loaded, deps.now())) return loaded;
  throw new BackendAuthError(
    `the token of backend ${backend.name} is being refreshed; retry`,
    true,
  );
}

async function refreshHoldingLease(
  deps: RefreshDeps,
  sub: string,
  backend: BackendConfig,
  loaded: LoadedConnection,
): Promise<LoadedConnection | null> {
  // Another isolate may have refreshed between our read and our lease.
  const current = await loadConnection(deps, sub, backend.name);
  if (!current) return null;
  if (
    current.entry.versionstamp !== loaded.entry.versionstamp && !needsRefresh(current, deps.now())
  ) {
    return current;
  }
  const record = current.entry.value;
  const info = record.oauth;
  const secrets = current.secrets as OAuthSecrets;
  const drop = async (reason: Parameters<typeof dropConnection>[4]) => {
    await dropConnection(deps, sub, backend.name, current.entry.versionstamp, reason);
    return null;
  };
  if (!info || !secrets.refreshToken) return await drop("expired");
  let client;
  try {
    client = await clientOfConnection(deps, backend, info);
  } catch (e) {
    if (!(e instanceof BackendAuthError)) throw e;
    return await drop("client_gone");
  }
  let tokens;
  try {
    tokens = await tokenRequest(backend, info.tokenEndpoint, client, {
      grant_type: "refresh_token",
      refresh_token: secrets.refreshToken,
      resource: info.resource,
    });
  } catch (e) {
    if (e instanceof TokenEndpointError && e.code === "invalid_grant") {
      return await drop("invalid_grant");
    }
    if (
      e instanceof TokenEndpointError &&
      (e.code === "invalid_client" || e.code === "unauthorized_client")
    ) {
      await clientRefused(deps, backend.name, info.issuer, client, e.code);
      return await drop("client_gone");
    }
    if (!(e instanceof BackendAuthError)) throw e;
    deps.log({
      level: "warn",
      event: "backend_refresh_failed",
      user: sub,
      backend: backend.name,
      error: e.message.slice(0, 200),
    });
    if (!isExpired(current, deps.now())) return current;
    throw new BackendAuthError(e.message, true);
  }
  const saved = await saveOAuthConnection(deps, sub, backend.name, tokens, info, {
    entry: current.entry,
    refreshToken: secrets.refreshToken,
  });
  if (saved) {
    deps.log({
      event: "backend_token_refreshed",
      user: sub,
      backend: backend.name,
      rotated: tokens.refreshToken !== undefined,
    });
  }
  return await loadConnection(deps, sub, backend.name);
}
