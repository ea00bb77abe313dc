/**
 * Per-user backends on the aggregated `/mcp` (issue 9 "On first use"): what a request routed to
 * a backend the caller cannot use yet gets, in each protocol era.
 *
 * - Clients that declared URL-mode elicitation: on the 2025 era the JSON-RPC error `-32042`
 *   (URLElicitationRequiredError, MCP 2025-11-25 Client/Elicitation); on the 2026-07-28 era,
 *   which has no `-32042`, its replacement: an `input_required` result embedding the same URL
 *   elicitation (MCP 2026-07-28 Multi Round-Trip Requests), with the gateway's sealed
 *   `requestState` marked as a connect round. The client's retry runs the call when the user has
 *   connected meanwhile, else gets the tool result below (never another round: no loop).
 * - Other clients: `tools/call` gets a tool result with `isError: true` giving the connect URL
 *   (not an error for `{backend}__connect` itself); other methods a JSON-RPC `-32600` error.
 * - Callers acting for no user (API keys, external JWTs): `-32600` saying why.
 *
 * {@linkcode requestCredentials} works out, once per request, which per-user backends the caller
 * cannot use (one KV read).
 */
import {
  inputRequired,
  ProtocolError,
  type ServerContext,
  UrlElicitationRequiredError,
} from "@modelcontextprotocol/server";
import type { BackendConfig } from "../../config.ts";
import type { Deps } from "../../deps.ts";
import { connectedBackends } from "../../credentials/connections.ts";
import {
  CONNECT_REFUSED,
  CONNECT_TOOL,
  connectElicitation,
  connectText,
  connectToolDefinition,
  connectToolResult,
  connectUrl,
  declaresUrlElicitation,
  noUserText,
} from "../../credentials/lazy_consent.ts";
import type { UserRef } from "../../store.ts";
import { openRequestStateClaims, sealRequestState } from "./request_state.ts";

/** What a request knows about its caller's per-user backends. */
export interface RequestCredentials {
  /** The user whose connections are used; absent for callers acting for no user. */
  user?: UserRef;
  /** Per-user backends (among those served) the caller cannot use yet. */
  disconnected: ReadonlySet<string>;
  /** The client declared URL-mode elicitation. */
  urlElicitation: boolean;
  era: "legacy" | "modern";
  publicUrl: string;
}

/**
 * The per-user state of a request over `backends`, or `undefined` when none of them is a
 * per-user backend (nothing to check).
 */
export async function requestCredentials(
  deps: Pick<Deps, "kv" | "settings">,
  backends: readonly BackendConfig[],
  user: UserRef | undefined,
  era: "legacy" | "modern",
  capabilities: unknown,
): Promise<RequestCredentials | undefined> {
  const perUser = backends.filter((b) => b.auth !== undefined).map((b) => b.name);
  if (perUser.length === 0) return undefined;
  const connected = user ? await connectedBackends(deps, user.sub, perUser) : new Set<string>();
  return {
    ...(user ? { user } : {}),
    disconnected: new Set(perUser.filter((b) => !connected.has(b))),
    urlElicitation: declaresUrlElicitation(capabilities),
    era,
    publicUrl: deps.settings.publicUrl,
  };
}

/** The tools a backend shows in `tools/list` while the caller cannot use it. */
export function placeholderTools(
  credentials: RequestCredentials | undefined,
  backend: BackendConfig,
): ReturnType<typeof connectToolDefinition>[] {
  if (!credentials?.user) return [];
  return [connectToolDefinition(backend, connectUrl(credentials.publicUrl, backend.name))];
}

/** A routed method. */
export type RoutedMethod = "tools/call" | "prompts/get" | "resources/read" | "completion/complete";

/**
 * The answer to a request routed to `backend` that the caller cannot use yet (see the module
 * doc): returns a result, or throws the JSON-RPC error.
 */
export async function connectRequired(
  env: Pick<Deps, "kv" | "now">,
  credentials: RequestCredentials,
  principalId: string,
  method: RoutedMethod,
  backend: string,
  name: string,
  retried = false,
): Promise<any> {
  if (!credentials.user) throw new ProtocolError(CONNECT_REFUSED, noUserText(backend));
  const url = connectUrl(credentials.publicUrl, backend);
  const isConnectTool = method === "tools/call" && name === `${backend}__${CONNECT_TOOL}`;
  if (credentials.urlElicitation && !retried) {
    const elicitation = connectElicitation(backend, url);
    if (credentials.era === "legacy") {
      throw new UrlElicitationRequiredError([elicitation], connectText(backend, url));
    }
    if (method !== "completion/complete") {
      const requestState = await sealRequestState(env, {
        principal: principalId,
        backend,
        method,
        name,
        connect: true,
      });
      return inputRequired({
        inputRequests: { connect: { method: "elicitation/create", params: elicitation } as any },
        requestState,
      });
    }
  }
  if (method === "tools/call") return connectToolResult(backend, url, !isConnectTool);
  throw new ProtocolError(CONNECT_REFUSED, connectText(backend, url));
}

/**
 * Whether a 2026-07-28 request retries a connect round: its `requestState` is the gateway's own,
 * sealed by {@linkcode connectRequired} for this principal, backend, method and name.
 */
export async function isConnectRound(
  env: Pick<Deps, "kv" | "now">,
  ctx: ServerContext,
  principal: string,
  method: Exclude<RoutedMethod, "completion/complete">,
  backend: string,
  name: string,
): Promise<boolean> {
  const state = ctx.mcpReq.requestState<unknown>();
  if (state === undefined) return false;
  try {
    const claims = await openRequestStateClaims(env, state, { principal, backend, method, name });
    return claims.connect === true;
  } catch {
    return false; // not ours, or stale: the relay answers it
  }
}
