/**
 * Loopback servers for the benchmark, each run as its own subprocess so that load generator,
 * proxy and backend never share an event loop:
 *
 * - `backend [delayMs]`: a minimal MCP backend speaking JSON-RPC over Streamable HTTP for both
 *   protocol eras (initialize / server/discover, tools/list, tools/call). Every request with an
 *   id is answered after `delayMs` (0 = at once). Any path is served, so one process stands for
 *   many backends (`/b1`, `/b2`, …).
 * - `backend2025 [sessions]`: a minimal 2025-era (2025-11-25) JSON-RPC backend: `initialize`,
 *   `tools/list`, `tools/call`, no `server/discover` and no `_meta` envelope. With `sessions`
 *   its `initialize` answer carries an `Mcp-Session-Id`, and a request naming an unknown session
 *   gets 404 (MCP 2025-11-25 Transports §Session Management). A request without the header is
 *   served (the floor forwards no session header, and the floor must reach the same
 *   backend).
 * - `floor <targetUrl>`: EXACTLY the floor of issue 14: `Deno.serve` + `fetch`, forwarding only
 *   `content-type` and `accept`, answering with the upstream's status and `content-type`.
 * - `bare <targetUrl>`: the older reference proxy: copies every header both ways (minus
 *   hop-by-hop) and passes the request's abort signal; slower than the floor.
 *
 * Each prints one line `{"port": n}` on stdout once it listens on 127.0.0.1.
 */

const SUPPORTED = ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"];
const MODERN_VERSION_KEY = "io.modelcontextprotocol/protocolVersion";

/** The one tool every bench backend offers. */
export const BENCH_TOOL = {
  name: "echo",
  description: "Answers at once (or after the backend's delay).",
  inputSchema: { type: "object", properties: { text: { type: "string" } } },
};

/**
 * The tools of a bench backend path: `…/t<n>` offers `n` tools shaped like real ones (a name, a
 * sentence, a few parameters), any other path the one {@linkcode BENCH_TOOL}.
 */
function benchTools(path: string): unknown[] {
  const n = Number(/\/t(\d+)$/.exec(path)?.[1] ?? "0");
  if (n <= 1) return [BENCH_TOOL];
  return Array.from({ length: Math.min(n, 1000) }, (_, i) => ({
    name: `tool_${i}`,
    description: `Tool number ${i} of this backend: does one thing to the items of a project.`,
    inputSchema: {
      type: "object",
      properties: {
        project: { type: "string", description: "The project." },
        item: { type: "string", description: "The item." },
        limit: { type: "number", description: "At most this many results." },
      },
      required: ["project"],
    },
  }));
}

interface RpcRequest {
  jsonrpc: "2.0";
  id?: string | number | null;
  method: string;
  params?: Record<string, unknown> & { _meta?: Record<string, unknown> };
}

function rpcResult(msg: RpcRequest, path: string): Record<string, unknown> | null {
  const meta = msg.params?._meta;
  const modern = meta !== undefined && MODERN_VERSION_KEY in meta;
  const serverInfo = { name: `bench-backend${path.replaceAll("/", "-")}`, version: "1.0.0" };
  const extra = modern
    ? { resultType: "complete", _meta: { "io.modelcontextprotocol/serverInfo": serverInfo } }
    : {};
  switch (msg.method) {
    case "initialize": {
      const asked = String(msg.params?.protocolVersion ?? "");
      return {
        protocolVersion: SUPPORTED.includes(asked) && asked !== "2026-07-28" ? asked : "2025-11-25",
        capabilities: { tools: {} },
        serverInfo,
      };
    }
    case "server/discover":
      return {
        supportedVersions: SUPPORTED,
        capabilities: { tools: {} },
        serverInfo,
        ttlMs: 60_000,
        cacheScope: "public",
        ...extra,
      };
    case "ping":
      return {};
    case "tools/list":
      // ttlMs 0: clients must not cache the list (the gateway's fan-out section runs with its
      // own list cache off, so fan-out is measured).
      return {
        tools: benchTools(path),
        ...(modern ? { ttlMs: 0, cacheScope: "private" } : {}),
        ...extra,
      };
    case "tools/call":
      return { content: [{ type: "text", text: "ok" }], isError: false, ...extra };
    default:
      return null;
  }
}

/** Handler of the minimal MCP backend. */
export function backendHandler(delayMs: number): (req: Request) => Promise<Response> {
  const json = { "content-type": "application/json" };
  return async (req) => {
    if (req.method !== "POST") {
      return new Response(null, { status: 405, headers: { allow: "POST" } });
    }
    let msg: RpcRequest;
    try {
      msg = await req.json();
    } catch {
      return new Response(
        JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "parse" } }),
        { status: 400, headers: json },
      );
    }
    if (msg.id === undefined) return new Response(null, { status: 202 });
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    const result = rpcResult(msg, new URL(req.url).pathname);
    const body = result
      ? { jsonrpc: "2.0", id: msg.id, result }
      : { jsonrpc: "2.0", id: msg.id, error: { code: -32601, message: "Method not found" } };
    return new Response(JSON.stringify(body), { status: result ? 200 : 404, headers: json });
  };
}

/**
 * Handler of a minimal 2025-era backend (see the module doc): sessionless, or issuing
 * `Mcp-Session-Id` on `initialize` when `sessions` is set.
 */
export function backend2025Handler(sessions: boolean): (req: Request) => Promise<Response> {
  const live = new Set<string>();
  const json = { "content-type": "application/json" };
  const serverInfo = { name: `bench-backend-2025${sessions ? "-sessions" : ""}`, version: "1" };
  const answer = (id: unknown, result: unknown, headers: Record<string, string> = json) =>
    new Response(JSON.stringify({ jsonrpc: "2.0", id, result }), { status: 200, headers });
  return async (req) => {
    if (req.method === "DELETE" && sessions) {
      live.delete(req.headers.get("mcp-session-id") ?? "");
      return new Response(null, { status: 204 });
    }
    if (req.method !== "POST") {
      return new Response(null, { status: 405, headers: { allow: "POST" } });
    }
    const sid = req.headers.get("mcp-session-id");
    if (sessions && sid !== null && !live.has(sid)) {
      return new Response(
        JSON.stringify({
          jsonrpc: "2.0",
          id: null,
          error: { code: -32001, message: "unknown session" },
        }),
        { status: 404, headers: json },
      );
    }
    let msg: RpcRequest;
    try {
      msg = await req.json();
    } catch {
      return new Response(
        JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "parse" } }),
        { status: 400, headers: json },
      );
    }
    if (msg.id === undefined) return new Response(null, { status: 202 });
    switch (msg.method) {
      case "initialize": {
        const asked = String(msg.params?.protocolVersion ?? "");
        const version = ["2025-11-25", "2025-06-18", "2025-03-26"].includes(asked)
          ? asked
          : "2025-11-25";
        const result = { protocolVersion: version, capabilities: { tools: {} }, serverInfo };
        if (!sessions) return answer(msg.id, result);
        const id = crypto.randomUUID();
        if (live.size >= 10_000) live.clear();
        live.add(id);
        return answer(msg.id, result, { ...json, "mcp-session-id": id });
      }
      case "ping":
        return answer(msg.id, {});
      case "tools/list":
        return answer(msg.id, { tools: [BENCH_TOOL] });
      case "tools/call":
        return answer(msg.id, { content: [{ type: "text", text: "ok" }], isError: false });
      default:
        return new Response(
          JSON.stringify({
            jsonrpc: "2.0",
            id: msg.id,
            error: { code: -32601, message: "Method not found" },
          }),
          { status: 200, headers: json },
        );
    }
  };
}

/** The floor of issue 14, verbatim: the cheapest useful Deno proxy in front of `upstream`. */
export function floorHandler(upstream: string): (req: Request) => Promise<Response> {
  return async (req) => {
    const r = await fetch(upstream, {
      method: req.method,
      headers: {
        "content-type": "application/json",
        accept: req.headers.get("accept") ?? "application/json",
      },
      body: req.body,
    });
    return new Response(r.body, {
      status: r.status,
      headers: { "content-type": r.headers.get("content-type") ?? "application/json" },
    });
  };
}

const HOP_BY_HOP = new Set([
  "host",
  "connection",
  "keep-alive",
  "transfer-encoding",
  "content-length",
  "authorization",
  "upgrade",
]);

/** Handler of the bare pass-through: copy headers, stream the body both ways, no auth. */
export function bareProxyHandler(target: string): (req: Request) => Promise<Response> {
  return async (req) => {
    const headers = new Headers();
    for (const [k, v] of req.headers) if (!HOP_BY_HOP.has(k)) headers.set(k, v);
    const upstream = await fetch(target, {
      method: req.method,
      headers,
      body: req.body,
      signal: req.signal,
    });
    const out = new Headers();
    for (const [k, v] of upstream.headers) if (!HOP_BY_HOP.has(k)) out.set(k, v);
    return new Response(upstream.body, { status: upstream.status, headers: out });
  };
}

if (import.meta.main) {
  const [kind, arg] = Deno.args;
  let handler: (req: Request) => Promise<Response>;
  if (kind === "backend") handler = backendHandler(Number(arg ?? "0"));
  else if (kind === "backend2025") handler = backend2025Handler(arg === "sessions");
  else if (kind === "floor" && arg) handler = floorHandler(arg);
  else if (kind === "bare" && arg) handler = bareProxyHandler(arg);
  else {
    console.error(
      "usage: servers.ts backend [delayMs] | backend2025 [sessions] | floor <url> | bare <url>",
    );
    Deno.exit(2);
  }
  Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: ({ port }) => console.log(JSON.stringify({ port })),
    onError: () => new Response(null, { status: 502 }),
  }, handler);
}
