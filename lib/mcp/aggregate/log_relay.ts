/**
 * Backend log messages on the aggregated `/mcp` (MCP 2025-11-25 Server/Utilities/Logging;
 * 2026-07-28: the level travels per request in `_meta["io.modelcontextprotocol/logLevel"]`).
 *
 * - A relayed `notifications/message` names its backend in `logger`: `"<backend>"` when the
 *   backend gave no logger, `"<backend>/<logger>"` when it did ({@linkcode namedLog}).
 * - A client gets log messages only once it asked for them, and only at or above its level: a
 *   2025-era session after `logging/setLevel` (the level is kept with the session), a
 *   2026-07-28 request that carries a `logLevel` in its `_meta` (only on that request's stream).
 * - Backend connections are shared by every session of an isolate, so a 2025-era backend's
 *   connection level ({@linkcode BackendLogLevels}) is the most verbose level any local holder
 *   needs (a session's open GET stream, a call in flight); the gateway filters per session. A
 *   2026-07-28 backend gets the caller's level in each request's `_meta` instead.
 */
import type { BackendPool } from "./pool.ts";

/** The syslog severities (RFC 5424 §6.2.1), least severe first. */
export const LOG_LEVELS = [
  "debug",
  "info",
  "notice",
  "warning",
  "error",
  "critical",
  "alert",
  "emergency",
] as const;

/** A log level. */
export type LogLevel = typeof LOG_LEVELS[number];

/** The `_meta` key of a 2026-07-28 request's log level. */
export const LOG_LEVEL_KEY = "io.modelcontextprotocol/logLevel";

/** Whether `value` is a log level. */
export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === "string" && (LOG_LEVELS as readonly string[]).includes(value);
}

/** Whether a message of `level` reaches a client whose threshold is `threshold` (none: no). */
export function logAllows(threshold: unknown, level: unknown): boolean {
  if (!isLogLevel(threshold) || !isLogLevel(level)) return false;
  return LOG_LEVELS.indexOf(level) >= LOG_LEVELS.indexOf(threshold);
}

/** A backend's log message as relayed: `logger` names the backend. */
export function namedLog(
  backend: string,
  params: Record<string, unknown>,
): { method: "notifications/message"; params: Record<string, unknown> } {
  const logger = typeof params.logger === "string" && params.logger !== ""
    ? `${backend}/${params.logger}`
    : backend;
  return { method: "notifications/message", params: { ...params, logger } };
}

/** The most verbose of `levels`, or `undefined` when there are none. */
function mostVerbose(levels: Iterable<LogLevel>): LogLevel | undefined {
  let min: number | undefined;
  for (const l of levels) {
    const i = LOG_LEVELS.indexOf(l);
    if (min === undefined || i < min) min = i;
  }
  return min === undefined ? undefined : LOG_LEVELS[min];
}

/**
 * The log level of each 2025-era backend connection of an isolate: the most verbose level a
 * local holder needs. A holder that needs a more verbose level lowers it at once (awaited, so a
 * call's messages are not filtered out by the backend); the level is raised again, without
 * waiting, when a lasting holder (a session's stream) goes away. Calls do not raise it on their
 * way out: that would cost a request per call.
 */
export class BackendLogLevels {
  #pool: BackendPool;
  #holders = new Map<string, Map<string, LogLevel>>();
  #sent = new WeakMap<object, LogLevel>();

  constructor(pool: BackendPool) {
    this.#pool = pool;
  }

  /** `holder` needs messages of `backend` at `level` and above; resolves once the level is set. */
  async need(backend: string, holder: string, level: LogLevel): Promise<void> {
    let holders = this.#holders.get(backend);
    if (!holders) this.#holders.set(backend, holders = new Map());
    holders.set(holder, level);
    await this.#sync(backend, false);
  }

  /** `holder` no longer needs messages of `backend`; `relax` raises the level if it can. */
  drop(backend: string, holder: string, relax: boolean): void {
    const holders = this.#holders.get(backend);
    if (!holders?.delete(holder)) return;
    if (holders.size === 0) this.#holders.delete(backend);
    if (relax) this.#sync(backend, true).catch(() => {});
  }

  /** Sets the connection's level to what the holders need: lower always, higher if `raise`. */
  async #sync(backend: string, raise: boolean): Promise<void> {
    const wanted = mostVerbose(this.#holders.get(backend)?.values() ?? []);
    if (!wanted) return;
    const connection = await this.#pool.get(backend);
    if (connection.era !== "legacy" || !connection.capabilities.logging) return;
    const sent = this.#sent.get(connection);
    if (sent === wanted) return;
    if (sent !== undefined && LOG_LEVELS.indexOf(wanted) > LOG_LEVELS.indexOf(sent) && !raise) {
      return;
    }
    this.#sent.set(connection, wanted);
    try {
      await connection.client.setLoggingLevel(wanted, {
        timeout: this.#pool.backend(backend)?.timeoutMs,
      });
    } catch (error) {
      this.#sent.delete(connection);
      throw error;
    }
  }
}
