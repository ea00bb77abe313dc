/**
 * A sign-in at an upstream identity provider, from `/login/{providerId}` to its callback.
 *
 * Start: a random `state` (its SHA-256 keys `["login_flow", hash]`, 10 minutes, single use), a
 * PKCE verifier (RFC 7636) that lives only in a cookie of this browser, named after the state
 * (the flow record keeps its S256), and for OIDC a `nonce` (the record keeps its SHA-256). The
 * pending authorization request rides along by reference (`requestId`), never in a URL given
 * to the provider. Callback: the state must name a live flow of this provider, the browser
 * must hold the flow's cookie (a callback URL replayed in another browser fails), and the flow
 * is consumed atomically before the code is exchanged (a replayed callback finds nothing).
 */
import { parseCookies, serializeCookie } from "../infra/cookies.ts";
import { randomToken, s256, sha256Hex, timingSafeEqual } from "../infra/crypto.ts";
import type { Deps } from "../deps.ts";
import { getLive, loginFlowKey, type LoginFlowRecord } from "../store.ts";
import type { Identity } from "./access_rules.ts";
import { callbackUrl, type ProviderConfig } from "./login_config.ts";
import { githubAuthorizationUrl, githubIdentity, githubScopes } from "./providers/github.ts";
import { oidcAuthorizationUrl, oidcIdentity } from "./providers/oidc.ts";

/** How long a sign-in at a provider may take. */
export const LOGIN_FLOW_TTL_MS = 10 * 60 * 1000;

/** A sign-in that cannot go on; the route shows `title` and `message` on an error page. */
export class LoginError extends Error {
  constructor(readonly title: string, message: string, readonly status = 400) {
    super(message);
    this.name = "LoginError";
  }
}

/** Where a sign-in goes afterwards: a pending authorization request, or a same-origin path. */
export type LoginTarget = { requestId: string } | { returnTo: string };

/** The query naming a target: `request=<id>` or `return_to=<path>`. */
export function targetQuery(target: LoginTarget): string {
  return "requestId" in target
    ? `request=${encodeURIComponent(target.requestId)}`
    : `return_to=${encodeURIComponent(target.returnTo)}`;
}

type FlowDeps = Pick<Deps, "kv" | "now" | "fetch" | "config" | "settings">;

/** The configured provider `id`, or undefined. */
export function findProvider(deps: Pick<Deps, "config">, id: string | undefined) {
  return deps.config.login.providers.find((p) => p.id === id);
}

/** The access rules that can apply to sign-ins through provider `p`. */
function rulesFor(deps: Pick<Deps, "config">, p: ProviderConfig) {
  return deps.config.login.access.filter((r) => !r.providers || r.providers.includes(p.id));
}

/** Organizations named by `githubOrgs` rules that can apply to provider `p`. */
function orgsFor(deps: Pick<Deps, "config">, p: ProviderConfig): string[] {
  return [...new Set(rulesFor(deps, p).flatMap((r) => r.githubOrgs ?? []))];
}

const flowCookieName = (stateHash: string, secure: boolean) =>
  `${secure ? "__Host-" : ""}gw_login_${stateHash.slice(0, 16)}`;

/**
 * Starts a sign-in at `p`: builds the provider's authorization URL (OIDC: after discovery),
 * then stores the flow. Nothing is stored when the provider cannot be reached.
 * Returns the URL to redirect to and the flow's cookie.
 * @throws {ProviderError}
 */
export async function startLogin(
  deps: FlowDeps,
  p: ProviderConfig,
  target: LoginTarget,
): Promise<{ location: string; cookie: string }> {
  const state = randomToken();
  const verifier = randomToken(32);
  const codeChallenge = await s256(verifier);
  const redirectUri = callbackUrl(deps.settings.publicUrl, p.id);
  const record: LoginFlowRecord = {
    providerId: p.id,
    codeChallenge,
    expiresAt: deps.now() + LOGIN_FLOW_TTL_MS,
    ...target,
  };
  let url: URL;
  if (p.type === "oidc") {
    const nonce = randomToken();
    url = await oidcAuthorizationUrl(deps, p, { state, nonce, codeChallenge, redirectUri });
    record.nonceHash = await sha256Hex(nonce);
  } else {
    const scopes = githubScopes(p, orgsFor(deps, p).length > 0);
    url = githubAuthorizationUrl(p, { state, codeChallenge, redirectUri, scopes });
  }
  const stateHash = await sha256Hex(state);
  await deps.kv.set(loginFlowKey(stateHash), record, { expireIn: LOGIN_FLOW_TTL_MS });
  const secure = deps.settings.secureCookies;
  const cookie = serializeCookie(flowCookieName(stateHash, secure), verifier, {
    secure,
    maxAge: LOGIN_FLOW_TTL_MS / 1000,
  });
  return { location: url.href, cookie };
}

/** A consumed flow, the PKCE verifier from its cookie, and the cookie-clearing header. */
export interface ConsumedFlow {
  record: LoginFlowRecord;
  verifier: string;
  clearCookie: string;
}

/**
 * Checks the callback's `state` against the flow it names and this browser's flow cookie, and
 * consumes the flow (single use).
 * @throws {LoginError} state missing, unknown, expired, used, foreign, or another browser's
 */
export async function consumeLogin(
  req: Request,
  deps: FlowDeps,
  p: ProviderConfig,
  params: URLSearchParams,
): Promise<ConsumedFlow> {
  const state = params.get("state");
  if (!state || state.length > 512) {
    throw new LoginError(
      "Sign-in failed",
      `The answer of the sign-in provider carries no "state".`,
    );
  }
  const stateHash = await sha256Hex(state);
  const entry = await getLive<LoginFlowRecord>(deps.kv, loginFlowKey(stateHash), deps.now());
  if (!entry || entry.value.providerId !== p.id) {
    throw new LoginError(
      "Sign-in expired",
      "This sign-in has expired, was already used, or was not started here. Start again.",
    );
  }
  const secure = deps.settings.secureCookies;
  const name = flowCookieName(stateHash, secure);
  const verifier = parseCookies(req.headers.get("cookie")).get(name) ?? "";
  if (!timingSafeEqual(await s256(verifier), entry.value.codeChallenge)) {
    throw new LoginError(
      "Sign-in failed",
      "This sign-in was started in another browser. Start again in this one.",
    );
  }
  const { ok } = await deps.kv.atomic().check(entry).delete(entry.key).commit();
  if (!ok) throw new LoginError("Sign-in expired", "This sign-in was already used. Start again.");
  const clearCookie = serializeCookie(name, "", { secure, maxAge: 0 });
  return { record: entry.value, verifier, clearCookie };
}

/**
 * Finishes a sign-in at the provider: code exchange and identity (OIDC: verified ID token).
 * @throws {ProviderError}
 */
export async function providerIdentity(
  deps: FlowDeps,
  p: ProviderConfig,
  flow: ConsumedFlow,
  params: URLSearchParams,
): Promise<Identity> {
  const code = params.get("code") ?? "";
  const redirectUri = callbackUrl(deps.settings.publicUrl, p.id);
  if (p.type === "github") {
    return githubIdentity(deps, p, {
      code,
      codeVerifier: flow.verifier,
      redirectUri,
      orgs: orgsFor(deps, p),
    });
  }
  const identity = await oidcIdentity(deps, p, {
    code,
    codeVerifier: flow.verifier,
    redirectUri,
    nonceHash: flow.record.nonceHash ?? "",
    iss: params.get("iss"),
  });
  // Only the groups the rules name are kept (a user may be in thousands; records stay small).
  if (identity.groups) {
    const named = new Set(rulesFor(deps, p).flatMap((r) => r.groups ?? []));
    identity.groups = identity.groups.filter((g) => named.has(g));
  }
  return identity;
}
