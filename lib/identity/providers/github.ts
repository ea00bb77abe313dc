/**
 * Sign-in with GitHub or GitHub Enterprise Server (not OpenID Connect: no ID token). The web
 * application flow (GitHub docs "Authorizing OAuth apps" §Web application flow) with `state` and
 * PKCE S256, then the REST API with the user's token: `GET /user` (id, login, name),
 * `GET /user/emails` (the primary address counts only when verified) and, for each organization
 * named by a `githubOrgs` rule, `GET /user/memberships/orgs/{org}` (an `active` membership).
 */
import type { Deps } from "../../deps.ts";
import type { Identity } from "../access_rules.ts";
import type { GithubProviderConfig } from "../login_config.ts";
import { fetchJson, fetchJsonObject, type ProviderCall, ProviderError } from "./provider_http.ts";

/** REST API version the gateway is written against (GitHub docs "API Versions"). */
const API_VERSION = "2022-11-28";

/** The scopes asked of GitHub: configured, or what the gateway reads. */
export function githubScopes(p: GithubProviderConfig, checksOrgs: boolean): string[] {
  return p.scopes ?? ["read:user", "user:email", ...(checksOrgs ? ["read:org"] : [])];
}

/** What starts a GitHub sign-in. */
export interface GithubStart {
  state: string;
  codeChallenge: string;
  redirectUri: string;
  scopes: string[];
}

/** The authorization URL (`GET /login/oauth/authorize`). */
export function githubAuthorizationUrl(p: GithubProviderConfig, start: GithubStart): URL {
  const url = new URL(p.authorizeUrl);
  for (
    const [k, v] of Object.entries({
      client_id: p.clientId,
      redirect_uri: start.redirectUri,
      scope: start.scopes.join(" "),
      state: start.state,
      code_challenge: start.codeChallenge,
      code_challenge_method: "S256",
      allow_signup: "false",
    })
  ) url.searchParams.set(k, v);
  return url;
}

/** What the callback hands over to finish a GitHub sign-in. */
export interface GithubFinish {
  code: string;
  codeVerifier: string;
  redirectUri: string;
  /** Organizations to check membership of (those of the `githubOrgs` rules). */
  orgs: string[];
}

const apiHeaders = (token: string) => ({
  authorization: `Bearer ${token}`,
  accept: "application/vnd.github+json",
  "x-github-api-version": API_VERSION,
  "user-agent": "mcp-edge-gateway",
});

/**
 * Exchanges the code (`POST /login/oauth/access_token`, which answers errors with 200 and an
 * `error` field) and reads the user. @throws {ProviderError}
 */
export async function githubIdentity(
  deps: Pick<Deps, "fetch">,
  p: GithubProviderConfig,
  f: GithubFinish,
): Promise<Identity> {
  const call: ProviderCall = { deps, label: p.name ?? "GitHub", timeoutMs: p.timeoutMs };
  const tokens = await fetchJsonObject(call, p.tokenUrl, "an access token", {
    method: "POST",
    headers: { accept: "application/json", "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      client_id: p.clientId,
      client_secret: p.clientSecret,
      code: f.code,
      redirect_uri: f.redirectUri,
      code_verifier: f.codeVerifier,
    }),
  });
  if (typeof tokens.access_token !== "string") {
    const reason = typeof tokens.error === "string" ? tokens.error.slice(0, 60) : "no_access_token";
    throw new ProviderError(`${call.label} refused the sign-in.`, reason);
  }
  const headers = apiHeaders(tokens.access_token);
  const api = p.apiUrl.replace(/\/+$/, "");
  const user = await fetchJsonObject(call, `${api}/user`, "the user", { headers });
  if (typeof user.id !== "number" || typeof user.login !== "string") {
    throw new ProviderError(`${call.label} did not return the user.`, "user_invalid");
  }
  const identity: Identity = {
    providerId: p.id,
    user: { sub: `${p.id}:${user.id}`, login: user.login.slice(0, 39) },
  };
  if (typeof user.name === "string" && user.name) identity.user.name = user.name.slice(0, 200);
  const emails = await fetchJson(call, `${api}/user/emails`, { headers });
  const primary = Array.isArray(emails.body) && emails.status === 200
    ? emails.body.find((e) => e?.primary === true && e?.verified === true)
    : undefined;
  if (typeof primary?.email === "string" && primary.email.length <= 320) {
    identity.user.email = primary.email;
  }
  if (f.orgs.length > 0) {
    const member = await Promise.all(f.orgs.map(async (org) => {
      const url = `${api}/user/memberships/orgs/${encodeURIComponent(org)}`;
      const r = await fetchJson(call, url, { headers });
      const state = (r.body as { state?: unknown } | undefined)?.state;
      return r.status === 200 && state === "active" ? org : null;
    }));
    identity.githubOrgs = member.filter((o) => o !== null);
  }
  return identity;
}
