/**
 * Fixtures of the aggregated `/mcp` suites: real MCP backends on `127.0.0.1:<port 0>` (a
 * sessionful legacy one built with the v1 SDK, a modern-only one built with the v2 SDK), a dead
 * backend URL, and access tokens minted straight into KV (no OAuth round trip).
 */
import { McpServer as V1McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { WebStandardStreamableHTTPServerTransport as V1Transport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import {
  createMcpHandler,
  McpServer as V2McpServer,
  Server as V2Server,
} from "@modelcontextprotocol/server";
import { childEnv } from "./_process.ts";
import type { Deps } from "../lib/deps.ts";
import { aggregateResource } from "../lib/oauth/resources.ts";
import { mintTokens, putGrant } from "../lib/oauth/tokens.ts";

/** A running backend. */
export interface TestBackend {
  url: string;
  /**
   * Requests the backend has received (method + Authorization header, and the JSON-RPC body of a
   * legacy backend's POSTs), for assertions.
   */
  seen: { method: string; authorization: string | null; rpc?: any }[];
  close: () => Promise<void>;
}

function serve(handler: (req: Request) => Promise<Response>): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler);
}

/**
 * A legacy (2025-11-25) backend: v1 SDK `McpServer` behind a sessionful
 * `WebStandardStreamableHTTPServerTransport`, one server instance per session.
 */
export function legacyBackend(
  name: string,
  setup: (server: V1McpServer) => void,
  options: {
    instructions?: string;
    capabilities?: Record<string, unknown>;
    /** Answer POSTs with JSON instead of an SSE stream (the transport's `enableJsonResponse`). */
    jsonResponse?: boolean;
  } = {},
): TestBackend {
  const sessions = new Map<string, { transport: V1Transport; server: V1McpServer }>();
  const seen: TestBackend["seen"] = [];
  const http = serve(async (req) => {
    const rpc = req.method === "POST" ? await req.clone().json().catch(() => undefined) : undefined;
    seen.push({ method: req.method, authorization: req.headers.get("authorization"), rpc });
    const sid = req.headers.get("mcp-session-id");
    if (sid) {
      const s = sessions.get(sid);
      if (!s) return new Response("unknown session", { status: 404 });
      return await s.transport.handleRequest(req);
    }
    if (req.method !== "POST") return new Response("no session", { status: 400 });
    const server = new V1McpServer({ name, version: "1.0.0" }, {
      instructions: options.instructions,
      ...(options.capabilities ? { capabilities: options.capabilities } : {}),
    });
    setup(server);
    const transport: V1Transport = new V1Transport({
      sessionIdGenerator: () => crypto.randomUUID(),
      onsessioninitialized: (id: string) => void sessions.set(id, { transport, server }),
      enableJsonResponse: options.jsonResponse ?? false,
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await server.connect(transport);
    return await transport.handleRequest(req);
  });
  return {
    url: `http://127.0.0.1:${http.addr.port}/mcp`,
    seen,
    close: async () => {
      for (const s of [...sessions.values()]) await s.server.close();
      sessions.clear();
      await http.shutdown();
    },
  };
}

/** A modern-only (2026-07-28) backend: v2 SDK `createMcpHandler` with `legacy: "reject"`. */
export function modernBackend(
  name: string,
  setup: (server: V2McpServer) => void,
  options: { instructions?: string } = {},
): TestBackend & { handler: ReturnType<typeof createMcpHandler> } {
  const seen: TestBackend["seen"] = [];
  const handler = createMcpHandler(() => {
    const server = new V2McpServer({ name, version: "2.0.0" }, {
      instructions: options.instructions,
    });
    setup(server);
    return server;
  }, { legacy: "reject" });
  const http = serve((req) => {
    seen.push({ method: req.method, authorization: req.headers.get("authorization") });
    return handler.fetch(req);
  });
  return {
    url: `http://127.0.0.1:${http.addr.port}/mcp`,
    seen,
    handler,
    close: async () => {
      await handler.close();
      await http.shutdown();
    },
  };
}

/** A backend that never answers in time: holds every request for `delayMs`, then a 503. */
export function slowBackend(delayMs: number): TestBackend {
  const seen: TestBackend["seen"] = [];
  const pending = new Set<() => void>();
  const http = serve((req) => {
    seen.push({ method: req.method, authorization: req.headers.get("authorization") });
    return new Promise<Response>((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        pending.delete(finish);
        resolve(new Response("late", { status: 503 }));
      };
      const timer = setTimeout(finish, delayMs);
      pending.add(finish);
    });
  });
  return {
    url: `http://127.0.0.1:${http.addr.port}/mcp`,
    seen,
    close: async () => {
      for (const finish of [...pending]) finish();
      await http.shutdown();
    },
  };
}

/**
 * A modern backend (low-level v2 `Server`) whose `tools/list` and `tools/call` take `delayMs`
 * (cut short when the request is cancelled): it connects fine but answers late.
 */
export function lateBackend(delayMs: number): TestBackend & { cancelled: string[] } {
  const seen: TestBackend["seen"] = [];
  const cancelled: string[] = [];
  const wait = (signal: AbortSignal, what: string) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, delayMs);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        cancelled.push(what);
        resolve();
      }, { once: true });
    });
  const handler = createMcpHandler(() => {
    const server = new V2Server({ name: "late", version: "1.0.0" }, {
      capabilities: { tools: {} },
    });
    server.setRequestHandler("tools/list", async (_req, ctx) => {
      await wait(ctx.mcpReq.signal, "tools/list");
      return { tools: [{ name: "nap", inputSchema: { type: "object" as const } }] };
    });
    server.setRequestHandler("tools/call", async (req, ctx) => {
      await wait(ctx.mcpReq.signal, `tools/call ${req.params.name}`);
      return { content: [{ type: "text", text: "woke up" }] };
    });
    return server;
  }, { legacy: "reject" });
  const http = serve((req) => {
    seen.push({ method: req.method, authorization: req.headers.get("authorization") });
    return handler.fetch(req);
  });
  return {
    url: `http://127.0.0.1:${http.addr.port}/mcp`,
    seen,
    cancelled,
    close: async () => {
      await handler.close();
      await http.shutdown();
    },
  };
}

/** A URL where nothing listens (a port that was free a moment ago). */
export function deadBackendUrl(): string {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return `http://127.0.0.1:${port}/mcp`;
}

/**
 * Mints an access token straight into KV (grant + token records, as `/token` would), for the
 * aggregated endpoint by default.
 */
export async function mintAccessToken(
  deps: Deps,
  options: { scope?: string; resource?: string; clientId?: string; tools?: string[] } = {},
): Promise<string> {
  const now = deps.now();
  const grant = {
    grantId: crypto.randomUUID(),
    clientId: options.clientId ?? "test-client",
    scope: options.scope ?? "mcp",
    resource: options.resource ?? aggregateResource(deps.settings.publicUrl),
    ...(options.tools ? { tools: options.tools } : {}),
  };
  const op = deps.kv.atomic();
  putGrant(deps, op, { ...grant, createdAt: now, expiresAt: now + 86_400_000 });
  const minted = await mintTokens(deps, op, grant);
  const res = await op.commit();
  if (!res.ok) throw new Error("could not store the test token");
  return minted.accessToken;
}

/** A modern backend whose `tools/list` pages through `count` tools `pageSize` at a time. */
export function paginatedBackend(count: number, pageSize: number): TestBackend {
  const seen: TestBackend["seen"] = [];
  const tools = Array.from({ length: count }, (_, i) => ({
    name: `t${String(i).padStart(3, "0")}`,
    inputSchema: { type: "object" as const },
  }));
  const handler = createMcpHandler(() => {
    const server = new V2Server({ name: "paged", version: "1.0.0" }, {
      capabilities: { tools: {} },
    });
    server.setRequestHandler("tools/list", (req) => {
      const offset = Number(req.params?.cursor ?? "0");
      const next = offset + pageSize;
      return {
        tools: tools.slice(offset, next),
        ...(next < tools.length ? { nextCursor: String(next) } : {}),
      };
    });
    server.setRequestHandler("tools/call", (req) => ({
      content: [{ type: "text", text: `called ${req.params.name}` }],
    }));
    return server;
  }, { legacy: "reject" });
  const http = serve((req) => {
    seen.push({ method: req.method, authorization: req.headers.get("authorization") });
    return handler.fetch(req);
  });
  return {
    url: `http://127.0.0.1:${http.addr.port}/mcp`,
    seen,
    close: async () => {
      await handler.close();
      await http.shutdown();
    },
  };
}

/** The pinned `@modelcontextprotocol/server-everything` (also in deno.json imports). */
export const EVERYTHING_SPECIFIER = "npm:@modelcontextprotocol/server-everything@2026.8.31";

/**
 * `@modelcontextprotocol/server-everything` (a v1-SDK, legacy-era reference server) in its
 * `streamableHttp` mode, as a subprocess on a free port. It listens on every interface, so it
 * only runs inside a test and is killed by `close()`. Readiness is a bounded poll (at most
 * `readyTimeoutMs`) of an `initialize` POST.
 */
export async function everythingBackend(readyTimeoutMs = 60_000): Promise<TestBackend> {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--quiet", EVERYTHING_SPECIFIER, "streamableHttp"],
    clearEnv: true,
    env: childEnv({ PORT: String(port) }),
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const url = `http://127.0.0.1:${port}/mcp`;
  const close = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    await child.status;
  };
  const deadline = performance.now() + readyTimeoutMs;
  for (let attempt = 0; attempt < 600 && performance.now() < deadline; attempt++) {
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
        },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 1,
          method: "initialize",
          params: {
            protocolVersion: "2025-11-25",
            capabilities: {},
            clientInfo: { name: "probe", version: "1" },
          },
        }),
      });
      await res.body?.cancel();
      if (res.ok) return { url, seen: [], close };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await close();
  throw new Error(`server-everything did not start within ${readyTimeoutMs} ms`);
}
