/**
 * HTTP face of the aggregated `/mcp` endpoint, for both protocol eras on one URL (MCP
 * 2026-07-28 Transports §Backward Compatibility: one endpoint MAY serve both).
 *
 * - Modern (2026-07-28, `_meta` envelope): the v2 SDK's `createMcpHandler` with
 *   `legacy: "reject"`; it validates the envelope and the `Mcp-Method`/`Mcp-Name` headers
 *   (-32020/-32022) and answers `server/discover`. Sessionless by design.
 * - Legacy (2025-03-26 … 2025-11-25): the SDK's stateless legacy leg serves each POST with a
 *   fresh server instance; the session layer around it lives in KV (lib/mcp/aggregate/session.ts):
 *   `initialize` opens a session (its id goes out in `Mcp-Session-Id`), later requests must
 *   carry a live session of the same principal (missing → 400, unknown/ended/foreign → 404),
 *   `DELETE` ends it. No isolate memory is needed between requests.
 *
 * Scope step-up: a routed request (`tools/call`, `prompts/get`, `resources/read`,
 * `completion/complete`, `resources/subscribe`, `resources/unsubscribe`, and a
 * `subscriptions/listen` naming resource URIs) naming a configured backend the token's scope does
 * not cover gets HTTP 403 `insufficient_scope` with `scope="mcp:<backend>"` (MCP 2025-11-25
 * Authorization §Scope Challenge Handling, RFC 6750 §3.1); lists simply omit such backends.
 *
 * A 2025-era client's answer to a request the gateway sent it on a call's stream (elicitation,
 * sampling) arrives in a POST of its own, maybe at another isolate than the waiting call; it is
 * handed to the relay (input_relay.ts) and answered 202.
 *
 * Order of work, once per request: parse the body (not JSON → -32700 Parse error, JSON-RPC 2.0
 * §5.1, whatever the headers), refuse names outside the scope, classify (era; a 2025-era
 * client's session, checked once), then exactly one path: the `tools/call` fast path
 * (fast_call.ts) when it has a plan, else the SDK.
 */
import {
  createMcpHandler,
  isLegacyRequest,
  legacyStatelessFallback,
  type McpHttpHandler,
  type McpRequestContext,
} from "@modelcontextprotocol/server";
import { AsyncLocalStorage } from "node:async_hooks";
import type { Principal } from "../../oauth/bearer.ts";
import { bearerChallenge } from "../../oauth/bearer.ts";
import type { BackendConfig } from "../../config.ts";
import type { Deps } from "../../deps.ts";
import { jsonResponse, mediaType, readBodyText } from "../../infra/http.ts";
import { aggregateResource, backendScope, scopeCoversBackend } from "../../oauth/resources.ts";
import { credentialUser } from "../../credentials/lazy_consent.ts";
import { splitName } from "./naming.ts";
import { cancelKey, CancelRegistry } from "./cancel.ts";
import { CALL_TOOL, type CatalogEnv, exposedToolCount, gatewayUriAllowed } from "./catalog.ts";
import { LIST_CACHE_CHANNEL, ListCache } from "./list_cache.ts";
import { legacyChangeStream, ScopedListenBus } from "./changes.ts";
import { callEra, type FastCallMessage, planFastCall, runFastCall } from "./fast_call.ts";
import { requestCredentials } from "./per_user.ts";
import { answerKey, clientAnswersOf } from "./input_relay.ts";
import { backendPool, closeBackendPool } from "./pool.ts";
import { RelayHub } from "./relay_hub.ts";
import { openCappedStream, releaseWhenClosed } from "../stream_limits.ts";
import { type AggregateRequest, createAggregateServer } from "./server.ts";
import { endSession, loadSessionCached, openSession, type ValidatedSession } from "./session.ts";
import { unwrapUri } from "./uri.ts";
import type { McpOperation } from "../../admin/mcp_operation.ts";

/** The backends a modern request's token covers, while the SDK serves it (listen streams). */
const listenScope = new AsyncLocalStorage<ReadonlySet<string>>();

/** Largest `initialize` capabilities a legacy session keeps (in its KV record, 64 KiB at most). */
export const MAX_SESSION_CAPABILITIES_BYTES = 16 * 1024;

/**
 * Why a legacy `initialize` cannot open a session, or `undefined`: the session record keeps the
 * client's declared capabilities and protocol version, and a Deno KV value holds 64 KiB.
 */
function oversizedInitialize(params: any): string | undefined {
  const capabilities = JSON.stringify(params?.capabilities ?? {}) ?? "";
  if (capabilities.length > MAX_SESSION_CAPABILITIES_BYTES) {
    return `params.capabilities is larger than ${MAX_SESSION_CAPABILITIES_BYTES} bytes`;
  }
  if (String(params?.protocolVersion ?? "").length > 64) {
    return "params.protocolVersion is longer than 64 characters";
  }
  return undefined;
}

/** BroadcastChannel carrying legacy cancellations between isolates. */
export const CANCEL_CHANNEL = "gateway-mcp-cancel";

/** Largest POST body accepted on `/mcp` (the SDK's default bound). */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;

interface Handlers {
  catalog: CatalogEnv;
  cancels: CancelRegistry;
  lists: ListCache;
  listsChannel: BroadcastChannel;
  relay: RelayHub;
  modern: McpHttpHandler;
  legacy: (
    request: Request,
    options?: { parsedBody?: unknown; authInfo?: any },
  ) => Promise<Response>;
}

const handlers = new WeakMap<Deno.Kv, Handlers>();

function handlersFor(deps: Deps): Handlers {
  let h = handlers.get(deps.kv);
  if (h) return h;
  const cancels = new CancelRegistry(new BroadcastChannel(CANCEL_CHANNEL));
  const listsChannel = new BroadcastChannel(LIST_CACHE_CHANNEL);
  const lists = new ListCache({
    kv: deps.kv,
    now: () => deps.now(),
    ttlMs: deps.config.catalog.cacheTtlSeconds * 1000,
    log: deps.log,
    channel: listsChannel,
  });
  const pool = backendPool(deps);
  // Resource updates reach modern listen streams whose filter names the URI (SDK listen router).
  const relay = new RelayHub(deps, pool, (uri) => h?.modern.notify.resourceUpdated(uri));
  const env = {
    serverName: deps.config.serverName,
    pool,
    log: deps.log,
    cancels,
    kv: deps.kv,
    now: () => deps.now(),
    lists,
    catalog: deps.config.catalog,
    relay,
  };
  // A backend's list_changed drops its cached list at once (list_cache.ts).
  env.pool.changes.watchBackends((backend, kind) => {
    if (kind !== "resources") lists.invalidate(backend, kind);
  });
  const factory = (ctx: McpRequestContext) => {
    const extra = (ctx.authInfo?.extra ?? {}) as { request?: AggregateRequest };
    return createAggregateServer(env, extra.request ?? { backends: [] });
  };
  const onerror = (error: Error) =>
    deps.log({ level: "warn", event: "mcp_error", error: error.message.slice(0, 200) });
  // Modern clients hear of list changes on their subscriptions/listen streams (SDK listen
  // router), each only of the backends its token covers (the scope the request runs in).
  const bus = new ScopedListenBus(env.pool.changes, () => listenScope.getStore());
  h = {
    catalog: env,
    cancels,
    lists,
    listsChannel,
    relay,
    modern: createMcpHandler(factory, {
      bus,
      legacy: "reject",
      onerror,
      maxRequestBodySize: MAX_BODY_BYTES,
    }),
    legacy: legacyStatelessFallback(factory, onerror, { maxRequestBodySize: MAX_BODY_BYTES }),
  };
  handlers.set(deps.kv, h);
  return h;
}

/**
 * How many tools backend `backend` shows on `/mcp` (the admin console's backends page), through
 * the same list cache and backend connections as `/mcp` (catalog.ts `exposedToolCount`).
 */
export function backendToolCount(deps: Deps, backend: BackendConfig): Promise<number> {
  return exposedToolCount(handlersFor(deps).catalog, backend);
}

/** Closes the per-gateway handlers and backend clients (tests; shutdown). */
export async function closeAggregate(deps: Deps): Promise<void> {
  const h = handlers.get(deps.kv);
  handlers.delete(deps.kv);
  await h?.modern.close();
  h?.cancels.close();
  await h?.lists.close();
  h?.listsChannel.close();
  h?.relay.close();
  await closeBackendPool(deps);
}

/** Starts connecting the backends (a change stream only hears from connected backends). */
function connectAll(deps: Deps, backends: readonly BackendConfig[]): void {
  const pool = backendPool(deps);
  for (const b of backends) pool.get(b.name).catch(() => {});
}

function rpcError(status: number, code: number, message: string, id: unknown = null): Response {
  return jsonResponse({ jsonrpc: "2.0", id, error: { code, message } }, status);
}

/** The backend a routed request names (by tool/prompt prefix or resource URI prefix). */
export function routedBackend(message: unknown): string | undefined {
  if (!message || typeof message !== "object") return undefined;
  const { method, params } = message as { method?: unknown; params?: any };
  if (!params || typeof params !== "object") return undefined;
  switch (method) {
    case "tools/call":
      // call_tool (tool search) routes to the tool it names, with the same scope rule.
      if (params.name === CALL_TOOL && typeof params.arguments?.name === "string") {
        return splitName(params.arguments.name)?.backend;
      }
      return typeof params.name === "string" ? splitName(params.name)?.backend : undefined;
    case "prompts/get":
      return typeof params.name === "string" ? splitName(params.name)?.backend : undefined;
    case "resources/read":
    case "resources/subscribe":
    case "resources/unsubscribe":
      return typeof params.uri === "string" ? unwrapUri(params.uri)?.backend : undefined;
    case "completion/complete": {
      const ref = params.ref;
      if (ref?.type === "ref/prompt" && typeof ref.name === "string") {
        return splitName(ref.name)?.backend;
      }
      if (ref?.type === "ref/resource" && typeof ref.uri === "string") {
        return unwrapUri(ref.uri)?.backend;
      }
      return undefined;
    }
  }
  return undefined;
}

/** The backends of the gateway URIs a `subscriptions/listen` filter names (MCP 2026-07-28). */
function listenedUris(message: unknown): string[] {
  const uris = (message as any)?.params?.notifications?.resourceSubscriptions;
  if ((message as any)?.method !== "subscriptions/listen" || !Array.isArray(uris)) return [];
  return uris.filter((u): u is string => typeof u === "string");
}

/**
 * The live session a legacy request names in `Mcp-Session-Id`, or the error to answer (MCP
 * 2025-11-25 Transports §Session Management: missing → 400; unknown, ended or another
 * principal's → 404).
 */
async function checkSession(
  req: Request,
  deps: Deps,
  principalId: string,
): Promise<Response | ValidatedSession & { id: string }> {
  const id = req.headers.get("mcp-session-id");
  if (!id) return rpcError(400, -32000, "Bad Request: Mcp-Session-Id header is required");
  const session = await loadSessionCached(deps, id, principalId);
  if (!session) return rpcError(404, -32001, "Session not found");
  return { ...session, id };
}

/** Methods whose answer depends on the caller's per-user backend connections. */
const PER_USER_METHODS = new Set([
  undefined,
  "initialize",
  "server/discover",
  "tools/list",
  "prompts/list",
  "resources/list",
  "resources/templates/list",
  "tools/call",
  "prompts/get",
  "resources/read",
  "completion/complete",
]);

const CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities";
function insufficientScope(deps: Deps, backend: string): Response {
  const scope = backendScope(backend);
  const description = `scope ${scope} (or mcp) is required for backend ${backend}`;
  return jsonResponse(
    { error: "insufficient_scope", error_description: description },
    403,
    {
      "www-authenticate": bearerChallenge(deps, aggregateResource(deps.settings.publicUrl), {
        error: "insufficient_scope",
        description,
        scope,
      }),
    },
  );
}

/** The backends each scope string covers, per configuration (a bounded memo of the filter). */
const allowedByScope = new WeakMap<Deps["config"], Map<string, BackendConfig[]>>();

/**
 * The configured backends `scope` covers (MCP Authorization §Scope: `mcp` or `mcp:<backend>`).
 * The array is shared between requests of the same scope: never modified.
 */
function allowedBackends(deps: Deps, scope: string): BackendConfig[] {
  let memo = allowedByScope.get(deps.config);
  if (!memo) allowedByScope.set(deps.config, memo = new Map());
  let allowed = memo.get(scope);
  if (!allowed) {
    allowed = deps.config.backends.filter((b) => scopeCoversBackend(scope, b.name));
    if (memo.size >= 1000) memo.clear();
    memo.set(scope, allowed);
  }
  return allowed;
}

/**
 * The request body as text, at most {@linkcode MAX_BODY_BYTES}: with a `Content-Length` within
 * the bound the runtime's one-shot read (HTTP framing holds the body to that length, RFC 9112
 * §6.2), else the bounded chunk-by-chunk read (chunked bodies; too large → 413).
 */
function readBody(req: Request): Promise<string> {
  const declared = req.headers.get("content-length");
  if (declared !== null && /^\d{1,8}$/.test(declared) && Number(declared) <= MAX_BODY_BYTES) {
    return req.text();
  }
  return readBodyText(req, MAX_BODY_BYTES);
}

/**
 * Serves an authenticated request to `/mcp` for `principal`. `logFields` (the router's fields of
 * this request's log line) receives `tool` for `tools/call`; `operation` (audit trail and
 * telemetry, lib/admin/mcp_operation.ts) is told the message and each backend call.
 *
 * One pass: the body is parsed (not JSON → -32700), routed names are checked against the scope,
 * the request is classified once (its era, a 2025-era client's session, whether the `tools/call`
 * fast path takes it) and handed to exactly one path: the fast path (fast_call.ts) or the SDK.
 */
export async function serveAggregate(
  req: Request,
  deps: Deps,
  principal: Principal,
  logFields?: Record<string, unknown>,
  operation?: McpOperation,
): Promise<Response> {
  const allowed = allowedBackends(deps, principal.scope);
  let parsed: unknown;
  let body: string | undefined;
  if (req.method === "POST" && mediaType(req) === "application/json") {
    const text = await readBody(req);
    try {
      parsed = JSON.parse(text);
    } catch {
      // Parse first: whatever the headers say, a body that is not JSON is -32700 (JSON-RPC 2.0
      // §5.1), before any session or version check (issue 15, defect 4).
      return rpcError(400, -32700, "Parse error");
    }
    const refused = scopeRefusal(deps, principal, parsed, req.headers, operation);
    if (refused) return refused;
    body = text;
  }
  const single = parsed && !Array.isArray(parsed) && typeof parsed === "object"
    ? parsed as { method?: unknown; params?: any }
    : undefined;
  operation?.describe(single, req.headers);
  // Legacy clients send no Mcp-Name header: log the tool from the body (never its arguments).
  if (logFields && single?.method === "tools/call" && typeof single.params?.name === "string") {
    const inner = single.params.arguments?.name;
    const viaSearch = single.params.name === CALL_TOOL && typeof inner === "string";
    logFields.tool = (viaSearch ? inner : single.params.name).slice(0, 100);
    if (viaSearch) logFields.via = CALL_TOOL;
  }
  const user = credentialUser(principal);
  const h = handlersFor(deps);

  // Classify once. The era is the SDK's rule (MCP 2026-07-28 Transports §Backward
  // Compatibility); a `tools/call` of the fast path's shape says it without the SDK's probe.
  const era = callEra(req, single);
  const legacy = era === "legacy" ||
    (era === undefined &&
      await isLegacyRequest(req, parsed, { maxRequestBodySize: MAX_BODY_BYTES }));
  const opening = legacy && req.method === "POST" && single?.method === "initialize";
  let session: (ValidatedSession & { id: string }) | undefined;
  if (legacy && !opening) {
    const checked = await checkSession(req, deps, principal.id);
    if (checked instanceof Response) return checked;
    session = checked;
  }
  if (era !== undefined) {
    const plan = await planFastCall(
      req,
      single as FastCallMessage,
      {
        deps,
        pool: backendPool(deps),
        allowed,
        principalId: principal.id,
        tools: principal.tools,
        logFields,
        operation,
        ...(user ? { user } : {}),
      },
      session && {
        sessionHash: session.hash,
        cancels: h.cancels,
        capabilities: session.record.clientCapabilities,
        logLevel: session.record.logLevel,
      },
    );
    // `undefined` only when a per-user backend refused the user's credential (dropped now):
    // the SDK path gives the connect answer.
    const fast = plan && await runFastCall(plan);
    if (fast) return fast;
  }

  // The SDK path.
  const request = body === undefined
    ? req
    : new Request(req.url, { method: "POST", headers: req.headers, body, signal: req.signal });
  const aggregateRequest: AggregateRequest = {
    backends: allowed,
    method: typeof single?.method === "string" ? single.method : undefined,
    principalId: principal.id,
    tools: principal.tools,
    operation,
  };
  const authInfo = {
    token: "",
    clientId: principal.clientId ?? principal.id,
    scopes: principal.scope.split(" "),
    extra: { request: aggregateRequest, principalId: principal.id },
  };
  const perUser = req.method === "POST" && PER_USER_METHODS.has(aggregateRequest.method);
  if (!legacy) {
    aggregateRequest.clientCapabilities = single?.params?._meta?.[CAPABILITIES_KEY];
    if (perUser) {
      aggregateRequest.credentials = await requestCredentials(
        deps,
        allowed,
        user,
        "modern",
        single?.params?._meta?.[CAPABILITIES_KEY],
      );
    }
    const scope = new Set(allowed.map((b) => b.name));
    const serve = () =>
      listenScope.run(scope, () => h.modern.fetch(request, { parsedBody: parsed, authInfo }));
    if (aggregateRequest.method !== "subscriptions/listen") return await serve();
    connectAll(deps, allowed);
    return await openCappedStream(deps, principal.id, undefined, async () => {
      // The resource URIs of the filter are held at their backends while the stream is open.
      const release = h.relay.subscriptions.listen(
        listenedUris(single).filter((u) => gatewayUriAllowed(allowed, u)),
      );
      try {
        return releaseWhenClosed(await serve(), release);
      } catch (error) {
        release();
        throw error;
      }
    });
  }

  if (!session) {
    const tooLarge = oversizedInitialize(single!.params);
    if (tooLarge) return rpcError(400, -32602, tooLarge, (single as { id?: unknown }).id ?? null);
    aggregateRequest.credentials = await requestCredentials(
      deps,
      allowed,
      user,
      "legacy",
      single!.params?.capabilities,
    );
    const res = await h.legacy(request, { parsedBody: parsed, authInfo });
    if (!res.ok) return res;
    const sessionId = await openSession(deps, principal.id, {
      protocolVersion: String(single!.params?.protocolVersion ?? ""),
      clientCapabilities: single!.params?.capabilities ?? {},
      user: principal.user,
    });
    const headers = new Headers(res.headers);
    headers.set("mcp-session-id", sessionId);
    return new Response(res.body, { status: res.status, headers });
  }
  const relaySession = {
    hash: session.hash,
    expiresAt: session.record.expiresAt,
    capabilities: session.record.clientCapabilities,
    logLevel: session.record.logLevel,
  };
  if (req.method === "DELETE") {
    await endSession(deps, session.id, principal.id);
    await h.relay.subscriptions.endSession(session.hash);
    return new Response(null, { status: 204 });
  }
  if (req.method === "GET") {
    if (!(req.headers.get("accept") ?? "").includes("text/event-stream")) {
      return rpcError(406, -32000, "Not Acceptable: the client must accept text/event-stream");
    }
    return await openCappedStream(deps, principal.id, `mcp ${session.hash}`, () => {
      connectAll(deps, allowed);
      const names = allowed.map((b) => b.name);
      return Promise.resolve(
        legacyChangeStream(
          backendPool(deps).changes,
          new Set(names),
          undefined,
          (write) => h.relay.attachStream(relaySession, names, write),
        ),
      );
    });
  }
  const answers = clientAnswersOf(parsed);
  if (answers) {
    for (const a of answers) h.relay.answers.deliver(answerKey(session.hash, a.id), a.answer);
    return new Response(null, { status: 202 });
  }
  const sessionHash = session.hash;
  aggregateRequest.sessionHash = sessionHash;
  if (perUser) {
    aggregateRequest.credentials = await requestCredentials(
      deps,
      allowed,
      user,
      "legacy",
      session.record.clientCapabilities,
    );
  }
  aggregateRequest.session = relaySession;
  if (single?.method === "notifications/cancelled" && single.params?.requestId !== undefined) {
    h.cancels.cancel(cancelKey(sessionHash, single.params.requestId));
  }
  return await h.legacy(request, { parsedBody: parsed, authInfo });
}

/**
 * The 403 `insufficient_scope` of a message naming a configured backend the token's scope does
 * not cover (routed requests and listen filters), or `undefined`.
 */
function scopeRefusal(
  deps: Deps,
  principal: Principal,
  parsed: unknown,
  headers: Headers,
  operation?: McpOperation,
): Response | undefined {
  for (const message of Array.isArray(parsed) ? parsed : [parsed]) {
    const named = [
      routedBackend(message),
      ...listenedUris(message).map((u) => unwrapUri(u)?.backend),
    ];
    for (const backend of named) {
      if (
        backend && deps.config.backends.some((b) => b.name === backend) &&
        !scopeCoversBackend(principal.scope, backend)
      ) {
        operation?.describe(message, headers);
        operation?.denied(backend);
        return insufficientScope(deps, backend);
      }
    }
  }
  return undefined;
}
