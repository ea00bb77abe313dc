/**
 * Backend faults (issue 5 "The battery"), on a served gateway with one healthy backend and one
 * backend per fault: down, hanging past `timeoutMs`, answering garbage (HTML 200, plain text,
 * truncated JSON) and dropping an SSE stream mid-way. Each fault is tried through
 * `/mcp/<backend>` (clear JSON-RPC errors with 502/504) and through the aggregated `/mcp` (a
 * JSON-RPC error for that call in an HTTP 200); after every fault the healthy backend still
 * answers. Every wait is bounded.
 */
import { createMcpHandler, McpServer } from "@modelcontextprotocol/server";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { z } from "zod";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { deadBackendUrl } from "./_aggregate_backends.ts";
import {
  DeliberateFault,
  startModernBackend,
  startRawBackend,
  type TestBackend,
} from "./_backends.ts";
import { serveGateway } from "./_helpers.ts";
import { issueAccessToken } from "./_tokens.ts";

type Fault = "hang" | "html" | "text" | "truncated" | "drop";

const ACCEPT = "application/json, text/event-stream";
const LIMIT_MS = 5000;

/** Rejects when `p` takes longer than `ms` (the gateway must never hang). */
async function within<T>(p: Promise<T>, what: string, ms = LIMIT_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A real MCP backend (v2 SDK, tool `echo`) whose `tools/call` answers are replaced by `fault`:
 * it connects, lists and initializes normally, and fails only when a tool is called.
 */
function faultyBackend(fault: Fault): TestBackend {
  const handler = createMcpHandler(() => {
    const server = new McpServer({ name: `faulty-${fault}`, version: "1.0.0" });
    server.registerTool(
      "echo",
      { inputSchema: z.object({ text: z.string() }) },
      ({ text }) => ({ content: [{ type: "text", text }] }),
    );
    return server;
  }, { keepAliveMs: 0 });
  const held = new Set<() => void>();
  const encoder = new TextEncoder();
  const faulted = (): Response | Promise<Response> => {
    switch (fault) {
      case "hang":
        return new Promise((resolve) => {
          const release = () => {
            held.delete(release);
            resolve(new Response(null, { status: 204 }));
          };
          held.add(release);
        });
      case "html":
        return new Response("<!doctype html><h1>Welcome to nginx!</h1>", {
          headers: { "content-type": "text/html" },
        });
      case "text":
        return new Response("OK", { headers: { "content-type": "text/plain" } });
      case "truncated":
        return new Response('{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"te', {
          headers: { "content-type": "application/json" },
        });
      case "drop": {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(encoder.encode(
              'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message",' +
                '"params":{"level":"info","data":"starting"}}\n\n',
            ));
            timer = setTimeout(() => controller.error(new DeliberateFault("backend dropped")), 30);
          },
          cancel() {
            clearTimeout(timer);
          },
        });
        return new Response(body, { headers: { "content-type": "text/event-stream" } });
      }
    }
  };
  return startRawBackend(async (req) => {
    if (req.method === "POST") {
      let method: unknown;
      try {
        method = JSON.parse(await req.clone().text()).method;
      } catch {
        // not JSON: the SDK answers it
      }
      if (method === "tools/call") return faulted();
    }
    return handler.fetch(req);
  }, async () => {
    for (const release of [...held]) release();
    await handler.close();
  });
}

/** The JSON-RPC message of a JSON or SSE answer whose `id` is `id`. */
function findMessage(text: string, type: string, id: number): Record<string, any> | undefined {
  const messages = type.startsWith("text/event-stream")
    ? text.split("\n").filter((l) => l.startsWith("data:") && l.slice(5).trim() !== "")
      .map((l) => JSON.parse(l.slice(5)))
    : [JSON.parse(text)];
  return messages.find((m) => m.id === id);
}

Deno.test("backend faults", async (t) => {
  const ok = startModernBackend();
  const faulty = {
    hang: faultyBackend("hang"),
    html: faultyBackend("html"),
    text: faultyBackend("text"),
    truncated: faultyBackend("truncated"),
    drop: faultyBackend("drop"),
  };
  const gw = await serveGateway({
    config: {
      backends: [
        { name: "ok", url: ok.url },
        { name: "down", url: deadBackendUrl(), timeoutMs: 1000 },
        { name: "hang", url: faulty.hang.url, timeoutMs: 400 },
        { name: "html", url: faulty.html.url, timeoutMs: 2000 },
        { name: "text", url: faulty.text.url, timeoutMs: 2000 },
        { name: "truncated", url: faulty.truncated.url, timeoutMs: 2000 },
        { name: "drop", url: faulty.drop.url, timeoutMs: 2000 },
      ],
    },
  });
  const { accessToken } = await issueAccessToken(gw.deps, {
    scope: "mcp",
    resource: `${gw.url}/mcp`,
  });
  const post = (path: string, message: unknown, headers: Record<string, string> = {}) =>
    fetch(`${gw.url}${path}`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${accessToken}`,
        "content-type": "application/json",
        accept: ACCEPT,
        ...headers,
      },
      body: JSON.stringify(message),
    });
  const initialize = {
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: {
      protocolVersion: "2025-11-25",
      capabilities: {},
      clientInfo: { name: "t", version: "1" },
    },
  };
  const toolsCall = (name: string, id = 2) => ({
    jsonrpc: "2.0",
    id,
    method: "tools/call",
    params: { name, arguments: { text: "hi" } },
  });
  /** The healthy backend answers through the pass-through. */
  const okStillServes = async () => {
    const res = await within(post("/mcp/ok", toolsCall("echo", 7)), "healthy backend");
    const text = await res.text();
    assertEquals(res.status, 200, text);
    const type = res.headers.get("content-type") ?? "";
    assert(/json|event-stream/.test(type), type);
    assertEquals(findMessage(text, type, 7)?.result?.content, [{ type: "text", text: "hi" }]);
  };
  const expectJsonRpc = async (res: Response, status: number, includes: string) => {
    const text = await res.text();
    assertEquals(res.status, status, text);
    assertEquals(res.headers.get("content-type"), "application/json");
    const body = JSON.parse(text);
    assertEquals(body.jsonrpc, "2.0");
    assertEquals(body.error.code, -32603);
    assertStringIncludes(body.error.message, includes);
  };

  try {
    await t.step("/mcp/<backend>: a backend that is down → 502 JSON-RPC error", async () => {
      await expectJsonRpc(await within(post("/mcp/down", initialize), "down"), 502, "unreachable");
      await okStillServes();
    });

    await t.step("/mcp/<backend>: a backend that hangs past timeoutMs → 504", async () => {
      const started = performance.now();
      await expectJsonRpc(
        await within(post("/mcp/hang", toolsCall("echo")), "hang"),
        504,
        "did not answer in time",
      );
      assert(performance.now() - started < 3000, "cut at the backend's timeoutMs");
      await okStillServes();
    });

    await t.step(
      "/mcp/<backend>: HTML 200 and text/plain answers → 502 JSON-RPC error",
      async () => {
        await expectJsonRpc(
          await within(post("/mcp/html", toolsCall("echo")), "html"),
          502,
          "text/html",
        );
        await okStillServes();
        await expectJsonRpc(
          await within(post("/mcp/text", toolsCall("echo")), "text"),
          502,
          "text/plain",
        );
        await okStillServes();
      },
    );

    await t.step(
      "/mcp/<backend>: truncated JSON is relayed as sent (bodies stream, never buffered)",
      async () => {
        const res = await within(post("/mcp/truncated", toolsCall("echo")), "truncated");
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type"), "application/json");
        const text = await within(res.text(), "truncated body");
        let parsed = true;
        try {
          JSON.parse(text);
        } catch {
          parsed = false;
        }
        assert(!parsed, "the client sees the backend's broken JSON and fails its own parse");
        await okStillServes();
      },
    );

    await t.step(
      "/mcp/<backend>: an SSE stream dropped mid-way reaches the client as an ended stream",
      async () => {
        const res = await within(post("/mcp/drop", toolsCall("echo")), "drop");
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type"), "text/event-stream");
        const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
        let seen = "";
        let ended: "done" | "error" | undefined;
        for (let i = 0; i < 100 && !ended; i++) {
          try {
            const chunk = await within(reader.read(), "dropped stream");
            if (chunk.done) ended = "done";
            else seen += chunk.value;
          } catch (e) {
            if (e instanceof Error && e.message.includes("no answer within")) throw e;
            ended = "error";
          }
        }
        assert(ended, "the stream ended");
        assertStringIncludes(seen, "starting");
        assert(!seen.includes('"result"'), "no result was invented");
        await reader.cancel().catch(() => {});
        await okStillServes();
      },
    );

    // Aggregated: a legacy session on /mcp, then each faulty backend's tool.
    const opened = await within(post("/mcp", initialize), "aggregate initialize");
    await opened.body?.cancel();
    const session = opened.headers.get("mcp-session-id");
    const aggregated = (message: unknown) =>
      post("/mcp", message, {
        "mcp-session-id": session ?? "",
        "mcp-protocol-version": "2025-11-25",
      });
    const aggregateOkStillServes = async () => {
      const res = await within(aggregated(toolsCall("ok__echo", 9)), "aggregate ok__echo");
      const text = await res.text();
      assertEquals(res.status, 200, text);
      const message = findMessage(text, res.headers.get("content-type") ?? "", 9);
      assertEquals(message?.result?.content, [{ type: "text", text: "hi" }], text);
    };

    await t.step("/mcp: lists leave the down and hanging backends out", async () => {
      assertEquals(opened.status, 200);
      assert(session, "the aggregate opened a legacy session");
      const client = new Client({ name: "t", version: "1" }, {
        versionNegotiation: { mode: "auto" },
      });
      try {
        await within(
          client.connect(
            new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), {
              requestInit: { headers: { authorization: `Bearer ${accessToken}` } },
            }),
          ),
          "connect",
        );
        const names = (await within(client.listTools(), "tools/list")).tools.map((x) => x.name);
        assert(names.includes("ok__echo"), names.join());
        assert(!names.some((n) => n.startsWith("down__")), names.join());
      } finally {
        await client.close();
      }
    });

    for (const name of ["down", "hang", "html", "text", "truncated", "drop"]) {
      await t.step(
        `/mcp: a call to the ${name} backend is a JSON-RPC error in HTTP 200; others still work`,
        async () => {
          const started = performance.now();
          const res = await within(aggregated(toolsCall(`${name}__echo`, 3)), `aggregate ${name}`);
          const text = await within(res.text(), `aggregate ${name} body`);
          assertEquals(res.status, 200, text);
          const type = res.headers.get("content-type") ?? "";
          assert(/^(application\/json|text\/event-stream)/.test(type), type);
          const message = findMessage(text, type, 3);
          assert(message, `no answer to the call in ${text}`);
          // JSON-RPC 2.0 §5.1 internal error, naming the backend (never a fake result).
          assertEquals(message.error?.code, -32603, text);
          assertStringIncludes(message.error.message, `Backend ${name}`);
          assert(performance.now() - started < 4000, `bounded by timeoutMs: ${name}`);
          await aggregateOkStillServes();
          await okStillServes();
        },
      );
    }
  } finally {
    await closeAggregate(gw.deps);
    await gw.close();
    await ok.close();
    for (const b of Object.values(faulty)) await b.close();
  }
});
