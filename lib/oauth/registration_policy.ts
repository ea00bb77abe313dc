/**
 * Who may use dynamic client registration (RFC 7591 §3), per `registration` and
 * `rateLimits.registerPerIpPerHour` of the config:
 *
 * - mode `off`: 403 `access_denied` "dynamic client registration is disabled" (RFC 7591 has no
 *   code for a disabled endpoint; RFC 6749 §4.1.2.1's `access_denied` with 403 is the answer a
 *   client understands best, and `registration_endpoint` is then not advertised);
 * - mode `token`: an initial access token as a bearer token (RFC 7591 §3, RFC 6750 §2.1), else
 *   401 `invalid_token` with `WWW-Authenticate: Bearer` (RFC 6750 §3). Tokens are compared as
 *   SHA-256 hashes in constant time;
 * - every mode: at most `registerPerIpPerHour` attempts per client IP and hour (counted before
 *   the token check, so guessing tokens is limited too), else 429 `temporarily_unavailable`
 *   (RFC 6749 §4.1.2.1's code for "try again later") with `Retry-After` (RFC 6585 §4).
 * @module
 */
import type { GatewayConfig } from "../config.ts";
import { bearerToken } from "./bearer.ts";
import { findHash, sha256Hex } from "../infra/crypto.ts";
import { OAuthError } from "./oauth_error.ts";
import { ipLimitSubject } from "../infra/client_ip.ts";
import { hit } from "../infra/rate_limit.ts";

/** The window of `rateLimits.registerPerIpPerHour`. */
export const REGISTER_WINDOW_MS = 3_600_000;

/** What {@linkcode checkRegistrationPolicy} needs from `Deps`. */
export interface RegistrationPolicyDeps {
  kv: Deno.Kv;
  config: GatewayConfig;
  now: () => number;
}

/** SHA-256 hex of the configured initial access tokens, computed once per config. */
const tokenHashes = new WeakMap<GatewayConfig, Promise<string[]>>();

function initialTokenHashes(config: GatewayConfig): Promise<string[]> {
  let hashes = tokenHashes.get(config);
  if (!hashes) {
    hashes = Promise.all(config.registration.initialAccessTokens.map(sha256Hex));
    tokenHashes.set(config, hashes);
  }
  return hashes;
}

function invalidToken(description: string): OAuthError {
  return new OAuthError("invalid_token", description, {
    status: 401,
    headers: {
      "WWW-Authenticate":
        `Bearer realm="register", error="invalid_token", error_description="${description}"`,
    },
  });
}

/** Whether `authorization` carries one of the configured initial access tokens. */
async function hasInitialAccessToken(
  config: GatewayConfig,
  authorization: string | null,
): Promise<boolean> {
  const token = bearerToken(authorization);
  if (token === null) return false;
  return findHash(await sha256Hex(token), await initialTokenHashes(config)) !== undefined;
}

/**
 * Applies the registration policy to a `POST /register` request before its body is read.
 * @throws {OAuthError} 403 `access_denied` (off), 429 `temporarily_unavailable` (rate limit),
 * 401 `invalid_token` (token mode, token missing or wrong).
 */
export async function checkRegistrationPolicy(
  deps: RegistrationPolicyDeps,
  req: Request,
  clientIp: string,
): Promise<void> {
  const { registration, rateLimits } = deps.config;
  if (registration.mode === "off") {
    throw new OAuthError("access_denied", "dynamic client registration is disabled", {
      status: 403,
    });
  }
  const limit = await hit(
    deps.kv,
    "register",
    ipLimitSubject(clientIp),
    rateLimits.registerPerIpPerHour,
    REGISTER_WINDOW_MS,
    deps.now(),
  );
  if (!limit.allowed) {
    throw new OAuthError("temporarily_unavailable", "too many registrations; try again later", {
      status: 429,
      headers: { "Retry-After": String(limit.retryAfterSeconds) },
    });
  }
  if (registration.mode !== "token") return;
  const authorization = req.headers.get("authorization");
  if (authorization === null) {
    throw new OAuthError("invalid_token", "an initial access token is required (RFC 7591 §3)", {
      status: 401,
      headers: { "WWW-Authenticate": 'Bearer realm="register"' },
    });
  }
  if (!await hasInitialAccessToken(deps.config, authorization)) {
    throw invalidToken("the initial access token is not valid");
  }
}
