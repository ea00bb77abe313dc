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
 * `completion/complete`) naming a configured backend the token's scope does not cover gets
 * HTTP 403 `insufficient_scope` with `scope="mcp:<backend>"` (MCP 2025-11-25 Authorization
 * §Scope Challenge Handling, RFC 6750 §3.1); lists simply omit such backends.
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
import { legacyChangeStream, ScopedListenBus } from "./changes.ts";
import { fastToolCall, isFastLegacyCall } from "./fast_call.ts";
import { requestCredentials } from "./per_user.ts";
import { backendPool, closeBackendPool } from "./pool.ts";
import { openCappedStream } from "../stream_limits.ts";
import { type AggregateRequest, createAggregateServer } from "./server.ts";
import { endSession, loadSessionCached, openSession, type ValidatedSession } from "./session.ts";
import { unwrapUri } from "./uri.ts";

/** The backends a modern request's token covers, while the SDK serves it (listen streams). */
const listenScope = new AsyncLocalStorage<ReadonlySet<string>>();

/** BroadcastChannel carrying legacy cancellations between isolates. */
export const CANCEL_CHANNEL = "gateway-mcp-cancel";

/** Largest POST body accepted on `/mcp` (the SDK's default bound). */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;

interface Handlers {
  cancels: CancelRegistry;
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
  const env = {
    serverName: deps.config.serverName,
    pool: backendPool(deps),
    log: deps.log,
    cancels,
    kv: deps.kv,
    now: () => deps.now(),
  };
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
    cancels,
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

/** Closes the per-gateway handlers and backend clients (tests; shutdown). */
export async function closeAggregate(deps: Deps): Promise<void> {
  const h = handlers.get(deps.kv);
  handlers.delete(deps.kv);
  await h?.modern.close();
  h?.cancels.close();
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
    case "prompts/get":
      return typeof params.name === "string" ? splitName(params.name)?.backend : undefined;
    case "resources/read":
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

/**
 * Serves an authenticated request to `/mcp` for `principal`. `logFields` (the router's fields of
 * this request's log line) receives `tool` for `tools/call`.
 */
export async function serveAggregate(
  req: Request,
  deps: Deps,
  principal: Principal,
  logFields?: Record<string, unknown>,
): Promise<Response> {
  const allowed: BackendConfig[] = deps.config.backends.filter((b) =>
    scopeCoversBackend(principal.scope, b.name)
  );
  let request = req;
  let parsed: unknown;
  let body: string | undefined;
  if (req.method === "POST" && mediaType(req) === "application/json") {
    const text = await readBodyText(req, MAX_BODY_BYTES);
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    for (const message of Array.isArray(parsed) ? parsed : [parsed]) {
      const backend = routedBackend(message);
      if (
        backend && deps.config.backends.some((b) => b.name === backend) &&
        !scopeCoversBackend(principal.scope, backend)
      ) {
        return insufficientScope(deps, backend);
      }
    }
    body = text;
  }
  const single = parsed && !Array.isArray(parsed) && typeof parsed === "object"
    ? parsed as { method?: unknown; params?: any }
    : undefined;
  // Legacy clients send no Mcp-Name header: log the tool from the body (never its arguments).
  if (logFields && single?.method === "tools/call" && typeof single.params?.name === "string") {
    logFields.tool = single.params.name.slice(0, 100);
  }
  const user = credentialUser(principal);
  const fastCall = {
    deps,
    pool: backendPool(deps),
    allowed,
    principalId: principal.id,
    logFields,
    ...(user ? { user } : {}),
  };
  if (single?.method === "tools/call") {
    // A call to a known modern backend skips both SDKs (fast_call.ts); else undefined. A legacy
    // one has its session checked first, as below (same answers, before any SDK work).
    let fast: Response | undefined;
    if (isFastLegacyCall(req, single)) {
      const session = await checkSession(req, deps, principal.id);
      fast = session instanceof Response ? session : await fastToolCall(req, single, fastCall, {
        sessionHash: session.hash,
        cancels: handlersFor(deps).cancels,
      });
    } else fast = await fastToolCall(req, single, fastCall);
    if (fast) return fast;
  }
  if (body !== undefined) {
    request = new Request(req.url, {
      method: "POST",
      headers: req.headers,
      body,
      signal: req.signal,
    });
  }
  const aggregateRequest: AggregateRequest = {
    backends: allowed,
    method: typeof single?.method === "string" ? single.method : undefined,
    principalId: principal.id,
  };
  const authInfo = {
    token: "",
    clientId: principal.clientId ?? principal.id,
    scopes: principal.scope.split(" "),
    extra: { request: aggregateRequest, principalId: principal.id },
  };
  const h = handlersFor(deps);
  const legacy = await isLegacyRequest(request, parsed, { maxRequestBodySize: MAX_BODY_BYTES });
  const perUser = req.method === "POST" && PER_USER_METHODS.has(aggregateRequest.method);
  if (!legacy) {
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
    return await openCappedStream(deps, principal.id, undefined, serve);
  }

  if (req.method === "POST" && single?.method === "initialize") {
    aggregateRequest.credentials = await requestCredentials(
      deps,
      allowed,
      user,
      "legacy",
      single.params?.capabilities,
    );
    const res = await h.legacy(request, { parsedBody: parsed, authInfo });
    if (!res.ok) return res;
    const sessionId = await openSession(deps, principal.id, {
      protocolVersion: String(single.params?.protocolVersion ?? ""),
      clientCapabilities: single.params?.capabilities ?? {},
      user: principal.user,
    });
    const headers = new Headers(res.headers);
    headers.set("mcp-session-id", sessionId);
    return new Response(res.body, { status: res.status, headers });
  }
  const session = await checkSession(req, deps, principal.id);
  if (session instanceof Response) return session;
  if (req.method === "DELETE") {
    await endSession(deps, session.id, principal.id);
    return new Response(null, { status: 204 });
  }
  if (req.method === "GET") {
    if (!(req.headers.get("accept") ?? "").includes("text/event-stream")) {
      return rpcError(406, -32000, "Not Acceptable: the client must accept text/event-stream");
    }
    return await openCappedStream(deps, principal.id, `mcp ${session.hash}`, () => {
      connectAll(deps, allowed);
      const scope = new Set(allowed.map((b) => b.name));
      return Promise.resolve(legacyChangeStream(backendPool(deps).changes, scope));
    });
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
  if (single?.method === "notifications/cancelled" && single.params?.requestId !== undefined) {
    h.cancels.cancel(cancelKey(sessionHash, single.params.requestId));
  }
  return await h.legacy(request, { parsedBody: parsed, authInfo });
}
