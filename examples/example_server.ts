/**
 * A small MCP server for trying the gateway offline: `deno task demo` starts it on loopback
 * behind the gateway (the shipped `gateway.config.json` names it `example`). Tools `echo`, `add`
 * and `time`, a prompt `greet` and a resource `example://readme`, in both protocol eras (the
 * official SDK `@modelcontextprotocol/server`: 2026-07-28, and 2025 clients served statelessly).
 *
 * Alone: `deno run --allow-net=127.0.0.1 examples/example_server.ts [port]` (default 8001).
 */
import { createMcpHandler, McpServer } from "@modelcontextprotocol/server";
import { z } from "zod";

const text = (t: string) => ({ content: [{ type: "text" as const, text: t }] });

/** The example server's tools, prompt and resource. */
export function exampleServer(): McpServer {
  const server = new McpServer({ name: "example", version: "1.0.0" }, {
    instructions: "A demo server: echo text, add numbers, tell the time.",
  });
  server.registerTool(
    "echo",
    { description: "Returns the text it is given", inputSchema: z.object({ text: z.string() }) },
    ({ text: t }) => text(t),
  );
  server.registerTool(
    "add",
    { description: "Adds two numbers", inputSchema: z.object({ a: z.number(), b: z.number() }) },
    ({ a, b }) => text(String(a + b)),
  );
  server.registerTool(
    "time",
    { description: "The current time (UTC, ISO 8601)", inputSchema: z.object({}) },
    () => text(new Date().toISOString()),
  );
  server.registerPrompt(
    "greet",
    { description: "Greets someone", argsSchema: z.object({ name: z.string() }) },
    ({ name }) => ({
      messages: [{ role: "user", content: { type: "text", text: `Say hello to ${name}.` } }],
    }),
  );
  server.registerResource(
    "readme",
    "example://readme",
    { mimeType: "text/plain", description: "What this server is" },
    (uri) => ({
      contents: [{ uri: uri.href, text: "The example MCP server of the edge gateway's demo." }],
    }),
  );
  return server;
}

/** A running example server. */
export interface ExampleServer {
  url: string;
  close: () => Promise<void>;
}

/** Serves the example server at `http://<hostname>:<port><path>` (loopback only). */
export function serveExample(
  options: { hostname?: string; port: number; path?: string },
): ExampleServer {
  const hostname = options.hostname ?? "127.0.0.1";
  const path = options.path ?? "/mcp";
  const mcp = createMcpHandler(() => exampleServer(), { legacy: "stateless" });
  const server = Deno.serve(
    { hostname, port: options.port, onListen: () => {} },
    (req) =>
      new URL(req.url).pathname === path
        ? mcp.fetch(req)
        : new Response("not found", { status: 404 }),
  );
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return {
    url: `http://${host}:${server.addr.port}${path}`,
    close: async () => {
      await mcp.close();
      await server.shutdown();
    },
  };
}

if (import.meta.main) {
  const port = Number(Deno.args[0] ?? 8001);
  const example = serveExample({ port });
  console.error(`example MCP server on ${example.url}`);
}
