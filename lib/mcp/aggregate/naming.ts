/**
 * Names of the aggregated `/mcp` endpoint: every tool and prompt of backend `b` is exposed as
 * `b__name`, always prefixed (so names do not change when a second backend is added), split on
 * the first `__` (backend names never contain `_`, see `BACKEND_NAME` in lib/config.ts).
 *
 * Exposed names must match `^[a-zA-Z0-9_-]{1,64}$` (the tool-name rule clients such as Claude
 * enforce; MCP 2025-11-25 Server/Tools §Tool Names recommends 1–64 characters of that set). A
 * name that cannot fit is left out, never truncated into a possible collision.
 */

/** The separator between backend and item name. */
export const SEPARATOR = "__";

/** Names clients accept (MCP 2025-11-25 Server/Tools §Tool Names). */
export const EXPOSED_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** The exposed name of `name` from `backend`, or `null` when it would not be a valid name. */
export function exposedName(backend: string, name: string): string | null {
  const full = `${backend}${SEPARATOR}${name}`;
  return EXPOSED_NAME.test(full) ? full : null;
}

/** Splits an exposed name into backend and original name, or `null` when it has no prefix. */
export function splitName(exposed: string): { backend: string; name: string } | null {
  if (!EXPOSED_NAME.test(exposed)) return null;
  const i = exposed.indexOf(SEPARATOR);
  if (i <= 0) return null;
  const name = exposed.slice(i + SEPARATOR.length);
  if (name === "") return null;
  return { backend: exposed.slice(0, i), name };
}
