/**
 * Audit and telemetry of the pass-through `/mcp/{backend}` (lib/mcp/proxy.ts): one audit record,
 * CLIENT span and `mcp.client.operation.duration` point per routed request (`tools/call`,
 * `resources/read`, `prompts/get`, `completion/complete`) of each POST, in both protocol eras,
 * each ended by its own JSON-RPC response in the backend's answer — as on the aggregated `/mcp`.
 *
 * - What was asked: a 2026-07-28 POST names its method and target in the `Mcp-Method` and
 *   `Mcp-Name` headers (MCP 2026-07-28 Transports), so its body is not read. A POST without
 *   `Mcp-Method` (2025-era) whose content type is JSON is read whole (it is already capped at the
 *   MCP body limit by main.ts), parsed with `parseJsonRpcBody` (lib/mcp/jsonrpc_inspect.ts) and
 *   sent upstream as the same text; every routed request of a batch is a call of its own. With
 *   `"audit": { "arguments": "redacted" }` a routed modern POST is read too, for its arguments.
 * - The outcome: only the answer of a POST with routed requests is read, its bytes unchanged: a
 *   JSON answer whole (it comes at once), SSE event by event as it streams (`transformMessages`
 *   with a hook that never changes a message). Each call ends at its response, matched by
 *   JSON-RPC id (a request known from its headers only: the POST's one response): `ok`, the
 *   JSON-RPC error code, `tool_error` for a result with `isError: true`; its latency runs to that
 *   message. A call whose answer ends without its response ends `cancelled` when the client went
 *   away (or sent `notifications/cancelled` for it), else with the answer's HTTP status (≥ 300) or
 *   `unavailable`; one the backend never answered ends `timeout` or `unavailable`; one refused by
 *   curation or the caller's tool globs (curated_proxy.ts) is `denied` and never reaches the
 *   backend (no CLIENT span).
 * - What stays untouched and unread: `tools/list` and the other lists, notifications and client
 *   responses (their answers stream through), GET streams and DELETE; and everything when the
 *   audit trail is off (`audit.enabled: false`) and OpenTelemetry too.
 *
 * The SERVER span (McpOperation.describe) comes from the single message (body or headers); a
 * batch has none. Trace context reaches the backend in the HTTP `traceparent` header only: the
 * body is forwarded as the client sent it (curation aside).
 */
import type { FetchOutcome } from "../mcp/proxy.ts";
import type { CurationObserver } from "../mcp/curated_proxy.ts";
import {
  idKey,
  isRequest,
  isResponse,
  type JsonRpcMessage,
  parseJsonRpcBody,
  transformMessages,
} from "../mcp/jsonrpc_inspect.ts";
import { type BackendCall, type McpOperation, ROUTED_METHODS, targetOf } from "./mcp_operation.ts";

/** A header value of MCP 2026-07-28 (`=?base64?…?=` for non-ASCII), decoded. */
export function decodeMcpHeader(value: string | null): string | undefined {
  if (value === null) return undefined;
  const m = /^=\?base64\?([A-Za-z0-9+/=]*)\?=$/.exec(value);
  if (!m) return value;
  try {
    return new TextDecoder().decode(Uint8Array.from(atob(m[1]!), (c) => c.charCodeAt(0)));
  } catch {
    return value;
  }
}

/** The key of a request known from its headers only: the POST's one response answers it. */
const FROM_HEADERS = "headers";

/**
 * Calls of 2025-era sessions whose answer is streaming, by backend, session and request id, so
 * that the client's `notifications/cancelled` (MCP 2025-11-25 Cancellation: sent in another POST)
 * ends them `cancelled` at once. Per isolate: a notification that reaches another isolate leaves
 * the call to end with its stream.
 */
const streaming = new Map<string, BackendCall>();

const streamingKey = (backend: string, session: string, key: string) =>
  `${backend}\n${session}\n${key}`;

/** A routed request of the POST and, once sent, its backend call. */
interface Routed {
  /** `idKey` of its JSON-RPC id, or {@linkcode FROM_HEADERS}. */
  key: string;
  method: string;
  /** Its params as the client sent them (from `Mcp-Name` when the body was not read). */
  params: Record<string, any>;
  /** The target as sent to the backend, when curation rewrote it (a rename undone). */
  upstream?: string | null;
  denied?: boolean;
}

const isObject = (v: unknown): v is Record<string, any> =>
  v !== null && typeof v === "object" && !Array.isArray(v);

const mediaType = (contentType: string | null) =>
  (contentType ?? "").split(";")[0]!.trim().toLowerCase();

const isJson = (req: Request) => mediaType(req.headers.get("content-type")) === "application/json";

/**
 * Reads what a pass-through request asks (see the module doc) and describes the operation
 * (its SERVER span). `undefined` for requests other than POST. `logFields` (the request's log
 * line) gets `tool` of a 2025-era `tools/call`, as the router sets it from `Mcp-Name`.
 */
export async function passThroughAudit(
  operation: McpOperation | undefined,
  req: Request,
  backend: string,
  logFields?: Record<string, unknown>,
): Promise<PassThroughAudit | undefined> {
  if (!operation || req.method !== "POST") return undefined;
  // Neither an audit trail nor telemetry to feed: the request streams through unread.
  if (!operation.deps.audit?.enabled && !operation.deps.telemetry?.enabled) return undefined;
  const method = req.headers.get("mcp-method");
  const wantArguments = operation.deps.config.audit?.arguments === "redacted";
  if (method !== null && !(wantArguments && ROUTED_METHODS.has(method) && isJson(req))) {
    const name = decodeMcpHeader(req.headers.get("mcp-name"));
    const params = name === undefined ? {} : method === "resources/read" ? { uri: name } : { name };
    operation.describe({ jsonrpc: "2.0", method, params }, req.headers);
    if (!ROUTED_METHODS.has(method)) return undefined;
    return new PassThroughAudit(operation, backend, req.signal, null, undefined, [
      { key: FROM_HEADERS, method, params },
    ]);
  }
  if (method === null && !isJson(req)) return undefined;
  const body = await req.text();
  const parsed = parseJsonRpcBody(body);
  const routed: Routed[] = [];
  const session = req.headers.get("mcp-session-id");
  for (const message of parsed?.messages ?? []) {
    if (message.method === "notifications/cancelled" && session !== null) {
      const key = streamingKey(backend, session, idKey(message.params?.requestId));
      streaming.get(key)?.end("cancelled");
      streaming.delete(key);
    }
    if (!isRequest(message) || !ROUTED_METHODS.has(message.method)) continue;
    const params = isObject(message.params) ? message.params : {};
    routed.push({ key: idKey(message.id), method: message.method, params });
  }
  if (parsed && !parsed.batch) {
    const single = parsed.messages[0]!;
    operation.describe(single, req.headers);
    if (logFields && single.method === "tools/call" && typeof single.params?.name === "string") {
      logFields.tool ??= single.params.name.slice(0, 100);
    }
  }
  return new PassThroughAudit(operation, backend, req.signal, session, body, routed);
}

/** The routed requests of one pass-through POST (see the module doc). */
export class PassThroughAudit implements CurationObserver {
  /** The POST's body when it was read: what to send upstream. */
  readonly body: string | undefined;
  #op: McpOperation;
  #backend: string;
  #signal: AbortSignal;
  #session: string | null;
  #routed: Routed[];
  /** Calls waiting for their response, by key. */
  #open = new Map<string, BackendCall>();

  constructor(
    operation: McpOperation,
    backend: string,
    signal: AbortSignal,
    session: string | null,
    body: string | undefined,
    routed: Routed[],
  ) {
    this.#op = operation;
    this.#backend = backend;
    this.#signal = signal;
    this.#session = session;
    this.body = body;
    this.#routed = routed;
  }

  #find(message: JsonRpcMessage): Routed | undefined {
    const key = idKey(message.id);
    return this.#routed.find((r) => r.key === key) ??
      this.#routed.find((r) => r.key === FROM_HEADERS && r.method === message.method);
  }

  /** Curation refused `message`: it is recorded `denied` and never sent. */
  refused(message: JsonRpcMessage, reason: string): void {
    const r = this.#find(message);
    if (!r || r.denied) return;
    r.denied = true;
    this.#op.denied(this.#backend, reason, { method: r.method, params: r.params });
  }

  /** Every request not sent yet is refused (`reason`: e.g. the user has no credential). */
  deny(reason: string): void {
    for (const r of this.#routed) {
      if (r.denied || this.#open.has(r.key)) continue;
      r.denied = true;
      this.#op.denied(this.#backend, reason, { method: r.method, params: r.params });
    }
  }

  /** Ends every open call with `outcome` (an answer the proxy does not relay). */
  end(outcome: string, message?: string): void {
    for (const key of [...this.#open.keys()]) this.#close(key)?.end(outcome, message);
  }

  /** Curation forwards `message` as `sent` (its target maybe renamed back). */
  forwarded(message: JsonRpcMessage, sent: JsonRpcMessage): void {
    const r = this.#find(message);
    if (r) r.upstream = targetOf(r.method, isObject(sent.params) ? sent.params : undefined);
  }

  /**
   * Opens a call per routed request still to send, and runs the backend request inside the
   * first one (its CLIENT span active, so the HTTP request carries `traceparent`). When no
   * answer came, every call ends `timeout` or `unavailable`. Until {@linkcode answer}, a call
   * ends with the HTTP status of the route's response (McpOperation.finish: the proxy's own
   * error answers).
   */
  async fetch(fetchBackend: () => Promise<FetchOutcome>): Promise<FetchOutcome> {
    for (const r of this.#routed) {
      if (r.denied || this.#open.has(r.key)) continue;
      const upstream = r.upstream !== undefined ? r.upstream : targetOf(r.method, r.params);
      const call = this.#op.backendCall(this.#backend, r.method, upstream ?? undefined, {
        byStatus: true,
        params: r.params,
      });
      this.#open.set(r.key, call);
    }
    const first = this.#open.values().next().value;
    const outcome = first ? await first.run(fetchBackend) : await fetchBackend();
    if (!outcome.ok) this.end(outcome.reason === "timeout" ? "timeout" : "unavailable");
    return outcome;
  }

  /**
   * The backend's answer body as the client gets it, its bytes unchanged, read on the way to end
   * each open call at its response (see the module doc). A JSON answer (one message or a batch,
   * sent at once) is read whole and handed on as text, which Deno serves faster than a stream;
   * SSE is read event by event as it streams.
   */
  async answer(
    status: number,
    contentType: string | null,
    body: ReadableStream<Uint8Array> | null,
  ): Promise<ReadableStream<Uint8Array> | string | null> {
    if (this.#open.size === 0) return body;
    for (const [key, call] of this.#open) {
      this.#op.answerRead(call);
      if (this.#session !== null) {
        streaming.set(streamingKey(this.#backend, this.#session, key), call);
      }
    }
    const leftover = () => status >= 300 ? String(status) : "unavailable";
    const ended = (aborted: boolean) =>
      this.end(
        aborted && this.#signal.aborted ? "cancelled" : aborted ? "unavailable" : leftover(),
      );
    if (!body) {
      ended(false);
      return body;
    }
    if (mediaType(contentType) === "application/json") {
      let text: string;
      try {
        text = await new Response(body).text();
      } catch (error) {
        ended(true);
        return new ReadableStream({ start: (c) => c.error(error) });
      }
      for (const m of parseJsonRpcBody(text)?.messages ?? []) if (isResponse(m)) this.#settle(m);
      ended(false);
      return text;
    }
    return transformMessages(body, contentType, (m) => {
      if (isResponse(m)) this.#settle(m);
      return m;
    }, { onEnd: ended });
  }

  /** Ends the call `message` answers (an error with a null id: every open call, JSON-RPC §5). */
  #settle(message: JsonRpcMessage): void {
    if (message.id === null && isObject(message.error)) {
      for (const key of [...this.#open.keys()]) this.#close(key)?.endWithMessage(message);
      return;
    }
    const key = this.#open.has(idKey(message.id)) ? idKey(message.id) : FROM_HEADERS;
    this.#close(key)?.endWithMessage(message);
  }

  /** Forgets the open call of `key` (to end it). */
  #close(key: string): BackendCall | undefined {
    const call = this.#open.get(key);
    if (!call) return undefined;
    this.#open.delete(key);
    if (this.#session !== null) {
      const k = streamingKey(this.#backend, this.#session, key);
      if (streaming.get(k) === call) streaming.delete(k);
    }
    return call;
  }
}

/** Runs the pass-through's backend request inside `audit`'s calls when there are any. */
export async function passThroughFetch(
  audit: PassThroughAudit | undefined,
  fetchBackend: () => Promise<FetchOutcome>,
): Promise<FetchOutcome> {
  return audit ? await audit.fetch(fetchBackend) : await fetchBackend();
}
