/**
 * Test backends: real MCP servers on `127.0.0.1:<port 0>` that record the headers of every
 * request they receive. Each fixture returns a {@linkcode TestBackend}; close it at the end.
 *
 * - {@linkcode startLegacyBackend}: `@modelcontextprotocol/sdk` 1.32 (2025-11-25 only),
 *   `McpServer` + `WebStandardStreamableHTTPServerTransport`, sessionful (Mcp-Session-Id).
 * - {@linkcode startModernBackend}: `@modelcontextprotocol/server` 2.4 `createMcpHandler`,
 *   serving 2026-07-28 and (stateless) 2025 legacy requests.
 * - {@linkcode startRawBackend}: any `fetch` handler (hanging, failing, SSE streams...).
 *
 * Both MCP backends offer the same surface: tools `echo` ({ text }), `add` ({ a, b }) and
 * `slow` ({ steps }, sends one progress notification per step when the call carries a
 * progressToken, 20 ms apart), prompt `greet` ({ name }) and resource `test://info`.
 */
import { McpServer as McpServerV1 } from "@modelcontextprotocol/sdk/server/mcp.js";
import { WebStandardStreamableHTTPServerTransport as TransportV1 } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import { createMcpHandler, McpServer } from "@modelcontextprotocol/server";
import { z } from "zod";

/** One request as a backend saw it. */
export interface RecordedRequest {
  method: string;
  /** Request headers, names lower-cased. */
  headers: Record<string, string>;
}

/** A running test backend. */
export interface TestBackend {
  /** The MCP endpoint, e.g. `http://127.0.0.1:40123/mcp`. */
  url: string;
  /** Every request received, in order. */
  requests: RecordedRequest[];
  /** Stops the server (and its MCP sessions). */
  close: () => Promise<void>;
}

/**
 * A failure a test backend produces on purpose (e.g. a stream cut mid-response). Deno.serve
 * reports errors of response streams on stderr; these are expected, so they are not printed.
 */
export class DeliberateFault extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DeliberateFault";
  }
}

/** Deno.serve's default error report, minus {@linkcode DeliberateFault}s. */
function reportUnexpected(error: unknown): Response {
  if (!(error instanceof DeliberateFault)) console.error(error);
  return new Response("Internal Server Error", { status: 500 });
}

/** Serves `handler` on a free loopback port at path `/mcp`, recording every request. */
export function startRawBackend(
  handler: (req: Request) => Response | Promise<Response>,
  onClose: () => Promise<void> | void = () => {},
): TestBackend {
  const requests: RecordedRequest[] = [];
  const options = { hostname: "127.0.0.1", port: 0, onListen: () => {}, onError: reportUnexpected };
  const server = Deno.serve(options, (req) => {
    requests.push({ method: req.method, headers: Object.fromEntries(req.headers) });
    return handler(req);
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/mcp`,
    requests,
    close: async () => {
      await onClose();
      await server.shutdown();
    },
  };
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));
const text = (t: string) => ({ content: [{ type: "text" as const, text: t }] });

/** Tools, prompt and resource, written once for both SDK majors (same method names). */
interface Progress {
  token: string | number | undefined;
  send: (progress: number, total: number) => Promise<void>;
}

function slowTool(steps: number, progress: Progress) {
  return (async () => {
    for (let i = 1; i <= steps; i++) {
      await delay(20);
      if (progress.token !== undefined) await progress.send(i, steps);
    }
    return text(`done after ${steps} steps`);
  })();
}

/** The part of the v1 SDK's `RequestHandlerExtra` the tools use. */
interface V1Extra {
  _meta?: { progressToken?: string | number };
  sendNotification: (n: {
    method: "notifications/progress";
    params: { progressToken: string | number; progress: number; total: number };
  }) => Promise<void>;
}

function legacyServer(): McpServerV1 {
  const server = new McpServerV1({ name: "legacy-test-backend", version: "1.0.0" });
  server.registerTool(
    "echo",
    { description: "Echoes text", inputSchema: { text: z.string() } },
    ({ text: t }: { text: string }) => text(t),
  );
  server.registerTool(
    "add",
    { description: "Adds two numbers", inputSchema: { a: z.number(), b: z.number() } },
    ({ a, b }: { a: number; b: number }) => text(String(a + b)),
  );
  server.registerTool(
    "slow",
    { description: "Reports progress", inputSchema: { steps: z.number().int().min(1).max(50) } },
    ({ steps }: { steps: number }, extra: V1Extra) =>
      slowTool(steps, {
        token: extra._meta?.progressToken,
        send: (progress, total) =>
          extra.sendNotification({
            method: "notifications/progress",
            params: { progressToken: extra._meta!.progressToken!, progress, total },
          }),
      }),
  );
  server.registerPrompt(
    "greet",
    { description: "Greets someone", argsSchema: { name: z.string() } },
    ({ name }: { name: string }) => ({
      messages: [{ role: "user", content: { type: "text", text: `Hello, ${name}!` } }],
    }),
  );
  server.registerResource(
    "info",
    "test://info",
    { mimeType: "text/plain" },
    (uri: URL) => ({ contents: [{ uri: uri.href, text: "legacy backend" }] }),
  );
  return server;
}

/** A sessionful 2025-era backend built with `@modelcontextprotocol/sdk` 1.32. */
export function startLegacyBackend(): TestBackend {
  const sessions = new Map<string, TransportV1>();
  const servers: McpServerV1[] = [];
  return startRawBackend(async (req) => {
    const sessionId = req.headers.get("mcp-session-id");
    if (sessionId !== null) {
      const transport = sessions.get(sessionId);
      if (!transport) {
        return Response.json(
          { jsonrpc: "2.0", id: null, error: { code: -32001, message: "Session not found" } },
          { status: 404 },
        );
      }
      return transport.handleRequest(req);
    }
    const transport = new TransportV1({
      sessionIdGenerator: () => crypto.randomUUID(),
      onsessioninitialized: (id: string) => void sessions.set(id, transport),
      onsessionclosed: (id: string) => void sessions.delete(id),
    });
    const server = legacyServer();
    servers.push(server);
    await server.connect(transport);
    return transport.handleRequest(req);
  }, async () => {
    await Promise.all(servers.map((s) => s.close()));
  });
}

function modernServer(): McpServer {
  const server = new McpServer({ name: "modern-test-backend", version: "2.0.0" });
  server.registerTool(
    "echo",
    { description: "Echoes text", inputSchema: z.object({ text: z.string() }) },
    ({ text: t }) => text(t),
  );
  server.registerTool(
    "add",
    { description: "Adds two numbers", inputSchema: z.object({ a: z.number(), b: z.number() }) },
    ({ a, b }) => text(String(a + b)),
  );
  server.registerTool(
    "slow",
    {
      description: "Reports progress",
      inputSchema: z.object({ steps: z.number().int().min(1).max(50) }),
    },
    ({ steps }, ctx) =>
      slowTool(steps, {
        token: ctx.mcpReq._meta?.progressToken,
        send: (progress, total) =>
          ctx.mcpReq.notify({
            method: "notifications/progress",
            params: { progressToken: ctx.mcpReq._meta!.progressToken!, progress, total },
          }),
      }),
  );
  server.registerPrompt(
    "greet",
    { description: "Greets someone", argsSchema: z.object({ name: z.string() }) },
    ({ name }) => ({
      messages: [{ role: "user", content: { type: "text", text: `Hello, ${name}!` } }],
    }),
  );
  server.registerResource(
    "info",
    "test://info",
    { mimeType: "text/plain" },
    (uri) => ({ contents: [{ uri: uri.href, text: "modern backend" }] }),
  );
  return server;
}

/** A backend built with `@modelcontextprotocol/server` 2.4: 2026-07-28 plus stateless legacy. */
export function startModernBackend(): TestBackend {
  const handler = createMcpHandler(() => modernServer(), { keepAliveMs: 0 });
  return startRawBackend((req) => handler.fetch(req), () => handler.close());
}
