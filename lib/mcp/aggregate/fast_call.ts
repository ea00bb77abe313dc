/**
 * Fast path of the aggregated `/mcp` for `tools/call` to a 2026-07-28 backend, from a 2026-07-28
 * client or from a 2025-era client on its session: one HTTP POST straight to the backend (like
 * lib/mcp/proxy.ts), instead of a per-request SDK server on the gateway's side plus the SDK client
 * toward the backend.
 *
 * It only takes a request the SDK path would answer the same way, and returns `undefined`
 * otherwise (the caller then runs the SDK path unchanged):
 * - one JSON-RPC request (not a batch, not a notification), `tools/call`, whose well-formed
 *   modern envelope and `MCP-Protocol-Version`/`Mcp-Method`/`Mcp-Name` headers agree (any
 *   mismatch is left to the SDK, which answers -32020/-32022); or, from a 2025-era client, no
 *   envelope and a supported `MCP-Protocol-Version`, on a session handler.ts has validated
 *   (missing → 400, unknown/ended/foreign → 404, before any of this);
 * - `params.name` = `backend__tool` of a configured backend the principal's scope covers, whose
 *   connection in the pool is established and speaks the modern era (a first call, or an
 *   unknown or 2025-era backend, goes through the SDK, which connects and probes), and which the
 *   curation and the principal's tool globs let through without a list lookup (catalog.ts
 *   `resolveToolDirect`: renames undone, pinned `defaults` injected; a denied, unknown or
 *   shortened name goes to the SDK path, which refuses or looks it up);
 * - no multi-round-trip retry (`inputResponses`/`requestState` need the sealed state opened).
 *
 * A modern client's message goes to the backend with `params.name` unprefixed and the client's
 * `_meta` envelope (so its `progressToken` works unchanged), `Mcp-Name` regenerated, the
 * client's `Mcp-Param-*` headers (MCP 2026-07-28 Transports: intermediaries forward them). A
 * 2025-era client's message gets the envelope the pool's SDK client would send (the gateway's
 * clientInfo and declared capabilities, pool.ts) and a progress token. Either way only the
 * backend's configured headers go along, never the client's `Authorization` (MCP 2025-11-25
 * Authorization §Token Passthrough). The answer is rewritten as the SDK path does: resource URIs
 * wrapped, the backend's reserved `_meta` dropped; for a modern client the gateway's serverInfo
 * stamped and an `input_required` result sealed (request_state.ts), for a 2025-era client the
 * 2025 shape (no `resultType`, always SSE like the SDK's legacy leg, `input_required` failed as
 * the SDK's legacy shim fails it). Progress notifications stream through (under the 2025-era
 * client's own token). A 2025-era call is registered in the {@linkcode CancelRegistry} like the
 * SDK path's: `notifications/cancelled` at any isolate aborts the backend request.
 * Failures give the SDK path's JSON-RPC errors: "Backend X timed out" (the backend's
 * `timeoutMs`, restarted by each progress notification), "Backend X is unavailable" and
 * "Request cancelled".
 *
 * A per-user backend (`auth`, issue 9) is called with the caller's own client connection and
 * credential (lib/credentials/credential.ts). Without a usable credential the SDK path answers
 * (with the connect answer); a 401 drops the credential and hands the call to the SDK path too.
 */
import type { BackendConfig, GatewayConfig } from "../../config.ts";
import type { Deps } from "../../deps.ts";
import {
  type BackendCredential,
  backendCredential,
  credentialRejected,
} from "../../credentials/credential.ts";
import { BackendAuthError } from "../../credentials/outbound.ts";
import type { UserRef } from "../../store.ts";
import { mcpHeaderValue } from "../jsonrpc_inspect.ts";
import { Deadlines, fetchBackend } from "../proxy.ts";
import { type BackendCall, type McpOperation, within } from "../../admin/mcp_operation.ts";
import { cancelKey, type CancelRegistry } from "./cancel.ts";
import { type ResolvedTool, resolveToolDirect } from "./catalog.ts";
import { LOG_LEVEL_KEY, logAllows, namedLog } from "./log_relay.ts";
import { type BackendConnection, type BackendPool, RELAYED_CLIENT_CAPABILITIES } from "./pool.ts";
import {
  GATEWAY_VERSION,
  invalidResultMessage,
  relayInputRequired,
  rewriteToolResult,
  SERVER_INFO_KEY,
  timedOutMessage,
  unavailableMessage,
} from "./server.ts";

/** The only protocol revision the fast path speaks (both to the client and to the backend). */
const MODERN = "2026-07-28";
const VERSION_KEY = "io.modelcontextprotocol/protocolVersion";
const CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities";
const CLIENT_INFO_KEY = "io.modelcontextprotocol/clientInfo";
/** 2025-era revisions whose `MCP-Protocol-Version` the SDK's legacy leg accepts. */
const LEGACY_VERSIONS = new Set(["2025-03-26", "2025-06-18", "2025-11-25"]);
const INTERNAL_ERROR = -32603;
const MISSING_CAPABILITY = -32021;

/** Switch for tests that compare the fast path with the SDK path; on in production. */
export const fastCallSettings = { enabled: true };

/** A backend as the fast path calls it (the shape of lib/mcp/proxy.ts's `fetchBackend` target). */
type Target = Parameters<typeof fetchBackend>[1];

const targets = new WeakMap<GatewayConfig, Map<string, Target>>();

function targetOf(config: GatewayConfig, backend: BackendConfig): Target {
  let byName = targets.get(config);
  if (!byName) targets.set(config, byName = new Map());
  let t = byName.get(backend.name);
  if (!t) {
    t = {
      config: backend,
      headers: Object.entries(backend.headers),
      deadlines: new Deadlines(backend.timeoutMs),
    };
    byName.set(backend.name, t);
  }
  return t;
}

const isObject = (v: unknown): v is Record<string, any> =>
  v !== null && typeof v === "object" && !Array.isArray(v);

export { mcpHeaderValue };

/** What the fast path needs from the handler. */
export interface FastCallContext {
  deps: Deps;
  pool: BackendPool;
  /** Backends the principal's scope covers. */
  allowed: readonly BackendConfig[];
  principalId: string;
  /** The principal's tool globs (`Principal.tools`); undefined = all. */
  tools?: readonly string[];
  logFields?: Record<string, unknown>;
  /** The caller's user (per-user backends use their connection); absent: acts for no user. */
  user?: UserRef;
  /** Audit trail and telemetry of the request (lib/admin/mcp_operation.ts). */
  operation?: McpOperation;
}

/** A 2025-era client's session, validated by the caller (handler.ts). */
export interface LegacySession {
  /** SHA-256 of the session id: the key of its in-flight calls in `cancels`. */
  sessionHash: string;
  cancels: CancelRegistry;
  /** The level the session set with `logging/setLevel` (its calls' log messages at and above). */
  logLevel?: string;
}

/**
 * Answers a `tools/call` directly when it is safe (see the module doc), else `undefined`.
 * `message` is the parsed JSON body of `req`; `legacy` is the session of a 2025-era client.
 */
export async function fastToolCall(
  req: Request,
  message: unknown,
  ctx: FastCallContext,
  legacy?: LegacySession,
): Promise<Response | undefined> {
  if (!isToolCall(message)) return undefined;
  const { id, params } = message;
  if (!(legacy ? isLegacyCall(req.headers, params) : isModernCall(req.headers, params))) {
    return undefined;
  }
  const route = modernRoute(ctx, params.name);
  if (!route) return undefined;
  if (route.backend.auth) {
    try {
      route.credential = await backendCredential(ctx.deps, ctx.user!, route.backend) ?? undefined;
    } catch (e) {
      if (!(e instanceof BackendAuthError)) throw e;
    }
    if (!route.credential) return undefined; // the SDK path gives the connect answer
  }
  const call: Call = { ctx, backend: route.backend.name, id, name: params.name, capabilities: {} };
  call.observed = ctx.operation?.backendCall(route.backend.name, "tools/call", route.tool);
  const headers = modernHeaders(route.tool);
  const args = route.resolved.rules.withDefaults(route.tool, params.arguments);
  if (!legacy) {
    call.capabilities = params._meta;
    for (const entry of req.headers) if (entry[0].startsWith("mcp-param-")) headers.push(entry);
    const forwarded: Record<string, unknown> = { ...params, name: route.tool };
    if (args !== params.arguments) forwarded.arguments = args;
    const trace = call.observed?.meta();
    if (trace?.traceparent) forwarded._meta = { ...params._meta, ...trace };
    const body = JSON.stringify({ ...message, params: forwarded });
    return await forward(call, route, headers, body, req.signal);
  }
  // What the pool's SDK client sends (server.ts, pool.ts): name and arguments only, a progress
  // token, the gateway's identity and declared capabilities.
  const progressToken = params._meta?.progressToken as string | number | undefined;
  call.capabilities = {
    progressToken: progressToken ?? id,
    [VERSION_KEY]: MODERN,
    [CAPABILITIES_KEY]: RELAYED_CLIENT_CAPABILITIES,
    [CLIENT_INFO_KEY]: { name: ctx.deps.config.serverName, version: GATEWAY_VERSION },
    ...(legacy.logLevel ? { [LOG_LEVEL_KEY]: legacy.logLevel } : {}),
  };
  const body = JSON.stringify({
    jsonrpc: "2.0",
    id,
    method: "tools/call",
    params: {
      name: route.tool,
      arguments: args,
      _meta: { ...call.capabilities, ...call.observed?.meta() },
    },
  });
  const tracked = legacy.cancels.track(cancelKey(legacy.sessionHash, id));
  call.legacy = { progressToken, cancelled: tracked.signal, done: tracked.done };
  return await forward(call, route, headers, body, AbortSignal.any([req.signal, tracked.signal]));
}

/** A single JSON-RPC `tools/call` request of the shape the fast path takes. */
function isToolCall(
  message: unknown,
): message is { id: string | number; params: Record<string, any> & { name: string } } {
  if (!fastCallSettings.enabled || !isObject(message)) return false;
  const { id, params } = message;
  return message.jsonrpc === "2.0" && message.method === "tools/call" &&
    (typeof id === "string" || typeof id === "number") && isObject(params) &&
    typeof params.name === "string" && !("inputResponses" in params) &&
    !("requestState" in params) && (params.arguments === undefined || isObject(params.arguments));
}

/**
 * Whether `message` is a 2025-era `tools/call` the fast path may take once its session is
 * validated (the SDK's legacy leg would serve it: no envelope, a supported version header).
 */
export function isFastLegacyCall(req: Request, message: unknown): boolean {
  return req.headers.has("mcp-session-id") && isToolCall(message) &&
    isLegacyCall(req.headers, message.params);
}

/** A 2026-07-28 call whose envelope and standard headers agree (else the SDK answers). */
function isModernCall(h: Headers, params: Record<string, any>): boolean {
  const meta = params._meta;
  return isObject(meta) && meta[VERSION_KEY] === MODERN && isObject(meta[CAPABILITIES_KEY]) &&
    (meta.progressToken === undefined || isProgressToken(meta.progressToken)) &&
    h.get("mcp-protocol-version") === MODERN && h.get("mcp-method") === "tools/call" &&
    h.get("mcp-name") === params.name && !h.has("mcp-session-id") && acceptsBoth(h);
}

/** A 2025-era call the SDK legacy leg would serve (supported version header, no envelope). */
function isLegacyCall(h: Headers, params: Record<string, any>): boolean {
  const meta = params._meta;
  if (meta !== undefined) {
    if (
      !isObject(meta) || (meta.progressToken !== undefined && !isProgressToken(meta.progressToken))
    ) {
      return false;
    }
    if (Object.keys(meta).some((k) => k.startsWith("io.modelcontextprotocol/"))) return false;
  }
  return LEGACY_VERSIONS.has(h.get("mcp-protocol-version") ?? "") && acceptsBoth(h);
}

const isProgressToken = (v: unknown): v is string | number =>
  typeof v === "string" || typeof v === "number";

/** Whether `Accept` lists both JSON and SSE (else the SDK answers 400/406 itself). */
function acceptsBoth(h: Headers): boolean {
  const accept = h.get("accept") ?? "";
  return accept.includes("application/json") && accept.includes("text/event-stream");
}

/** A fast-path destination: a connected modern backend the principal may call. */
interface Route {
  backend: BackendConfig;
  /** The backend's own tool name. */
  tool: string;
  resolved: ResolvedTool;
  connection: BackendConnection;
  upstream: Target;
  /** A per-user backend: the caller's credential. */
  credential?: BackendCredential;
}

function modernRoute(ctx: FastCallContext, name: string): Route | undefined {
  const resolved = resolveToolDirect({ backends: ctx.allowed, tools: ctx.tools }, name);
  if (resolved === null || resolved === "lookup") return undefined;
  const backend = resolved.backend;
  if (backend.auth && !ctx.user) return undefined;
  const connection = ctx.pool.connected(backend.name, ctx.user);
  if (connection?.era !== "modern") return undefined;
  if (ctx.logFields) ctx.logFields.fast_path = true;
  return {
    backend,
    tool: resolved.original,
    resolved,
    connection,
    upstream: targetOf(ctx.deps.config, backend),
  };
}

/** The headers of a 2026-07-28 `tools/call` of `tool` (MCP 2026-07-28 Transports). */
function modernHeaders(tool: string): [string, string][] {
  return [
    ["content-type", "application/json"],
    ["accept", "application/json, text/event-stream"],
    ["mcp-protocol-version", MODERN],
    ["mcp-method", "tools/call"],
    ["mcp-name", mcpHeaderValue(tool)],
  ];
}

const SSE_HEADERS = {
  "content-type": "text/event-stream",
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no",
};

/** Sends the call to the backend and answers the client (JSON or SSE, per era). */
async function forward(
  call: Call,
  route: Route,
  headers: [string, string][],
  body: string,
  signal: AbortSignal,
): Promise<Response | undefined> {
  const { ctx } = call;
  for (const entry of route.upstream.headers) headers.push(entry);
  if (route.credential) headers.push([route.credential.header, route.credential.value]);
  let settled = false;
  try {
    const outcome = await within(
      call.observed,
      () => fetchBackend(ctx.deps.fetch, route.upstream, "POST", headers, body, signal),
    );
    if (!outcome.ok) {
      if (call.legacy?.cancelled.aborted) return answer(call, cancelledMessage(call));
      if (outcome.reason === "timeout") return failed(call, "timeout", timedOutMessage);
      ctx.pool.invalidate(route.connection);
      return failed(call, "unreachable", unavailableMessage);
    }
    const res = outcome.response;
    if (route.credential && res.status === 401) {
      // The backend refused the user's credential: drop it, and let the SDK path answer.
      await res.body?.cancel().catch(() => {});
      call.observed?.end("401", "the backend refused the user's credential");
      await credentialRejected(ctx.deps, ctx.user!, route.backend, route.credential);
      ctx.pool.invalidate(route.connection);
      return undefined;
    }
    const type = (res.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    if (type === "text/event-stream" && res.ok && res.body) {
      const rewriter = sseRewriter(call, route.backend.timeoutMs, () => {
        ctx.pool.invalidate(route.connection);
      });
      settled = true;
      res.body.pipeTo(rewriter.writable, { preventAbort: true }).catch(() => rewriter.broken());
      return new Response(rewriter.readable, { status: 200, headers: SSE_HEADERS });
    }
    let reply: unknown;
    if (type === "application/json") {
      try {
        reply = await res.json();
      } catch {
        reply = undefined;
      }
    } else {
      await res.body?.cancel().catch(() => {});
    }
    if (call.legacy?.cancelled.aborted) return answer(call, cancelledMessage(call));
    const out = isObject(reply) && reply.id === call.id
      ? await finalMessage(call, reply)
      : undefined;
    if (!out) {
      ctx.pool.invalidate(route.connection);
      return failed(call, `HTTP ${res.status} ${type || "no content-type"}`, unavailableMessage);
    }
    return answer(call, out.message, out.status);
  } finally {
    if (!settled) call.legacy?.done();
  }
}

/** One fast-path call, for the rewriting of its answer. */
interface Call {
  ctx: FastCallContext;
  backend: string;
  id: string | number;
  /** The exposed tool name (`backend__tool`). */
  name: string;
  /** The `_meta` envelope sent to the backend (the declared client capabilities). */
  capabilities: Record<string, any>;
  /** Its audit record and CLIENT span (lib/admin/mcp_operation.ts), ended with its answer. */
  observed?: BackendCall;
  /** A 2025-era client's call: its own progress token, its cancellation, its settling. */
  legacy?: {
    progressToken: string | number | undefined;
    cancelled: AbortSignal;
    done: () => void;
  };
}

/** The client's answer holding one final message: JSON for a modern client, SSE for a legacy. */
function answer(call: Call, message: unknown, status = 200): Response {
  call.observed?.endWithMessage(message);
  if (call.legacy) return new Response(sseText(message), { status: 200, headers: SSE_HEADERS });
  return new Response(JSON.stringify(message), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** The SDK path's answer to a legacy call cancelled by `notifications/cancelled`. */
function cancelledMessage(call: Call) {
  call.observed?.end("cancelled");
  return errorMessage(call, INTERNAL_ERROR, "Request cancelled");
}

function errorMessage(call: Call, code: number, message: string, data?: unknown) {
  return {
    jsonrpc: "2.0",
    id: call.id,
    error: { code, message, ...(data !== undefined ? { data } : {}) },
  };
}

/** Logs a failed backend call, as server.ts does (and ends its audit: timeout or unavailable). */
function logFailure(call: Call, why: string): void {
  call.observed?.end(why === "timeout" ? "timeout" : "unavailable", why);
  call.ctx.deps.log({
    level: "warn",
    event: "backend_call_failed",
    backend: call.backend,
    error: why,
    fast_path: true,
  });
}

/** Logs a failed backend call and answers the SDK path's error. */
function failed(call: Call, why: string, message: (backend: string) => string): Response {
  logFailure(call, why);
  return answer(call, errorMessage(call, INTERNAL_ERROR, message(call.backend)));
}

/**
 * The client's copy of the backend's final JSON-RPC response, with its HTTP status (in-band
 * errors are 200 except -32021, as the SDK answers), or `undefined` when it is not a response.
 */
async function finalMessage(
  call: Call,
  reply: Record<string, any>,
): Promise<{ message: unknown; status: number } | undefined> {
  if (isObject(reply.error)) {
    const { code, message, data } = reply.error;
    if (typeof code !== "number" || typeof message !== "string") return undefined;
    return {
      message: errorMessage(call, code, message, data),
      status: code === MISSING_CAPABILITY ? 400 : 200,
    };
  }
  const result = reply.result;
  if (!isObject(result)) return undefined;
  const fault = resultFault(result);
  if (fault !== undefined) {
    // Refused as the SDK path's client refuses it (server.ts `invalidResultReason`).
    logFailure(call, `invalid result: ${fault}`);
    const message = errorMessage(call, INTERNAL_ERROR, invalidResultMessage(call.backend, fault));
    return { message, status: 200 };
  }
  if (call.legacy) return legacyFinal(call, result);
  let out: Record<string, any>;
  if (result.resultType === "input_required") {
    const missing = missingCapability(call, result.inputRequests);
    if (missing) return { message: missing, status: 400 };
    out = await relayInputRequired(
      call.ctx.deps,
      { principalId: call.ctx.principalId },
      "tools/call",
      call.backend,
      call.name,
      result,
    );
  } else {
    out = rewriteToolResult(call.backend, result);
  }
  const meta = isObject(out._meta) ? out._meta : {};
  out = {
    ...out,
    _meta: {
      ...meta,
      [SERVER_INFO_KEY]: { name: call.ctx.deps.config.serverName, version: GATEWAY_VERSION },
    },
  };
  return { message: { jsonrpc: "2.0", id: call.id, result: out }, status: 200 };
}

/**
 * What is wrong with a 2026-07-28 backend's result, in the SDK client's words, or `undefined`:
 * `resultType` is required from that revision on (MCP 2026-07-28 Basic §Result; the SDK's
 * absent-means-complete bridge applies only to 2025-era servers).
 */
function resultFault(result: Record<string, any>): string | undefined {
  if (result.resultType === undefined) return "missing required resultType";
  if (typeof result.resultType !== "string") return "non-string resultType";
  return undefined;
}

/** A modern backend's result as the SDK legacy leg hands it to a 2025-era client. */
function legacyFinal(
  call: Call,
  result: Record<string, any>,
): { message: unknown; status: number } | undefined {
  if (result.resultType === "input_required") {
    return { message: legacyInputRequired(call, result.inputRequests), status: 200 };
  }
  const { resultType: _, ...out } = rewriteToolResult(call.backend, result);
  return { message: { jsonrpc: "2.0", id: call.id, result: out }, status: 200 };
}

/**
 * The SDK path's answer to an `input_required` result toward a 2025-era client that declared
 * neither elicitation nor sampling (the others take the SDK path, which relays the requests:
 * input_relay.ts): the first embedded request that needs a capability fails with this `isError`
 * result (the same text).
 */
function legacyInputRequired(call: Call, requests: unknown): unknown {
  const [key, method] = Object.entries(isObject(requests) ? requests : {})
    .map(([k, entry]) => [k, isObject(entry) ? String(entry.method) : ""])
    .find(([, m]) => NEEDS[m!] !== undefined) ?? [];
  if (key === undefined) {
    return errorMessage(call, INTERNAL_ERROR, unavailableMessage(call.backend));
  }
  const text = `Cannot request input '${key}' (${method}): the client on this 2025-era ` +
    "connection did not declare the required capability";
  return {
    jsonrpc: "2.0",
    id: call.id,
    result: { content: [{ type: "text", text }], isError: true },
  };
}

/** The capability an embedded input request needs from the client (as the SDK checks it). */
const NEEDS: Record<string, string> = {
  "elicitation/create": "elicitation",
  "sampling/createMessage": "sampling",
  "roots/list": "roots",
};

/**
 * The SDK's -32021 for an `input_required` result asking for input the client did not declare
 * a capability for (the SDK path checks the same before relaying; MCP 2026-07-28 MRTR).
 */
function missingCapability(call: Call, requests: unknown): unknown {
  if (!isObject(requests)) return undefined;
  const declared = call.capabilities[CAPABILITIES_KEY] as Record<string, unknown>;
  for (const [key, entry] of Object.entries(requests)) {
    const method = isObject(entry) ? String(entry.method) : "";
    const capability = NEEDS[method];
    if (capability && declared[capability] === undefined) {
      return errorMessage(
        call,
        MISSING_CAPABILITY,
        `Cannot request input '${key}' (${method}): the request's client capabilities do not ` +
          "declare the required capability",
        { requiredCapabilities: { [capability]: {} } },
      );
    }
  }
  return undefined;
}

const encoder = new TextEncoder();

const sseText = (message: unknown) => `event: message\ndata: ${JSON.stringify(message)}\n\n`;
const sseEvent = (message: unknown): Uint8Array => encoder.encode(sseText(message));

/**
 * Rewrites a backend's SSE answer as it streams: progress notifications pass through (to a
 * 2025-era client under its own `progressToken`, or not at all when it gave none), log messages
 * at or above the caller's level pass through with the backend named (log_relay.ts), the final
 * response is rewritten like a JSON answer and ends the stream. Other notifications are dropped. The backend's `timeoutMs` bounds the wait
 * for each next event, restarted by progress like the SDK path's. `broken()` ends the answer when
 * the backend's stream fails: "Request cancelled" after a legacy cancellation, else "Backend X is
 * unavailable" (and `onBroken`, which forgets the connection).
 */
function sseRewriter(
  call: Call,
  timeoutMs: number,
  onBroken: () => void,
): TransformStream<Uint8Array, Uint8Array> & { broken: () => void } {
  const decoder = new TextDecoder();
  let buffer = "";
  let done = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let controllerRef: TransformStreamDefaultController<Uint8Array> | undefined;
  const finish = (bytes: Uint8Array) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    call.legacy?.done();
    try {
      controllerRef!.enqueue(bytes);
      controllerRef!.terminate();
    } catch {
      // the client went away
    }
  };
  const fail = (why: string, message: (backend: string) => string) => {
    if (done) return;
    logFailure(call, why);
    finish(sseEvent(errorMessage(call, INTERNAL_ERROR, message(call.backend))));
  };
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => fail("timeout", timedOutMessage), timeoutMs);
  };
  const onEvent = async (raw: string) => {
    const data = raw.split("\n").filter((l) => l.startsWith("data:"))
      .map((l) => l.slice(l[5] === " " ? 6 : 5)).join("\n");
    if (data === "") return;
    let msg: unknown;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (!isObject(msg)) return;
    if (msg.method === "notifications/progress") {
      arm();
      if (!call.legacy) controllerRef!.enqueue(encoder.encode(`${raw}\n\n`));
      else if (call.legacy.progressToken !== undefined && isObject(msg.params)) {
        const { progressToken: _, ...progress } = msg.params;
        controllerRef!.enqueue(sseEvent({
          jsonrpc: "2.0",
          method: "notifications/progress",
          params: { ...progress, progressToken: call.legacy.progressToken },
        }));
      }
      return;
    }
    if (msg.method === "notifications/message" && isObject(msg.params)) {
      if (logAllows(call.capabilities[LOG_LEVEL_KEY], msg.params.level)) {
        controllerRef!.enqueue(sseEvent({ jsonrpc: "2.0", ...namedLog(call.backend, msg.params) }));
      }
      return;
    }
    if (msg.id !== call.id || (!("result" in msg) && !("error" in msg))) return;
    const out = await finalMessage(call, msg);
    if (!out) return fail("malformed response", unavailableMessage);
    call.observed?.endWithMessage(out.message);
    finish(sseEvent(out.message));
  };
  const stream = new TransformStream<Uint8Array, Uint8Array>({
    start(controller) {
      controllerRef = controller;
      arm();
    },
    async transform(chunk) {
      if (done) return;
      buffer += decoder.decode(chunk, { stream: true }).replace(/\r\n/g, "\n");
      let end: number;
      while (!done && (end = buffer.indexOf("\n\n")) >= 0) {
        const raw = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        await onEvent(raw);
      }
    },
    flush() {
      if (!done) fail("stream ended without a response", unavailableMessage);
      clearTimeout(timer);
    },
    cancel() {
      call.observed?.end("cancelled");
      done = true;
      clearTimeout(timer);
      call.legacy?.done();
    },
  });
  const broken = () => {
    if (done) return;
    if (call.legacy?.cancelled.aborted) return finish(sseEvent(cancelledMessage(call)));
    onBroken();
    fail("stream broken", unavailableMessage);
  };
  return Object.assign(stream, { broken });
}
