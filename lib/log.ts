/**
 * Structured logging: one JSON object per line. Callers pass only identifiers (client id,
 * grant id, backend, tool, status, latency), never a token, code, secret or password.
 */

/** A log sink. */
export type Logger = (record: Record<string, unknown>) => void;

/** Writes JSON lines to stdout (Deno Deploy collects them). */
export const consoleLogger: Logger = (record) => {
  console.log(JSON.stringify({ time: new Date().toISOString(), ...record }));
};

/** A logger that keeps records in memory, for tests. */
export function memoryLogger(): Logger & { records: Record<string, unknown>[] } {
  const records: Record<string, unknown>[] = [];
  const logger = ((record: Record<string, unknown>) => {
    records.push(record);
  }) as Logger & { records: Record<string, unknown>[] };
  logger.records = records;
  return logger;
}
