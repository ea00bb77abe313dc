/**
 * Names of the aggregated `/mcp` endpoint: every tool and prompt of backend `b` is exposed as
 * `b__name`, always prefixed (so names do not change when a second backend is added), split on
 * the first `__` (backend names never contain `_`, see `BACKEND_NAME` in lib/config.ts).
 *
 * Exposed names must match `^[a-zA-Z0-9_-]{1,64}$` (the tool-name rule clients such as Claude
 * enforce; MCP 2025-11-25 Server/Tools §Tool Names recommends 1–64 characters of that set). A
 * name that cannot be shown as is (too long, other characters) is **shortened**:
 * `b__<head>--<hash>`, where `<head>` is the name with other characters replaced by `_`, cut to
 * fit, and `<hash>` the first 10 hex digits of SHA-256 of the original name. It is deterministic
 * (the same name gives the same exposed name on every isolate and restart) and reversible against
 * the backend's tool list (lib/mcp/aggregate/catalog.ts finds the one tool that encodes to it).
 *
 * Collisions are impossible by construction. Within one backend the exposed names fall into three
 * disjoint classes: renames (checked at start: valid, unique, never ending like a shortened name),
 * plain names (valid, never ending like a shortened name, never equal to a rename), and shortened
 * names (always ending in `--` + 10 hex digits). Any name that would break a class rule goes to the
 * shortened class, and two names with the same shortened form (a 40-bit hash clash) are both left
 * out by the catalog rather than served ambiguously. Across backends the prefix differs.
 */
import { sha256HexSync } from "../../infra/crypto.ts";

/** The separator between backend and item name. */
export const SEPARATOR = "__";

/** Names clients accept (MCP 2025-11-25 Server/Tools §Tool Names). */
export const EXPOSED_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** Longest exposed name. */
export const MAX_NAME = 64;

/** Digits of the hash in a shortened name. */
const HASH_DIGITS = 10;

/** How every shortened name ends: `--` and the hash digits. */
const SHORTENED_SUFFIX = /--[0-9a-f]{10}$/;

/** Whether `name` ends like a shortened name (such names are never shown as is). */
export function looksShortened(name: string): boolean {
  return SHORTENED_SUFFIX.test(name);
}

/** `b__name` when it is valid (a non-empty name) and not reserved, else `null`. */
export function plainName(
  backend: string,
  name: string,
  reserved?: ReadonlySet<string>,
): string | null {
  const full = `${backend}${SEPARATOR}${name}`;
  if (name === "" || !EXPOSED_NAME.test(full) || looksShortened(name) || reserved?.has(name)) {
    return null;
  }
  return full;
}

/** The shortened exposed name of `name` from `backend` (deterministic; see the module doc). */
export function shortenedName(backend: string, name: string): string {
  const hash = sha256HexSync(name).slice(0, HASH_DIGITS);
  const room = MAX_NAME - backend.length - SEPARATOR.length - 2 - HASH_DIGITS;
  const head = name.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, room);
  return `${backend}${SEPARATOR}${head}--${hash}`;
}

/**
 * The exposed name of `name` from `backend`: `b__name`, or its shortened form when that is not
 * a valid name, ends like a shortened name, or is one of the backend's `reserved` names (the
 * targets of its renames).
 */
export function exposedName(
  backend: string,
  name: string,
  reserved?: ReadonlySet<string>,
): string {
  return plainName(backend, name, reserved) ?? shortenedName(backend, name);
}

/** Splits an exposed name into backend and exposed item part, or `null` when it has no prefix. */
export function splitName(exposed: string): { backend: string; name: string } | null {
  if (!EXPOSED_NAME.test(exposed)) return null;
  const i = exposed.indexOf(SEPARATOR);
  if (i <= 0) return null;
  const name = exposed.slice(i + SEPARATOR.length);
  if (name === "") return null;
  return { backend: exposed.slice(0, i), name };
}
