/**
 * JWT access tokens of an external authorization server (Auth0, Keycloak, Entra…), accepted on
 * MCP routes besides the gateway's own opaque tokens (issue 5 "Accepting tokens of an existing
 * identity provider").
 *
 * Verification (RFC 9068 §4, RFC 8725 §3.1 and §3.8, RFC 7519 §4.1): signature by a key of the
 * issuer's JWKS (`createRemoteJWKSet`: cached, refetched on an unknown `kid` after a cooldown),
 * an allowed asymmetric algorithm only (never `none` or HMAC), `iss` equal to the configured
 * issuer, `aud` naming this gateway's resource (MCP 2025-11-25 Authorization §Token Handling,
 * RFC 8707 §2), `exp`/`nbf` with a small leeway, and a `sub`.
 * @module
 */
import { createRemoteJWKSet, customFetch, errors, type JWTPayload, jwtVerify } from "jose";
import { ASYMMETRIC_ALGORITHMS } from "../config.ts";
import { OAuthError } from "./oauth_error.ts";
import { aggregateResource, audienceCovers } from "./resources.ts";

export { ASYMMETRIC_ALGORITHMS };

/** Settings of one external issuer (suggested config: `externalIssuers[]`). */
export interface ExternalJwtConfig {
  /** Expected `iss`, exactly as the issuer writes it. */
  issuer: string;
  /** URL of the issuer's JWK Set (RFC 7517 §5). */
  jwksUrl: string;
  /**
   * Only for issuers that cannot put a resource URL in `aud` (Entra's `api://<app id>`): this
   * value is accepted as `aud` and counts as the `/mcp` resource (every backend). When absent,
   * `aud` must name the accessed resource, `/mcp` or `<PUBLIC_URL>` (every MCP endpoint).
   */
  audience?: string;
  /** Allowed `alg` values; default `["RS256", "ES256"]`. */
  algorithms?: readonly string[];
  /** Leeway for `exp`/`nbf`/`iat`; default 30 s. */
  clockToleranceSeconds?: number;
}

/** What the verifier needs from `Deps`. */
export interface ExternalJwtDeps {
  now: () => number;
  fetch: typeof fetch;
}

/** The caller behind a verified external token; shaped like `bearer.ts`'s `Principal`. */
export interface ExternalJwtPrincipal {
  /** `jwt:<iss>:<sub>`. */
  id: string;
  kind: "external_jwt";
  /** `azp` or `client_id` claim when present (RFC 9068 §2.2). */
  clientId?: string;
  /** Space-separated gateway scopes mapped from `scope`/`scp`. */
  scope: string;
  /** The gateway resource the token is for: the accessed one or `/mcp`. */
  audience: string;
}

/** Where a token is used: the resource URL of the MCP endpoint and the gateway's public URL. */
export interface ExternalJwtTarget {
  resource: string;
  publicUrl: string;
  /** When given, scopes outside it are dropped (e.g. `supportedScopes(config)`). */
  knownScopes?: readonly string[];
}

/** Whether a token has the compact JWS shape (three base64url parts), checked before verifying. */
export function looksLikeJwt(token: string): boolean {
  return token.length <= 16_384 && /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token);
}

/**
 * Scopes of a token: `scope` (space-separated string, RFC 9068 §2.2.3 / RFC 8693 §4.2) or `scp`
 * (array, or a space-separated string as Entra writes it); duplicates removed; filtered to
 * `knownScopes` when given.
 */
export function mapScopes(payload: JWTPayload, knownScopes?: readonly string[]): string {
  const raw: unknown[] = [];
  for (const claim of [payload.scope, payload.scp]) {
    if (typeof claim === "string") raw.push(...claim.split(" "));
    else if (Array.isArray(claim)) raw.push(...claim);
  }
  const out: string[] = [];
  for (const s of raw) {
    if (typeof s !== "string" || s === "" || out.includes(s)) continue;
    if (knownScopes && !knownScopes.includes(s)) continue;
    out.push(s);
  }
  return out.join(" ");
}

/** A verifier for one external issuer; create it once (it caches the JWKS). */
export interface ExternalJwtVerifier {
  readonly issuer: string;
  /**
   * Verifies `token` for `target`. Returns the principal, or `null` when the token is not a
   * valid token of this issuer for this resource (→ 401 `invalid_token`).
   * @throws {OAuthError} `temporarily_unavailable` (503) when the JWKS cannot be fetched.
   */
  verify(token: string, target: ExternalJwtTarget): Promise<ExternalJwtPrincipal | null>;
}

/**
 * Builds a verifier. The JWKS is fetched with `deps.fetch` (no redirects, 5 s timeout).
 * @throws {Error} when the configuration allows `none` or a symmetric algorithm.
 */
export function createExternalJwtVerifier(
  config: ExternalJwtConfig,
  deps: ExternalJwtDeps,
): ExternalJwtVerifier {
  const algorithms = [...(config.algorithms ?? ["RS256", "ES256"])];
  for (const alg of algorithms) {
    if (!(ASYMMETRIC_ALGORITHMS as readonly string[]).includes(alg)) {
      throw new Error(`external issuer ${config.issuer}: algorithm "${alg}" is not allowed`);
    }
  }
  const jwks = createRemoteJWKSet(new URL(config.jwksUrl), {
    timeoutDuration: 5_000,
    cooldownDuration: 30_000,
    cacheMaxAge: 600_000,
    [customFetch]: (url, init) => deps.fetch(url, init),
  });
  const clockTolerance = config.clockToleranceSeconds ?? 30;

  return {
    issuer: config.issuer,
    async verify(token, target) {
      if (!looksLikeJwt(token)) return null;
      const aggregate = aggregateResource(target.publicUrl);
      const accepted = config.audience !== undefined
        ? [config.audience]
        : [...new Set([target.resource, aggregate, target.publicUrl])]
          .filter((a) => audienceCovers(a, target.resource, target.publicUrl));
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, jwks, {
          issuer: config.issuer,
          audience: accepted,
          algorithms,
          clockTolerance,
          currentDate: new Date(deps.now()),
          requiredClaims: ["exp", "sub"],
        }));
      } catch (e) {
        if (e instanceof errors.JWKSTimeout || e instanceof TypeError) {
          throw new OAuthError(
            "temporarily_unavailable",
            "the token issuer's keys cannot be fetched",
            { status: 503, headers: { "retry-after": "30" } },
          );
        }
        if (e instanceof errors.JOSEError && e.message.startsWith("Expected 200 OK")) {
          throw new OAuthError(
            "temporarily_unavailable",
            "the token issuer's keys cannot be fetched",
            { status: 503, headers: { "retry-after": "30" } },
          );
        }
        return null;
      }
      const auds = typeof payload.aud === "string" ? [payload.aud] : payload.aud ?? [];
      const audience = config.audience === undefined && auds.includes(target.resource)
        ? target.resource
        : aggregate;
      const clientId = typeof payload.azp === "string"
        ? payload.azp
        : typeof payload.client_id === "string"
        ? payload.client_id
        : undefined;
      const principal: ExternalJwtPrincipal = {
        id: `jwt:${payload.iss}:${payload.sub}`,
        kind: "external_jwt",
        scope: mapScopes(payload, target.knownScopes),
        audience,
      };
      if (clientId !== undefined) principal.clientId = clientId;
      return principal;
    },
  };
}
