/**
 * One MCP request on `/mcp` or `/mcp/{backend}` as the operator sees it: the audit record of
 * each backend call it makes (lib/admin/audit.ts) and, with OpenTelemetry on
 * (lib/admin/telemetry.ts), its SERVER span `{mcp.method.name} {target}` and each backend call's
 * CLIENT span in the same trace, with the MCP semantic conventions' attributes and durations.
 *
 * The routes create it once the caller is authenticated ({@linkcode startMcpOperation}) and
 * hand every response through {@linkcode McpOperation.finish}; the code that knows the JSON-RPC
 * message calls {@linkcode McpOperation.describe}; the code that calls a backend opens a
 * {@linkcode BackendCall} and ends it with its outcome. Each hook is one line at its site.
 */
import {
  type Attributes,
  type Context,
  context,
  type Link,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import type { Deps } from "../deps.ts";
import { OWNER_SUB } from "../identity/access_rules.ts";
import { sha256HexSync } from "../infra/crypto.ts";
import type { Principal } from "../oauth/bearer.ts";
import { auditRecord, outcomeOfMessage, outcomeOfResult, redactArguments } from "./audit.ts";
import { contextFromMeta, definedAttributes, noTelemetry, traceMeta } from "./telemetry.ts";

/** The methods that reach one backend: each call is an audit record and a CLIENT span. */
export const ROUTED_METHODS: ReadonlySet<string> = new Set([
  "tools/call",
  "resources/read",
  "prompts/get",
  "completion/complete",
]);

/** Who is calling, as the audit trail names them. */
export interface AuditCaller {
  /** The user's `sub`; `"owner"` for tokens of grants made before team sign-in; else the principal id. */
  user: string;
  clientId: string | null;
  grantId: string | null;
}

/** The audit trail's caller of a principal (tokens without a user are the owner's). */
export function callerOf(principal: Principal): AuditCaller {
  return {
    user: principal.user?.sub ?? (principal.kind === "token" ? OWNER_SUB : principal.id),
    clientId: principal.clientId ?? null,
    grantId: principal.grantId ?? null,
  };
}

/** What an operation needs of the gateway's dependencies. */
export type OperationDeps = Pick<Deps, "audit" | "telemetry" | "now" | "config">;

interface Message {
  method: string;
  id?: unknown;
  params?: Record<string, any>;
}

const isObject = (v: unknown): v is Record<string, any> =>
  v !== null && typeof v === "object" && !Array.isArray(v);

/** The name a routed request gives its target: tool, prompt, resource URI or completion ref. */
export function targetOf(method: string, params: Record<string, any> | undefined): string | null {
  if (!params) return null;
  const pick = (v: unknown) => (typeof v === "string" ? v.slice(0, 300) : null);
  switch (method) {
    case "tools/call":
    case "prompts/get":
      return pick(params.name);
    case "resources/read":
      return pick(params.uri);
    case "completion/complete":
      return pick(params.ref?.name ?? params.ref?.uri);
  }
  return null;
}

/** Span attributes naming a method's target (MCP semantic conventions §Server, §Client). */
function targetAttributes(method: string, target: string | null): Record<string, unknown> {
  return {
    "mcp.method.name": method,
    "gen_ai.tool.name": method === "tools/call" ? target ?? undefined : undefined,
    "gen_ai.prompt.name": method === "prompts/get" ? target ?? undefined : undefined,
    "mcp.resource.uri": method === "resources/read" ? target ?? undefined : undefined,
    "gen_ai.operation.name": method === "tools/call" ? "execute_tool" : undefined,
  };
}

/**
 * The aggregated `/mcp`'s `call_tool` meta-tool (lib/mcp/aggregate/catalog.ts `CALL_TOOL`, not
 * imported: that module loads the MCP SDK, which the pass-through never needs).
 */
const CALL_TOOL = "call_tool";

/** The params of the call `call_tool` makes (`{ name, arguments }`), else `params` itself. */
function viaSearch(params: Record<string, any> | undefined): Record<string, any> | undefined {
  const inner = params?.arguments;
  return params?.name === CALL_TOOL && isObject(inner) && typeof inner.name === "string"
    ? { name: inner.name, arguments: inner.arguments }
    : params;
}

/** `{mcp.method.name} {target}`: the target only for tools and prompts (low cardinality). */
function spanName(method: string, target: string | null): string {
  return target && (method === "tools/call" || method === "prompts/get")
    ? `${method} ${target}`
    : method;
}

/** One MCP request of an authenticated caller (see the module doc). */
export class McpOperation {
  readonly caller: AuditCaller;
  /** `/mcp`, or `/mcp/{backend}` with the backend's name. */
  readonly passThroughBackend: string | undefined;
  readonly deps: OperationDeps;
  readonly requestId: string | undefined;
  #startedAt = performance.now();
  #message: Message | undefined;
  #span: Span | undefined;
  #spanContext: Context | undefined;
  #metricAttributes: Attributes = {};
  #errorType: string | undefined;
  #errorMessage: string | undefined;
  /** Calls whose outcome is the response's HTTP status (pass-through: messages not read). */
  #byStatus = new Set<BackendCall>();
  #ended = false;

  constructor(
    deps: OperationDeps,
    principal: Principal,
    options: { backend?: string; requestId?: string } = {},
  ) {
    this.deps = deps;
    this.caller = callerOf(principal);
    this.passThroughBackend = options.backend;
    this.requestId = options.requestId;
  }

  get #telemetry() {
    return this.deps.telemetry ?? noTelemetry();
  }

  /**
   * Names the request once its JSON-RPC message is known (one request; batches and
   * notifications are left undescribed) and, with telemetry on, starts its SERVER span: parent
   * is the trace context of `params._meta` when the client sent one (linked to the HTTP span),
   * else the HTTP server span Deno started.
   */
  describe(message: unknown, headers: Headers): void {
    if (this.#message || !isObject(message) || typeof message.method !== "string") return;
    const params = isObject(message.params) ? message.params : undefined;
    this.#message = { method: message.method, id: message.id, params };
    if (!this.#telemetry.enabled) return;
    const method = message.method;
    const target = targetOf(method, params);
    const ambient = context.active();
    const fromMeta = contextFromMeta(params?._meta);
    const parent = fromMeta ?? ambient;
    const links: Link[] = [];
    const ambientSpan = trace.getSpanContext(ambient);
    if (fromMeta && ambientSpan) links.push({ context: ambientSpan });
    const session = headers.get("mcp-session-id");
    const version = headers.get("mcp-protocol-version") ??
      params?._meta?.["io.modelcontextprotocol/protocolVersion"];
    const id = message.id;
    const attributes = definedAttributes({
      ...targetAttributes(method, target),
      "jsonrpc.request.id": typeof id === "string" || typeof id === "number"
        ? String(id)
        : undefined,
      // Session ids are bearer-like (store.ts keeps only their hash): telemetry gets a hash too.
      "mcp.session.id": session ? sha256HexSync(session).slice(0, 32) : undefined,
      "mcp.protocol.version": typeof version === "string" ? version : undefined,
      "network.protocol.name": "http",
      "network.transport": "tcp",
      "mcp.gateway.backend": this.passThroughBackend,
      "mcp.gateway.client.id": this.caller.clientId ?? undefined,
      "mcp.gateway.user.hash": this.#telemetry.userHash(this.caller.user),
    });
    this.#span = this.#telemetry.tracer.startSpan(spanName(method, target), {
      kind: SpanKind.SERVER,
      attributes,
      links,
      startTime: performance.timeOrigin + this.#startedAt,
    }, parent);
    this.#spanContext = trace.setSpan(parent, this.#span);
    this.#metricAttributes = definedAttributes({
      "mcp.method.name": method,
      "mcp.protocol.version": attributes["mcp.protocol.version"],
      "mcp.gateway.backend": this.passThroughBackend,
    });
  }

  /**
   * Opens the call of `method` to `backend` (ended by the caller with its outcome). Its target
   * and arguments come from `options.params` (the request's params as the client sent them: the
   * pass-through, whose POST may be a batch), else from the described message when it is this
   * method's (a `call_tool` unwrapped); `upstream` is the backend's own name of the target (the
   * one sent to the backend: renames undone, shortened names resolved) when the caller knows it.
   * `byStatus`: the call ends with the HTTP status of the response handed to
   * {@linkcode McpOperation.finish}, unless ended before (or its answer is read:
   * {@linkcode McpOperation.answerRead}).
   */
  backendCall(
    backend: string,
    method: string,
    upstream?: string,
    options: { byStatus?: boolean; params?: Record<string, any> } = {},
  ): BackendCall {
    const params = options.params ??
      viaSearch(this.#message?.method === method ? this.#message.params : undefined);
    const target = targetOf(method, params);
    const args = this.deps.config.audit?.arguments === "redacted"
      ? redactArguments(method === "completion/complete" ? params?.argument : params?.arguments)
      : undefined;
    const call = new BackendCall(this, {
      backend,
      method,
      target,
      upstream: upstream ?? target,
      arguments: args,
      parent: this.#spanContext,
    });
    if (options.byStatus) this.#byStatus.add(call);
    return call;
  }

  /**
   * Records a routed request refused before it reached `backend`: outcome `denied`. `reason`
   * (the SERVER span's `error.type`): `insufficient_scope` (the token's scope does not cover the
   * backend), `tool_globs` (the user's tool globs exclude the tool), `curation` (a curation rule
   * on the pass-through). `message`: the refused request when it is not the described one (a
   * message of a batch); a described `call_tool` names the tool it would have run.
   */
  denied(
    backend: string,
    reason = "insufficient_scope",
    message?: { method: string; params?: Record<string, any> },
  ): void {
    const m = message ?? this.#message;
    const params = message || m?.method !== "tools/call" ? m?.params : viaSearch(m.params);
    this.deps.audit?.record(auditRecord(this.deps.now(), "mcp", {
      ...this.caller,
      backend,
      method: m?.method,
      tool: m ? targetOf(m.method, params) : null,
      outcome: "denied",
      latencyMs: roundMs(performance.now() - this.#startedAt),
    }, this.requestId));
    this.#noteError(reason);
  }

  /**
   * Hands the response on; ends the SERVER span when its body is done (an SSE stream may
   * outlive the handler), records `mcp.server.operation.duration`, and ends the calls opened
   * `byStatus` with the response's HTTP status.
   */
  finish(res: Response): Response {
    for (const call of this.#byStatus) call.end(res.status < 300 ? "ok" : String(res.status));
    if (!this.#span) return res;
    if (res.status >= 400) this.#noteError(String(res.status));
    if (!res.body) {
      this.#end();
      return res;
    }
    const end = () => this.#end();
    const body = res.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({ flush: end, cancel: end }),
    );
    return new Response(body, {
      status: res.status,
      statusText: res.statusText,
      headers: res.headers,
    });
  }

  /**
   * The answer of `call` (opened `byStatus`) is read after all: its JSON-RPC response ends it,
   * no longer the HTTP status in {@linkcode McpOperation.finish}.
   */
  answerRead(call: BackendCall): void {
    this.#byStatus.delete(call);
  }

  /** @internal A call ended: forget it; its failure becomes the request's `error.type`. */
  settled(call: BackendCall, outcome: string, message?: string): void {
    this.#byStatus.delete(call);
    if (outcome !== "ok") this.#noteError(outcome, message);
  }

  #noteError(errorType: string, message?: string): void {
    this.#errorType ??= errorType;
    this.#errorMessage ??= message;
  }

  #end(): void {
    if (this.#ended || !this.#span) return;
    this.#ended = true;
    const span = this.#span;
    if (this.#errorType) {
      span.setAttribute("error.type", this.#errorType);
      if (/^-?\d+$/.test(this.#errorType)) {
        span.setAttribute("rpc.response.status_code", this.#errorType);
      }
      span.setStatus({ code: SpanStatusCode.ERROR, message: this.#errorMessage });
    }
    span.end();
    this.#telemetry.serverDuration.record(
      (performance.now() - this.#startedAt) / 1000,
      this.#errorType
        ? { ...this.#metricAttributes, "error.type": this.#errorType }
        : this.#metricAttributes,
    );
  }
}

function roundMs(ms: number): number {
  return Math.round(ms * 10) / 10;
}

interface CallInit {
  backend: string;
  method: string;
  target: string | null;
  upstream: string | null;
  arguments?: Record<string, unknown>;
  parent?: Context;
}

/**
 * One call from the gateway to a backend: its audit record (written when it ends) and, with
 * telemetry on, its CLIENT span and `mcp.client.operation.duration`. {@linkcode BackendCall.run}
 * runs the backend request with the span active (so Deno's fetch span is its child and sends
 * `traceparent`); {@linkcode BackendCall.meta} is the context for the request's `params._meta`.
 */
export class BackendCall {
  readonly backend: string;
  readonly method: string;
  #op: McpOperation;
  #init: CallInit;
  #time: number;
  #startedAt = performance.now();
  #span: Span | undefined;
  #context: Context | undefined;
  #done = false;

  constructor(op: McpOperation, init: CallInit) {
    this.#op = op;
    this.#init = init;
    this.backend = init.backend;
    this.method = init.method;
    this.#time = op.deps.now();
    const telemetry = op.deps.telemetry ?? noTelemetry();
    if (!telemetry.enabled) return;
    const parent = init.parent ?? context.active();
    let server: { address?: string; port?: number } = {};
    const url = op.deps.config.backends.find((b) => b.name === init.backend)?.url;
    if (url) {
      const u = new URL(url);
      server = {
        address: u.hostname,
        port: Number(u.port || (u.protocol === "https:" ? 443 : 80)),
      };
    }
    this.#span = telemetry.tracer.startSpan(spanName(init.method, init.upstream), {
      kind: SpanKind.CLIENT,
      attributes: definedAttributes({
        ...targetAttributes(init.method, init.upstream),
        "mcp.gateway.backend": init.backend,
        "server.address": server.address,
        "server.port": server.port,
        "network.protocol.name": "http",
        "network.transport": "tcp",
      }),
    }, parent);
    this.#context = trace.setSpan(parent, this.#span);
  }

  /** Runs `fn` (the backend request) with this call's span as the active context. */
  run<T>(fn: () => T): T {
    return this.#context ? context.with(this.#context, fn) : fn();
  }

  /** `traceparent`/`tracestate` of this call for the request's `params._meta` (empty when off). */
  meta(): Record<string, string> {
    return this.#context ? traceMeta(this.#context) : {};
  }

  /**
   * Ends the call once (later calls are ignored): `outcome` is `ok`, `denied`, or an error code
   * (JSON-RPC code, `tool_error`, `timeout`, `unavailable`, `cancelled`, an HTTP status).
   */
  end(outcome: string, message?: string): void {
    if (this.#done) return;
    this.#done = true;
    const op = this.#op;
    const latencyMs = roundMs(performance.now() - this.#startedAt);
    op.deps.audit?.record(auditRecord(this.#time, "mcp", {
      ...op.caller,
      backend: this.backend,
      method: this.method,
      tool: this.#init.target,
      outcome,
      latencyMs,
      arguments: this.#init.arguments,
    }, op.requestId));
    op.settled(this, outcome, message);
    const span = this.#span;
    if (!span) return;
    const attributes: Attributes = {
      "mcp.method.name": this.method,
      "mcp.gateway.backend": this.backend,
    };
    if (outcome !== "ok") {
      attributes["error.type"] = outcome;
      span.setAttribute("error.type", outcome);
      if (/^-?\d+$/.test(outcome)) span.setAttribute("rpc.response.status_code", outcome);
      span.setStatus({ code: SpanStatusCode.ERROR, message });
    }
    span.end();
    (op.deps.telemetry ?? noTelemetry()).clientDuration.record(latencyMs / 1000, attributes);
  }

  /** Ends the call with the outcome of the backend's JSON-RPC response. */
  endWithMessage(message: unknown): void {
    const error = isObject(message) && isObject(message.error) ? message.error : undefined;
    this.end(
      outcomeOfMessage(message),
      typeof error?.message === "string" ? error.message : undefined,
    );
  }

  /** Ends the call with the outcome of a backend's result (`tool_error` when `isError`). */
  endWithResult(result: unknown): void {
    this.end(outcomeOfResult(result));
  }

  /**
   * Ends the call with the outcome of a failure: `cancelled` when the client cancelled, a
   * JSON-RPC error's code, `timeout` past the backend's `timeoutMs`, else `unavailable`.
   */
  endWithError(error: unknown, cancelled = false): void {
    const e = error as { name?: unknown; code?: unknown; message?: unknown };
    const message = typeof e?.message === "string" ? e.message.slice(0, 200) : undefined;
    if (cancelled) return this.end("cancelled", message);
    if (typeof e?.code === "number") return this.end(String(e.code), message);
    this.end(e?.name === "BackendTimeoutError" ? "timeout" : "unavailable", message);
  }
}

/** Runs `fn` inside `call` when there is one (see {@linkcode BackendCall.run}). */
export function within<T>(call: BackendCall | undefined, fn: () => T): T {
  return call ? call.run(fn) : fn();
}

/** Starts the operation of an authenticated MCP request (`backend`: the pass-through's). */
export function startMcpOperation(
  ctx: OperationDeps & { requestId?: string },
  principal: Principal,
  backend?: string,
): McpOperation {
  return new McpOperation(ctx, principal, { backend, requestId: ctx.requestId });
}
