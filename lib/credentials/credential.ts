/**
 * A user's credential at a per-user backend, as it goes on the wire: `Authorization: Bearer
 * <access token>` (refreshed first when close to expiry, refresh.ts) or the user's secret in the
 * configured header and template. Used by every path to such a backend: the pass-through
 * (lib/mcp/proxy.ts), the aggregated endpoint's per-user SDK clients ({@linkcode credentialFetch})
 * and its fast path (lib/mcp/aggregate/fast_call.ts).
 *
 * The backend answering 401 means the credential no longer works there (revoked at its side):
 * {@linkcode credentialRejected} drops that version of the connection, so the next call asks the
 * user to connect again (never a loop: nothing is retried with the rejected credential).
 */
import type { BackendConfig } from "../config.ts";
import type { Deps } from "../deps.ts";
import type { UserRef } from "../store.ts";
import { credentialHeaderName } from "./auth_config.ts";
import {
  dropConnection,
  loadConnection,
  type OAuthSecrets,
  type UserSecret,
} from "./connections.ts";
import { BackendAuthError } from "./outbound.ts";
import { needsRefresh, refreshConnection } from "./refresh.ts";

/** A credential ready to send. */
export interface BackendCredential {
  /** Lower-case header name. */
  header: string;
  value: string;
  /** The version of the connection it came from (see {@linkcode credentialRejected}). */
  versionstamp: string;
}

/** The user has no usable connection to the backend (never made, or just dropped). */
export class NotConnectedError extends Error {
  constructor(readonly backend: string, readonly rejected = false) {
    super(
      rejected
        ? `backend ${backend} rejected the user's credential; it was dropped`
        : `the user is not connected to backend ${backend}`,
    );
    this.name = "NotConnectedError";
  }
}

type CredentialDeps = Pick<Deps, "kv" | "now" | "fetch" | "log" | "config" | "settings">;

/**
 * The credential of `user` at `backend`, or `null` when there is no usable connection.
 * @throws {BackendAuthError} the token must be refreshed and the server is unreachable
 */
export async function backendCredential(
  deps: CredentialDeps,
  user: UserRef,
  backend: BackendConfig,
): Promise<BackendCredential | null> {
  const auth = backend.auth;
  if (!auth) return null;
  let loaded = await loadConnection(deps, user.sub, backend.name);
  if (!loaded) return null;
  if (auth.type === "user-secret") {
    const { secret } = loaded.secrets as UserSecret;
    return {
      header: credentialHeaderName(auth),
      value: auth.template.split("{secret}").join(secret),
      versionstamp: loaded.entry.versionstamp,
    };
  }
  if (needsRefresh(loaded, deps.now())) {
    loaded = await refreshConnection(deps, user.sub, backend, loaded);
    if (!loaded) return null;
  }
  return {
    header: "authorization",
    value: `Bearer ${(loaded.secrets as OAuthSecrets).accessToken}`,
    versionstamp: loaded.entry.versionstamp,
  };
}

/** The backend answered 401 to `credential`: drops that version of the connection. */
export async function credentialRejected(
  deps: CredentialDeps,
  user: UserRef,
  backend: BackendConfig,
  credential: BackendCredential,
): Promise<void> {
  await dropConnection(deps, user.sub, backend.name, credential.versionstamp, "backend_401");
}

/**
 * A `fetch` for an SDK transport to `backend` on behalf of `user`: each request carries the
 * current credential (so a refresh is picked up at once); no credential, or a 401, rejects with
 * {@linkcode NotConnectedError}.
 */
export function credentialFetch(
  deps: CredentialDeps,
  user: UserRef,
  backend: BackendConfig,
): typeof fetch {
  return async (input, init) => {
    const credential = await backendCredential(deps, user, backend);
    if (!credential) throw new NotConnectedError(backend.name);
    const headers = new Headers(init?.headers);
    headers.set(credential.header, credential.value);
    const res = await deps.fetch(input, { ...init, headers });
    if (res.status === 401) {
      await res.body?.cancel().catch(() => {});
      await credentialRejected(deps, user, backend, credential);
      throw new NotConnectedError(backend.name, true);
    }
    return res;
  };
}

/** Whether `error` (or one of its causes) says the user is not connected. */
export function isNotConnected(error: unknown): boolean {
  for (let e = error, depth = 0; e && depth < 5; depth++) {
    if (e instanceof NotConnectedError) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** The `BackendAuthError` behind `error` (itself or one of its causes), if any. */
export function authFailure(error: unknown): BackendAuthError | undefined {
  for (let e = error, depth = 0; e && depth < 5; depth++) {
    if (e instanceof BackendAuthError) return e;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
