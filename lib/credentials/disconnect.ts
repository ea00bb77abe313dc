/**
 * Disconnecting a user from a per-user backend: the tokens are revoked at the backend's
 * authorization server when it has a revocation endpoint (RFC 7009 §2.1: the refresh token,
 * which also ends its access tokens there, then the access token), then the connection is
 * deleted. Revocation is best effort: an unreachable server does not keep the connection.
 */
import type { BackendConfig } from "../config.ts";
import type { Deps } from "../deps.ts";
import type { UserRef } from "../store.ts";
import { clientOfConnection } from "./backend_client_identity.ts";
import { dropConnection, loadConnection, type OAuthSecrets } from "./connections.ts";
import { BackendAuthError } from "./outbound.ts";
import { revokeToken } from "./token_client.ts";

type DisconnectDeps = Pick<Deps, "kv" | "now" | "fetch" | "log" | "config" | "settings">;

/** Disconnects `user` from `backend`; `revoked` says whether the server confirmed revocation. */
export async function disconnect(
  deps: DisconnectDeps,
  user: UserRef,
  backend: BackendConfig,
): Promise<{ revoked: boolean }> {
  const loaded = await loadConnection(deps, user.sub, backend.name);
  if (!loaded) return { revoked: false };
  let revoked = false;
  const info = loaded.entry.value.oauth;
  if (info?.revocationEndpoint) {
    const secrets = loaded.secrets as OAuthSecrets;
    try {
      const client = await clientOfConnection(deps, backend, info);
      if (secrets.refreshToken) {
        revoked = await revokeToken(
          backend,
          info.revocationEndpoint,
          client,
          secrets.refreshToken,
          "refresh_token",
        );
      }
      const access = await revokeToken(
        backend,
        info.revocationEndpoint,
        client,
        secrets.accessToken,
        "access_token",
      );
      revoked = revoked || access;
    } catch (e) {
      if (!(e instanceof BackendAuthError)) throw e;
    }
    if (!revoked) {
      deps.log({
        level: "warn",
        event: "backend_revocation_failed",
        user: user.sub,
        backend: backend.name,
      });
    }
  }
  await dropConnection(deps, user.sub, backend.name, null, "disconnected");
  return { revoked };
}
