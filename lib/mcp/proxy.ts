/**
 * Pass-through of MCP Streamable HTTP to one backend (MCP 2025-11-25 and 2026-07-28
 * Transports §Streamable HTTP), and the backend probes of `/health`.
 *
 * - Only an allow-list of client headers travels upstream, then the backend's configured
 *   headers; the client's `Authorization` and `Cookie` never do (MCP Authorization §Access
 *   Token Privilege Restriction: "MUST NOT pass through the token it received").
 * - Bodies are streamed both ways; `timeoutMs` bounds the wait for the backend's response
 *   headers only. The audit (lib/admin/pass_through_audit.ts) reads a 2025-era JSON POST whole
 *   (its method is only in the body) and reads, without changing it, the answer of a POST of
 *   routed requests (`tools/call` …) for each call's outcome.
 * - A backend 401/403 means the gateway's configured credentials are wrong: 502, and its
 *   `WWW-Authenticate` is dropped so that clients do not re-authenticate against the gateway.
 * - A per-user backend (`auth`) gets the caller's own credential instead (POST bodies are read
 *   for it); not connected, or a 401 (the credential is then dropped), gets the connect answer
 *   (lib/credentials/pass_through.ts).
 * - A backend with curation rules, or a caller with per-user tool globs, takes the curated path
 *   (curated_proxy.ts): the POST's messages are read, refused or rewritten, and list results are
 *   filtered message by message. Everything else streams untouched.
 */
import type { Principal } from "../oauth/bearer.ts";
import type { BackendConfig, GatewayConfig } from "../config.ts";
import type { Deps, RouteContext } from "../deps.ts";
import { jsonRpcErrorResponse } from "../infra/http.ts";
import { type PerUserRequest, preparePerUserRequest } from "../credentials/pass_through.ts";
import { type CuratedPost, curatePost, needsCuration } from "./curated_proxy.ts";
import { SESSION_ID, sessionBindings } from "./session_binding.ts";
import type { McpOperation } from "../admin/mcp_operation.ts";
import { passThroughAudit, passThroughFetch } from "../admin/pass_through_audit.ts";

/** JSON-RPC 2.0 §5.1 internal error, used for unreachable / failing backends. */
export const INTERNAL_ERROR = -32603;
/** JSON-RPC 2.0 §5.1 invalid request. */
export const INVALID_REQUEST = -32600;
/** Code the MCP SDKs use for "session not found". */
export const SESSION_NOT_FOUND = -32001;

/** Client request headers forwarded upstream (plus every `mcp-param-*`, MCP 2026-07-28). */
const FORWARDED = new Set([
  "content-type",
  "accept",
  "mcp-session-id",
  "mcp-protocol-version",
  "mcp-method",
  "mcp-name",
  "last-event-id",
]);
/** Backend response headers relayed to the client. */
const RELAYED = ["content-type", "mcp-session-id", "mcp-protocol-version", "cache-control"];
/** Statuses whose responses cannot carry a body (Fetch standard "null body status"). */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/** A backend with its configured headers flattened once and its timeout queue. */
interface BackendPlan {
  config: BackendConfig;
  headers: [string, string][];
  deadlines: Deadlines;
}

const plans = new WeakMap<GatewayConfig, Map<string, BackendPlan>>();

function plan(config: GatewayConfig, name: string): BackendPlan | undefined {
  let byName = plans.get(config);
  if (!byName) {
    byName = new Map(config.backends.map((b) => [b.name, {
      config: b,
      headers: Object.entries(b.headers),
      deadlines: new Deadlines(b.timeoutMs),
    }]));
    plans.set(config, byName);
  }
  return byName.get(name);
}

/** The configured backend called `name`, if any. */
export function findBackend(config: GatewayConfig, name: string): BackendConfig | undefined {
  return plan(config, name)?.config;
}

/** A pending deadline (see {@linkcode Deadlines}). */
export interface Deadline {
  at: number;
  expired: boolean;
  settled: boolean;
  onExpire: () => void;
}

const noop = () => {};

/**
 * Deadlines of one backend's in-flight requests under a single timer. Every entry has the same
 * duration, so they expire in insertion order: a FIFO queue suffices, and the hot path costs
 * no `setTimeout`/`clearTimeout` pair per request while other requests are in flight.
 */
export class Deadlines {
  #queue: Deadline[] = [];
  #head = 0;
  #pending = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly ms: number) {}

  /** Calls `onExpire` after `ms` unless {@linkcode Deadlines.settle} is called first. */
  start(onExpire: () => void): Deadline {
    const at = performance.now() + this.ms;
    const entry: Deadline = { at, expired: false, settled: false, onExpire };
    this.#dropSettled();
    this.#queue.push(entry);
    this.#pending++;
    if (this.#timer === undefined) this.#arm();
    return entry;
  }

  /** Withdraws a deadline (the backend answered); the last one out stops the timer. */
  settle(entry: Deadline): void {
    if (entry.settled) return;
    entry.settled = true;
    entry.onExpire = noop;
    if (--this.#pending === 0) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#queue = [];
      this.#head = 0;
    }
  }

  /** Number of deadlines still pending (for tests). */
  get pending(): number {
    return this.#pending;
  }

  #dropSettled(): void {
    const q = this.#queue;
    while (this.#head < q.length && q[this.#head]!.settled) this.#head++;
    if (this.#head > 1024 && this.#head * 2 > q.length) {
      this.#queue = q.slice(this.#head);
      this.#head = 0;
    }
  }

  #arm(): void {
    this.#dropSettled();
    const next = this.#queue[this.#head];
    this.#timer = next
      ? setTimeout(() => this.#fire(), Math.max(0, next.at - performance.now()))
      : undefined;
  }

  #fire(): void {
    this.#timer = undefined;
    const now = performance.now();
    const q = this.#queue;
    const due: Deadline[] = [];
    while (this.#head < q.length) {
      const e = q[this.#head]!;
      if (!e.settled && e.at > now) break;
      if (!e.settled) due.push(e);
      this.#head++;
    }
    for (const e of due) {
      const onExpire = e.onExpire;
      e.expired = true;
      this.settle(e);
      onExpire();
    }
    if (this.#pending > 0 && this.#timer === undefined) this.#arm();
  }
}

/** Outcome of {@linkcode fetchBackend}: the backend's response, or why there is none. */
export type FetchOutcome =
  | { ok: true; response: Response }
  | { ok: false; reason: "timeout" | "unreachable" };

/**
 * Sends a request to a backend; its `timeoutMs` bounds the wait for the response headers (the
 * body may then stream for as long as it likes; cancelling the response body closes it).
 *
 * `clientSignal` (the client request's `signal`) aborts the upstream request when the client
 * goes away, before or during the response (deno.json opts into `no-legacy-abort`, so it fires
 * only on a disconnect, not after every successful response).
 */
export async function fetchBackend(
  fetchFn: typeof fetch,
  backend: BackendPlan,
  method: string,
  headers: HeadersInit,
  body: BodyInit | null,
  clientSignal?: AbortSignal,
): Promise<FetchOutcome> {
  const controller = new AbortController();
  const deadline = backend.deadlines.start(() => controller.abort());
  if (clientSignal) {
    if (clientSignal.aborted) controller.abort();
    else clientSignal.addEventListener("abort", () => controller.abort(), { once: true });
  }
  try {
    // `duplex: "half"` lets fetch stream the request body (Fetch standard §5.3).
    const init: RequestInit & { duplex: "half" } = {
      method,
      headers,
      body,
      duplex: "half",
      redirect: "manual",
      signal: controller.signal,
    };
    const response = await fetchFn(backend.config.url, init);
    return { ok: true, response };
  } catch {
    return { ok: false, reason: deadline.expired ? "timeout" : "unreachable" };
  } finally {
    backend.deadlines.settle(deadline);
  }
}

/**
 * Forwards one MCP request to backend `name` on behalf of `principal`, enforcing the legacy
 * session binding (MCP 2025-11-25 Security Best Practices §Session Hijacking): a request with
 * `Mcp-Session-Id` must come from the principal the session was opened by, else 404; a new
 * session id the backend issues that is already bound to another principal is refused (502).
 */
export async function proxyToBackend(
  req: Request,
  ctx: RouteContext,
  name: string,
  principal: Principal,
  operation?: McpOperation,
): Promise<Response> {
  const backend = plan(ctx.config, name)!;
  // One pass over the client's headers: the allow-list (never Authorization or Cookie).
  const headers: [string, string][] = [];
  let sessionId: string | null = null;
  for (const entry of req.headers) {
    const h = entry[0];
    if (FORWARDED.has(h) || h.startsWith("mcp-param-")) {
      headers.push(entry);
      if (h === "mcp-session-id") sessionId = entry[1];
    }
  }
  for (const entry of backend.headers) headers.push(entry);
  if (sessionId !== null) {
    if (!SESSION_ID.test(sessionId)) {
      return jsonRpcErrorResponse(400, INVALID_REQUEST, "Mcp-Session-Id must be visible ASCII");
    }
    if (!(await sessionBindings(ctx.kv).check(ctx, name, sessionId, principal.id))) {
      return jsonRpcErrorResponse(404, SESSION_NOT_FOUND, "session not found");
    }
  }
  const method = req.method;
  // Piped when nothing reads it: Deno hands a request body stream to fetch natively (reading it
  // into an ArrayBuffer first measured slower in bench/). The audit reads a 2025-era POST's body
  // (its method is only there): then its text goes on.
  const audit = await passThroughAudit(operation, req, name, ctx.logFields);
  let body: BodyInit | null = method === "GET" || method === "DELETE"
    ? null
    : audit?.body ?? req.body;
  // A body read already (audit, per-user credential) is read again from its text.
  const source = () =>
    typeof body === "string" ? new Request(req.url, { method, headers: req.headers, body }) : req;
  let perUser: PerUserRequest | undefined;
  if (backend.config.auth) {
    const prepared = await preparePerUserRequest(source(), ctx, backend.config, principal);
    if (prepared instanceof Response) {
      audit?.deny("no_credential");
      return prepared;
    }
    perUser = prepared;
    headers.push(prepared.header);
    body = prepared.body;
  }
  let curated: CuratedPost | undefined;
  if (method === "POST" && needsCuration(backend.config, principal)) {
    const prepared = await curatePost(source(), headers, backend.config, principal, audit);
    if (prepared instanceof Response) return prepared;
    curated = prepared;
    body = prepared.body;
  }
  const outcome = await passThroughFetch(
    audit,
    () => fetchBackend(ctx.fetch, backend, method, headers, body, req.signal),
  );
  if (!outcome.ok) {
    ctx.logFields.upstream = outcome.reason;
    return outcome.reason === "timeout"
      ? jsonRpcErrorResponse(504, INTERNAL_ERROR, `backend ${name} did not answer in time`)
      : jsonRpcErrorResponse(502, INTERNAL_ERROR, `backend ${name} is unreachable`);
  }
  const upstream = outcome.response;
  const status = upstream.status;
  ctx.logFields.upstreamStatus = status;
  if (status === 401 || status === 403) {
    await upstream.body?.cancel().catch(() => {});
    if (perUser && status === 401) {
      audit?.end("401", "the backend refused the user's credential");
      return await perUser.rejected();
    }
    return jsonRpcErrorResponse(
      502,
      INTERNAL_ERROR,
      perUser
        ? `backend ${name} refused this request with your account (HTTP ${status})`
        : `backend ${name} rejected the gateway's credentials (HTTP ${status})`,
    );
  }
  const garbage = unexpectedAnswer(upstream, method, name);
  if (garbage) {
    await upstream.body?.cancel().catch(() => {});
    ctx.logFields.upstream = "unexpected_answer";
    return garbage;
  }
  const relayed: [string, string][] = [];
  for (const h of RELAYED) {
    const v = upstream.headers.get(h);
    if (v !== null) relayed.push([h, v]);
  }
  if (status < 300) {
    const newSession = upstream.headers.get("mcp-session-id");
    if (method === "DELETE" && sessionId !== null) {
      await sessionBindings(ctx.kv).unbind(ctx, name, sessionId);
    } else if (newSession !== null && newSession !== sessionId && SESSION_ID.test(newSession)) {
      if (!(await sessionBindings(ctx.kv).bind(ctx, name, newSession, principal.id))) {
        await upstream.body?.cancel().catch(() => {});
        ctx.logFields.upstream = "session_id_collision";
        return jsonRpcErrorResponse(
          502,
          INTERNAL_ERROR,
          `backend ${name} issued a session id that is bound to another caller; the gateway ` +
            "refused it (start the session again)",
        );
      }
    }
  }
  let resBody: ReadableStream<Uint8Array> | string | null = upstream.body;
  if (resBody && NULL_BODY.has(status)) {
    await resBody.cancel().catch(() => {});
    resBody = null;
  }
  if (audit) resBody = await audit.answer(status, upstream.headers.get("content-type"), resBody);
  if (curated) return curated.respond(status, relayed, resBody);
  return new Response(resBody, { status, headers: relayed });
}

/**
 * A backend answer that is not Streamable HTTP (MCP Transports §Sending Messages to the Server:
 * JSON or an SSE stream, or 202 with no body) becomes a JSON-RPC error instead of being relayed:
 * a redirect or a 2xx/5xx with another content type (an HTML page, plain text) is a 502, a 4xx
 * without JSON keeps its status (a 404 still tells a client to open a new session). `null` when
 * the answer may be relayed as is. Bodies are not read: truncated JSON is the client's to see.
 */
function unexpectedAnswer(upstream: Response, method: string, name: string): Response | null {
  const status = upstream.status;
  if (status >= 300 && status < 400) {
    return jsonRpcErrorResponse(
      502,
      INTERNAL_ERROR,
      `backend ${name} answered with a redirect (HTTP ${status})`,
    );
  }
  if (NULL_BODY.has(status) || status === 202 || (method === "DELETE" && status < 300)) return null;
  const type = (upstream.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (type === "application/json" || type === "text/event-stream") return null;
  const what = type ? `content-type ${type.slice(0, 60)}` : "no content-type";
  return status >= 400 && status < 500
    ? jsonRpcErrorResponse(
      status,
      INTERNAL_ERROR,
      `backend ${name} answered HTTP ${status} (${what})`,
    )
    : jsonRpcErrorResponse(
      502,
      INTERNAL_ERROR,
      `backend ${name} answered HTTP ${status} with ${what}`,
    );
}

/** One backend's line in `/health`. */
export interface BackendHealth {
  name: string;
  status: "up" | "down";
  latencyMs: number;
  httpStatus?: number;
  error?: string;
}

const PING = JSON.stringify({ jsonrpc: "2.0", id: "gateway-health", method: "ping" });

/**
 * Probes a backend with a JSON-RPC `ping` POST (MCP 2025-11-25 Basic Utilities §Ping) within its
 * `timeoutMs`. Any HTTP answer below 500 counts as up: the server is there and speaks HTTP
 * (a sessionful or modern-only server may refuse a bare ping with a 4xx).
 */
export async function probeBackend(
  deps: Pick<Deps, "fetch">,
  config: GatewayConfig,
  backend: BackendConfig,
): Promise<BackendHealth> {
  const started = performance.now();
  const target = plan(config, backend.name)!;
  const headers: [string, string][] = [
    ["content-type", "application/json"],
    ["accept", "application/json, text/event-stream"],
    ...target.headers,
  ];
  const outcome = await fetchBackend(deps.fetch, target, "POST", headers, PING);
  const latencyMs = Math.round(performance.now() - started);
  if (!outcome.ok) {
    return {
      name: backend.name,
      status: "down",
      latencyMs,
      error: outcome.reason === "timeout" ? "timeout" : "unreachable",
    };
  }
  const httpStatus = outcome.response.status;
  await outcome.response.body?.cancel().catch(() => {});
  return {
    name: backend.name,
    status: httpStatus < 500 ? "up" : "down",
    latencyMs,
    httpStatus,
    ...(httpStatus < 500 ? {} : { error: `HTTP ${httpStatus}` }),
  };
}
