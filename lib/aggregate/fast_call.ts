/**
 * Fast path of the aggregated `/mcp` for `tools/call` from a 2026-07-28 client to a 2026-07-28
 * backend: one HTTP POST straight to the backend (like lib/proxy.ts), instead of a per-request
 * SDK server on the gateway's side plus the SDK client toward the backend.
 *
 * It only takes a request the SDK path would answer the same way, and returns `undefined`
 * otherwise (the caller then runs the SDK path unchanged):
 * - one JSON-RPC request (not a batch, not a notification), `tools/call`, whose well-formed
 *   modern envelope and `MCP-Protocol-Version`/`Mcp-Method`/`Mcp-Name` headers agree (any
 *   mismatch is left to the SDK, which answers -32020/-32022);
 * - `params.name` = `backend__tool` of a configured backend the principal's scope covers, whose
 *   connection in the pool is established and speaks the modern era (a first call, or an
 *   unknown or legacy backend, goes through the SDK, which connects and probes);
 * - no multi-round-trip retry (`inputResponses`/`requestState` need the sealed state opened).
 *
 * The backend gets the client's message with `params.name` unprefixed and the client's `_meta`
 * envelope (so its `progressToken` works unchanged), `Mcp-Name` regenerated, the client's
 * `Mcp-Param-*` headers (MCP 2026-07-28 Transports: intermediaries forward them) and only the
 * backend's configured headers, never the client's `Authorization` (MCP 2025-11-25
 * Authorization §Token Passthrough). The answer is rewritten as the SDK path does: resource URIs
 * wrapped, the backend's reserved `_meta` dropped and the gateway's serverInfo stamped, an
 * `input_required` result sealed (request_state.ts); progress notifications stream through.
 * Failures give the SDK path's JSON-RPC errors: "Backend X timed out" (the backend's
 * `timeoutMs`, restarted by each progress notification) and "Backend X is unavailable".
 */
import type { BackendConfig, GatewayConfig } from "../config.ts";
import type { Deps } from "../deps.ts";
import { Deadlines, fetchBackend } from "../proxy.ts";
import { splitName } from "./naming.ts";
import type { BackendPool } from "./pool.ts";
import {
  GATEWAY_VERSION,
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
const INTERNAL_ERROR = -32603;
const MISSING_CAPABILITY = -32021;

/** Switch for tests that compare the fast path with the SDK path; on in production. */
export const fastCallSettings = { enabled: true };

/** A backend as the fast path calls it (the shape of lib/proxy.ts's `fetchBackend` target). */
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

/** An HTTP header value: ASCII as is, anything else as `=?base64?…?=` (MCP 2026-07-28). */
export function mcpHeaderValue(value: string): string {
  if (/^[\x20-\x7e]*$/.test(value)) return value;
  let s = "";
  for (const b of new TextEncoder().encode(value)) s += String.fromCharCode(b);
  return `=?base64?${btoa(s)}?=`;
}

/** What the fast path needs from the handler. */
export interface FastCallContext {
  deps: Deps;
  pool: BackendPool;
  /** Backends the principal's scope covers. */
  allowed: readonly BackendConfig[];
  principalId: string;
  logFields?: Record<string, unknown>;
}

/**
 * Answers a modern `tools/call` directly when it is safe (see the module doc), else
 * `undefined`. `message` is the parsed JSON body of `req`.
 */
export async function fastToolCall(
  req: Request,
  message: unknown,
  ctx: FastCallContext,
): Promise<Response | undefined> {
  if (!fastCallSettings.enabled || !isObject(message)) return undefined;
  const { id, params } = message;
  if (
    message.jsonrpc !== "2.0" || message.method !== "tools/call" ||
    (typeof id !== "string" && typeof id !== "number") || !isObject(params) ||
    typeof params.name !== "string" || "inputResponses" in params || "requestState" in params ||
    (params.arguments !== undefined && !isObject(params.arguments))
  ) return undefined;
  const meta = params._meta;
  const h = req.headers;
  if (
    !isObject(meta) || meta[VERSION_KEY] !== MODERN || !isObject(meta[CAPABILITIES_KEY]) ||
    (meta.progressToken !== undefined && typeof meta.progressToken !== "string" &&
      typeof meta.progressToken !== "number") ||
    h.get("mcp-protocol-version") !== MODERN || h.get("mcp-method") !== "tools/call" ||
    h.get("mcp-name") !== params.name || h.has("mcp-session-id") ||
    !/application\/json/.test(h.get("accept") ?? "") ||
    !/text\/event-stream/.test(h.get("accept") ?? "")
  ) return undefined;
  const target = splitName(params.name);
  if (!target) return undefined;
  const backend = ctx.allowed.find((b) => b.name === target.backend);
  if (!backend) return undefined;
  const connection = ctx.pool.connected(backend.name);
  if (connection?.era !== "modern") return undefined;

  if (ctx.logFields) ctx.logFields.fast_path = true;
  const headers: [string, string][] = [
    ["content-type", "application/json"],
    ["accept", "application/json, text/event-stream"],
    ["mcp-protocol-version", MODERN],
    ["mcp-method", "tools/call"],
    ["mcp-name", mcpHeaderValue(target.name)],
  ];
  for (const entry of h) if (entry[0].startsWith("mcp-param-")) headers.push(entry);
  const upstream = targetOf(ctx.deps.config, backend);
  for (const entry of upstream.headers) headers.push(entry);
  const body = JSON.stringify({ ...message, params: { ...params, name: target.name } });

  const call: Call = { ctx, backend: backend.name, id, name: params.name, capabilities: meta };
  const outcome = await fetchBackend(ctx.deps.fetch, upstream, "POST", headers, body, req.signal);
  if (!outcome.ok) {
    if (outcome.reason === "timeout") return failed(call, "timeout", timedOutMessage);
    ctx.pool.invalidate(connection);
    return failed(call, "unreachable", unavailableMessage);
  }
  const res = outcome.response;
  const type = (res.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (type === "text/event-stream" && res.ok && res.body) {
    return new Response(res.body.pipeThrough(sseRewriter(call, backend.timeoutMs)), {
      status: 200,
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-cache, no-transform",
        "x-accel-buffering": "no",
      },
    });
  }
  let answer: unknown;
  if (type === "application/json") {
    try {
      answer = await res.json();
    } catch {
      answer = undefined;
    }
  } else {
    await res.body?.cancel().catch(() => {});
  }
  const out = isObject(answer) && answer.id === id ? await finalMessage(call, answer) : undefined;
  if (!out) {
    ctx.pool.invalidate(connection);
    return failed(call, `HTTP ${res.status} ${type || "no content-type"}`, unavailableMessage);
  }
  return jsonRpc(out.message, out.status);
}

/** One fast-path call, for the rewriting of its answer. */
interface Call {
  ctx: FastCallContext;
  backend: string;
  id: string | number;
  /** The exposed tool name (`backend__tool`). */
  name: string;
  /** The client's `_meta` envelope (its declared capabilities). */
  capabilities: Record<string, any>;
}

function jsonRpc(message: unknown, status = 200): Response {
  return new Response(JSON.stringify(message), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function errorMessage(call: Call, code: number, message: string, data?: unknown) {
  return {
    jsonrpc: "2.0",
    id: call.id,
    error: { code, message, ...(data !== undefined ? { data } : {}) },
  };
}

/** Logs a failed backend call, as server.ts does. */
function logFailure(call: Call, why: string): void {
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
  return jsonRpc(errorMessage(call, INTERNAL_ERROR, message(call.backend)));
}

/**
 * The client's copy of the backend's final JSON-RPC response, with its HTTP status (in-band
 * errors are 200 except -32021, as the SDK answers), or `undefined` when it is not a response.
 */
async function finalMessage(
  call: Call,
  answer: Record<string, any>,
): Promise<{ message: unknown; status: number } | undefined> {
  if (isObject(answer.error)) {
    const { code, message, data } = answer.error;
    if (typeof code !== "number" || typeof message !== "string") return undefined;
    return {
      message: errorMessage(call, code, message, data),
      status: code === MISSING_CAPABILITY ? 400 : 200,
    };
  }
  const result = answer.result;
  if (!isObject(result)) return undefined;
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

function sseEvent(message: unknown): Uint8Array {
  return encoder.encode(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
}

/**
 * Rewrites a backend's SSE answer as it streams: progress notifications pass through
 * unchanged, the final response is rewritten like a JSON answer and ends the stream. Other
 * notifications are dropped (the SDK path does not relay backend log messages). The backend's
 * `timeoutMs` bounds the wait for each next event, restarted by progress like the SDK path's.
 */
function sseRewriter(call: Call, timeoutMs: number): TransformStream<Uint8Array, Uint8Array> {
  const decoder = new TextDecoder();
  let buffer = "";
  let done = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let controllerRef: TransformStreamDefaultController<Uint8Array> | undefined;
  const finish = (bytes: Uint8Array) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    controllerRef!.enqueue(bytes);
    controllerRef!.terminate();
  };
  const fail = (why: string, message: (backend: string) => string) => {
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
      controllerRef!.enqueue(encoder.encode(`${raw}\n\n`));
      return;
    }
    if (msg.id !== call.id || (!("result" in msg) && !("error" in msg))) return;
    const out = await finalMessage(call, msg);
    if (out) finish(sseEvent(out.message));
    else fail("malformed response", unavailableMessage);
  };
  return new TransformStream<Uint8Array, Uint8Array>({
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
      done = true;
      clearTimeout(timer);
    },
  });
}
