/**
 * Fixed-window rate limits on Deno KV: one counter per (bucket, subject, window) at
 * `["rate", bucket, subject, window]`, expiring with its window. Used for consent password
 * failures (RFC 6749 §10.10: limit guessing of credentials) and reusable for `/register`,
 * `/token` and MCP routes.
 */

/** The outcome of {@linkcode hit} or {@linkcode peek}. */
export interface RateLimitResult {
  /** Whether the counted event stays within the limit. */
  allowed: boolean;
  /** Count in the current window (after the hit, for {@linkcode hit}). */
  count: number;
  /** Seconds until the window ends (for `Retry-After`, RFC 9110 §10.2.3); at least 1. */
  retryAfterSeconds: number;
}

/** KV key of the counter of `subject` in `bucket` for the window containing `now`. */
export function rateKey(
  bucket: string,
  subject: string,
  windowMs: number,
  now: number,
): Deno.KvKey {
  return ["rate", bucket, subject, Math.floor(now / windowMs)];
}

function retryAfter(windowMs: number, now: number): number {
  const end = (Math.floor(now / windowMs) + 1) * windowMs;
  return Math.max(1, Math.ceil((end - now) / 1000));
}

function countOf(value: unknown): number {
  return value instanceof Deno.KvU64 ? Number(value.value) : 0;
}

/**
 * Counts one event of `subject` in `bucket`: allowed while the window's count is at most
 * `limit`. The increment is atomic (check-and-set, retried on conflict).
 */
export async function hit(
  kv: Deno.Kv,
  bucket: string,
  subject: string,
  limit: number,
  windowMs: number,
  now: number,
): Promise<RateLimitResult> {
  const key = rateKey(bucket, subject, windowMs, now);
  const expireIn = (Math.floor(now / windowMs) + 1) * windowMs - now;
  for (let attempt = 0; attempt < 20; attempt++) {
    const entry = await kv.get(key);
    const count = countOf(entry.value) + 1;
    const { ok } = await kv.atomic().check(entry)
      .set(key, new Deno.KvU64(BigInt(count)), { expireIn: Math.max(1, expireIn) })
      .commit();
    if (ok) {
      return { allowed: count <= limit, count, retryAfterSeconds: retryAfter(windowMs, now) };
    }
  }
  // Heavy contention on one counter: treat as over the limit rather than failing open.
  return { allowed: false, count: limit + 1, retryAfterSeconds: retryAfter(windowMs, now) };
}

/**
 * Reads the window's count without counting: `allowed` is false once `limit` events were
 * counted, so a caller can refuse before doing the limited work (e.g. checking a password).
 */
export async function peek(
  kv: Deno.Kv,
  bucket: string,
  subject: string,
  limit: number,
  windowMs: number,
  now: number,
): Promise<RateLimitResult> {
  const entry = await kv.get(rateKey(bucket, subject, windowMs, now));
  const count = countOf(entry.value);
  return { allowed: count < limit, count, retryAfterSeconds: retryAfter(windowMs, now) };
}
