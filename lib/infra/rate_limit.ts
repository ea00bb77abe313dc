/**
 * Fixed-window rate limits on Deno KV: one counter per (bucket, subject, window) at
 * `["rate", bucket, subject, window]`, expiring with its window. Used for consent password
 * failures (RFC 6749 §10.10: limit guessing of credentials) and reusable for `/register`,
 * `/token` and MCP routes.
 */
import { sha256HexSync } from "./crypto.ts";

/** The outcome of {@linkcode hit} or {@linkcode peek}. */
export interface RateLimitResult {
  /** Whether the counted event stays within the limit. */
  allowed: boolean;
  /** Count in the current window (after the hit, for {@linkcode hit}). */
  count: number;
  /** Seconds until the window ends (for `Retry-After`, RFC 9110 §10.2.3); at least 1. */
  retryAfterSeconds: number;
}

/** Subjects longer than this are counted under their SHA-256 (KV keys are capped at 2 KiB). */
export const MAX_CLEAR_SUBJECT = 200;

function countedSubject(subject: string): string {
  return subject.length > MAX_CLEAR_SUBJECT ? `sha256:${sha256HexSync(subject)}` : subject;
}

/**
 * KV key of the counter of `subject` in `bucket` for the window containing `now`. A subject is
 * often caller-supplied (a stated `client_id`): a long one is replaced by `sha256:<hex>`, so no
 * input can make the key too large for Deno KV.
 */
export function rateKey(
  bucket: string,
  subject: string,
  windowMs: number,
  now: number,
): Deno.KvKey {
  return ["rate", bucket, countedSubject(subject), Math.floor(now / windowMs)];
}

function retryAfter(windowMs: number, now: number): number {
  const end = (Math.floor(now / windowMs) + 1) * windowMs;
  return Math.max(1, Math.ceil((end - now) / 1000));
}

function countOf(value: unknown): number {
  return value instanceof Deno.KvU64 ? Number(value.value) : 0;
}

/** Compare-and-set attempts of {@linkcode hit} before it falls back to a conflict-free `sum`. */
const HIT_ATTEMPTS = 64;

/**
 * Counts one event of `subject` in `bucket`: allowed while the window's count is at most
 * `limit`. Exact under concurrency: each allowed event is one compare-and-set of the counter
 * (read, then `atomic().check(entry).set(count + 1)`, retried on conflict), so of N concurrent
 * hits exactly `limit - count` pass. A refused hit writes nothing (the window is full anyway).
 * After {@linkcode HIT_ATTEMPTS} lost races (extreme contention) the event is counted with a
 * conflict-free `sum` and judged by the total read back, which may refuse a few too many but
 * never allows too many.
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
  const expireIn = Math.max(1, (Math.floor(now / windowMs) + 1) * windowMs - now);
  const result = (count: number, allowed = count <= limit): RateLimitResult => ({
    allowed,
    count,
    retryAfterSeconds: retryAfter(windowMs, now),
  });
  for (let attempt = 0; attempt < HIT_ATTEMPTS; attempt++) {
    const entry = await kv.get(key);
    const count = countOf(entry.value);
    if (count >= limit) return result(count + 1, false);
    // `expireIn` is cleanup only (a window's key may outlive it); every write sets it again.
    const { ok } = await kv.atomic()
      .check(entry)
      .set(key, new Deno.KvU64(BigInt(count + 1)), { expireIn })
      .commit();
    if (ok) return result(count + 1, true);
  }
  await kv.atomic().sum(key, 1n).commit();
  return result(countOf((await kv.get(key)).value));
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

/** Settings of a {@linkcode BatchedRateLimiter}. */
export interface BatchedRateLimiterOptions {
  /** Counter namespace in KV (`["rate", bucket, subject, window]`, as {@linkcode hit}). */
  bucket: string;
  /** Events allowed per subject and window, across all isolates (approximately, see below). */
  limit: number;
  windowMs: number;
  /** Flush the local count at most this long after the last flush (default 1 s). */
  flushIntervalMs?: number;
  /** Flush as soon as this many events are pending locally (default 100). */
  flushEvery?: number;
  /**
   * Also flush on a timer, `flushIntervalMs` after an event is left pending, so that the
   * count reaches the other isolates even when this one gets no further call (default false:
   * tests drive flushes themselves; the gateway turns it on).
   */
  timer?: boolean;
  /** Subjects remembered before old windows are dropped (default 10 000). */
  maxSubjects?: number;
  /** Told about a failed flush (the count stays pending and is retried). */
  onError?: (error: unknown) => void;
}

interface SubjectState {
  window: number;
  /** Events counted here and not yet sent to KV. */
  pending: number;
  /** Events being sent by the flush in progress. */
  inFlight: number;
  /** The window's total in KV as last read (every isolate's flushed events). */
  shared: number;
  lastFlush: number;
  flushing: Promise<void> | null;
  /** The first read of the window's KV total, while in progress. */
  loading: Promise<void> | null;
}

/**
 * A rate limiter for hot paths (MCP calls per grant) that does not write KV on every request.
 *
 * Each isolate counts events locally and flushes them to the shared KV counter with an atomic
 * `sum` (no conflicts between isolates), then reads the window's total back. A flush starts,
 * in the background, on the first event of a subject's window, then whenever
 * `flushIntervalMs` has passed since the last flush or `flushEvery` events are pending, and
 * (option `timer`) `flushIntervalMs` after an event is left pending, so that a count reaches
 * KV even when this isolate gets no further call; {@linkcode BatchedRateLimiter.flush} sends
 * everything at shutdown. The first event of a subject's window in this isolate waits for one
 * KV read of the window's total (what other isolates flushed); later events touch no KV. An
 * event is allowed while `KV total as last read + local pending + in flight < limit`.
 *
 * The limit is therefore approximate across isolates: events other isolates counted since the
 * last read are unseen, so N busy isolates may together exceed the limit by what they admit in
 * one flush interval (at most about `N × min(flushEvery, rate × flushIntervalMs)`). Within one
 * isolate it is exact. A KV failure never fails the request: the count stays pending locally.
 * Uses the same keys as {@linkcode hit}, so {@linkcode peek} reads the flushed total.
 */
export class BatchedRateLimiter {
  readonly bucket: string;
  readonly limit: number;
  readonly windowMs: number;
  readonly flushIntervalMs: number;
  readonly flushEvery: number;
  readonly maxSubjects: number;
  readonly timer: boolean;
  #onError: (error: unknown) => void;
  #subjects = new Map<string, SubjectState>();
  #kv: Deno.Kv | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: BatchedRateLimiterOptions) {
    this.bucket = options.bucket;
    this.limit = options.limit;
    this.windowMs = options.windowMs;
    this.flushIntervalMs = options.flushIntervalMs ?? 1000;
    this.flushEvery = options.flushEvery ?? 100;
    this.maxSubjects = options.maxSubjects ?? 10_000;
    this.timer = options.timer ?? false;
    this.#onError = options.onError ?? (() => {});
  }

  /**
   * Counts one event of `subject` at `now` unless the limit is reached. Synchronous once this
   * isolate knows the window's KV total; the first event of a subject's window (and events
   * arriving while that one read is in flight) wait for it. KV is otherwise touched only by
   * background flushes.
   */
  check(
    kv: Deno.Kv,
    subject: string,
    now: number,
  ): RateLimitResult | Promise<RateLimitResult> {
    this.#kv = kv;
    const window = Math.floor(now / this.windowMs);
    let state = this.#subjects.get(subject);
    if (!state || state.window !== window) {
      if (!state && this.#subjects.size >= this.maxSubjects) this.#prune(window);
      state = {
        window,
        pending: 0,
        inFlight: 0,
        shared: 0,
        lastFlush: -Infinity,
        flushing: null,
        loading: null,
      };
      this.#subjects.set(subject, state);
      state.loading = this.#load(kv, subject, state);
    }
    if (state.loading) {
      const loaded = state;
      return state.loading.then(() => this.#count(kv, subject, loaded, now));
    }
    return this.#count(kv, subject, state, now);
  }

  #count(kv: Deno.Kv, subject: string, state: SubjectState, now: number): RateLimitResult {
    const used = state.shared + state.inFlight + state.pending;
    const retryAfterSeconds = retryAfter(this.windowMs, now);
    if (used >= this.limit) {
      if (!state.flushing && now - state.lastFlush >= this.flushIntervalMs) {
        this.#flush(kv, subject, state, now);
      }
      return { allowed: false, count: used, retryAfterSeconds };
    }
    state.pending++;
    if (
      !state.flushing &&
      (now - state.lastFlush >= this.flushIntervalMs || state.pending >= this.flushEvery)
    ) {
      this.#flush(kv, subject, state, now);
    }
    if (state.pending > 0) this.#schedule();
    return { allowed: true, count: used + 1, retryAfterSeconds };
  }

  /** Reads the window's KV total once, before this isolate's first event of the window. */
  async #load(kv: Deno.Kv, subject: string, state: SubjectState): Promise<void> {
    try {
      const entry = await kv.get(["rate", this.bucket, countedSubject(subject), state.window]);
      state.shared = Math.max(state.shared, countOf(entry.value));
    } catch (error) {
      this.#onError(error);
    } finally {
      state.loading = null;
    }
  }

  /** Arms the flush timer (option `timer`): pending counts reach KV within one interval. */
  #schedule(): void {
    if (!this.timer || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const kv = this.#kv;
      if (!kv) return;
      const now = Date.now();
      let left = false;
      for (const [subject, state] of this.#subjects) {
        if (state.pending === 0) continue;
        if (state.flushing) left = true;
        else this.#flush(kv, subject, state, now);
      }
      if (left) this.#schedule();
    }, this.flushIntervalMs);
    // A pending flush must not keep a process alive; shutdown flushes explicitly.
    try {
      Deno.unrefTimer(this.#timer);
    } catch {
      // a runtime without unref: the timer only delays the end of the process by one interval
    }
  }

  /** Stops the flush timer (the caller flushes what is pending with {@linkcode flush}). */
  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Waits for the flushes in progress, starting none (tests). */
  async settled(): Promise<void> {
    const running: Promise<void>[] = [];
    for (const state of this.#subjects.values()) {
      if (state.flushing) running.push(state.flushing);
      if (state.loading) running.push(state.loading);
    }
    await Promise.all(running);
  }

  /** Sends every pending count to KV now and waits for all flushes (tests, shutdown). */
  async flush(kv: Deno.Kv, now: number): Promise<void> {
    const running: Promise<void>[] = [];
    for (const state of this.#subjects.values()) {
      if (state.flushing) running.push(state.flushing);
      if (state.loading) running.push(state.loading);
    }
    await Promise.all(running);
    for (const [subject, state] of this.#subjects) {
      if (state.window === Math.floor(now / this.windowMs)) this.#flush(kv, subject, state, now);
      if (state.flushing) running.push(state.flushing);
    }
    await Promise.all(running);
  }

  #flush(kv: Deno.Kv, subject: string, state: SubjectState, now: number): void {
    const count = state.pending;
    const first = state.lastFlush === -Infinity;
    state.pending = 0;
    state.inFlight = count;
    state.lastFlush = now;
    const key: Deno.KvKey = ["rate", this.bucket, countedSubject(subject), state.window];
    state.flushing = (async () => {
      try {
        // The first write of a window creates the counter with an expiry (cleanup only; `sum`
        // cannot set one); later writes, or a lost creation race, add with a conflict-free sum.
        let created = false;
        if (count > 0 && first) {
          const expireIn = Math.max(1, (state.window + 1) * this.windowMs - now);
          ({ ok: created } = await kv.atomic().check({ key, versionstamp: null })
            .set(key, new Deno.KvU64(BigInt(count)), { expireIn }).commit());
        }
        if (count > 0 && !created) {
          const { ok } = await kv.atomic().sum(key, BigInt(count)).commit();
          if (!ok) throw new Error("rate limit flush was not committed");
        }
        const entry = await kv.get(key);
        state.shared = countOf(entry.value);
      } catch (error) {
        state.pending += count;
        this.#onError(error);
      } finally {
        state.inFlight = 0;
        state.flushing = null;
      }
    })();
  }

  /** Drops the subjects of past windows that have nothing left to send. */
  #prune(window: number): void {
    for (const [subject, state] of this.#subjects) {
      if (state.window < window && !state.flushing) this.#subjects.delete(subject);
    }
    while (this.#subjects.size >= this.maxSubjects) {
      const oldest = this.#subjects.keys().next().value;
      if (oldest === undefined) break;
      this.#subjects.delete(oldest);
    }
  }
}
