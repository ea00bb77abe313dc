/**
 * Curation on the pass-through `/mcp/<backend>` (README "Shaping the tool surface"): for a
 * backend with curation rules, or a caller with per-user tool globs, the POST's JSON-RPC
 * message(s) are read and the backend's answer is rewritten message by message
 * (jsonrpc_inspect.ts), so that the rules of lib/mcp/curation.ts mean the same as on `/mcp`:
 *
 * - `tools/call` of a denied tool, an original renamed away, a tool hidden by a rename onto its
 *   name, or a tool outside the caller's globs: refused with JSON-RPC `-32602` (MCP 2025-11-25
 *   Server/Tools §Error Handling: unknown tool), in-band on HTTP 200 in both eras, the backend never
 *   called. Likewise `prompts/get`, `resources/read`, `resources/subscribe` and
 *   `completion/complete` of a denied prompt or resource.
 * - an allowed call has its rename undone (and, in the 2026-07-28 era, its `Mcp-Name` header
 *   regenerated to match: MCP 2026-07-28 Transports) and the pinned `defaults` put over its
 *   arguments.
 * - `tools/list`, `prompts/list`, `resources/list` and `resources/templates/list` results lose
 *   what is denied or outside the globs; tools show renamed, described, pinned arguments out of
 *   their schema. Names stay unprefixed here; globs match `<backend>__<name>` (the `/mcp` name).
 *
 * A backend without rules, for a caller without globs, keeps the untouched streaming path.
 */
import type { BackendConfig } from "../config.ts";
import type { Principal } from "../oauth/bearer.ts";
import { jsonResponse, MCP_BODY_LIMIT, readBodyText } from "../infra/http.ts";
import { type BackendRules, backendRules, type ToolLike, userAllows } from "./curation.ts";
import {
  idKey,
  isRequest,
  isResponse,
  type JsonRpcMessage,
  mcpHeaderValue,
  parseJsonRpcBody,
  transformMessages,
} from "./jsonrpc_inspect.ts";

/** JSON-RPC 2.0 §5.1 invalid params: what an unknown tool, prompt or resource gets. */
const INVALID_PARAMS = -32602;

/** List methods whose results are curated. */
const LISTS = new Set(["tools/list", "prompts/list", "resources/list", "resources/templates/list"]);

/** Whether a pass-through request needs the curated path. */
export function needsCuration(backend: BackendConfig, principal: Principal): boolean {
  return principal.tools !== undefined || backendRules(backend).active;
}

/**
 * Told about each request of a curated POST (the pass-through's audit,
 * lib/admin/pass_through_audit.ts): refused (`curation`: a rule of the backend; `tool_globs`: the
 * caller's tool globs), or forwarded as `sent`. `body`: the POST's text when it was read already.
 */
export interface CurationObserver {
  readonly body?: string;
  refused(message: JsonRpcMessage, reason: "curation" | "tool_globs"): void;
  forwarded(message: JsonRpcMessage, sent: JsonRpcMessage): void;
}

/** One curated POST: what to send upstream, and how to rewrite what comes back. */
export interface CuratedPost {
  body: string;
  /** The backend's answer as the client gets it. */
  respond: (
    status: number,
    headers: [string, string][],
    body: ReadableStream<Uint8Array> | string | null,
  ) => Response;
}

/**
 * Reads and curates a POST to `backend`. Returns the refusal when every request in it is
 * refused, else what to send (a body that is not JSON-RPC is forwarded as read, for the backend
 * to answer) and how to answer. `headers` (forwarded upstream) may be adjusted; `observer` hears
 * of each request's fate.
 */
export async function curatePost(
  req: Request,
  headers: [string, string][],
  backend: BackendConfig,
  principal: Principal,
  observer?: CurationObserver,
): Promise<Response | CuratedPost> {
  const text = observer?.body ?? await readBodyText(req, MCP_BODY_LIMIT);
  const parsed = parseJsonRpcBody(text);
  const passThrough: CuratedPost = { body: text, respond: relay };
  if (!parsed) return passThrough;
  const rules = backendRules(backend);
  const globs = principal.tools;
  const refusals: JsonRpcMessage[] = [];
  const lists = new Map<string, string>();
  let changed = false;
  const forwarded: JsonRpcMessage[] = [];
  for (const message of parsed.messages) {
    if (!isRequest(message)) {
      forwarded.push(message);
      continue;
    }
    const outcome = curateRequest(rules, globs, message);
    if (outcome.refused) {
      observer?.refused(message, outcome.reason);
      refusals.push(outcome.refused);
      changed = true;
      continue;
    }
    observer?.forwarded(message, outcome.message);
    if (outcome.message !== message) {
      changed = true;
      if (message.method === "tools/call") {
        setHeader(headers, "mcp-name", outcome.message.params.name);
      }
    }
    if (LISTS.has(message.method)) lists.set(idKey(message.id), message.method);
    forwarded.push(outcome.message);
  }
  if (forwarded.length === 0) {
    return jsonResponse(parsed.batch ? refusals : refusals[0], 200);
  }
  const body = !changed ? text : JSON.stringify(parsed.batch ? forwarded : forwarded[0]);
  const hook = (m: JsonRpcMessage) => {
    const method = isResponse(m) ? lists.get(idKey(m.id)) : undefined;
    return method ? curateList(rules, globs, method, m) : m;
  };
  return {
    body,
    respond: (status, relayed, answer) => {
      const resBody = typeof answer === "string" ? new Response(answer).body : answer;
      if (refusals.length > 0 && (status === 202 || resBody === null)) {
        resBody?.cancel().catch(() => {});
        return jsonResponse(refusals, 200, relayed.filter(([h]) => h !== "content-type"));
      }
      if (lists.size === 0 && refusals.length === 0) return relay(status, relayed, resBody);
      const type = relayed.find(([h]) => h === "content-type")?.[1] ?? null;
      const out = resBody ? transformMessages(resBody, type, hook, { prepend: refusals }) : null;
      return new Response(out, { status, headers: relayed });
    },
  };
}

function relay(
  status: number,
  headers: [string, string][],
  body: ReadableStream<Uint8Array> | string | null,
) {
  return new Response(body, { status, headers });
}

function setHeader(headers: [string, string][], name: string, value: string): void {
  const entry = headers.find(([h]) => h === name);
  if (entry) entry[1] = mcpHeaderValue(value);
}

function refusal(message: JsonRpcMessage, text: string): JsonRpcMessage {
  return { jsonrpc: "2.0", id: message.id, error: { code: INVALID_PARAMS, message: text } };
}

const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

/** The request as forwarded, or its refusal. */
function curateRequest(
  rules: BackendRules,
  globs: readonly string[] | undefined,
  message: JsonRpcMessage,
):
  | { message: JsonRpcMessage; refused?: undefined }
  | { refused: JsonRpcMessage; reason: "curation" | "tool_globs" } {
  const params = message.params && typeof message.params === "object" ? message.params : {};
  const refused = (text: string, reason: "curation" | "tool_globs" = "curation") => ({
    refused: refusal(message, text),
    reason,
  });
  switch (message.method) {
    case "tools/call": {
      const shown = str(params.name);
      if (shown === undefined) return { message };
      const original = rules.originalOf(shown);
      if (original === null || !rules.toolAllowed(original)) {
        return refused(`Unknown tool: ${shown}`);
      }
      if (!userAllows(globs, rules.exposedName(original))) {
        return refused(`Unknown tool: ${shown}`, "tool_globs");
      }
      const args = rules.withDefaults(original, params.arguments);
      if (original === shown && args === params.arguments) return { message };
      return { message: { ...message, params: { ...params, name: original, arguments: args } } };
    }
    case "prompts/get": {
      const name = str(params.name);
      return name !== undefined && !rules.promptAllowed(name)
        ? refused(`Unknown prompt: ${name}`)
        : { message };
    }
    case "resources/read":
    case "resources/subscribe": {
      const uri = str(params.uri);
      return uri !== undefined && !rules.resourceAllowed(uri)
        ? refused(`Resource not found: ${uri}`)
        : { message };
    }
    case "completion/complete": {
      const ref = params.ref ?? {};
      const prompt = ref.type === "ref/prompt" ? str(ref.name) : undefined;
      const uri = ref.type === "ref/resource" ? str(ref.uri) : undefined;
      const denied = (prompt !== undefined && !rules.promptAllowed(prompt)) ||
        (uri !== undefined && !rules.resourceAllowed(uri));
      return denied ? refused("Unknown completion reference") : { message };
    }
  }
  return { message };
}

/** Whether a tool listed by the backend shows on the pass-through for this caller. */
function toolShown(rules: BackendRules, globs: readonly string[] | undefined, t: ToolLike) {
  if (typeof t?.name !== "string" || !rules.toolAllowed(t.name)) return false;
  // A tool whose name another tool was renamed to is hidden here (calls to it reach the other).
  if (rules.renameTargets.has(t.name) && !rules.renames.has(t.name)) return false;
  return userAllows(globs, rules.exposedName(t.name));
}

/** A list result with what the caller may not see removed (and tools presented). */
function curateList(
  rules: BackendRules,
  globs: readonly string[] | undefined,
  method: string,
  m: JsonRpcMessage,
): JsonRpcMessage {
  const result = m.result;
  if (!result || typeof result !== "object") return m;
  const keep = <T>(key: string, pick: (item: any) => boolean, show = (item: T) => item) => {
    const items = result[key];
    if (!Array.isArray(items)) return m;
    return { ...m, result: { ...result, [key]: items.filter(pick).map(show) } };
  };
  switch (method) {
    case "tools/list":
      return keep<ToolLike>(
        "tools",
        (t) => toolShown(rules, globs, t),
        (t) => rules.present(t, rules.shownName(t.name)),
      );
    case "prompts/list":
      return keep("prompts", (p) => typeof p?.name === "string" && rules.promptAllowed(p.name));
    case "resources/list":
      return keep("resources", (r) => typeof r?.uri === "string" && rules.resourceAllowed(r.uri));
    case "resources/templates/list":
      return keep(
        "resourceTemplates",
        (t) => typeof t?.uriTemplate === "string" && rules.resourceAllowed(t.uriTemplate),
      );
  }
  return m;
}
