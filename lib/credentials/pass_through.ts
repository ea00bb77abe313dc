/**
 * Per-user backends on the pass-through `/mcp/{backend}` (lib/mcp/proxy.ts): the caller's own
 * credential goes upstream (never the client's token: MCP Authorization §Token Passthrough).
 *
 * The POST body is read (it is small JSON-RPC) so that the gateway can answer in-band when it
 * cannot forward: a caller who has not connected the backend, or whose credential the backend
 * refuses with 401 (then dropped), gets for each JSON-RPC request the connect answer of
 * lazy_consent.ts — `-32042` with URL-mode elicitation when the request shows the client declared
 * it (`initialize`'s capabilities, or the 2026-07-28 `_meta` envelope; a 2026-07-28 request gets
 * the text answers, its revision has no `-32042`), else an `isError` tool result for
 * `tools/call` and `-32600` for the rest; notifications are accepted and dropped. A caller
 * acting for no user (API key, external JWT) gets `-32600` saying why. GET and DELETE, which
 * carry no JSON-RPC request, get HTTP 403 with the same text.
 */
import type { BackendConfig } from "../config.ts";
import type { RouteContext } from "../deps.ts";
import { jsonResponse, jsonRpcErrorResponse, MCP_BODY_LIMIT, readBodyText } from "../infra/http.ts";
import type { Principal } from "../oauth/bearer.ts";
import type { UserRef } from "../store.ts";
import { backendCredential, credentialRejected } from "./credential.ts";
import {
  CONNECT_REFUSED,
  connectAnswer,
  connectText,
  connectUrl,
  credentialUser,
  declaresUrlElicitation,
  noUserText,
} from "./lazy_consent.ts";
import { BackendAuthError } from "./outbound.ts";

/** A request ready to go to a per-user backend. */
export interface PerUserRequest {
  /** The credential header to add. */
  header: [string, string];
  /** The body to forward (as read). */
  body: string | null;
  /** The backend answered 401: drops the credential and answers the connect answer. */
  rejected(): Promise<Response>;
}

type Message = Record<string, any>;

function messagesOf(text: string | null): { messages: Message[]; batch: boolean } | null {
  if (text === null) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return null;
  }
  const isMessage = (m: unknown): m is Message =>
    m !== null && typeof m === "object" && !Array.isArray(m);
  if (Array.isArray(parsed)) {
    return parsed.every(isMessage) ? { messages: parsed, batch: true } : null;
  }
  return isMessage(parsed) ? { messages: [parsed], batch: false } : null;
}

/** Whether the client declared URL-mode elicitation in this message. */
function urlElicitationIn(m: Message): boolean {
  if (m.method === "initialize") return declaresUrlElicitation(m.params?.capabilities);
  return false; // a 2026-07-28 envelope: that revision has no -32042
}

/**
 * The in-band answer to a POST the gateway cannot forward: each request answered by
 * `answer(message)`, notifications and responses accepted.
 */
function answerEach(
  text: string | null,
  answer: (m: Message) => Record<string, unknown>,
  refusal: string,
): Response {
  const parsed = messagesOf(text);
  if (!parsed) return jsonRpcErrorResponse(403, CONNECT_REFUSED, refusal);
  const replies = parsed.messages
    .filter((m) => typeof m.method === "string" && m.id !== undefined && m.id !== null)
    .map(answer);
  if (replies.length === 0) return new Response(null, { status: 202 });
  return jsonResponse(parsed.batch ? replies : replies[0], 200);
}

function connectResponse(
  ctx: RouteContext,
  backend: BackendConfig,
  text: string | null,
): Response {
  const url = connectUrl(ctx.settings.publicUrl, backend.name);
  return answerEach(
    text,
    (m) => connectAnswer(m.id, m.method, backend.name, url, urlElicitationIn(m)),
    connectText(backend.name, url),
  );
}

/**
 * Prepares a request to per-user `backend` for `principal`: its credential, or the response to
 * send instead (not connected, no user, authorization server down).
 */
export async function preparePerUserRequest(
  req: Request,
  ctx: RouteContext,
  backend: BackendConfig,
  principal: Principal,
): Promise<PerUserRequest | Response> {
  const text = req.method === "POST" ? await readBodyText(req, MCP_BODY_LIMIT) : null;
  const user: UserRef | undefined = credentialUser(principal);
  if (!user) {
    const refusal = noUserText(backend.name);
    return answerEach(
      text,
      (m) => ({ jsonrpc: "2.0", id: m.id, error: { code: CONNECT_REFUSED, message: refusal } }),
      refusal,
    );
  }
  let credential;
  try {
    credential = await backendCredential(ctx, user, backend);
  } catch (e) {
    if (!(e instanceof BackendAuthError)) throw e;
    ctx.logFields.upstream = "auth_unavailable";
    return jsonRpcErrorResponse(502, -32603, `Backend ${backend.name}: ${e.message}`);
  }
  if (!credential) {
    ctx.logFields.connect = "required";
    return connectResponse(ctx, backend, text);
  }
  return {
    header: [credential.header, credential.value],
    body: text,
    async rejected() {
      await credentialRejected(ctx, user, backend, credential);
      ctx.logFields.connect = "dropped";
      return connectResponse(ctx, backend, text);
    },
  };
}
