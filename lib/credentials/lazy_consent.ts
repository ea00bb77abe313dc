/**
 * What a caller gets from a per-user backend it cannot use yet (issue 9 "On first use"):
 *
 * - a user who has not connected the backend: for clients that declared URL-mode elicitation
 *   (`capabilities.elicitation.url`, MCP 2025-11-25 Client/Elicitation), the JSON-RPC error
 *   `-32042` (URLElicitationRequiredError) carrying the connect URL
 *   `${PUBLIC_URL}/connect/{backend}`; for other clients, a `tools/call` gets a tool result with
 *   `isError: true` whose text gives that URL, and other methods a JSON-RPC `-32600` error whose
 *   message gives it. Lists show one tool, `{backend}__connect`, answering the same way.
 * - a caller that acts for no user (a static API key, an external JWT): no connect is possible;
 *   lists leave the backend out and requests get a JSON-RPC `-32600` error saying so.
 *
 * The URL carries nothing about the user (MCP Client/Elicitation §Safe URL Handling): the
 * connect page binds the connection to whoever is signed in there.
 */
import type { BackendConfig } from "../config.ts";
import { randomToken } from "../infra/crypto.ts";
import type { Principal } from "../oauth/bearer.ts";
import { OWNER } from "../identity/access_rules.ts";
import type { UserRef } from "../store.ts";

/** MCP 2025-11-25 `URL_ELICITATION_REQUIRED`. */
export const URL_ELICITATION_REQUIRED = -32042;
/** JSON-RPC 2.0 §5.1 invalid request: this caller cannot use the backend as things stand. */
export const CONNECT_REFUSED = -32600;
/** The tool a not-yet-connected backend shows in `tools/list`: `{backend}__connect`. */
export const CONNECT_TOOL = "connect";

/** Whether a backend uses per-user credentials. */
export const isPerUser = (backend: BackendConfig): boolean => backend.auth !== undefined;

/**
 * The user whose connections a principal uses: the token's user (a grant from before team
 * sign-in counts as the owner's), none for API keys and external JWTs.
 */
export function credentialUser(principal: Principal): UserRef | undefined {
  return principal.kind === "token" ? principal.user ?? OWNER : undefined;
}

/** The connect page of a backend. */
export function connectUrl(publicUrl: string, backend: string): string {
  return `${publicUrl}/connect/${backend}`;
}

/** Whether declared client capabilities include URL-mode elicitation. */
export function declaresUrlElicitation(capabilities: unknown): boolean {
  const elicitation = (capabilities as { elicitation?: unknown } | undefined)?.elicitation;
  return typeof elicitation === "object" && elicitation !== null &&
    (elicitation as { url?: unknown }).url !== undefined;
}

/** What the user reads: the backend needs their account, and where to connect it. */
export function connectText(backend: string, url: string): string {
  return `${backend} works with your own ${backend} account, which is not connected to this ` +
    `gateway yet. Open ${url} to connect it, then try again.`;
}

/** What a caller acting for no user reads. */
export function noUserText(backend: string): string {
  return `${backend} works with each user's own ${backend} account; this credential (an API ` +
    "key or an external token) acts for no user. Connect through the gateway's OAuth sign-in " +
    "to use it.";
}

/** The URL-mode elicitation of a connect (MCP 2025-11-25 ElicitRequestURLParams). */
export function connectElicitation(backend: string, url: string) {
  return {
    mode: "url" as const,
    elicitationId: randomToken(16),
    url,
    message: `Connect your ${backend} account to the gateway.`,
  };
}

/** The `tools/call` result of a connect answer (`isError` unless the connect tool was called). */
export function connectToolResult(backend: string, url: string, isError = true) {
  return { content: [{ type: "text" as const, text: connectText(backend, url) }], isError };
}

/** The `{backend}__connect` tool a not-yet-connected backend shows. */
export function connectToolDefinition(backend: BackendConfig, url: string) {
  const what = backend.description ? ` (${backend.description})` : "";
  return {
    name: `${backend.name}__${CONNECT_TOOL}`,
    title: `Connect ${backend.name}`,
    description: `${backend.name}${what} works with your own account. Call this tool to get ` +
      `the link that connects it (${url}); its tools appear here once connected.`,
    inputSchema: { type: "object" as const, properties: {} },
  };
}

/** A JSON-RPC error object. */
export interface RpcError {
  code: number;
  message: string;
  data?: unknown;
}

/** The JSON-RPC error of a connect answer (for clients with URL-mode elicitation, or not). */
export function connectError(backend: string, url: string, urlElicitation: boolean): RpcError {
  return urlElicitation
    ? {
      code: URL_ELICITATION_REQUIRED,
      message: connectText(backend, url),
      data: { elicitations: [connectElicitation(backend, url)] },
    }
    : { code: CONNECT_REFUSED, message: connectText(backend, url) };
}

/**
 * The complete JSON-RPC answer to request `id` of `method` from a caller who has not connected
 * `backend`: -32042 with URL-mode elicitation, else an `isError` tool result for `tools/call`,
 * else a -32600 error.
 */
export function connectAnswer(
  id: unknown,
  method: unknown,
  backend: string,
  url: string,
  urlElicitation: boolean,
): Record<string, unknown> {
  if (!urlElicitation && method === "tools/call") {
    return { jsonrpc: "2.0", id, result: connectToolResult(backend, url) };
  }
  return { jsonrpc: "2.0", id, error: connectError(backend, url, urlElicitation) };
}
