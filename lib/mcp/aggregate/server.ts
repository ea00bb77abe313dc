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
 * - `input_required` (MCP 2026-07-28 Basic/Patterns/Multi Round-Trip Requests) from a modern
 *   backend on `tools/call`, `prompts/get`, `resources/read` is handed to the client with the
 *   gateway's sealed `requestState` (request_state.ts); the retry's `inputResponses` and the
 *   backend's unsealed state go back to the same backend. The SDK checks the embedded requests
 *   against the client's declared capabilities (-32021) and, for a 2025-era client on the
 *   per-request legacy leg, answers with a clear error (no server-to-client requests there).
 * - per-user backends (`auth`, issue 9) are reached with the caller's own client (pool.ts
 *   `forUser`); one the caller cannot use yet lists only `{backend}__connect`, and a routed
 *   request to it gets the connect answer of per_user.ts.
 * - `initialize` / `server/discover` are answered by the SDK from this server's info:
 *   `serverInfo.name` = `serverName`, capabilities = union of the backends, instructions of
 *   each backend under a `[backend]` heading.
 */
import {
  type CallToolResult,
  inputRequired,
  isInputRequiredResult,
  ProtocolError,
  ProtocolErrorCode,
  Server,
  type ServerCapabilities,
  type ServerContext,
} from "@modelcontextprotocol/server";
import type { BackendConfig } from "../../config.ts";
import { authFailure, isNotConnected } from "../../credentials/credential.ts";
import type { Logger } from "../../infra/log.ts";
import { fanOut, SDK_TIMEOUT_MS, withDeadline } from "./fanout.ts";
import { exposedName, splitName } from "./naming.ts";
import { cancelKey, type CancelRegistry } from "./cancel.ts";
import {
  connectRequired,
  placeholderTools,
  type RequestCredentials,
  type RoutedMethod,
} from "./per_user.ts";
import type { BackendConnection, BackendPool } from "./pool.ts";
import { openRequestStateClaims, sealRequestState } from "./request_state.ts";
import { unwrapUri, wrapContentUris, wrapUri } from "./uri.ts";

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
  /** Per-user backends among `backends`: the caller's user and what they cannot use yet. */
  credentials?: RequestCredentials;
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
}

// For requests other than the handshakes the capabilities are never shown to the client; they
// only enable every handler (and every listen filter: a kind no backend announces never fires).
const FULL_CAPABILITIES: ServerCapabilities = {
  tools: { listChanged: true },
  prompts: { listChanged: true },
  resources: { listChanged: true },
  completions: {},
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
  return server;
}

/**
 * Capabilities true for the union of the backends: a list kind if any backend has it,
 * `listChanged` if any backend announces changes of it (they are relayed, see changes.ts).
 * Resource `subscribe` and `logging` are not relayed, so never advertised.
 */
export function unionCapabilities(connections: readonly BackendConnection[]): ServerCapabilities {
  const caps: ServerCapabilities = {};
  for (const c of connections) {
    for (const kind of ["tools", "prompts", "resources"] as const) {
      if (!c.capabilities[kind]) continue;
      caps[kind] ??= {};
      if (c.capabilities[kind]?.listChanged === true) caps[kind].listChanged = true;
    }
    if (c.capabilities.completions) caps.completions = {};
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
    if (error.code === ProtocolErrorCode.MissingRequiredClientCapability) {
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

/** A routed method whose result may be `input_required` (MCP 2026-07-28 MRTR). */
type MrtrMethod = "tools/call" | "prompts/get" | "resources/read";

/**
 * The multi-round-trip fields to send the backend for this round: the client's
 * `inputResponses` and the backend's own `requestState` unsealed from the gateway's (bound to
 * principal, backend, method and name; see request_state.ts). Empty on a first round.
 */
async function retryFields(
  env: AggregateEnv,
  request: AggregateRequest,
  ctx: ServerContext,
  method: MrtrMethod,
  backend: string,
  name: string,
): Promise<{ inputResponses?: Record<string, unknown>; requestState?: string; connect?: true }> {
  const state = ctx.mcpReq.requestState<unknown>();
  const responses = ctx.mcpReq.inputResponses;
  if (state === undefined) return responses ? { inputResponses: responses } : {};
  const claims = await openRequestStateClaims(env, state, {
    principal: request.principalId ?? "",
    backend,
    method,
    name,
  });
  // The retry of a connect round (per_user.ts): nothing of it goes to the backend.
  if (claims.connect) return { connect: true };
  const backendState = claims.backendState;
  return {
    ...(responses ? { inputResponses: responses } : {}),
    ...(backendState !== undefined ? { requestState: backendState } : {}),
  };
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
  const pool = env.pool.forUser(request.credentials?.user);
  const disconnected = request.credentials?.disconnected;
  const warned = new Set<string>();
  const rename = (backend: string, name: string, kind: string): string | null => {
    const exposed = exposedName(backend, name);
    if (exposed === null && !warned.has(`${kind}:${backend}:${name}`)) {
      warned.add(`${kind}:${backend}:${name}`);
      env.log({
        level: "warn",
        event: "name_left_out",
        kind,
        backend,
        name: name.slice(0, 100),
        reason: "exposed name would not match ^[a-zA-Z0-9_-]{1,64}$",
      });
    }
    return exposed;
  };

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
    placeholders: (backend: BackendConfig) => U[] = () => [],
  ) =>
  async (req: { params?: { cursor?: string } }, ctx: ServerContext) => {
    const live = backends.filter((b) => !disconnected?.has(b.name));
    const lists = await fanOut(pool, live, env.log, method, list, ctx.mcpReq.signal);
    const byBackend = new Map(lists.map((l) => [l.backend, l.value]));
    const items = backends.flatMap((b) =>
      disconnected?.has(b.name)
        ? placeholders(b)
        : (byBackend.get(b.name) ?? []).flatMap((item) => {
          const shown = present(b.name, item);
          return shown === null ? [] : [shown];
        })
    );
    const p = page(items, req.params?.cursor);
    return { [key]: p.items, ...(p.nextCursor ? { nextCursor: p.nextCursor } : {}) } as any;
  };

  /** Runs `op` on the backend that owns a routed request. */
  const routed = async <T>(
    backendName: string,
    ctx: ServerContext,
    notFound: string,
    op: (c: BackendConnection, signal: AbortSignal, keepAlive: () => void) => Promise<T>,
  ): Promise<T> => {
    const backend = byName.get(backendName);
    if (!backend) throw new ProtocolError(ProtocolErrorCode.InvalidParams, notFound);
    let connection: BackendConnection | undefined;
    const tracked = request.sessionHash === undefined
      ? undefined
      : env.cancels.track(cancelKey(request.sessionHash, ctx.mcpReq.id));
    const parent = tracked
      ? AbortSignal.any([ctx.mcpReq.signal, tracked.signal])
      : ctx.mcpReq.signal;
    try {
      return await withDeadline(backend, parent, async (signal, keepAlive) => {
        connection = await pool.get(backend.name);
        return await op(connection, signal, keepAlive);
      });
    } catch (error) {
      if (parent.aborted) {
        // Cancelled by the client: the SDK already told the backend; the connection is fine.
        throw new ProtocolError(ProtocolErrorCode.InternalError, "Request cancelled");
      }
      relayError(env, connection, backend.name, error);
    } finally {
      tracked?.done();
    }
  };

  /**
   * Runs `call` unless the caller cannot use per-user `backend` (yet), or the backend refuses the
   * user's credential meanwhile: then the connect answer (per_user.ts; thrown when an error).
   * `connectRound`: this request retries a connect round.
   */
  const reach = async <T>(
    method: RoutedMethod,
    backend: string,
    name: string,
    connectRound: boolean | undefined,
    call: () => Promise<T>,
  ): Promise<{ answer: any } | { result: T }> => {
    const credentials = request.credentials;
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
    if (credentials?.disconnected.has(backend) && byName.has(backend)) {
      return await answer(connectRound === true);
    }
    try {
      return { result: await call() };
    } catch (error) {
      if (credentials && isNotConnected(error)) return await answer(false);
      throw error;
    }
  };

  if (caps.tools) {
    server.setRequestHandler(
      "tools/list",
      mergedList(
        "tools/list",
        "tools",
        async (c, signal) =>
          c.capabilities.tools
            ? (await c.client.listTools(undefined, { signal, timeout: SDK_TIMEOUT_MS })).tools
            : [],
        (backend, t) => {
          const name = rename(backend, t.name, "tool");
          return name ? { ...t, name } : null;
        },
        (backend) => placeholderTools(request.credentials, backend),
      ),
    );
    server.setRequestHandler("tools/call", async (req, ctx) => {
      const target = splitName(req.params.name);
      const notFound = `Unknown tool: ${req.params.name}`;
      if (!target) throw new ProtocolError(ProtocolErrorCode.InvalidParams, notFound);
      const progressToken = req.params._meta?.progressToken;
      const { connect: connectRound, ...retry } = await retryFields(
        env,
        request,
        ctx,
        "tools/call",
        target.backend,
        req.params.name,
      );
      const reached = await reach(
        "tools/call",
        target.backend,
        req.params.name,
        connectRound,
        () =>
          routed(
            target.backend,
            ctx,
            notFound,
            (c, signal, keepAlive) =>
              c.client.callTool(
                { name: target.name, arguments: req.params.arguments, ...retry } as any,
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
          ),
      );
      if ("answer" in reached) return reached.answer;
      const result = reached.result;
      if (isInputRequiredResult(result)) {
        return await relayInputRequired(
          env,
          request,
          "tools/call",
          target.backend,
          req.params.name,
          result as any,
        );
      }
      return rewriteToolResult(target.backend, result as CallToolResult) as any;
    });
  }

  if (caps.prompts) {
    server.setRequestHandler(
      "prompts/list",
      mergedList(
        "prompts/list",
        "prompts",
        async (c, signal) =>
          c.capabilities.prompts
            ? (await c.client.listPrompts(undefined, { signal, timeout: SDK_TIMEOUT_MS })).prompts
            : [],
        (backend, p) => {
          const name = rename(backend, p.name, "prompt");
          return name ? { ...p, name } : null;
        },
      ),
    );
    server.setRequestHandler("prompts/get", async (req, ctx) => {
      const target = splitName(req.params.name);
      const notFound = `Unknown prompt: ${req.params.name}`;
      if (!target) throw new ProtocolError(ProtocolErrorCode.InvalidParams, notFound);
      const { connect: connectRound, ...retry } = await retryFields(
        env,
        request,
        ctx,
        "prompts/get",
        target.backend,
        req.params.name,
      );
      const reached = await reach(
        "prompts/get",
        target.backend,
        req.params.name,
        connectRound,
        () =>
          routed(
            target.backend,
            ctx,
            notFound,
            (c, signal) =>
              c.client.getPrompt(
                { name: target.name, arguments: req.params.arguments, ...retry } as any,
                { signal, timeout: SDK_TIMEOUT_MS, allowInputRequired: true },
              ),
          ),
      );
      if ("answer" in reached) return reached.answer;
      const result = reached.result;
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
        (backend, r) => ({ ...r, uri: wrapUri(backend, r.uri) }),
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
        (backend, t) => ({ ...t, uriTemplate: wrapUri(backend, t.uriTemplate) }),
      ),
    );
    server.setRequestHandler("resources/read", async (req, ctx) => {
      const target = unwrapUri(req.params.uri);
      const notFound = `Resource not found: ${req.params.uri}`;
      if (!target) throw new ProtocolError(ProtocolErrorCode.InvalidParams, notFound);
      const { connect: connectRound, ...retry } = await retryFields(
        env,
        request,
        ctx,
        "resources/read",
        target.backend,
        req.params.uri,
      );
      const reached = await reach(
        "resources/read",
        target.backend,
        req.params.uri,
        connectRound,
        () =>
          routed(
            target.backend,
            ctx,
            notFound,
            (c, signal) =>
              c.client.readResource(
                { uri: target.uri, ...retry } as any,
                { signal, timeout: SDK_TIMEOUT_MS, allowInputRequired: true },
              ),
          ),
      );
      if ("answer" in reached) return reached.answer;
      const result = reached.result;
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
        const t = splitName(ref.name);
        if (t) [backend, upstreamRef] = [t.backend, { ...ref, name: t.name }];
      } else {
        const t = unwrapUri(ref.uri);
        if (t) [backend, upstreamRef] = [t.backend, { ...ref, uri: t.uri }];
      }
      const notFound = "Unknown completion reference";
      if (!backend || !upstreamRef) {
        throw new ProtocolError(ProtocolErrorCode.InvalidParams, notFound);
      }
      const name = ref.type === "ref/prompt" ? ref.name : ref.uri;
      const reached = await reach("completion/complete", backend, name, false, () =>
        routed(
          backend!,
          ctx,
          notFound,
          (c, signal) =>
            c.client.complete({ ...req.params, ref: upstreamRef! }, {
              signal,
              timeout: SDK_TIMEOUT_MS,
            }),
        ));
      if ("answer" in reached) return reached.answer;
      return stripReservedMeta(reached.result) as any;
    });
  }
}
