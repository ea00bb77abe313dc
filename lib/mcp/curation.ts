/**
 * Curation of a backend's surface (config `backends[].tools`, `.prompts`, `.resources`) and the
 * per-user tool globs (`Principal.tools`), shared by the aggregated `/mcp` (lib/mcp/aggregate/)
 * and the pass-through `/mcp/<backend>` (lib/mcp/curated_proxy.ts), so that one rule means the
 * same on both endpoints:
 *
 * - `allow`/`deny` globs (deny wins) over the backend's own tool and prompt names and resource
 *   URIs (templates by their URI template): a denied item is absent from lists and refused on use
 *   with JSON-RPC `-32602` (MCP 2025-11-25 Server/Tools §Error Handling: unknown tool).
 * - `rename` and `describe` change what clients see; `defaults` pins argument values: they are
 *   removed from the advertised `inputSchema` and injected on every call, over the client's.
 * - Per-user globs match the names clients see on `/mcp` (`backend__name`, after renames).
 *
 * Globs: `*` matches any run of characters (also `/` in URIs), `?` one character, anything else
 * itself; the whole name must match. Case-sensitive.
 */
import type { BackendConfig } from "../config.ts";
import { exposedName, SEPARATOR } from "./aggregate/naming.ts";

/** A compiled list of globs: whether a name matches any of them. */
export type GlobMatcher = (name: string) => boolean;

/** Compiles globs (`*`, `?`) into one anchored matcher. */
export function globMatcher(globs: readonly string[]): GlobMatcher {
  if (globs.length === 0) return () => false;
  if (globs.includes("*")) return () => true;
  const source = globs.map((g) =>
    g.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")
  ).join("|");
  const re = new RegExp(`^(?:${source})$`, "s");
  return (name) => re.test(name);
}

/** `allow`/`deny` of one kind: allowed when some allow glob matches (or none given) and no deny. */
function allowDeny(rules: { allow?: readonly string[]; deny?: readonly string[] } | undefined) {
  if (!rules || (rules.allow === undefined && (rules.deny ?? []).length === 0)) {
    return { active: false, allowed: (_: string) => true };
  }
  const allow = rules.allow === undefined ? () => true : globMatcher(rules.allow);
  const deny = globMatcher(rules.deny ?? []);
  return { active: true, allowed: (name: string) => allow(name) && !deny(name) };
}

/** A tool as listed by a backend (the fields curation reads or changes). */
export interface ToolLike {
  name: string;
  description?: string;
  inputSchema?: { properties?: Record<string, unknown>; required?: string[]; [k: string]: unknown };
  [k: string]: unknown;
}

/** One backend's compiled curation rules. */
export interface BackendRules {
  backend: string;
  /** Whether any rule changes what this backend offers (else the pass-through stays untouched). */
  active: boolean;
  toolAllowed: (original: string) => boolean;
  promptAllowed: (name: string) => boolean;
  /** By URI, or by URI template for templates. */
  resourceAllowed: (uri: string) => boolean;
  /** Original name → new name. */
  renames: ReadonlyMap<string, string>;
  /** The new names (reserved: no other tool of the backend may show under one). */
  renameTargets: ReadonlySet<string>;
  /** The name a client sees for `original`, without prefix (`/mcp/<backend>`). */
  shownName: (original: string) => string;
  /**
   * The backend's name of a tool a client named `shown` on `/mcp/<backend>`, or `null` when no
   * tool shows under that name (an original renamed away).
   */
  originalOf: (shown: string) => string | null;
  /** The name clients see on `/mcp` for `original` (prefixed; shortened when needed). */
  exposedName: (original: string) => string;
  /** The tool as clients see it: renamed, described, pinned arguments out of its schema. */
  present: <T extends ToolLike>(tool: T, name: string) => T;
  /** The call's arguments with the pinned values of `original` over them. */
  withDefaults: (original: string, args: unknown) => Record<string, unknown> | undefined;
}

const compiled = new WeakMap<BackendConfig, BackendRules>();

/** The compiled rules of a backend (memoized: the config is frozen). */
export function backendRules(backend: BackendConfig): BackendRules {
  let rules = compiled.get(backend);
  if (!rules) {
    rules = compile(backend);
    compiled.set(backend, rules);
  }
  return rules;
}

function compile(backend: BackendConfig): BackendRules {
  const tools = allowDeny(backend.tools);
  const prompts = allowDeny(backend.prompts);
  const resources = allowDeny(backend.resources);
  const renames = new Map(Object.entries(backend.tools?.rename ?? {}));
  const sources = new Map([...renames].map(([from, to]) => [to, from]));
  const renameTargets = new Set(renames.values());
  const describe = new Map(Object.entries(backend.tools?.describe ?? {}));
  const defaults = new Map(Object.entries(backend.tools?.defaults ?? {}));
  const active = tools.active || prompts.active || resources.active || renames.size > 0 ||
    describe.size > 0 || defaults.size > 0;
  return {
    backend: backend.name,
    active,
    toolAllowed: tools.allowed,
    promptAllowed: prompts.allowed,
    resourceAllowed: resources.allowed,
    renames,
    renameTargets,
    shownName: (original) => renames.get(original) ?? original,
    originalOf: (shown) => {
      const source = sources.get(shown);
      if (source !== undefined) return source;
      return renames.has(shown) ? null : shown;
    },
    exposedName: (original) => {
      const target = renames.get(original);
      return target !== undefined
        ? `${backend.name}${SEPARATOR}${target}`
        : exposedName(backend.name, original, renameTargets);
    },
    present: (tool, name) => {
      const description = describe.get(tool.name);
      const pinned = defaults.get(tool.name);
      const out: ToolLike = { ...tool, name };
      if (description !== undefined) out.description = description;
      if (pinned && tool.inputSchema) out.inputSchema = withoutPinned(tool.inputSchema, pinned);
      return out as typeof tool;
    },
    withDefaults: (original, args) => {
      const pinned = defaults.get(original);
      const given = args && typeof args === "object" && !Array.isArray(args)
        ? args as Record<string, unknown>
        : undefined;
      if (!pinned) return given;
      return { ...given, ...structuredClone(pinned) };
    },
  };
}

/** An input schema without the pinned properties (nor their `required` entries). */
function withoutPinned(
  schema: NonNullable<ToolLike["inputSchema"]>,
  pinned: Record<string, unknown>,
): NonNullable<ToolLike["inputSchema"]> {
  const out = { ...schema };
  if (schema.properties && typeof schema.properties === "object") {
    out.properties = Object.fromEntries(
      Object.entries(schema.properties).filter(([k]) => !(k in pinned)),
    );
  }
  if (Array.isArray(schema.required)) {
    out.required = schema.required.filter((k) => !(k in pinned));
  }
  return out;
}

/** Whether any curation rule applies to `backend`. */
export function hasRules(backend: BackendConfig): boolean {
  return backendRules(backend).active;
}

const userMatchers = new WeakMap<readonly string[], GlobMatcher>();

/**
 * Whether a user's tool globs let them see and call the tool clients see on `/mcp` as
 * `exposed`. `undefined` globs = no narrowing (API keys, external JWTs, users whose access rules
 * give every tool).
 */
export function userAllows(globs: readonly string[] | undefined, exposed: string): boolean {
  if (globs === undefined) return true;
  let match = userMatchers.get(globs);
  if (!match) {
    match = globMatcher(globs);
    userMatchers.set(globs, match);
  }
  return match(exposed);
}
