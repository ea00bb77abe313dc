/**
 * Fast path of the aggregated `/mcp` for `tools/call`, from a 2026-07-28 client or from a
 * 2025-era client on its session, to a 2026-07-28 backend or to a 2025-era backend: one HTTP POST
 * straight to the backend (like lib/mcp/proxy.ts), instead of a per-request SDK server on the
 * gateway's side plus the SDK client toward the backend.
 *
 * handler.ts classifies a request once and asks {@linkcode planFastCall}; a plan goes to
 * {@linkcode runFastCall}, anything else to the SDK path. A plan is made only for a request the
 * SDK path would answer the same way:
 * - one JSON-RPC request (not a batch, not a notification), `tools/call`, whose well-formed
 *   modern envelope and `MCP-Protocol-Version`/`Mcp-Method`/`Mcp-Name` headers agree (any
 *   mismatch is left to the SDK, which answers -32020/-32022); or, from a 2025-era client, no
 *   envelope and a supported `MCP-Protocol-Version`, on a session handler.ts has validated
 *   (missing → 400, unknown/ended/foreign → 404, before any of this), whose client declared
 *   neither elicitation nor sampling (those the SDK path relays, input_relay.ts);
 * - `params.name` = `backend__tool` of a configured backend the principal's scope covers, whose
 *   connection in the pool is established (a first call goes through the SDK, which connects
 *   and probes the era), and which the curation and the principal's tool globs let through
 *   without a list lookup (catalog.ts `resolveToolDirect`: renames undone, pinned `defaults`
 *   injected; a denied, unknown or shortened name goes to the SDK path, which refuses or looks
 *   it up);
 * - to a 2025-era backend, a client that cannot answer elicitation or sampling and asked for no
 *   log level (the SDK path relays those on the backend's session);
 * - no multi-round-trip retry (`inputResponses`/`requestState` need the sealed state opened).
 *
 * Toward a 2026-07-28 backend, a modern client's message goes with `params.name` unprefixed and
 * the client's `_meta` envelope (so its `progressToken` works unchanged), `Mcp-Name`
 * regenerated, the client's `Mcp-Param-*` headers (MCP 2026-07-28 Transports: intermediaries
 * forward them); a 2025-era client's message gets the envelope the pool's SDK client would send
 * (the gateway's clientInfo and declared capabilities, pool.ts) and a progress token. Toward a
 * 2025-era backend the message goes on the pool connection's backend session
 * (`Mcp-Session-Id` and negotiated `MCP-Protocol-Version`, pool.ts `wire`) under a gateway-side
 * request id, with the client's progress token; a `notifications/cancelled` follows when the
 * client cancels or goes away (MCP 2025-11-25 Utilities/Cancellation), and a request the backend
 * sends during the call is refused as the SDK path refuses it for such a client. Either way only
 * the backend's configured headers go along, never the client's `Authorization` (MCP 2025-11-25
 * Authorization §Token Passthrough).
 *
 * The answer is rewritten as the SDK path does: resource URIs wrapped, the backend's reserved
 * `_meta` dropped; for a modern client the gateway's serverInfo stamped, a 2025-era backend's
 * result marked `resultType: "complete"` (JSON unless progress precedes it, as the SDK server
 * answers) and an `input_required` result sealed (request_state.ts); for a 2025-era client the
 * 2025 shape (no `resultType`, always SSE like the SDK's legacy leg, `input_required` failed as
 * the SDK's legacy shim fails it). A 2026-07-28 backend's result without `resultType` is refused
 * ("Backend X returned an invalid result: missing required resultType", as the SDK client
 * refuses it) and the connection kept. Progress notifications stream through (under the 2025-era
 * client's own token). A 2025-era client's call is registered in the
 * {@linkcode CancelRegistry} like the SDK path's: `notifications/cancelled` at any isolate aborts
 * the backend request. Failures give the SDK path's JSON-RPC errors: "Backend X timed out" (the
 * backend's `timeoutMs`, restarted by each progress notification), "Backend X is unavailable"
 * and "Request cancelled".
 *
 * A per-user backend (`auth`, issue 9) is called with the caller's own client connection and
 * credential (lib/credentials/credential.ts). Without a usable credential there is no plan (the
 * SDK path gives the connect answer); a 401 drops the credential and hands the call to the SDK
 * path too (the one case where a planned call ends on the SDK path).
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
import { type Deadline, Deadlines, fetchBackend } from "../proxy.ts";
import { type BackendCall, type McpOperation, within } from "../../admin/mcp_operation.ts";
import { cancelKey, type CancelRegistry, wasCancelled } from "./cancel.ts";
import { type ResolvedTool, resolveToolDirect } from "./catalog.ts";
import { LOG_LEVEL_KEY, logAllows, namedLog } from "./log_relay.ts";
import { lacksCapability, refusal, refusalError } from "./input_relay.ts";
import type { BackendConnection, BackendPool } from "./pool.ts";
import { relayedCapabilities } from "./relay_profile.ts";
import { markPrimed, primedSseResponse, primedVersion, primingEvent } from "./sse_priming.ts";
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
  /** The capabilities the client declared at `initialize`. */
  capabilities: Record<string, unknown>;
  /** The level the session set with `logging/setLevel` (its calls' log messages at and above). */
  logLevel?: string;
}

/** A request the fast path takes (from {@linkcode planFastCall}), ready for {@linkcode runFastCall}. */
export interface FastPlan {
  req: Request;
  id: string | number;
  params: Record<string, any> & { name: string };
  ctx: FastCallContext;
  route: Route;
  legacy?: LegacySession;
}

/**
 * Whether a client that declared `capabilities` can answer elicitation or sampling: such a
 * 2025-era client takes the SDK path, which relays a backend's input requests to it
 * (input_relay.ts); so does any client calling a 2025-era backend with them.
 */
export function answersInput(capabilities: unknown): boolean {
  const declared = isObject(capabilities) ? capabilities : {};
  return !lacksCapability(declared, "elicitation/create", {}) ||
    !lacksCapability(declared, "sampling/createMessage", {});
}

/**
 * The fast path's plan for `message` (the parsed JSON body of `req`, a `tools/call` that
 * {@linkcode callEra} classified: `legacy` is then the validated session of a 2025-era client,
 * absent for a 2026-07-28 one), or `undefined` when the request is not one it takes (see the
 * module doc): then the SDK path serves it.
 */
export async function planFastCall(
  req: Request,
  message: FastCallMessage,
  ctx: FastCallContext,
  legacy?: LegacySession,
): Promise<FastPlan | undefined> {
  const { id, params } = message;
  if (legacy && answersInput(legacy.capabilities)) return undefined;
  const route = fastRoute(ctx, params.name);
  if (!route) return undefined;
  if (route.connection.era === "legacy") {
    // A 2025-era backend's input requests and session log level are the SDK path's to relay.
    const declared = legacy ? legacy.capabilities : params._meta[CAPABILITIES_KEY];
    const level = legacy ? legacy.logLevel : params._meta[LOG_LEVEL_KEY];
    if (answersInput(declared) || level !== undefined) return undefined;
  }
  if (route.backend.auth) {
    try {
      route.credential = await backendCredential(ctx.deps, ctx.user!, route.backend) ?? undefined;
    } catch (e) {
      if (!(e instanceof BackendAuthError)) throw e;
    }
    if (!route.credential) return undefined; // the SDK path gives the connect answer
  }
  if (ctx.logFields) ctx.logFields.fast_path = true;
  return { req, id, params, ctx, route, ...(legacy ? { legacy } : {}) };
}

/** Gateway-side ids of requests to 2025-era backends (never a number: the SDK client's are). */
let upstreamSeq = 0;

/**
 * Answers a planned call. `undefined` only when a per-user backend refused the user's
 * credential (dropped meanwhile): the SDK path then gives the connect answer.
 */
export async function runFastCall(plan: FastPlan): Promise<Response | undefined> {
  const { req, id, params, ctx, route, legacy } = plan;
  const backendEra = route.connection.era;
  const call: Call = {
    ctx,
    backend: route.backend.name,
    id,
    upstreamId: backendEra === "legacy" ? `gw-${++upstreamSeq}` : id,
    backendEra,
    name: params.name,
    capabilities: {},
  };
  call.observed = ctx.operation?.backendCall(route.backend.name, "tools/call", route.tool);
  const args = route.resolved.rules.withDefaults(route.tool, params.arguments);
  const headers = backendEra === "legacy"
    ? legacyHeaders(route.connection)
    : modernHeaders(route.tool);
  const progressToken = params._meta?.progressToken as string | number | undefined;
  let body: string;
  if (!legacy) {
    call.capabilities = params._meta;
    if (backendEra === "legacy") {
      body = legacyBody(call, route.tool, args, progressToken);
    } else {
      for (const entry of req.headers) if (entry[0].startsWith("mcp-param-")) headers.push(entry);
      const forwarded: Record<string, unknown> = { ...params, name: route.tool };
      if (args !== params.arguments) forwarded.arguments = args;
      const trace = call.observed?.meta();
      // The backend hears only the capabilities the gateway can relay (relay_profile.ts).
      const declared = relayedCapabilities(params._meta?.[CAPABILITIES_KEY]);
      forwarded._meta = { ...params._meta, [CAPABILITIES_KEY]: declared };
      if (trace?.traceparent) forwarded._meta = { ...forwarded._meta as object, ...trace };
      body = JSON.stringify({ jsonrpc: "2.0", id, method: "tools/call", params: forwarded });
    }
    return await forward(call, route, headers, body, req.signal);
  }
  call.capabilities = legacy.logLevel ? { [LOG_LEVEL_KEY]: legacy.logLevel } : {};
  if (backendEra === "legacy") {
    body = legacyBody(call, route.tool, args, progressToken);
  } else {
    // What the pool's SDK client sends (server.ts, pool.ts): name and arguments only, a progress
    // token, the gateway's identity and declared capabilities.
    call.capabilities = {
      progressToken: progressToken ?? id,
      [VERSION_KEY]: MODERN,
      // handler.ts sends a 2025 client here only when it declared neither elicitation nor sampling
      [CAPABILITIES_KEY]: relayedCapabilities({}),
      [CLIENT_INFO_KEY]: { name: ctx.deps.config.serverName, version: GATEWAY_VERSION },
      ...call.capabilities,
    };
    body = JSON.stringify({
      jsonrpc: "2.0",
      id,
      method: "tools/call",
      params: {
        name: route.tool,
        arguments: args,
        _meta: { ...call.capabilities, ...call.observed?.meta() },
      },
    });
  }
  // One signal: aborted by a cancellation (reason CANCELLED) or when the client goes away.
  const tracked = legacy.cancels.track(cancelKey(legacy.sessionHash, id), req.signal);
  call.legacy = {
    version: req.headers.get("mcp-protocol-version"),
    progressToken,
    cancelled: tracked.signal,
    done: tracked.done,
  };
  return await forward(call, route, headers, body, tracked.signal);
}

/**
 * The body of a 2025-era `tools/call` toward a 2025-era backend, as the pool's SDK client sends
 * it: the backend's tool name, the arguments, and the client's progress token if it gave one
 * (under the gateway's own request id, unique on the backend's session).
 */
function legacyBody(
  call: Call,
  tool: string,
  args: unknown,
  progressToken: string | number | undefined,
): string {
  // Always a progress token, as the SDK client sends one: progress restarts the call's deadline.
  const meta = { progressToken: progressToken ?? call.upstreamId, ...call.observed?.meta() };
  call.clientToken = progressToken !== undefined;
  return JSON.stringify({
    jsonrpc: "2.0",
    id: call.upstreamId,
    method: "tools/call",
    params: {
      name: tool,
      ...(args !== undefined ? { arguments: args } : {}),
      _meta: meta,
    },
  });
}

/** A `tools/call` message of the fast path's shape. */
export type FastCallMessage = {
  id: string | number;
  params: Record<string, any> & { name: string };
};

/** A single JSON-RPC `tools/call` request of the shape the fast path takes. */
function isToolCall(message: unknown): message is FastCallMessage {
  if (!fastCallSettings.enabled || !isObject(message)) return false;
  const { id, params } = message;
  return message.jsonrpc === "2.0" && message.method === "tools/call" &&
    (typeof id === "string" || typeof id === "number") && isObject(params) &&
    typeof params.name === "string" && !("inputResponses" in params) &&
    !("requestState" in params) && (params.arguments === undefined || isObject(params.arguments));
}

/**
 * The era of a `tools/call` of the fast path's shape, known without the SDK's classifier: a
 * modern envelope with agreeing headers is 2026-07-28; no envelope, a supported 2025-era version
 * header and a session id is 2025-era (the SDK classifies both the same way). Else `undefined`
 * (then no plan: the SDK path serves it). A message with an era is one
 * {@linkcode planFastCall} takes.
 */
export function callEra(req: Request, message: unknown): "modern" | "legacy" | undefined {
  if (!isToolCall(message)) return undefined;
  if (isModernCall(req.headers, message.params)) return "modern";
  if (req.headers.has("mcp-session-id") && isLegacyCall(req.headers, message.params)) {
    return "legacy";
  }
  return undefined;
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

/** A fast-path destination: a connected backend the principal may call. */
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

function fastRoute(ctx: FastCallContext, name: string): Route | undefined {
  const resolved = resolveToolDirect({ backends: ctx.allowed, tools: ctx.tools }, name);
  if (resolved === null || resolved === "lookup") return undefined;
  const backend = resolved.backend;
  if (backend.auth && !ctx.user) return undefined;
  const connection = ctx.pool.connected(backend.name, ctx.user);
  // A 2025-era backend learnt the capabilities at `initialize`: only the connection that declared
  // none (relay profile "") matches a fast-path caller, who declared neither (planFastCall).
  if (!connection || (connection.era === "legacy" && (!connection.wire || connection.profile))) {
    return undefined;
  }
  return {
    backend,
    tool: resolved.original,
    resolved,
    connection,
    upstream: targetOf(ctx.deps.config, backend),
  };
}

/** The standard headers of a 2026-07-28 `tools/call` of each tool (MCP 2026-07-28 Transports). */
const modernHeaderCache = new Map<string, readonly [string, string]>();

function modernHeaders(tool: string): [string, string][] {
  let name = modernHeaderCache.get(tool);
  if (!name) {
    name = ["mcp-name", mcpHeaderValue(tool)];
    if (modernHeaderCache.size < 10_000) modernHeaderCache.set(tool, name);
  }
  return [
    ["content-type", "application/json"],
    ["accept", "application/json, text/event-stream"],
    ["mcp-protocol-version", MODERN],
    ["mcp-method", "tools/call"],
    [name[0], name[1]],
  ];
}

/**
 * The headers of a request on a 2025-era backend's connection: the negotiated
 * `MCP-Protocol-Version` and the backend's `Mcp-Session-Id` (MCP 2025-11-25 Transports).
 */
function legacyHeaders(connection: BackendConnection): [string, string][] {
  const wire = connection.wire!;
  const headers: [string, string][] = [
    ["content-type", "application/json"],
    ["accept", "application/json, text/event-stream"],
    ["mcp-protocol-version", wire.protocolVersion],
  ];
  if (wire.sessionId) headers.push(["mcp-session-id", wire.sessionId]);
  return headers;
}

const JSON_HEADERS = { "content-type": "application/json" };

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
  if (call.backendEra === "legacy") {
    // A 2025-era backend: cancellation is a notification on its session (MCP 2025-11-25
    // Utilities/Cancellation; a closed connection is not one), and its requests during the call
    // (elicitation, sampling, roots) are refused as the SDK path refuses them for this client.
    const upstream = (message: unknown) =>
      fetchBackend(
        ctx.deps.fetch,
        route.upstream,
        "POST",
        headers.filter(notCallHeader),
        JSON.stringify(message),
        AbortSignal.timeout(route.backend.timeoutMs),
      )
        .then((o) => o.ok ? o.response.body?.cancel() : undefined).catch(() => {});
    call.toBackend = upstream;
    const onAbort = () => {
      if (call.settled) return;
      upstream({
        jsonrpc: "2.0",
        method: "notifications/cancelled",
        params: { requestId: call.upstreamId, reason: "The client cancelled the request" },
      });
    };
    signal.addEventListener("abort", onAbort, { once: true });
    // In flight on the connection's tap (call_relay.ts): a backend request from outside the
    // streams is then never given to another principal's call, and one placed on this call is
    // refused as the SDK path refuses it for this client.
    const untrack = route.connection.tap?.track({
      owner: ctx.principalId,
      ask: (method) => Promise.reject(refusal(method)),
      log: () => {},
    });
    call.onSettled = () => {
      signal.removeEventListener("abort", onAbort);
      untrack?.();
    };
  }
  let settled = false;
  try {
    const outcome = await within(
      call.observed,
      () => fetchBackend(ctx.deps.fetch, route.upstream, "POST", headers, body, signal),
    );
    if (!outcome.ok) {
      if (call.legacy && wasCancelled(call.legacy.cancelled)) {
        return answer(call, cancelledMessage(call));
      }
      if (outcome.reason === "timeout") return failed(call, "timeout", timedOutMessage);
      ctx.pool.invalidate(route.connection);
      return failed(call, "unreachable", unavailableMessage);
    }
    const res = outcome.response;
    if (route.credential && res.status === 401) {
      // The backend refused the user's credential: drop it, and let the SDK path answer.
      await res.body?.cancel().catch(() => {});
      call.observed?.end("401", "the backend refused the user's credential");
      settle(call);
      await credentialRejected(ctx.deps, ctx.user!, route.backend, route.credential);
      ctx.pool.invalidate(route.connection);
      return undefined;
    }
    const type = (res.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    if (type === "text/event-stream" && res.ok && res.body) {
      settled = true;
      // 2025-era backends answer in SSE by habit; toward a modern client the SDK path answers
      // JSON unless something precedes the result, and so does this path.
      return await relaySse(
        call,
        new SseRelay(call, res.body, route.upstream.deadlines, () => {
          ctx.pool.invalidate(route.connection);
        }),
      );
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
    if (call.legacy && wasCancelled(call.legacy.cancelled)) {
      return answer(call, cancelledMessage(call));
    }
    const out = isObject(reply) && reply.id === call.upstreamId
      ? await finalMessage(call, reply)
      : undefined;
    if (!out) {
      ctx.pool.invalidate(route.connection);
      return failed(call, `HTTP ${res.status} ${type || "no content-type"}`, unavailableMessage);
    }
    return answer(call, out.message, out.status);
  } finally {
    if (!settled) {
      settle(call);
      call.legacy?.done();
    }
  }
}

/** Headers of the call itself, not of a notification or answer on the same session. */
const notCallHeader = ([k]: [string, string]) => k !== "mcp-method" && k !== "mcp-name";

/** Marks the call answered (a later abort is no cancellation). */
function settle(call: Call): void {
  if (call.settled) return;
  call.settled = true;
  call.onSettled?.();
}

/** One fast-path call, for the rewriting of its answer. */
interface Call {
  ctx: FastCallContext;
  backend: string;
  /** The client's request id. */
  id: string | number;
  /** The id of the request sent to the backend (the client's toward a 2026-07-28 backend). */
  upstreamId: string | number;
  backendEra: "legacy" | "modern";
  /** The exposed tool name (`backend__tool`). */
  name: string;
  /** The `_meta` envelope sent to the backend (the declared client capabilities, log level). */
  capabilities: Record<string, any>;
  /** Its audit record and CLIENT span (lib/admin/mcp_operation.ts), ended with its answer. */
  observed?: BackendCall;
  /** A 2025-era client's call: its own progress token, its cancellation, its settling. */
  legacy?: {
    /** Its `MCP-Protocol-Version` (2025-11-25 SSE answers are primed: sse_priming.ts). */
    version: string | null;
    progressToken: string | number | undefined;
    /** Aborted by a cancellation or when the client goes away ({@linkcode wasCancelled}). */
    cancelled: AbortSignal;
    done: () => void;
  };
  /** A 2025-era backend: sends a message on the backend's session (fire and forget). */
  toBackend?: (message: unknown) => void;
  settled?: boolean;
  onSettled?: () => void;
  /** A 2025-era backend's call: whether the client gave its own progress token. */
  clientToken?: boolean;
}

/** The client's answer holding one final message: JSON for a modern client, SSE for a legacy. */
function answer(call: Call, message: unknown, status = 200): Response {
  call.observed?.endWithMessage(message);
  if (call.legacy) return primedSseResponse(call.legacy.version, sseText(message), SSE_HEADERS);
  return new Response(JSON.stringify(message), { status, headers: JSON_HEADERS });
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
  const fault = call.backendEra === "modern" ? resultFault(result) : undefined;
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
    // A 2025-era backend's result: the SDK's bridge reads a missing resultType as complete.
    if (out.resultType === undefined) out = { ...out, resultType: "complete" };
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
const sharedDecoder = new TextDecoder();

const sseText = (message: unknown) => `event: message\ndata: ${JSON.stringify(message)}\n\n`;

/**
 * Relays a backend's SSE answer, reading the backend's stream itself (no stream transform):
 * progress notifications pass through (to a 2025-era client under its own `progressToken`, or
 * not at all when it gave none), log messages at or above the caller's level pass through with
 * the backend named (log_relay.ts), the final response is rewritten like a JSON answer and ends
 * the answer. Other notifications are dropped. The backend's `timeoutMs` bounds the wait for each
 * next event, restarted by progress like the SDK path's. A broken backend stream ends the answer
 * with "Request cancelled" after a legacy cancellation, else "Backend X is unavailable" (and
 * `onBroken`, which forgets the connection). {@linkcode SseRelay.next} gives the client's next
 * events; {@linkcode SseRelay.onlyFinal} says the final message came before anything else (the
 * caller then answers it as one string, JSON or SSE).
 */
class SseRelay {
  readonly #call: Call;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  /** The backend's deadlines (its `timeoutMs`, one timer for all its calls: proxy.ts). */
  readonly #deadlines: Deadlines;
  readonly #onBroken: () => void;
  #decoder: TextDecoder | undefined;
  #buffer = "";
  #out: string[] = [];
  #sent = 0;
  #deadline: Deadline | undefined;
  /** The answer is complete (final message, failure or cancellation): nothing more to relay. */
  done = false;
  /** The final message, when it was the first event for the client. */
  onlyFinal?: { message: unknown; status: number };

  constructor(
    call: Call,
    body: ReadableStream<Uint8Array>,
    deadlines: Deadlines,
    onBroken: () => void,
  ) {
    this.#call = call;
    this.#reader = body.getReader();
    this.#deadlines = deadlines;
    this.#onBroken = onBroken;
    this.#arm();
  }

  /** The client's next events (at least one), or `null` once the answer is complete. */
  async next(): Promise<string[] | null> {
    while (this.#out.length === 0 && !this.done) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await this.#reader.read();
      } catch {
        this.#broken();
        break;
      }
      if (this.done) break;
      if (chunk.done) {
        this.#fail("stream ended without a response", unavailableMessage);
        break;
      }
      const value = chunk.value;
      // A chunk ending on an ASCII byte (SSE events end with a line feed) ends its characters:
      // the shared decoder does; a split character needs this stream's own from then on.
      const text = !this.#decoder && value[value.length - 1]! < 0x80
        ? sharedDecoder.decode(value)
        : (this.#decoder ??= new TextDecoder()).decode(value, { stream: true });
      this.#buffer += text.includes("\r") ? text.replace(/\r\n/g, "\n") : text;
      let end: number;
      while (!this.done && (end = this.#buffer.indexOf("\n\n")) >= 0) {
        const raw = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 2);
        try {
          await this.#onEvent(raw);
        } catch {
          this.#broken();
        }
      }
    }
    if (this.#out.length === 0) return null;
    const out = this.#out;
    this.#out = [];
    return out;
  }

  /** The client went away: the call is cancelled, the backend's stream dropped. */
  cancel(): void {
    if (this.done) return;
    this.#call.observed?.end("cancelled");
    this.done = true;
    settle(this.#call);
    this.#disarm();
    this.#call.legacy?.done();
    this.#reader.cancel().catch(() => {});
  }

  #emit(text: string): void {
    this.#sent++;
    this.#out.push(text);
  }

  /** (Re)starts the wait for the next event: past it the call times out (or, once the answer is
   * complete, the drained stream is dropped). */
  #arm(): void {
    this.#disarm();
    this.#deadline = this.#deadlines.start(() => {
      if (this.done) this.#reader.cancel().catch(() => {});
      else this.#fail("timeout", timedOutMessage);
    });
  }

  #disarm(): void {
    if (this.#deadline) this.#deadlines.settle(this.#deadline);
  }

  /** Ends the answer with `message`; `drain`: the backend's stream ended well, else dropped. */
  #finish(message: unknown, status = 200, drain = false): void {
    if (this.done) return;
    this.done = true;
    if (this.#sent === 0) this.onlyFinal = { message, status };
    this.#emit(sseText(message));
    const call = this.#call;
    settle(call);
    call.legacy?.done();
    if (drain) return this.#drain();
    this.#disarm();
    this.#reader.cancel().catch(() => {});
  }

  /**
   * Reads what follows the final message (a backend closes its stream after it, which lets the
   * connection be reused), within the same deadline; then drops the stream.
   */
  #drain(): void {
    const reader = this.#reader;
    const loop = async () => {
      while (!(await reader.read()).done) { /* after the final message: ignored */ }
    };
    // The armed deadline (#arm) still bounds it.
    loop().catch(() => {}).finally(() => this.#disarm());
  }

  #fail(why: string, message: (backend: string) => string): void {
    if (this.done) return;
    logFailure(this.#call, why);
    this.#finish(errorMessage(this.#call, INTERNAL_ERROR, message(this.#call.backend)));
  }

  #broken(): void {
    if (this.done) return;
    const call = this.#call;
    if (call.legacy && wasCancelled(call.legacy.cancelled)) {
      return this.#finish(cancelledMessage(call));
    }
    this.#onBroken();
    this.#fail("stream broken", unavailableMessage);
  }

  async #onEvent(raw: string): Promise<void> {
    const call = this.#call;
    let data = "";
    for (const line of raw.split("\n")) {
      if (!line.startsWith("data:")) continue;
      data += (data === "" ? "" : "\n") + line.slice(line[5] === " " ? 6 : 5);
    }
    if (data === "") return;
    let msg: unknown;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (!isObject(msg)) return;
    if (msg.method === "notifications/progress") {
      this.#arm();
      if (!call.legacy) {
        // A 2025-era backend got the gateway's own token when the client gave none (progress
        // then only keeps the call alive, as on the SDK path).
        if (call.clientToken || call.backendEra === "modern") this.#emit(`${raw}\n\n`);
      } else if (call.legacy.progressToken !== undefined && isObject(msg.params)) {
        const { progressToken: _, ...progress } = msg.params;
        this.#emit(sseText({
          jsonrpc: "2.0",
          method: "notifications/progress",
          params: { ...progress, progressToken: call.legacy.progressToken },
        }));
      }
      return;
    }
    if (msg.method === "notifications/message" && isObject(msg.params)) {
      if (logAllows(call.capabilities[LOG_LEVEL_KEY], msg.params.level)) {
        this.#emit(sseText({ jsonrpc: "2.0", ...namedLog(call.backend, msg.params) }));
      }
      return;
    }
    if (typeof msg.method === "string" && "id" in msg && call.toBackend) {
      // A 2025-era backend's request during the call: refused as the SDK path refuses it for a
      // client that declared neither elicitation nor sampling (input_relay.ts).
      call.toBackend(
        msg.method === "ping"
          ? { jsonrpc: "2.0", id: msg.id, result: {} }
          : { jsonrpc: "2.0", id: msg.id, error: refusalError(msg.method) },
      );
      return;
    }
    if (msg.id !== call.upstreamId || (!("result" in msg) && !("error" in msg))) return;
    const out = await finalMessage(call, msg);
    if (!out) return this.#fail("malformed response", unavailableMessage);
    call.observed?.endWithMessage(out.message);
    this.#finish(out.message, out.status, true);
  }
}

/**
 * How long the answer waits for the backend's first event before its headers go out: a result
 * that comes at once is answered as one string; a slow one streams as the SDK path does (its
 * headers leave when the backend's do, so a client may cancel on them).
 */
export const FIRST_EVENT_WAIT_MS = 10;

/** The waits of {@linkcode FIRST_EVENT_WAIT_MS}: one timer for all calls (proxy.ts). */
const firstEventWaits = new Deadlines(FIRST_EVENT_WAIT_MS);

/**
 * The client's answer to a backend's SSE answer: one string when the final message comes first
 * (JSON toward a modern client from a 2025-era backend, as the SDK server answers a 2026-07-28
 * client, which waits for it; else SSE, after at most {@linkcode FIRST_EVENT_WAIT_MS}), else a
 * stream of the relayed events.
 */
async function relaySse(call: Call, relay: SseRelay): Promise<Response> {
  let pending: Promise<string[] | null> | undefined = relay.next();
  let first: string[] | null | undefined;
  if (call.backendEra === "legacy" && !call.legacy) first = await pending;
  else {
    let deadline: Deadline | undefined;
    first = await Promise.race([
      pending,
      new Promise<undefined>((resolve) => {
        deadline = firstEventWaits.start(() => resolve(undefined));
      }),
    ]);
    firstEventWaits.settle(deadline!);
  }
  if (first !== undefined) pending = undefined;
  const version = call.legacy?.version ?? null;
  if (relay.onlyFinal && first) {
    const { message, status } = relay.onlyFinal;
    if (call.legacy) return primedSseResponse(version, first.join(""), SSE_HEADERS);
    if (call.backendEra === "legacy") {
      return new Response(JSON.stringify(message), { status, headers: JSON_HEADERS });
    }
    return new Response(first.join(""), { status: 200, headers: SSE_HEADERS });
  }
  const primed = call.legacy !== undefined && primedVersion(version);
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      if (primed) controller.enqueue(encoder.encode(primingEvent("p")));
      if (!first) return;
      for (const text of first) controller.enqueue(encoder.encode(text));
      if (relay.done) controller.close();
    },
    async pull(controller) {
      const next = await (pending ?? relay.next());
      pending = undefined;
      if (next) { for (const text of next) controller.enqueue(encoder.encode(text)); }
      if (!next || relay.done) controller.close();
    },
    cancel() {
      relay.cancel();
    },
  });
  const res = new Response(body, { status: 200, headers: SSE_HEADERS });
  return primed ? markPrimed(res) : res;
}
