/**
 * Rate limits of the unauthenticated OAuth endpoints, counted in Deno KV (so they hold across
 * isolates) and answered 429 with `Retry-After` (RFC 6585 §4, RFC 9110 §10.2.3):
 *
 * - per client IP (IPv6 by /64), **before** any client lookup: a lookup may fetch a Client ID
 *   Metadata Document, so unauthenticated requests must not reach it unbounded
 *   (`rateLimits.tokenPerIpPerMinute`, `revokePerIpPerMinute`);
 * - `/token` failures per (stated `client_id`, client IP): anyone can state a public client's id,
 *   so failures are never counted against the client as a whole — an attacker only blocks
 *   themselves (`tokenFailuresPerClientAndIpPerMinute`);
 * - `/token` successes per client (`tokenPerClientPerMinute`): only a client holding a valid
 *   code or refresh token can spend them.
 * @module
 */
import type { Deps } from "../deps.ts";
import { ipLimitSubject } from "../infra/client_ip.ts";
import { hit, peek } from "../infra/rate_limit.ts";
import { rateLimited } from "./oauth_error.ts";

/** The window of every limit here. */
export const ENDPOINT_WINDOW_MS = 60_000;

type LimitDeps = Pick<Deps, "kv" | "now" | "config">;

/**
 * Counts one request of `clientIp` to `endpoint` against `perMinute`.
 * @throws {OAuthError} 429 past the limit.
 */
export async function limitPerIp(
  deps: LimitDeps,
  endpoint: "token" | "revoke",
  clientIp: string,
  perMinute: number,
): Promise<void> {
  const subject = ipLimitSubject(clientIp);
  const r = await hit(
    deps.kv,
    `${endpoint}_ip`,
    subject,
    perMinute,
    ENDPOINT_WINDOW_MS,
    deps.now(),
  );
  if (r.allowed) return;
  throw rateLimited(
    `too many /${endpoint} requests from your address (at most ${perMinute} per minute); ` +
      `retry after ${r.retryAfterSeconds} s`,
    r.retryAfterSeconds,
  );
}

const failureSubject = (clientId: string, clientIp: string) =>
  `${clientId.slice(0, 300)} ${ipLimitSubject(clientIp)}`;

/**
 * Refuses a `/token` request before any work when this (client, IP) pair, or the client's
 * successes, are at their limits.
 * @throws {OAuthError} 429
 */
export async function checkTokenLimits(
  deps: LimitDeps,
  clientId: string,
  clientIp: string,
): Promise<void> {
  const limits = deps.config.rateLimits;
  const now = deps.now();
  const [failures, successes] = await Promise.all([
    peek(
      deps.kv,
      "token_fail",
      failureSubject(clientId, clientIp),
      limits.tokenFailuresPerClientAndIpPerMinute,
      ENDPOINT_WINDOW_MS,
      now,
    ),
    peek(deps.kv, "token", clientId, limits.tokenPerClientPerMinute, ENDPOINT_WINDOW_MS, now),
  ]);
  if (!failures.allowed) {
    throw rateLimited(
      `too many failed token requests for this client from your address; ` +
        `retry after ${failures.retryAfterSeconds} s`,
      failures.retryAfterSeconds,
    );
  }
  if (!successes.allowed) {
    throw rateLimited(
      `too many token requests for this client (at most ${limits.tokenPerClientPerMinute} ` +
        `per minute); retry after ${successes.retryAfterSeconds} s`,
      successes.retryAfterSeconds,
    );
  }
}

/** Counts a failed `/token` request of (stated client, IP). */
export async function countTokenFailure(
  deps: LimitDeps,
  clientId: string,
  clientIp: string,
): Promise<void> {
  await hit(
    deps.kv,
    "token_fail",
    failureSubject(clientId, clientIp),
    deps.config.rateLimits.tokenFailuresPerClientAndIpPerMinute,
    ENDPOINT_WINDOW_MS,
    deps.now(),
  );
}

/** Counts a `/token` request that issued tokens to `clientId`. */
export async function countTokenSuccess(deps: LimitDeps, clientId: string): Promise<void> {
  const perMinute = deps.config.rateLimits.tokenPerClientPerMinute;
  await hit(deps.kv, "token", clientId, perMinute, ENDPOINT_WINDOW_MS, deps.now());
}
