/**
 * Sign-in with any OpenID Connect provider (OpenID Connect Core 1.0 §3.1, authorization code
 * flow): discovery (OpenID Connect Discovery 1.0 §4, cached), the authorization request with
 * `state`, `nonce` and PKCE S256 (RFC 7636), the code exchange (client_secret_basic, or _post
 * when the provider supports only that), and the ID token checks of Core §3.1.3.7: signature by
 * a key of the provider's JWKS with an algorithm it advertises, `iss`, `aud`, `azp`, `exp`,
 * `iat`, `nonce`. The email counts only when `email_verified` is true.
 */
import { createRemoteJWKSet, customFetch, errors, type JWTPayload, jwtVerify } from "jose";
import { z } from "zod";
import { ASYMMETRIC_ALGORITHMS } from "../../config.ts";
import { sha256Hex, timingSafeEqual } from "../../infra/crypto.ts";
import type { Deps } from "../../deps.ts";
import type { Identity } from "../access_rules.ts";
import type { OidcProviderConfig } from "../login_config.ts";
import { fetchJsonObject, type ProviderCall, ProviderError } from "./provider_http.ts";

/** How long a discovery document is reused. */
export const DISCOVERY_TTL_MS = 60 * 60 * 1000;
/** Leeway for `exp`/`iat`, and the oldest `iat` accepted (Core §3.1.3.7 items 9 and 10). */
const CLOCK_TOLERANCE_S = 60;
const MAX_ID_TOKEN_AGE_S = 600;

const endpoint = z.url({ protocol: /^https?$/ });
const metadataSchema = z.object({
  issuer: z.string(),
  authorization_endpoint: endpoint,
  token_endpoint: endpoint,
  jwks_uri: endpoint,
  userinfo_endpoint: endpoint.optional(),
  id_token_signing_alg_values_supported: z.array(z.string()).min(1),
  token_endpoint_auth_methods_supported: z.array(z.string()).optional(),
  authorization_response_iss_parameter_supported: z.boolean().optional(),
});
/** The fields of a provider's discovery document the gateway uses. */
export type OidcMetadata = z.output<typeof metadataSchema>;

interface Cached {
  metadata: OidcMetadata;
  until: number;
  jwks: ReturnType<typeof createRemoteJWKSet>;
}
// Per configured provider (the frozen config object), per isolate.
const cache = new WeakMap<OidcProviderConfig, Cached>();

type OidcDeps = Pick<Deps, "fetch" | "now">;

const callOf = (deps: OidcDeps, p: OidcProviderConfig): ProviderCall => ({
  deps,
  label: p.name ?? new URL(p.issuer).host,
  timeoutMs: p.timeoutMs,
});

/**
 * The provider's metadata (OpenID Connect Discovery 1.0 §4), fetched once an hour at most;
 * failures are not cached. Its `issuer` must equal the configured one exactly (§4.3).
 * @throws {ProviderError}
 */
export async function discover(deps: OidcDeps, p: OidcProviderConfig): Promise<Cached> {
  const hit = cache.get(p);
  if (hit && hit.until > deps.now()) return hit;
  const call = callOf(deps, p);
  const url = `${p.issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`;
  const body = await fetchJsonObject(call, url, "its OpenID configuration");
  const parsed = metadataSchema.safeParse(body);
  if (!parsed.success || parsed.data.issuer !== p.issuer) {
    throw new ProviderError(
      `${call.label} returned an unusable OpenID configuration.`,
      "discovery_invalid",
    );
  }
  const metadata = parsed.data;
  const jwks = hit?.metadata.jwks_uri === metadata.jwks_uri ? hit.jwks : createRemoteJWKSet(
    new URL(metadata.jwks_uri),
    {
      timeoutDuration: p.timeoutMs,
      cooldownDuration: 30_000,
      cacheMaxAge: 600_000,
      [customFetch]: (u, init) => deps.fetch(u, init),
    },
  );
  const entry = { metadata, jwks, until: deps.now() + DISCOVERY_TTL_MS };
  cache.set(p, entry);
  return entry;
}

/** What starts an OIDC sign-in: the values the flow record keeps (hashed) for the callback. */
export interface OidcStart {
  state: string;
  nonce: string;
  codeChallenge: string;
  redirectUri: string;
}

/** The authorization request URL (Core §3.1.2.1, RFC 7636 §4.3). @throws {ProviderError} */
export async function oidcAuthorizationUrl(
  deps: OidcDeps,
  p: OidcProviderConfig,
  start: OidcStart,
): Promise<URL> {
  const { metadata } = await discover(deps, p);
  const url = new URL(metadata.authorization_endpoint);
  for (
    const [k, v] of Object.entries({
      response_type: "code",
      client_id: p.clientId,
      redirect_uri: start.redirectUri,
      scope: p.scopes.join(" "),
      state: start.state,
      nonce: start.nonce,
      code_challenge: start.codeChallenge,
      code_challenge_method: "S256",
    })
  ) url.searchParams.set(k, v);
  return url;
}

/** What the callback hands over to finish an OIDC sign-in. */
export interface OidcFinish {
  code: string;
  codeVerifier: string;
  redirectUri: string;
  nonceHash: string;
  /** The `iss` authorization response parameter (RFC 9207), when sent. */
  iss: string | null;
}

/** The ID token or the userinfo did not pass the checks: nothing from it may be used. */
export class IdTokenError extends ProviderError {}

function tokenRequest(p: OidcProviderConfig, metadata: OidcMetadata, f: OidcFinish): RequestInit {
  const body = new URLSearchParams({
    grant_type: "authorization_code",
    code: f.code,
    redirect_uri: f.redirectUri,
    code_verifier: f.codeVerifier,
  });
  const headers = new Headers({
    "content-type": "application/x-www-form-urlencoded",
    accept: "application/json",
  });
  const methods = metadata.token_endpoint_auth_methods_supported ?? ["client_secret_basic"];
  if (p.clientSecret === undefined) {
    body.set("client_id", p.clientId);
  } else if (methods.includes("client_secret_basic") || !methods.includes("client_secret_post")) {
    // RFC 6749 §2.3.1: both parts form-urlencoded before base64.
    const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, "+");
    headers.set("authorization", `Basic ${btoa(`${enc(p.clientId)}:${enc(p.clientSecret)}`)}`);
  } else {
    body.set("client_id", p.clientId);
    body.set("client_secret", p.clientSecret);
  }
  return { method: "POST", headers, body };
}

/**
 * Exchanges the code and verifies the ID token; returns the signed-in identity.
 * @throws {ProviderError} (provider unreachable or refusing the code) or {@linkcode IdTokenError}
 */
export async function oidcIdentity(
  deps: OidcDeps,
  p: OidcProviderConfig,
  f: OidcFinish,
): Promise<Identity> {
  const { metadata, jwks } = await discover(deps, p);
  const call = callOf(deps, p);
  const reject = (reason: string) =>
    new IdTokenError(`The sign-in response of ${call.label} could not be verified.`, reason);
  if (
    f.iss !== null
      ? f.iss !== metadata.issuer
      : metadata.authorization_response_iss_parameter_supported
  ) {
    throw reject("iss_mismatch"); // RFC 9207 §2.4: mix-up defence
  }
  const tokens = await fetchJsonObject(
    call,
    metadata.token_endpoint,
    "tokens",
    tokenRequest(p, metadata, f),
  );
  if (typeof tokens.id_token !== "string") throw reject("no_id_token");
  const algorithms = metadata.id_token_signing_alg_values_supported
    .filter((a) => (ASYMMETRIC_ALGORITHMS as readonly string[]).includes(a));
  let claims: JWTPayload;
  try {
    ({ payload: claims } = await jwtVerify(tokens.id_token, jwks, {
      issuer: p.issuer,
      audience: p.clientId,
      algorithms,
      currentDate: new Date(deps.now()),
      clockTolerance: CLOCK_TOLERANCE_S,
      maxTokenAge: MAX_ID_TOKEN_AGE_S,
      requiredClaims: ["sub", "exp", "iat", "nonce"],
    }));
  } catch (e) {
    if (e instanceof errors.JWKSTimeout) {
      throw new ProviderError(`${call.label} did not answer in time.`, "jwks_timeout");
    }
    // The key set could not be fetched (network error, or not a 200 JSON key set): an outage.
    if (!(e instanceof errors.JOSEError) || e.code === "ERR_JOSE_GENERIC") {
      throw new ProviderError(
        `${call.label} cannot be reached. Try again in a moment.`,
        "jwks_unreachable",
      );
    }
    throw reject(`id_token_${e.code}`);
  }
  const auds = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if ((auds.length > 1 || claims.azp !== undefined) && claims.azp !== p.clientId) {
    throw reject("azp_mismatch");
  }
  if (
    typeof claims.nonce !== "string" || !timingSafeEqual(await sha256Hex(claims.nonce), f.nonceHash)
  ) {
    throw reject("nonce_mismatch");
  }
  if (typeof claims.sub !== "string" || claims.sub.length === 0 || claims.sub.length > 255) {
    throw reject("bad_sub");
  }
  const info = await userinfo(call, p, metadata, tokens.access_token, claims);
  return identityOf(p, claims, info);
}

/**
 * The userinfo response (Core §5.3), when the ID token lacks the email or groups (providers put
 * scope claims there when an access token is issued, Core §5.4). Its `sub` must be the ID
 * token's (Core §5.3.2).
 */
async function userinfo(
  call: ProviderCall,
  p: OidcProviderConfig,
  metadata: OidcMetadata,
  accessToken: unknown,
  claims: JWTPayload,
): Promise<Record<string, unknown>> {
  const wanted = claims.email === undefined ||
    (p.groupsClaim !== undefined && claims[p.groupsClaim] === undefined);
  if (!wanted || !metadata.userinfo_endpoint || typeof accessToken !== "string") return {};
  const info = await fetchJsonObject(call, metadata.userinfo_endpoint, "user information", {
    headers: { authorization: `Bearer ${accessToken}`, accept: "application/json" },
  });
  if (info.sub !== claims.sub) {
    throw new IdTokenError(
      `The user information of ${call.label} does not match the sign-in.`,
      "userinfo_sub_mismatch",
    );
  }
  return info;
}

const text = (v: unknown, max = 320) =>
  typeof v === "string" && v.length > 0 && v.length <= max ? v : undefined;

function identityOf(
  p: OidcProviderConfig,
  claims: JWTPayload,
  info: Record<string, unknown>,
): Identity {
  const source: Record<string, unknown> = claims.email !== undefined ? claims : info;
  const email = source.email_verified === true ? text(source.email) : undefined;
  const identity: Identity = { providerId: p.id, user: { sub: `${p.id}:${claims.sub}` } };
  if (email) identity.user.email = email;
  const login = text(claims.preferred_username ?? info.preferred_username, 200);
  if (login) identity.user.login = login;
  const name = text(claims.name ?? info.name, 200);
  if (name) identity.user.name = name;
  if (p.groupsClaim) {
    const raw = claims[p.groupsClaim] ?? info[p.groupsClaim];
    const list = (Array.isArray(raw) ? raw.slice(0, 5000) : [raw]).map((g) => text(g, 256)).filter((
      g,
    ) => g !== undefined);
    identity.groups = [...new Set(list)];
  }
  return identity;
}
