/**
 * Connecting a user to an `oauth` backend: the authorization code flow with the gateway as the
 * client (RFC 6749 §4.1), PKCE S256 (RFC 7636), a single-use `state`, and `resource` = the
 * backend (RFC 8707), started by the signed-in user at `/connect/{backend}` and finished at
 * `/connect/{backend}/callback`.
 *
 * Start: discovery (backend_oauth_discovery.ts), the gateway's identity there
 * (backend_client_identity.ts), then the flow in KV at `["connect_flow", sha256(state)]` for 10
 * minutes: who started it, the backend, the endpoints, and the PKCE verifier sealed.
 * Callback: the state must name a live flow of this backend started by the same signed-in user
 * (anyone else is refused and the flow left for its owner), it is consumed atomically (a replay
 * finds nothing), `iss` must be the issuer (RFC 9207 §2.4), then the code is exchanged and the
 * tokens stored for (user, backend), sealed.
 */
import type { BackendConfig } from "../config.ts";
import type { Deps } from "../deps.ts";
import { randomToken, s256, sha256Hex } from "../infra/crypto.ts";
import { connectFlowKey, type ConnectFlowRecord, getLive, type UserRef } from "../store.ts";
import { backendOAuthPlan } from "./backend_oauth_discovery.ts";
import {
  chooseBackendClient,
  clientOfConnection,
  clientRefused,
  connectCallbackUrl,
} from "./backend_client_identity.ts";
import { saveOAuthConnection } from "./connections.ts";
import { seal, unseal } from "./encryption.ts";
import { TokenEndpointError, tokenRequest } from "./token_client.ts";

/** How long a connect at a backend's authorization server may take. */
export const CONNECT_FLOW_TTL_MS = 10 * 60 * 1000;

/** A connect that cannot go on; the route shows `message` on an error page. */
export class ConnectError extends Error {
  constructor(message: string, readonly status = 400) {
    super(message);
    this.name = "ConnectError";
  }
}

type FlowDeps = Pick<Deps, "kv" | "now" | "fetch" | "log" | "config" | "settings">;

/**
 * Starts a connect of `user` to `backend`; returns the authorization URL to send the browser to.
 * Nothing is stored when the backend's authorization server cannot be found or reached.
 * @throws {BackendAuthError}
 */
export async function startConnect(
  deps: FlowDeps,
  user: UserRef,
  backend: BackendConfig,
): Promise<string> {
  const plan = await backendOAuthPlan(deps, backend);
  const client = await chooseBackendClient(deps, backend, plan.server);
  const state = randomToken();
  const verifier = randomToken(32);
  const flowKey = connectFlowKey(await sha256Hex(state));
  const record: ConnectFlowRecord = {
    sub: user.sub,
    backend: backend.name,
    issuer: plan.server.issuer,
    clientMethod: client.method,
    clientId: client.clientId,
    resource: plan.resource,
    ...(plan.scope ? { scope: plan.scope } : {}),
    tokenEndpoint: plan.server.tokenEndpoint,
    ...(plan.server.revocationEndpoint
      ? { revocationEndpoint: plan.server.revocationEndpoint }
      : {}),
    issRequired: plan.server.issParameterSupported,
    sealedVerifier: await seal(deps.settings.encryptionKey!, flowKey, { verifier }),
    expiresAt: deps.now() + CONNECT_FLOW_TTL_MS,
  };
  await deps.kv.set(flowKey, record, { expireIn: CONNECT_FLOW_TTL_MS });
  const url = new URL(plan.server.authorizationEndpoint);
  const q = url.searchParams;
  q.set("response_type", "code");
  q.set("client_id", client.clientId);
  q.set("redirect_uri", connectCallbackUrl(deps.settings.publicUrl, backend.name));
  q.set("state", state);
  q.set("code_challenge", await s256(verifier));
  q.set("code_challenge_method", "S256");
  q.set("resource", plan.resource);
  if (plan.scope) q.set("scope", plan.scope);
  deps.log({
    event: "backend_connect_started",
    user: user.sub,
    backend: backend.name,
    client_method: client.method,
  });
  return url.href;
}

/** Consumes the flow a callback's `state` names, if `user` started it. @throws {ConnectError} */
async function consumeFlow(
  deps: FlowDeps,
  user: UserRef,
  backend: BackendConfig,
  state: string | null,
): Promise<{ record: ConnectFlowRecord; verifier: string }> {
  if (!state || state.length > 512) {
    throw new ConnectError(`The answer of ${backend.name}'s sign-in carries no "state".`);
  }
  const flowKey = connectFlowKey(await sha256Hex(state));
  const entry = await getLive<ConnectFlowRecord>(deps.kv, flowKey, deps.now());
  if (!entry || entry.value.backend !== backend.name) {
    throw new ConnectError(
      "This connect has expired, was already used, or was not started here. Start again.",
    );
  }
  if (entry.value.sub !== user.sub) {
    deps.log({
      level: "warn",
      event: "backend_connect_foreign",
      user: user.sub,
      backend: backend.name,
    });
    throw new ConnectError(
      "This connect was started by another account. Sign in as that account, or start again.",
      403,
    );
  }
  const { ok } = await deps.kv.atomic().check(entry).delete(flowKey).commit();
  if (!ok) throw new ConnectError("This connect was already used. Start again.");
  const { verifier } = await unseal<{ verifier: string }>(
    deps.settings.encryptionKey!,
    flowKey,
    entry.value.sealedVerifier,
  );
  return { record: entry.value, verifier };
}

/**
 * Finishes a connect at its callback: checks and consumes the flow, exchanges the code, stores
 * the tokens for (user, backend).
 * @throws {ConnectError} refused, expired, replayed or foreign flows; the server's refusal
 * @throws {BackendAuthError} the token endpoint unreachable or answering garbage
 */
export async function finishConnect(
  deps: FlowDeps,
  user: UserRef,
  backend: BackendConfig,
  params: URLSearchParams,
): Promise<void> {
  const { record, verifier } = await consumeFlow(deps, user, backend, params.get("state"));
  const iss = params.get("iss");
  if ((iss !== null && iss !== record.issuer) || (iss === null && record.issRequired)) {
    throw new ConnectError(`The answer did not come from ${backend.name}'s authorization server.`);
  }
  const info = {
    issuer: record.issuer,
    tokenEndpoint: record.tokenEndpoint,
    ...(record.revocationEndpoint ? { revocationEndpoint: record.revocationEndpoint } : {}),
    resource: record.resource,
    clientMethod: record.clientMethod,
    clientId: record.clientId,
    ...(record.scope ? { scope: record.scope } : {}),
  };
  const client = await clientOfConnection(deps, backend, info);
  const error = params.get("error");
  if (error !== null) {
    const code = error.slice(0, 60);
    if (code === "invalid_client" || code === "unauthorized_client") {
      await clientRefused(deps, backend.name, record.issuer, client, code);
    }
    const description = params.get("error_description")?.slice(0, 200);
    throw new ConnectError(
      code === "access_denied"
        ? `You did not allow the gateway to use your ${backend.name} account.`
        : `${backend.name}'s sign-in answered "${code}"${description ? `: ${description}` : ""}.`,
    );
  }
  const code = params.get("code");
  if (!code) throw new ConnectError(`The answer of ${backend.name}'s sign-in carries no code.`);
  let tokens;
  try {
    tokens = await tokenRequest(backend, record.tokenEndpoint, client, {
      grant_type: "authorization_code",
      code,
      redirect_uri: connectCallbackUrl(deps.settings.publicUrl, backend.name),
      code_verifier: verifier,
      resource: record.resource,
    });
  } catch (e) {
    if (!(e instanceof TokenEndpointError)) throw e;
    if (e.code === "invalid_client" || e.code === "unauthorized_client") {
      await clientRefused(deps, backend.name, record.issuer, client, e.code);
    }
    throw new ConnectError(
      `${backend.name}'s authorization server refused the code (${e.code}). Start again.`,
    );
  }
  await saveOAuthConnection(deps, user.sub, backend.name, tokens, info);
  deps.log({
    event: "backend_connected",
    user: user.sub,
    backend: backend.name,
    client_method: record.clientMethod,
    refreshable: tokens.refreshToken !== undefined,
  });
}
