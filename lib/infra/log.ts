/**
 * Structured logging: one JSON object per line. Callers pass only identifiers (client id,
 * grant id, backend, tool, status, latency), never a token, code, secret or password; as a
 * second line of defence every logger of this module passes records through
 * {@linkcode redactRecord} (RFC 6749 §10.3, §10.5 and RFC 6819 §5.1.6: credentials must not
 * leak, and logs are a classic place for them to).
 */

/** A log sink. */
export type Logger = (record: Record<string, unknown>) => void;

/** What replaces a dropped value. */
export const REDACTED = "[redacted]";

/**
 * Field names whose values are secrets by nature: tokens, codes, secrets, passwords, PKCE
 * verifiers, credentials, cookies, `Authorization`. (`token_type`/`grant_type` hold no secret
 * but are dropped too if logged under such a name; identifiers use `*_id` names.)
 */
const SECRET_KEY =
  /(^|[_-])(code|code_verifier|verifier|password|passwd|pwd|secret|client_secret|token|access_token|refresh_token|id_token|assertion|authorization|cookie|set-cookie|api_?key|credentials?|csrf(_token)?)$|token$|secret$|password$/i;

/** Patterns of credentials inside any string, with their replacement. */
const SECRET_VALUE: [RegExp, string][] = [
  [/gw(?:at|rt)_[A-Za-z0-9_-]+/g, REDACTED], // this gateway's access and refresh tokens
  [/\b(?:Bearer|Basic|DPoP)\s+[A-Za-z0-9\-._~+/]+=*/gi, REDACTED], // Authorization values
  [/\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g, REDACTED], // JWTs
  [
    /([?&](?:code|code_verifier|access_token|refresh_token|client_secret|password|token)=)[^&\s"]+/gi,
    `$1${REDACTED}`,
  ],
];

/** Cheap pre-test: every pattern of {@linkcode SECRET_VALUE} contains one of these markers. */
const MAYBE_SECRET = /gw(?:at|rt)_|bearer|basic|dpop|eyJ|=/i;

function redactString(value: string): string {
  // Shorter than any credential pattern worth masking, or none of their markers: most log
  // values (ids, routes) take this exit after one scan.
  if (value.length < 12 || !MAYBE_SECRET.test(value)) return value;
  let out = value;
  for (const [re, replacement] of SECRET_VALUE) out = out.replace(re, replacement);
  return out;
}

/** Verdicts of {@linkcode SECRET_KEY} by field name: log records reuse a few dozen names. */
const secretKeyMemo = new Map<string, boolean>();

function isSecretKey(k: string): boolean {
  let secret = secretKeyMemo.get(k);
  if (secret === undefined) {
    secret = SECRET_KEY.test(k);
    if (secretKeyMemo.size >= 1000) secretKeyMemo.clear();
    secretKeyMemo.set(k, secret);
  }
  return secret;
}

function redactValue(value: unknown, depth: number): unknown {
  if (typeof value === "string") return redactString(value);
  if (value === null || typeof value !== "object") return value;
  if (depth > 4) return REDACTED;
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1));
  return redactInto(value as Record<string, unknown>, {}, depth);
}

/** Copies `value`'s own fields into `out`, redacted (see {@linkcode redactRecord}). */
function redactInto(
  value: Record<string, unknown>,
  out: Record<string, unknown>,
  depth: number,
): Record<string, unknown> {
  for (const k in value) {
    if (!Object.hasOwn(value, k)) continue;
    const v = (value as Record<string, unknown>)[k];
    // Numbers, booleans and null hold no secret text: copied as they are.
    out[k] = isSecretKey(k)
      ? REDACTED
      : v === null || typeof v === "number" || typeof v === "boolean"
      ? v
      : redactValue(v, depth + 1);
  }
  return out;
}

/**
 * A copy of `record` without secrets: values under secret-looking field names are replaced by
 * `"[redacted]"`, and gateway tokens (`gwat_…`, `gwrt_…`), `Bearer`/`Basic` credentials, JWTs
 * and secret query parameters inside any string are masked.
 */
export function redactRecord(record: Record<string, unknown>): Record<string, unknown> {
  return redactValue(record, 0) as Record<string, unknown>;
}

let isoMs = -1;
let isoTime = "";

/** A log line's object: `time` (ISO 8601, formatted once per millisecond), then `record` redacted. */
function logLine(record: Record<string, unknown>): Record<string, unknown> {
  const ms = Date.now();
  if (ms !== isoMs) {
    isoMs = ms;
    isoTime = new Date(ms).toISOString();
  }
  return redactInto(record, { time: isoTime }, 0);
}

/** Writes redacted JSON lines to stdout (Deno Deploy collects them). */
export const consoleLogger: Logger = (record) => {
  console.log(JSON.stringify(logLine(record)));
};

const lineEncoder = new TextEncoder();

/** Lines waiting for the next write to stdout (see {@linkcode stdoutLogger}). */
let pendingLines = "";
let flushScheduled = false;

/** Writes the pending lines to stdout now, all of them (a pipe may take a write in parts). */
export function flushStdoutLog(): void {
  flushScheduled = false;
  if (pendingLines === "") return;
  const bytes = lineEncoder.encode(pendingLines);
  pendingLines = "";
  let written = 0;
  try {
    while (written < bytes.length) written += Deno.stdout.writeSync(bytes.subarray(written));
  } catch {
    // stdout closed: the lines are lost, the request is not
  }
}

/**
 * Writes redacted JSON lines to stdout: about a quarter of `console.log`'s cost per line (no
 * formatting pass), and the lines of one turn of the event loop in one write (one system call
 * for many requests under load; a `setTimeout(0)` later, or at 64 KiB, or at exit). Used outside
 * Deno Deploy, where `console.log` is the log channel.
 */
export const stdoutLogger: Logger = (record) => {
  pendingLines += JSON.stringify(logLine(record)) + "\n";
  if (pendingLines.length >= 65_536) flushStdoutLog();
  else if (!flushScheduled) {
    flushScheduled = true;
    setTimeout(flushStdoutLog, 0);
  }
};

globalThis.addEventListener?.("unload", flushStdoutLog);

/** A logger that keeps (redacted) records in memory, for tests. */
export function memoryLogger(): Logger & { records: Record<string, unknown>[] } {
  const records: Record<string, unknown>[] = [];
  const logger = ((record: Record<string, unknown>) => {
    records.push(redactRecord(record));
  }) as Logger & { records: Record<string, unknown>[] };
  logger.records = records;
  return logger;
}
