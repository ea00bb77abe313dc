/**
 * The MCP requests the bench sends, in both protocol eras (see docs PROTOCOL-NOTES): a modern
 * (2026-07-28) request carries the `_meta` envelope and the `MCP-Protocol-Version`,
 * `Mcp-Method` and `Mcp-Name` headers; a legacy one rides a session opened by `initialize`.
 */

/** The modern protocol revision. */
export const MODERN = "2026-07-28";
/** The legacy protocol revision the bench's legacy client speaks. */
export const LEGACY = "2025-11-25";

const CLIENT_INFO = { name: "gateway-bench", version: "1.0.0" };

/** A ready-to-send request: headers and a JSON body. */
export interface McpRequest {
  headers: Record<string, string>;
  body: string;
}

const BASE_HEADERS = {
  "Content-Type": "application/json",
  "Accept": "application/json, text/event-stream",
};

/** A modern (sessionless) request for `method`, e.g. `tools/call` of tool `name`. */
export function modernRequest(
  method: string,
  params: Record<string, unknown> = {},
  authorization?: string,
): McpRequest {
  const name = typeof params.name === "string" ? params.name : undefined;
  const headers: Record<string, string> = {
    ...BASE_HEADERS,
    "MCP-Protocol-Version": MODERN,
    "Mcp-Method": method,
  };
  if (name) headers["Mcp-Name"] = name;
  if (authorization) headers["Authorization"] = authorization;
  const body = {
    jsonrpc: "2.0",
    id: 1,
    method,
    params: {
      ...params,
      _meta: {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
      },
    },
  };
  return { headers, body: JSON.stringify(body) };
}

/** A legacy request on an open session. */
export function legacyRequest(
  method: string,
  params: Record<string, unknown>,
  session: { id: string | null; authorization?: string },
): McpRequest {
  const headers: Record<string, string> = { ...BASE_HEADERS, "MCP-Protocol-Version": LEGACY };
  if (session.id) headers["Mcp-Session-Id"] = session.id;
  if (session.authorization) headers["Authorization"] = session.authorization;
  return { headers, body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }) };
}

/** Reads a JSON-RPC response that may come as JSON or as an SSE stream. */
export async function readRpc(res: Response): Promise<Record<string, unknown> | null> {
  const text = await res.text();
  if ((res.headers.get("content-type") ?? "").includes("text/event-stream")) {
    for (const line of text.split("\n")) {
      if (!line.startsWith("data:")) continue;
      try {
        const msg = JSON.parse(line.slice(5));
        if ("result" in msg || "error" in msg) return msg;
      } catch {
        // not JSON
      }
    }
    return null;
  }
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** Sends one request and checks that a JSON-RPC result came back; returns a reason when not. */
export async function probe(url: string, req: McpRequest): Promise<string | null> {
  try {
    const res = await fetch(url, { method: "POST", headers: req.headers, body: req.body });
    const msg = await readRpc(res);
    if (res.status !== 200) return `HTTP ${res.status} ${JSON.stringify(msg)?.slice(0, 200)}`;
    if (!msg || !("result" in msg)) {
      return `no JSON-RPC result: ${JSON.stringify(msg)?.slice(0, 200)}`;
    }
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * Opens a legacy session: `initialize`, then `notifications/initialized`.
 * @returns the session id (null when the server is stateless) or throws with the reason.
 */
export async function openLegacySession(
  url: string,
  authorization?: string,
): Promise<{ id: string | null; authorization?: string }> {
  const init = legacyRequest("initialize", {
    protocolVersion: LEGACY,
    capabilities: {},
    clientInfo: CLIENT_INFO,
  }, { id: null, authorization });
  const res = await fetch(url, { method: "POST", headers: init.headers, body: init.body });
  const msg = await readRpc(res);
  if (res.status !== 200 || !msg || !("result" in msg)) {
    throw new Error(`initialize: HTTP ${res.status} ${JSON.stringify(msg)?.slice(0, 200)}`);
  }
  const session = { id: res.headers.get("mcp-session-id"), authorization };
  const note = legacyRequest("notifications/initialized", {}, session);
  const body = JSON.parse(note.body);
  delete body.id;
  const r2 = await fetch(url, {
    method: "POST",
    headers: note.headers,
    body: JSON.stringify(body),
  });
  await r2.body?.cancel();
  return session;
}
