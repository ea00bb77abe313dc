/**
 * Online guessing limits for password-like secrets (RFC 6749 §10.10: "prevent online guessing";
 * OWASP ASVS V2.2.1): the owner password today, the admin console's secrets later. One attempt
 * counts against three fixed 15-minute windows in Deno KV, so the limits hold across isolates:
 *
 * - per (subject, client IP), e.g. per OAuth client and IP (`passwordFailuresPer15Minutes`);
 * - per client IP across every subject (`passwordFailuresPerIpPer15Minutes`): a fresh client
 *   registration or metadata-document client id buys no fresh guesses;
 * - globally (`passwordFailuresGlobalPer15Minutes`): many addresses together cannot go on
 *   guessing; when it trips, password sign-in pauses for everyone until the window ends, and a
 *   warning is logged.
 *
 * IPv6 addresses count by /64 (lib/infra/client_ip.ts). An attempt is **reserved before the
 * secret is compared**: the three counters are read and, if all are below their limits, raised
 * in one atomic commit that checks their versionstamps (retried on conflict). So N concurrent
 * attempts against a limit of L compare the secret at most L times; the others are refused
 * without a comparison. A right secret releases its reservation; a wrong one stays counted.
 * @module
 */
import type { Logger } from "./log.ts";
import { ipLimitSubject } from "./client_ip.ts";
import { rateKey } from "./rate_limit.ts";

/** The window of every guess counter. */
export const GUESS_WINDOW_MS = 15 * 60_000;

/** Commit attempts before a reservation gives up under contention (then: refused, retry soon). */
const MAX_COMMIT_ATTEMPTS = 64;

/** The three limits of one kind of secret. */
export interface GuessLimits {
  perSubjectAndIp: number;
  perIp: number;
  global: number;
}

/** One attempt to guess: which secret, for which subject (e.g. a client id), from which IP. */
export interface GuessAttempt {
  /** Names the secret; attempts on the same name share their per-IP and global counters. */
  secret: string;
  subject: string;
  ip: string;
}

/** What {@linkcode checkGuess} needs. */
export interface GuessDeps {
  kv: Deno.Kv;
  now: () => number;
  log?: Logger;
}

/** The outcome of {@linkcode checkGuess}. */
export type GuessOutcome =
  | { result: "ok" }
  | { result: "wrong" }
  | { result: "blocked"; retryAfterSeconds: number };

type Level = "subject_ip" | "ip" | "global";

interface Counter {
  level: Level;
  key: Deno.KvKey;
  limit: number;
}

/** The owner password's limits under a config (`rateLimits.passwordFailures…`). */
export function passwordGuessLimits(
  rateLimits: {
    passwordFailuresPer15Minutes: number;
    passwordFailuresPerIpPer15Minutes: number;
    passwordFailuresGlobalPer15Minutes: number;
  },
): GuessLimits {
  return {
    perSubjectAndIp: rateLimits.passwordFailuresPer15Minutes,
    perIp: rateLimits.passwordFailuresPerIpPer15Minutes,
    global: rateLimits.passwordFailuresGlobalPer15Minutes,
  };
}

function counters(attempt: GuessAttempt, limits: GuessLimits, now: number): Counter[] {
  const ip = ipLimitSubject(attempt.ip);
  const bucket = (level: Level) => `guess:${attempt.secret}:${level}`;
  return [
    {
      level: "subject_ip",
      key: rateKey(bucket("subject_ip"), `${attempt.subject} ${ip}`, GUESS_WINDOW_MS, now),
      limit: limits.perSubjectAndIp,
    },
    { level: "ip", key: rateKey(bucket("ip"), ip, GUESS_WINDOW_MS, now), limit: limits.perIp },
    {
      level: "global",
      key: rateKey(bucket("global"), "all", GUESS_WINDOW_MS, now),
      limit: limits.global,
    },
  ];
}

function countOf(value: unknown): number {
  return value instanceof Deno.KvU64 ? Number(value.value) : 0;
}

function windowEnd(now: number): number {
  return (Math.floor(now / GUESS_WINDOW_MS) + 1) * GUESS_WINDOW_MS;
}

function retryAfterSeconds(now: number): number {
  return Math.max(1, Math.ceil((windowEnd(now) - now) / 1000));
}

/** A reserved attempt: release it when the secret was right. */
export interface Reservation {
  release: () => Promise<void>;
}

/**
 * Reserves one attempt (see the module documentation), or says how long to wait. Logs a
 * warning when the reservation fills the global counter.
 */
export async function reserveGuess(
  deps: GuessDeps,
  attempt: GuessAttempt,
  limits: GuessLimits,
): Promise<Reservation | { retryAfterSeconds: number; level: Level }> {
  const now = deps.now();
  const all = counters(attempt, limits, now);
  const expireIn = Math.max(1, windowEnd(now) - now);
  for (let i = 0; i < MAX_COMMIT_ATTEMPTS; i++) {
    const entries = await deps.kv.getMany(all.map((c) => c.key));
    const counts = entries.map((e) => countOf(e.value));
    const full = all.findIndex((c, j) => counts[j]! >= c.limit);
    if (full >= 0) return { retryAfterSeconds: retryAfterSeconds(now), level: all[full]!.level };
    const op = deps.kv.atomic();
    all.forEach((c, j) => {
      op.check(entries[j]!).set(c.key, new Deno.KvU64(BigInt(counts[j]! + 1)), { expireIn });
    });
    if (!(await op.commit()).ok) continue;
    if (counts[2]! + 1 === limits.global) {
      deps.log?.({
        level: "warn",
        event: "guess_limit_global",
        secret: attempt.secret,
        message: `${limits.global} wrong ${attempt.secret} attempts from all addresses in ` +
          `15 minutes: ${attempt.secret} sign-in is paused for everyone until ` +
          new Date(windowEnd(now)).toISOString(),
      });
    }
    return { release: () => release(deps.kv, all, expireIn) };
  }
  return { retryAfterSeconds: 1, level: "global" };
}

/** Takes a reserved attempt back from each counter (a right secret is not a failure). */
async function release(kv: Deno.Kv, all: Counter[], expireIn: number): Promise<void> {
  for (let i = 0; i < MAX_COMMIT_ATTEMPTS; i++) {
    const entries = await kv.getMany(all.map((c) => c.key));
    const op = kv.atomic();
    entries.forEach((entry, j) => {
      const count = countOf(entry.value);
      op.check(entry);
      if (count > 0) op.set(all[j]!.key, new Deno.KvU64(BigInt(count - 1)), { expireIn });
    });
    if ((await op.commit()).ok) return;
  }
}

/**
 * Checks a guess under the limits: reserves an attempt, then runs `compare` (which compares the
 * secret in constant time), then releases the reservation if it was right. Blocked attempts
 * never reach `compare`, right secret or not.
 */
export async function checkGuess(
  deps: GuessDeps,
  attempt: GuessAttempt,
  limits: GuessLimits,
  compare: () => Promise<boolean>,
): Promise<GuessOutcome> {
  const reserved = await reserveGuess(deps, attempt, limits);
  if (!("release" in reserved)) {
    return { result: "blocked", retryAfterSeconds: reserved.retryAfterSeconds };
  }
  let right: boolean;
  try {
    right = await compare();
  } catch (error) {
    await reserved.release();
    throw error;
  }
  if (!right) return { result: "wrong" };
  await reserved.release();
  return { result: "ok" };
}
