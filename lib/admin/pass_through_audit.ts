/**
 * Audit and telemetry of the pass-through `/mcp/{backend}` (lib/mcp/proxy.ts), whose bodies are
 * streamed, not read.
 *
 * Today the operation is what the request's headers say: MCP 2026-07-28 clients send
 * `Mcp-Method` and `Mcp-Name` on every POST, so a `tools/call`, `resources/read`, `prompts/get` or
 * `completion/complete` of a modern client is audited with its tool (or URI) and gets its SERVER
 * and CLIENT spans; the outcome is the HTTP status of the answer (`ok` below 300; `timeout` and
 * `unavailable` when the backend does not answer). A 2025-era client's POST names its method only
 * in its body and is not audited yet.
 *
 * SEAM (pass-through inspection): the tool-surface branch's JSON-RPC inspection module
 * (`lib/mcp/jsonrpc_inspect.ts`: `parseJsonRpcBody`, `transformMessages` with a `MessageHook`) is
 * the way to the full audit: {@linkcode passThroughCall} would read a 2025-era POST's body with
 * `parseJsonRpcBody` (one call per request message) and the answer would go through
 * `transformMessages` whose hook ends each call from its JSON-RPC response
 * (`BackendCall.endWithMessage`, matched by `idKey`), instead of by HTTP status. It costs reading
 * every POST body whole and a transform of every answer on the pass-through's hot path, which the
 * benchmarks keep streamed (docs/BENCHMARKS.md): left as a decision, not done by default.
 */
import type { FetchOutcome } from "../mcp/proxy.ts";
import { type BackendCall, type McpOperation, ROUTED_METHODS } from "./mcp_operation.ts";

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

/**
 * The backend call a pass-through POST makes, as far as its headers tell (see the module doc);
 * describes the operation (its SERVER span) from them. `undefined` for other requests.
 */
export function passThroughCall(
  operation: McpOperation | undefined,
  req: Request,
  backend: string,
): BackendCall | undefined {
  if (!operation || req.method !== "POST") return undefined;
  const method = req.headers.get("mcp-method");
  if (!method) return undefined;
  const name = decodeMcpHeader(req.headers.get("mcp-name"));
  const params = name === undefined ? {} : method === "resources/read" ? { uri: name } : { name };
  operation.describe({ jsonrpc: "2.0", method, params }, req.headers);
  return ROUTED_METHODS.has(method)
    ? operation.backendCall(backend, method, name, { byStatus: true })
    : undefined;
}

/**
 * Runs the pass-through's backend request inside `call` (its CLIENT span active, so the HTTP
 * request carries `traceparent`) and ends `call` when no answer came; an answer's status ends it
 * in `McpOperation.finish`.
 */
export async function passThroughFetch(
  call: BackendCall | undefined,
  fetchBackend: () => Promise<FetchOutcome>,
): Promise<FetchOutcome> {
  if (!call) return await fetchBackend();
  const outcome = await call.run(fetchBackend);
  if (!outcome.ok) call.end(outcome.reason === "timeout" ? "timeout" : "unavailable");
  return outcome;
}
