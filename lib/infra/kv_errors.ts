/**
 * Recognizes Deno KV failures (closed database, locked SQLite file, quota or service errors) so
 * that they are answered as 503 `temporarily_unavailable` with `Retry-After` (RFC 6749
 * §4.1.2.1, RFC 9110 §15.6.4 and §10.2.3) instead of a bare 500: storage trouble is transient
 * from the client's point of view, and a retry is the right reaction.
 * @module
 */

/** Seconds a client is asked to wait after a storage failure (`Retry-After`). */
export const KV_RETRY_AFTER_SECONDS = 5;

/** Messages of transient storage failures: SQLite (local KV) and Deno Deploy's KV service. */
const TRANSIENT =
  /database is locked|database (is )?closed|sqlite_busy|disk i\/o error|quota|write disabled|read-?only|kv .*unavailable|service unavailable|too many requests|connection (reset|refused|closed)|timed? ?out/i;

/**
 * Whether `error` (or its `cause`) is a Deno KV failure: `BadResource` (the KV was closed),
 * `Interrupted`, or an error whose message names a transient storage problem.
 */
export function isKvFailure(error: unknown, depth = 0): boolean {
  if (!(error instanceof Error) || depth > 3) return false;
  if (error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted) {
    return true;
  }
  if (TRANSIENT.test(error.message)) return true;
  return isKvFailure(error.cause, depth + 1);
}
