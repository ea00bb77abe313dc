/**
 * The aggregated MCP server: a low-level v2 SDK `Server` built per request (both eras use the
 * same factory) whose handlers fan out to, or route to, the backends the caller may use.
 *
 * - lists (`tools/list`, `prompts/list`, `resources/list`, `resources/templates/list`): parallel
 *   fan-out, every backend's pages walked, merged in configuration order, then paginated by the
 *   gateway with an opaque cursor (MCP 2025-11-25 Server/Utilities/Pagination).
 * - `tools/call`, `prompts/get`, `resources/read`, `completion/complete`: routed by the
 *   `backend__` prefix or the `mcpgw-<backend>+` URI prefix, with the prefix stripped; an unknown
 *   name is a JSON-RPC `-32602` error (MCP 2025-11-25 Server/Tools §Error Handling).
 * - Input a backend needs during `tools/call`, `prompts/get`, `resources/read` (elicitation,
 *   sampling) is relayed to the client in every era combination (input_relay.ts); a modern
 *   backend's `input_required` toward a modern client is handed on with the gateway's sealed
 *   `requestState` (request_state.ts), and the retry's `inputResponses` and the backend's
 *   unsealed state go back to the same backend. The SDK checks the embedded requests against the
 *   client's declared capabilities (-32021).
 * - Backend log messages of a call go to the client on the call's stream, at the level it asked
 *   for (log_relay.ts); `resources/subscribe`, `resources/unsubscribe` and `logging/setLevel`
 *   of 2025-era sessions are session_methods.ts.
 * - Per-user backends (`auth`, issue 9) are reached with the caller's own client (pool.ts
 *   `forUser`) and their lists are not cached; one the caller cannot use yet lists only
 *   `{backend}__connect`, and a routed request to it gets the connect answer of per_user.ts.
 * - `initialize` / `server/discover` are answered by the SDK from this server's info:
 *   `serverInfo.name` = `serverName`, capabilities = union of the backends, instructions of
 *   each backend under a `[backend]` heading.
 */
import {
  type CallToolResult,
  type GetPromptResult,
  inputRequired,
  isInputRequiredResult,
  ProtocolError,
  ProtocolErrorCode,
  type ReadResourceResult,
  Server,
  type ServerCapabilities,
  type ServerContext,
} from "@modelcontextprotocol/server";
import { SdkError, SdkErrorCode } from "@modelcontextprotocol/client";
import type { BackendConfig, GatewayConfig } from "../../config.ts";
import { authFailure, isNotConnected } from "../../credentials/credential.ts";
import type { Logger } from "../../infra/log.ts";
import { runInCall } from "./call_relay.ts";
import { fanOut, SDK_TIMEOUT_MS, withDeadline } from "./fanout.ts";
import { type EndClientRelay, type MrtrMethod, relayedCall } from "./input_relay.ts";
import { LOG_LEVEL_KEY } from "./log_relay.ts";
import {
  CALL_TOOL,
  excludedByGlobs,
  listedTools,
  resolvePrompt,
  resolveTool,
  resourceAllowed,
  SEARCH_TOOLS,
  searchTools,
  unwrapCallTool,
  visiblePrompts,
} from "./catalog.ts";
import { cancelKey, type CancelRegistry } from "./cancel.ts";
import { userAllows } from "../curation.ts";
import type { ListCache } from "./list_cache.ts";
import { splitName } from "./naming.ts";
import {
  connectRequired,
  isConnectRound,
  placeholderTools,
  type RequestCredentials,
  type RoutedMethod,
} from "./per_user.ts";
import type { BackendConnection, BackendPool } from "./pool.ts";
import { sealRequestState } from "./request_state.ts";
import { onlyRelayable, relayProfile } from "./relay_profile.ts";
import type { RelayHub, RelaySession } from "./relay_hub.ts";
import { registerSessionMethods } from "./session_methods.ts";
import { unwrapUri, wrapContentUris, wrapUri } from "./uri.ts";
import { type McpOperation, within } from "../../admin/mcp_operation.ts";

/** Version reported in `serverInfo`. */
export const GATEWAY_VERSION = "1.0.0";

/** Items per page of the gateway's own pagination. */
export const PAGE_SIZE = 100;

/** What a server instance needs to know about its request. */
export interface AggregateRequest {
  /** Backends the caller's scope covers, in configuration order. */
  backends: readonly BackendConfig[];
  /** JSON-RPC method of the request being served (when known). */
  method?: string;
  /** Legacy leg: hash of the session id, so that `notifications/cancelled` can find the call. */
  sessionHash?: string;
  /** Principal id (grant id for OAuth tokens): relayed `requestState`s are bound to it. */
  principalId?: string;
  /** Legacy leg: the client's session (capabilities, log level, expiry). */
  session?: RelaySession;
  /** The principal's tool globs over exposed names (`Principal.tools`); undefined = all. */
  tools?: readonly string[];
  /** Audit trail and telemetry of the request: told each backend call (lib/admin/). */
  operation?: McpOperation;
  /** Per-user backends among `backends`: the caller's user and what they cannot use yet. */
  credentials?: RequestCredentials;
  /** Modern leg: the capabilities the request's `_meta` declares (legacy: `session`'s). */
  clientCapabilities?: unknown;
}

/** Shared, per-gateway parts of every server instance. */
export interface AggregateEnv {
  serverName: string;
  pool: BackendPool;
  log: Logger;
  cancels: CancelRegistry;
  /** KV (holds the request-state key) and clock, for relayed `input_required` rounds. */
  kv: Deno.Kv;
  now: () => number;
  /** Relayed input, session streams, subscriptions and log levels (relay_hub.ts). */
  relay: RelayHub;
  /** Backends' tool and prompt lists (list_cache.ts) and the catalog settings (catalog.ts). */
  lists: ListCache;
  catalog: GatewayConfig["catalog"];
}

// For requests other than the handshakes the capabilities are never shown to the client; they
// only enable every handler (and every listen filter: a kind no backend announces never fires).
const FULL_CAPABILITIES: ServerCapabilities = {
  tools: { listChanged: true },
  prompts: { listChanged: true },
  resources: { listChanged: true, subscribe: true },
  completions: {},
  logging: {},
};

/** Methods whose answer describes the server (they need the real capability union). */
const HANDSHAKES = new Set(["initialize", "server/discover"]);

/** Builds the server instance for one request. */
export async function createAggregateServer(
  env: AggregateEnv,
  request: AggregateRequest,
): Promise<Server> {
  let capabilities = FULL_CAPABILITIES;
  let instructions: string | undefined;
  if (request.method === undefined || HANDSHAKES.has(request.method)) {
    const disconnected = request.credentials?.disconnected;
    const live = await fanOut(
      env.pool.forUser(request.credentials?.user),
      request.backends.filter((b) => !disconnected?.has(b.name)),
      env.log,
      "connect",
      (c) => Promise.resolve(c),
    );
    capabilities = unionCapabilities(live.map((l) => l.value));
    instructions = joinInstructions(live.map((l) => l.value));
    if (request.credentials?.user) {
      // `{backend}__connect` while disconnected; the list changes once the user connects.
      capabilities = { ...capabilities, tools: { ...capabilities.tools, listChanged: true } };
    }
  }
  const server = new Server(
    { name: env.serverName, version: GATEWAY_VERSION },
    { capabilities, instructions },
  );
  registerHandlers(server, env, request, capabilities);
  registerSessionMethods(server, env.relay, request, capabilities);
  return server;
}

/**
 * Capabilities true for the union of the backends: a list kind if any backend has it,
 * `listChanged` if any backend announces changes of it (they are relayed, see changes.ts),
 * `resources.subscribe` if any backend supports subscriptions (subscriptions.ts), `logging` if
 * any backend sends log messages (log_relay.ts).
 */
export function unionCapabilities(connections: readonly BackendConnection[]): ServerCapabilities {
  const caps: ServerCapabilities = {};
  for (const c of connections) {
    for (const kind of ["tools", "prompts", "resources"] as const) {
      if (!c.capabilities[kind]) continue;
      caps[kind] ??= {};
      if (c.capabilities[kind]?.listChanged === true) caps[kind].listChanged = true;
    }
    if (c.capabilities.resources?.subscribe === true) caps.resources!.subscribe = true;
    if (c.capabilities.completions) caps.completions = {};
    if (c.capabilities.logging) caps.logging = {};
  }
  return caps;
}

/** The backends' instructions, each under a `[backend]` heading. */
export function joinInstructions(connections: readonly BackendConnection[]): string | undefined {
  const parts = connections
    .filter((c) => c.instructions && c.instructions.trim() !== "")
    .map((c) => `[${c.name}]\n${c.instructions!.trim()}`);
  return parts.length ? parts.join("\n\n") : undefined;
}

/**
 * Drops the backend's reserved `io.modelcontextprotocol/*` `_meta` keys (its own serverInfo and
 * envelope keys, MCP 2026-07-28 Basic §_meta): the gateway's SDK stamps its own.
 */
export function stripReservedMeta<T extends { _meta?: Record<string, unknown> }>(result: T): T {
  if (!result._meta) return result;
  const meta = Object.fromEntries(
    Object.entries(result._meta).filter(([k]) => !k.startsWith("io.modelcontextprotocol/")),
  );
  const { _meta: _, ...rest } = result;
  return (Object.keys(meta).length ? { ...rest, _meta: meta } : rest) as T;
}

function encodeCursor(offset: number): string {
  return btoa(JSON.stringify({ o: offset })).replace(/=+$/, "");
}

function decodeCursor(cursor: string | undefined): number {
  if (cursor === undefined) return 0;
  try {
    const parsed = JSON.parse(atob(cursor));
    if (Number.isInteger(parsed?.o) && parsed.o >= 0) return parsed.o;
  } catch {
    // fall through
  }
  throw new ProtocolError(ProtocolErrorCode.InvalidParams, "Invalid cursor");
}

function page<T>(items: T[], cursor: string | undefined): { items: T[]; nextCursor?: string } {
  const offset = decodeCursor(cursor);
  const slice = items.slice(offset, offset + PAGE_SIZE);
  const next = offset + PAGE_SIZE < items.length ? encodeCursor(offset + PAGE_SIZE) : undefined;
  return next ? { items: slice, nextCursor: next } : { items: slice };
}

/** The `_meta` key of the gateway's identity on modern results (MCP 2026-07-28 Basic §_meta). */
export const SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo";

/**
 * A backend's `tools/call` result as the client gets it: resource URIs of its content rewritten
 * (uri.ts), the backend's reserved `_meta` keys dropped. Shared by the SDK path and the fast
 * path (fast_call.ts).
 */
export function rewriteToolResult<T extends { content?: unknown; _meta?: Record<string, unknown> }>(
  backend: string,
  result: T,
): T {
  return stripReservedMeta({ ...result, content: wrapContentUris(backend, result.content) });
}

/** The JSON-RPC error message of a backend call that ran past its `timeoutMs`. */
export const timedOutMessage = (backend: string): string => `Backend ${backend} timed out`;

/** The JSON-RPC error message of a backend that cannot be reached or answered garbage. */
export const unavailableMessage = (backend: string): string => `Backend ${backend} is unavailable`;

/**
 * The JSON-RPC error message of a backend whose answer was a response but not a valid result
 * (e.g. a 2026-07-28 result without `resultType`, which that revision's Basic §Result requires):
 * the backend's fault, told as such; the connection stays (the next call is sent as usual).
 */
export const invalidResultMessage = (backend: string, why: string): string =>
  `Backend ${backend} returned an invalid result: ${why}`;

/**
 * Why the SDK client refused a backend's result (`SdkErrorCode.InvalidResult`), shortened to
 * its first clause ("missing required resultType"), or `undefined` for any other error.
 */
export function invalidResultReason(error: unknown): string | undefined {
  if (!(error instanceof SdkError) || error.code !== SdkErrorCode.InvalidResult) return undefined;
  const why = error.message.replace(/^Invalid result for [^:]*: /, "").split(" — ")[0]!;
  return why.slice(0, 200);
}

/** Re-throws a backend failure as a JSON-RPC error the client can read (never a 500). */
function relayError(
  env: AggregateEnv,
  connection: BackendConnection | undefined,
  backend: string,
  error: unknown,
): never {
  if (isNotConnected(error)) {
    // The backend refused the user's credential (dropped): the caller answers with a connect.
    if (connection) env.pool.invalidate(connection);
    throw error;
  }
  if (error instanceof ProtocolError) {
    if (
      error.code === ProtocolErrorCode.MissingRequiredClientCapability &&
      !onlyRelayable((error.data as { requiredCapabilities?: unknown })?.requiredCapabilities)
    ) {
      // The backend wants a capability the gateway does not declare to it (e.g. roots).
      throw new ProtocolError(
        error.code,
        `Backend ${backend} asked for input the aggregated /mcp endpoint does not relay; ` +
          `use /mcp/${backend} for this call (${error.message})`,
        error.data,
      );
    }
    throw new ProtocolError(error.code, error.message, error.data);
  }
  const invalid = invalidResultReason(error);
  if (invalid !== undefined) {
    env.log({
      level: "warn",
      event: "backend_call_failed",
      backend,
      error: `invalid result: ${invalid}`,
    });
    throw new ProtocolError(
      ProtocolErrorCode.InternalError,
      invalidResultMessage(backend, invalid),
    );
  }
  const auth = authFailure(error);
  if (auth) {
    // The user's token needed a refresh and the backend's authorization server failed.
    env.log({
      level: "warn",
      event: "backend_auth_failed",
      backend,
      error: auth.message.slice(0, 200),
    });
    throw new ProtocolError(ProtocolErrorCode.InternalError, `Backend ${backend}: ${auth.message}`);
  }
  const message = error instanceof Error ? error.message : String(error);
  env.log({ level: "warn", event: "backend_call_failed", backend, error: message.slice(0, 200) });
  if (error instanceof Error && error.name === "BackendTimeoutError") {
    throw new ProtocolError(ProtocolErrorCode.InternalError, timedOutMessage(backend));
  }
  // A transport-level failure (connection lost, legacy session gone): reconnect next time.
  if (connection) env.pool.invalidate(connection);
  throw new ProtocolError(ProtocolErrorCode.InternalError, unavailableMessage(backend));
}

/**
 * A backend's `input_required` result, handed on to the client with the gateway's sealed
 * `requestState` (MCP 2026-07-28 MRTR). The SDK then checks the embedded requests against the
 * client's declared capabilities (-32021 when missing) and, toward a 2025-era client, tries its
 * legacy shim, which fails clearly on the per-request legacy leg.
 */
export async function relayInputRequired(
  env: Pick<AggregateEnv, "kv" | "now">,
  request: Pick<AggregateRequest, "principalId">,
  method: MrtrMethod,
  backend: string,
  name: string,
  result: { inputRequests?: Record<string, unknown>; requestState?: string },
): Promise<any> {
  const requestState = await sealRequestState(env, {
    principal: request.principalId ?? "",
    backend,
    method,
    name,
    ...(typeof result.requestState === "string" ? { backendState: result.requestState } : {}),
  });
  return inputRequired({
    ...(result.inputRequests && Object.keys(result.inputRequests).length > 0
      ? { inputRequests: result.inputRequests as any }
      : {}),
    requestState,
  });
}

function registerHandlers(
  server: Server,
  env: AggregateEnv,
  request: AggregateRequest,
  caps: ServerCapabilities,
): void {
  const backends = request.backends;
  const byName = new Map(backends.map((b) => [b.name, b]));
  // Per-user backends resolve to the caller's own clients (pool.ts `forUser`), every backend to
  // the client that declared what can be relayed to this caller (relay_profile.ts).
  const pool = env.pool.forUser(
    request.credentials?.user,
    relayProfile(request.session?.capabilities ?? request.clientCapabilities),
  );
  const userEnv = { ...env, pool };
  const credentials = request.credentials;
  const disconnected = credentials?.disconnected;
  /**
   * One aggregated list method: fans `list` out to every backend (each with its deadline),
   * presents each item under the gateway's name or URI (`null` leaves it out), and pages the
   * merged list with the gateway's cursor.
   */
  const mergedList = <T, U>(
    method: string,
    key: string,
    list: (c: BackendConnection, signal: AbortSignal) => Promise<T[]>,
    present: (backend: string, item: T) => U | null,
  ) =>
  async (req: { params?: { cursor?: string } }, ctx: ServerContext) => {
    const live = backends.filter((b) => !disconnected?.has(b.name));
    const lists = await fanOut(pool, live, env.log, method, list, ctx.mcpReq.signal);
    const items = lists.flatMap(({ backend, value }) =>
      value.flatMap((item) => {
        const shown = present(backend, item);
        return shown === null ? [] : [shown];
      })
    );
    const p = page(items, req.params?.cursor);
    return { [key]: p.items, ...(p.nextCursor ? { nextCursor: p.nextCursor } : {}) } as any;
  };

  /**
   * Runs `op` on the backend that owns a routed request; `upstream` is the backend's own name of
   * the target (tool, prompt, URI: what the request sent to it carries), for the CLIENT span.
   * With a `relay` (input_relay.ts), `op` runs in its call scope (call_relay.ts) and `parent` is
   * the call's signal.
   */
  const routed = async <T>(
    backendName: string,
    upstream: string,
    ctx: ServerContext,
    notFound: string,
    op: (c: BackendConnection, signal: AbortSignal, keepAlive: () => void) => Promise<T>,
    call?: { relay: EndClientRelay; parent: AbortSignal },
  ): Promise<T> => {
    const backend = byName.get(backendName);
    if (!backend) throw new ProtocolError(ProtocolErrorCode.InvalidParams, notFound);
    let connection: BackendConnection | undefined;
    const tracked = request.sessionHash === undefined || call
      ? undefined
      : env.cancels.track(cancelKey(request.sessionHash, ctx.mcpReq.id));
    const parent = call?.parent ??
      (tracked ? AbortSignal.any([ctx.mcpReq.signal, tracked.signal]) : ctx.mcpReq.signal);
    const level = call?.relay.logLevel;
    const holder = `call:${crypto.randomUUID()}`;
    const audited = request.operation?.backendCall(backend.name, ctx.mcpReq.method, upstream);
    try {
      const result = await withDeadline(backend, parent, async (signal, keepAlive, hold) => {
        const c = connection = await pool.get(backend.name);
        if (!call) return await within(audited, () => op(c, signal, keepAlive));
        call.relay.hold = hold;
        if (level && c.era === "legacy" && c.capabilities.logging) {
          // A backend refusing the level still serves the call (its messages may be filtered).
          await env.relay.levels.need(backend.name, holder, level).catch((error) =>
            env.log({
              level: "warn",
              event: "backend_set_level_failed",
              backend: backend.name,
              error: error instanceof Error ? error.message.slice(0, 200) : "unknown",
            })
          );
        }
        call.relay.owner = request.principalId;
        return await within(audited, () => runInCall(call.relay, () => op(c, signal, keepAlive)));
      });
      audited?.endWithResult(result);
      return result;
    } catch (error) {
      audited?.endWithError(error, parent.aborted);
      if (parent.aborted) {
        // Cancelled by the client: the SDK already told the backend; the connection is fine.
        throw new ProtocolError(ProtocolErrorCode.InternalError, "Request cancelled");
      }
      relayError(env, connection, backend.name, error);
    } finally {
      tracked?.done();
      if (level) env.relay.levels.drop(backend.name, holder, false);
    }
  };

  /**
   * A routed call that may need input from the client (input_relay.ts): `op` gets the round's
   * retry fields and, toward a modern backend, the client's log level in `_meta`.
   */
  const relayed = (
    method: MrtrMethod,
    backendName: string,
    name: string,
    upstream: string,
    ctx: ServerContext,
    notFound: string,
    op: (
      c: BackendConnection,
      signal: AbortSignal,
      keepAlive: () => void,
      extra: Record<string, unknown>,
    ) => Promise<any>,
  ) =>
    relayedCall(
      {
        kv: env.kv,
        now: env.now,
        answers: env.relay.answers,
        parks: env.relay.parks,
        cancels: env.cancels,
      },
      { ctx, server, principal: request.principalId ?? "", session: request.session },
      { method, backend: backendName, name, timeoutMs: byName.get(backendName)?.timeoutMs ?? 0 },
      ({ fields, relay, parent }) =>
        routed(backendName, upstream, ctx, notFound, (c, signal, keepAlive) => {
          const extra: Record<string, unknown> = { ...fields };
          if (relay.logLevel && c.era === "modern") {
            extra._meta = { [LOG_LEVEL_KEY]: relay.logLevel };
          }
          return op(c, signal, keepAlive, extra);
        }, { relay, parent }),
    );

  /**
   * Runs `run` unless the caller cannot use per-user `backend` (yet), or the backend refuses the
   * user's credential meanwhile: then the connect answer of per_user.ts (thrown when an error).
   */
  const gated = async <T>(
    method: RoutedMethod,
    backend: string,
    name: string,
    ctx: ServerContext,
    run: () => Promise<T>,
  ): Promise<{ answer: any } | { value: T }> => {
    const answer = async (retried: boolean) => ({
      answer: await connectRequired(
        env,
        credentials!,
        request.principalId ?? "",
        method,
        backend,
        name,
        retried,
      ),
    });
    if (disconnected?.has(backend) && byName.has(backend)) {
      const retried = method !== "completion/complete" &&
        await isConnectRound(env, ctx, request.principalId ?? "", method, backend, name);
      return await answer(retried);
    }
    try {
      return { value: await run() };
    } catch (error) {
      if (credentials && isNotConnected(error)) return await answer(false);
      throw error;
    }
  };
  /** The connect answer of a request to a backend the caller has not connected. */
  const notConnected = async (
    method: RoutedMethod,
    backend: string,
    name: string,
    ctx: ServerContext,
  ) =>
    ((await gated(method, backend, name, ctx, () => Promise.resolve())) as { answer: any }).answer;
  /** The backend a routed name or gateway URI belongs to, if the caller may see it. */
  const ownerOf = (name: string) => {
    const backend = splitName(name)?.backend ?? unwrapUri(name)?.backend;
    return backend && userAllows(request.tools, name) ? backend : undefined;
  };

  if (caps.tools) {
    server.setRequestHandler("tools/list", async (req, ctx) => {
      const live = { ...request, backends: backends.filter((b) => !disconnected?.has(b.name)) };
      const listed = await listedTools(userEnv, live, ctx.mcpReq.signal);
      const waiting = backends.filter((b) => disconnected?.has(b.name))
        .flatMap((b) => placeholderTools(credentials, b))
        .filter((t) => userAllows(request.tools, t.name));
      const p = page([...listed, ...waiting], req.params?.cursor);
      return { tools: p.items, ...(p.nextCursor ? { nextCursor: p.nextCursor } : {}) };
    });
    server.setRequestHandler("tools/call", async (req, ctx) => {
      if (req.params.name === SEARCH_TOOLS) {
        return await searchTools(userEnv, request, req.params.arguments, ctx.mcpReq.signal);
      }
      // call_tool (tool search) resolves its tool exactly like a direct call.
      const { name, arguments: args } = req.params.name === CALL_TOOL
        ? unwrapCallTool(req.params.arguments)
        : req.params;
      const notFound = `Unknown tool: ${name}`;
      const owner = ownerOf(name);
      if (owner && disconnected?.has(owner)) {
        return await notConnected("tools/call", owner, name, ctx);
      }
      const target = await resolveTool(userEnv, request, name, ctx.mcpReq.signal);
      if (!target) {
        // Refused for the caller's tool globs (answered like an unknown tool): audited denied.
        const excluded = excludedByGlobs(request, name);
        if (excluded) {
          request.operation?.denied(excluded, "tool_globs", {
            method: "tools/call",
            params: { name },
          });
        }
        throw new ProtocolError(ProtocolErrorCode.InvalidParams, notFound);
      }
      const backend = target.backend.name;
      const progressToken = req.params._meta?.progressToken;
      const gate = await gated("tools/call", backend, name, ctx, () =>
        relayed(
          "tools/call",
          backend,
          name,
          target.original,
          ctx,
          notFound,
          (c, signal, keepAlive, extra) =>
            c.client.callTool(
              {
                name: target.original,
                arguments: target.rules.withDefaults(target.original, args),
                ...extra,
              } as any,
              {
                signal,
                timeout: SDK_TIMEOUT_MS,
                allowInputRequired: true,
                onprogress: (p) => {
                  keepAlive();
                  if (progressToken === undefined) return;
                  ctx.mcpReq.notify({
                    method: "notifications/progress",
                    params: { ...p, progressToken },
                  }).catch(() => {});
                },
              },
            ),
        ));
      if ("answer" in gate) return gate.answer;
      const outcome = gate.value;
      if ("reply" in outcome) return outcome.reply;
      const result = outcome.done;
      if (isInputRequiredResult(result)) {
        return await relayInputRequired(env, request, "tools/call", backend, name, result as any);
      }
      return rewriteToolResult(backend, result as CallToolResult) as any;
    });
  }

  if (caps.prompts) {
    server.setRequestHandler("prompts/list", async (req, ctx) => {
      const live = { ...request, backends: backends.filter((b) => !disconnected?.has(b.name)) };
      const prompts = await visiblePrompts(userEnv, live, ctx.mcpReq.signal);
      const p = page(prompts.map((item) => item.item), req.params?.cursor);
      return { prompts: p.items, ...(p.nextCursor ? { nextCursor: p.nextCursor } : {}) };
    });
    server.setRequestHandler("prompts/get", async (req, ctx) => {
      const owner = ownerOf(req.params.name);
      if (owner && disconnected?.has(owner)) {
        return await notConnected("prompts/get", owner, req.params.name, ctx);
      }
      const resolved = await resolvePrompt(userEnv, request, req.params.name, ctx.mcpReq.signal);
      const notFound = `Unknown prompt: ${req.params.name}`;
      if (!resolved) throw new ProtocolError(ProtocolErrorCode.InvalidParams, notFound);
      const target = { backend: resolved.backend.name, name: resolved.original };
      const gate = await gated("prompts/get", target.backend, req.params.name, ctx, () =>
        relayed(
          "prompts/get",
          target.backend,
          req.params.name,
          target.name,
          ctx,
          notFound,
          (c, signal, _keepAlive, extra) =>
            c.client.getPrompt(
              { name: target.name, arguments: req.params.arguments, ...extra } as any,
              { signal, timeout: SDK_TIMEOUT_MS, allowInputRequired: true },
            ),
        ));
      if ("answer" in gate) return gate.answer;
      const outcome = gate.value;
      if ("reply" in outcome) return outcome.reply;
      const result = outcome.done as GetPromptResult;
      if (isInputRequiredResult(result)) {
        return await relayInputRequired(
          env,
          request,
          "prompts/get",
          target.backend,
          req.params.name,
          result as any,
        );
      }
      const messages = result.messages.map((m) => ({
        ...m,
        content: wrapContentUris(target.backend, [m.content])[0],
      }));
      return stripReservedMeta({ ...result, messages }) as any;
    });
  }

  if (caps.resources) {
    server.setRequestHandler(
      "resources/list",
      mergedList(
        "resources/list",
        "resources",
        async (c, signal) =>
          c.capabilities.resources
            ? (await c.client.listResources(undefined, { signal, timeout: SDK_TIMEOUT_MS }))
              .resources
            : [],
        (backend, r) =>
          resourceAllowed(byName.get(backend)!, r.uri)
            ? { ...r, uri: wrapUri(backend, r.uri) }
            : null,
      ),
    );
    server.setRequestHandler(
      "resources/templates/list",
      mergedList(
        "resources/templates/list",
        "resourceTemplates",
        async (c, signal) =>
          c.capabilities.resources
            ? (await c.client.listResourceTemplates(undefined, { signal, timeout: SDK_TIMEOUT_MS }))
              .resourceTemplates
            : [],
        (backend, t) =>
          resourceAllowed(byName.get(backend)!, t.uriTemplate)
            ? { ...t, uriTemplate: wrapUri(backend, t.uriTemplate) }
            : null,
      ),
    );
    server.setRequestHandler("resources/read", async (req, ctx) => {
      const target = unwrapUri(req.params.uri);
      const notFound = `Resource not found: ${req.params.uri}`;
      const owner = target && byName.get(target.backend);
      if (!target || (owner && !resourceAllowed(owner, target.uri))) {
        throw new ProtocolError(ProtocolErrorCode.InvalidParams, notFound);
      }
      const gate = await gated("resources/read", target.backend, req.params.uri, ctx, () =>
        relayed(
          "resources/read",
          target.backend,
          req.params.uri,
          target.uri,
          ctx,
          notFound,
          (c, signal, _keepAlive, extra) =>
            c.client.readResource(
              { uri: target.uri, ...extra } as any,
              { signal, timeout: SDK_TIMEOUT_MS, allowInputRequired: true },
            ),
        ));
      if ("answer" in gate) return gate.answer;
      const outcome = gate.value;
      if ("reply" in outcome) return outcome.reply;
      const result = outcome.done as ReadResourceResult;
      if (isInputRequiredResult(result)) {
        return await relayInputRequired(
          env,
          request,
          "resources/read",
          target.backend,
          req.params.uri,
          result as any,
        );
      }
      const contents = result.contents.map((item) => ({
        ...item,
        uri: wrapUri(target.backend, item.uri),
      }));
      return stripReservedMeta({ ...result, contents }) as any;
    });
  }

  if (caps.completions) {
    server.setRequestHandler("completion/complete", async (req, ctx) => {
      const ref = req.params.ref;
      let backend: string | undefined;
      let upstreamRef: typeof ref | undefined;
      if (ref.type === "ref/prompt") {
        const owner = ownerOf(ref.name);
        if (owner && disconnected?.has(owner)) {
          return await notConnected("completion/complete", owner, ref.name, ctx);
        }
        const t = await resolvePrompt(userEnv, request, ref.name, ctx.mcpReq.signal);
        if (t) [backend, upstreamRef] = [t.backend.name, { ...ref, name: t.original }];
      } else {
        const t = unwrapUri(ref.uri);
        const owner = t && byName.get(t.backend);
        if (t && (!owner || resourceAllowed(owner, t.uri))) {
          [backend, upstreamRef] = [t.backend, { ...ref, uri: t.uri }];
        }
      }
      const notFound = "Unknown completion reference";
      if (!backend || !upstreamRef) {
        throw new ProtocolError(ProtocolErrorCode.InvalidParams, notFound);
      }
      const name = ref.type === "ref/prompt" ? ref.name : ref.uri;
      const gate = await gated("completion/complete", backend, name, ctx, () =>
        routed(
          backend!,
          upstreamRef!.type === "ref/prompt" ? upstreamRef!.name : upstreamRef!.uri,
          ctx,
          notFound,
          (c, signal) =>
            c.client.complete({ ...req.params, ref: upstreamRef! }, {
              signal,
              timeout: SDK_TIMEOUT_MS,
            }),
        ));
      if ("answer" in gate) return gate.answer;
      return stripReservedMeta(gate.value) as any;
    });
  }
}
