/**
 * The tool and prompt catalog of the aggregated `/mcp` endpoint for one caller: the backends'
 * lists (cached, list_cache.ts) shaped by each backend's curation (lib/mcp/curation.ts), named
 * for `/mcp` (naming.ts: `backend__name`, shortened when needed, collisions left out) and
 * narrowed by the caller's scope (`request.backends`) and per-user tool globs (`request.tools`).
 *
 * Tool search (README "Large catalogs"): in `catalog.mode: "search"`, or when a caller sees more
 * than `catalog.searchAbove` tools, `tools/list` offers two tools instead: `search_tools` (query →
 * the best matching visible tools with their full schemas, BM25 ranking in search_index.ts) and
 * `call_tool` (name + arguments → the routed call, resolved exactly like a direct `tools/call`:
 * same scope, curation and per-user globs). Both are always callable, whatever the mode.
 */
import {
  type CallToolResult,
  type Prompt,
  ProtocolError,
  ProtocolErrorCode,
  type Tool,
} from "@modelcontextprotocol/server";
import type { BackendConfig, GatewayConfig } from "../../config.ts";
import type { Logger } from "../../infra/log.ts";
import { type BackendRules, backendRules, userAllows } from "../curation.ts";
import { SDK_TIMEOUT_MS, settleEach, withDeadline } from "./fanout.ts";
import type { ListCache } from "./list_cache.ts";
import { exposedName, looksShortened, splitName } from "./naming.ts";
import type { PoolView } from "./pool.ts";
import type { RelayProfile } from "./relay_profile.ts";
import { rank } from "./search_index.ts";
import { unwrapUri } from "./uri.ts";

/** Name of the search tool offered in search mode. */
export const SEARCH_TOOLS = "search_tools";
/** Name of the tool that calls a found tool. */
export const CALL_TOOL = "call_tool";

/** Most hits `search_tools` returns. */
const MAX_LIMIT = 20;
const DEFAULT_LIMIT = 5;

/** Shared parts the catalog needs. */
export interface CatalogEnv {
  /**
   * The caller's view of the pool (per-user backends: the caller's own clients; every backend:
   * the client of the caller's relay profile, whose lists are cached apart; absent: `""`).
   */
  pool: Pick<PoolView, "get"> & { readonly profile?: RelayProfile };
  lists: ListCache;
  log: Logger;
  catalog: GatewayConfig["catalog"];
}

/** Who is asking: the backends their scope covers and their tool globs. */
export interface CatalogRequest {
  backends: readonly BackendConfig[];
  /** Per-user tool globs over exposed names; undefined = no narrowing. */
  tools?: readonly string[];
}

/** One item of a backend as the caller sees it. */
export interface CatalogItem<T> {
  /** The name clients see on `/mcp`. */
  exposed: string;
  backend: BackendConfig;
  /** The backend's own name. */
  original: string;
  /** The item as listed (renamed, described, pinned arguments out of the schema). */
  item: T;
}

/** A `tools/call` resolved to its backend tool. */
export interface ResolvedTool {
  backend: BackendConfig;
  original: string;
  rules: BackendRules;
}

/**
 * A backend's list through the list cache, except for a per-user backend: its lists are the
 * user's account's, listed each time with the caller's own client (never shared).
 */
function cachedList<T>(
  env: CatalogEnv,
  backend: BackendConfig,
  kind: "tools" | "prompts",
  fetch: (cached: boolean) => Promise<T[]>,
): Promise<T[]> {
  if (backend.auth) return fetch(false);
  return env.lists.get<T>(backend, kind, () => fetch(env.lists.enabled), env.pool.profile ?? "");
}

/** The backend's tools (cached). */
function backendTools(env: CatalogEnv, backend: BackendConfig, signal?: AbortSignal) {
  return cachedList<Tool>(
    env,
    backend,
    "tools",
    (cached) =>
      withDeadline(backend, cached ? undefined : signal, async (s) => {
        const c = await env.pool.get(backend.name);
        if (!c.capabilities.tools) return [];
        return (await c.client.listTools(undefined, { signal: s, timeout: SDK_TIMEOUT_MS })).tools;
      }),
  );
}

/** The backend's prompts (cached). */
function backendPrompts(env: CatalogEnv, backend: BackendConfig, signal?: AbortSignal) {
  return cachedList<Prompt>(
    env,
    backend,
    "prompts",
    (cached) =>
      withDeadline(backend, cached ? undefined : signal, async (s) => {
        const c = await env.pool.get(backend.name);
        if (!c.capabilities.prompts) return [];
        return (await c.client.listPrompts(undefined, { signal: s, timeout: SDK_TIMEOUT_MS }))
          .prompts;
      }),
  );
}

// Curated lists, memoized per raw list (the cache hands out the same array until it changes).
const curatedTools = new WeakMap<object, CatalogItem<Tool>[]>();
const curatedPrompts = new WeakMap<object, CatalogItem<Prompt>[]>();
const warned = new Set<string>();

/**
 * Names every allowed item, leaves out the items whose exposed name is not unique in its backend
 * (a shortened-name hash clash, or a backend listing a name twice), and presents the rest.
 */
function curate<T extends { name: string }>(
  log: Logger,
  backend: BackendConfig,
  kind: "tool" | "prompt",
  raw: readonly T[],
  allowed: (name: string) => boolean,
  nameOf: (name: string) => string,
  present: (item: T, exposed: string) => T,
): CatalogItem<T>[] {
  const named = raw.filter((t) => allowed(t.name)).map((t) => ({ t, exposed: nameOf(t.name) }));
  const count = new Map<string, number>();
  for (const { exposed } of named) count.set(exposed, (count.get(exposed) ?? 0) + 1);
  const out: CatalogItem<T>[] = [];
  for (const { t, exposed } of named) {
    if (count.get(exposed)! > 1) {
      const key = `${backend.name}\n${kind}\n${t.name}`;
      if (!warned.has(key)) {
        warned.add(key);
        log({
          level: "warn",
          event: "name_left_out",
          kind,
          backend: backend.name,
          name: t.name.slice(0, 100),
          reason: `exposed name ${exposed} is not unique in the backend`,
        });
      }
      continue;
    }
    out.push({ exposed, backend, original: t.name, item: present(t, exposed) });
  }
  return out;
}

function toolsOf(env: CatalogEnv, backend: BackendConfig, raw: Tool[]): CatalogItem<Tool>[] {
  let items = curatedTools.get(raw);
  if (!items) {
    const rules = backendRules(backend);
    items = curate(
      env.log,
      backend,
      "tool",
      raw,
      rules.toolAllowed,
      rules.exposedName,
      (t, exposed) => rules.present(t, exposed),
    );
    curatedTools.set(raw, items);
  }
  return items;
}

function promptsOf(env: CatalogEnv, backend: BackendConfig, raw: Prompt[]): CatalogItem<Prompt>[] {
  let items = curatedPrompts.get(raw);
  if (!items) {
    const rules = backendRules(backend);
    items = curate(
      env.log,
      backend,
      "prompt",
      raw,
      rules.promptAllowed,
      (name) => exposedName(backend.name, name),
      (p, exposed) => ({ ...p, name: exposed }),
    );
    curatedPrompts.set(raw, items);
  }
  return items;
}

/** Every tool the caller may see, in configuration order (unreachable backends left out). */
export async function visibleTools(
  env: CatalogEnv,
  request: CatalogRequest,
  signal?: AbortSignal,
): Promise<CatalogItem<Tool>[]> {
  const lists = await settleEach(
    request.backends,
    env.log,
    "tools/list",
    async (b) => toolsOf(env, b, await backendTools(env, b, signal)),
  );
  const all = lists.flatMap((l) => l.value);
  return request.tools === undefined
    ? all
    : all.filter((t) => userAllows(request.tools, t.exposed));
}

/**
 * How many tools one backend shows on `/mcp` (curated, before any user's tool globs): from the
 * list cache, else listed now within the backend's `timeoutMs` (which fills the cache). Rejects
 * when the backend cannot be listed.
 */
export async function exposedToolCount(env: CatalogEnv, backend: BackendConfig): Promise<number> {
  return toolsOf(env, backend, await backendTools(env, backend)).length;
}

/** Every prompt the caller may see, in configuration order. */
export async function visiblePrompts(
  env: CatalogEnv,
  request: CatalogRequest,
  signal?: AbortSignal,
): Promise<CatalogItem<Prompt>[]> {
  const lists = await settleEach(
    request.backends,
    env.log,
    "prompts/list",
    async (b) => promptsOf(env, b, await backendPrompts(env, b, signal)),
  );
  return lists.flatMap((l) => l.value);
}

/** Whether the caller gets `search_tools` + `call_tool` instead of the full list. */
export function searchMode(env: CatalogEnv, visibleCount: number): boolean {
  const { mode, searchAbove } = env.catalog;
  return mode === "search" || (searchAbove !== undefined && visibleCount > searchAbove);
}

/** What `tools/list` shows the caller: every visible tool, or the two search tools. */
export async function listedTools(
  env: CatalogEnv,
  request: CatalogRequest,
  signal?: AbortSignal,
): Promise<Tool[]> {
  const tools = await visibleTools(env, request, signal);
  if (!searchMode(env, tools.length)) return tools.map((t) => t.item);
  return searchToolDefinitions(tools);
}

/** `search_tools` and `call_tool`, the former describing what there is to find. */
export function searchToolDefinitions(tools: readonly CatalogItem<Tool>[]): Tool[] {
  const perBackend = new Map<string, number>();
  for (const t of tools) perBackend.set(t.backend.name, (perBackend.get(t.backend.name) ?? 0) + 1);
  const summary = [...perBackend].map(([b, n]) => `${b} (${n})`).join(", ");
  return [
    {
      name: SEARCH_TOOLS,
      title: "Search tools",
      description: `Finds tools by keywords among the ${tools.length} tools of this gateway` +
        (summary ? ` (backends: ${summary})` : "") +
        `. Returns the best matches with their input schemas; run one with ${CALL_TOOL}.`,
      inputSchema: {
        type: "object",
        properties: {
          query: {
            type: "string",
            description: "What the tool should do, in a few keywords (e.g. 'merge pull request').",
          },
          limit: {
            type: "integer",
            minimum: 1,
            maximum: MAX_LIMIT,
            description: `How many tools to return (default ${DEFAULT_LIMIT}).`,
          },
        },
        required: ["query"],
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    {
      name: CALL_TOOL,
      title: "Call a tool",
      description: `Calls a tool found with ${SEARCH_TOOLS}: its name, and its arguments as ` +
        "its input schema describes them.",
      inputSchema: {
        type: "object",
        properties: {
          name: { type: "string", description: `The tool's name as ${SEARCH_TOOLS} gave it.` },
          arguments: { type: "object", description: "The tool's arguments." },
        },
        required: ["name"],
      },
    },
  ];
}

/** A tool result telling the model what went wrong (MCP Server/Tools §Error Handling). */
function toolError(text: string): CallToolResult {
  return { content: [{ type: "text", text }], isError: true };
}

/** Runs `search_tools`: the best visible tools for the query, with their full definitions. */
export async function searchTools(
  env: CatalogEnv,
  request: CatalogRequest,
  args: Record<string, unknown> | undefined,
  signal?: AbortSignal,
): Promise<CallToolResult> {
  const query = args?.query;
  const limit = args?.limit ?? DEFAULT_LIMIT;
  if (typeof query !== "string" || query.trim() === "" || query.length > 1000) {
    return toolError("search_tools needs a query: a non-empty string of at most 1000 characters");
  }
  if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    return toolError(`limit must be an integer from 1 to ${MAX_LIMIT}`);
  }
  const tools = await visibleTools(env, request, signal);
  const hits = rank(tools, docOf, query, limit).map((h) => h.item.item);
  const text = hits.length
    ? JSON.stringify({ tools: hits })
    : `No tool matches "${query.slice(0, 100)}"; try other keywords.`;
  return { content: [{ type: "text", text }], structuredContent: { tools: hits } };
}

const docOf = (t: CatalogItem<Tool>) => ({
  name: t.exposed,
  title: t.item.title ?? t.item.annotations?.title,
  description: t.item.description,
  params: Object.keys(t.item.inputSchema?.properties ?? {}),
});

/** The tool a `call_tool` names and its arguments; a malformed one is an invalid-params error. */
export function unwrapCallTool(
  args: Record<string, unknown> | undefined,
): { name: string; arguments?: Record<string, unknown> } {
  const name = args?.name;
  const inner = args?.arguments;
  if (typeof name !== "string" || name === "") {
    throw new ProtocolError(ProtocolErrorCode.InvalidParams, `${CALL_TOOL} needs a tool name`);
  }
  if (
    inner !== undefined && (inner === null || typeof inner !== "object" || Array.isArray(inner))
  ) {
    throw new ProtocolError(
      ProtocolErrorCode.InvalidParams,
      `${CALL_TOOL}: arguments must be an object`,
    );
  }
  return { name, arguments: inner as Record<string, unknown> | undefined };
}

/**
 * The backend tool behind an exposed name when the caller may call it, without any list:
 * `null` when unknown, denied or outside the caller's globs; `"lookup"` for a shortened name
 * (only the backend's list can tell which tool it is: {@linkcode resolveTool}).
 */
export function resolveToolDirect(
  request: CatalogRequest,
  exposed: string,
): ResolvedTool | null | "lookup" {
  const target = splitName(exposed);
  if (!target) return null;
  const backend = request.backends.find((b) => b.name === target.backend);
  if (!backend || !userAllows(request.tools, exposed)) return null;
  if (looksShortened(target.name)) return "lookup";
  const rules = backendRules(backend);
  const original = rules.originalOf(target.name);
  if (
    original === null || !rules.toolAllowed(original) || rules.exposedName(original) !== exposed
  ) {
    return null;
  }
  return { backend, original, rules };
}

/**
 * The backend of `exposed` when the caller's scope covers it but their tool globs exclude the
 * name (a refusal the audit trail records as `denied`), else `undefined`.
 */
export function excludedByGlobs(request: CatalogRequest, exposed: string): string | undefined {
  if (request.tools === undefined || userAllows(request.tools, exposed)) return undefined;
  const backend = splitName(exposed)?.backend;
  return request.backends.some((b) => b.name === backend) ? backend : undefined;
}

/** The backend tool behind an exposed name when the caller may call it, else `null`. */
export async function resolveTool(
  env: CatalogEnv,
  request: CatalogRequest,
  exposed: string,
  signal?: AbortSignal,
): Promise<ResolvedTool | null> {
  const direct = resolveToolDirect(request, exposed);
  if (direct !== "lookup") return direct;
  const backend = request.backends.find((b) => b.name === splitName(exposed)!.backend)!;
  const found = toolsOf(env, backend, await backendTools(env, backend, signal))
    .find((t) => t.exposed === exposed);
  return found ? { backend, original: found.original, rules: backendRules(backend) } : null;
}

/** The backend prompt behind an exposed name when the caller may use it, else `null`. */
export async function resolvePrompt(
  env: CatalogEnv,
  request: CatalogRequest,
  exposed: string,
  signal?: AbortSignal,
): Promise<{ backend: BackendConfig; original: string } | null> {
  const target = splitName(exposed);
  if (!target) return null;
  const backend = request.backends.find((b) => b.name === target.backend);
  if (!backend) return null;
  if (!looksShortened(target.name)) {
    return backendRules(backend).promptAllowed(target.name) &&
        exposedName(backend.name, target.name) === exposed
      ? { backend, original: target.name }
      : null;
  }
  const found = promptsOf(env, backend, await backendPrompts(env, backend, signal))
    .find((p) => p.exposed === exposed);
  return found ? { backend, original: found.original } : null;
}

/** Whether a backend's resource (by URI, or URI template) is offered. */
export function resourceAllowed(backend: BackendConfig, uri: string): boolean {
  return backendRules(backend).resourceAllowed(uri);
}

/**
 * Whether a gateway URI (`mcpgw-<backend>+<uri>`) names a resource of one of `backends` that its
 * curation offers (resource subscriptions of `subscriptions/listen` filters).
 */
export function gatewayUriAllowed(backends: readonly BackendConfig[], exposed: string): boolean {
  const target = unwrapUri(exposed);
  const owner = target && backends.find((b) => b.name === target.backend);
  return !!owner && resourceAllowed(owner, target.uri);
}
