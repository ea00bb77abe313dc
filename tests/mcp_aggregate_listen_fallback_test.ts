/**
 * A 2026-07-28 backend whose `subscriptions/listen` never yields a usable stream (issue 15 item 3):
 * it answers `application/json` with never-ending newline-delimited JSON. The gateway gives up on
 * the acknowledgement after the backend's `timeoutMs`, logs it, retries with backoff and polls
 * the lists meanwhile, so a list change still reaches `/mcp` clients.
 */
import { assert, assertEquals } from "./_assert.ts";
import { createMcpHandler, McpServer } from "@modelcontextprotocol/server";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { LISTEN_RETRY_MIN_MS } from "../lib/mcp/aggregate/list_watch.ts";
import { serveGateway } from "./_helpers.ts";
import { mintAccessToken } from "./_aggregate_backends.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 8000): Promise<boolean> {
  for (let waited = 0; waited < ms && !cond(); waited += 20) await sleep(20);
  return cond();
}

/**
 * A real v2 SDK backend (tools with `listChanged`) except for `subscriptions/listen`, which gets
 * `200 application/json` and a body of NDJSON lines that never ends.
 */
function brokenListenBackend(tools: string[]) {
  const handler = createMcpHandler(() => {
    const server = new McpServer({ name: "beta", version: "2.0.0" });
    for (const name of tools) {
      server.registerTool(name, {}, () => ({ content: [{ type: "text", text: name }] }));
    }
    return server;
  }, { legacy: "reject" });
  const listens: { closed: boolean }[] = [];
  const timers = new Set<ReturnType<typeof setInterval>>();
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    if (req.method !== "POST" || req.headers.get("mcp-method") !== "subscriptions/listen") {
      return handler.fetch(req);
    }
    const seen = { closed: false };
    listens.push(seen);
    const encoder = new TextEncoder();
    let timer: ReturnType<typeof setInterval> | undefined;
    const stop = () => {
      seen.closed = true;
      clearInterval(timer);
      timers.delete(timer!);
    };
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        timer = setInterval(() => {
          const line = { jsonrpc: "2.0", method: "notifications/message", params: { data: "." } };
          try {
            controller.enqueue(encoder.encode(JSON.stringify(line) + "\n"));
          } catch {
            stop();
          }
        }, 50);
        timers.add(timer);
      },
      cancel: stop,
    });
    return new Response(body, { headers: { "content-type": "application/json" } });
  });
  return {
    url: `http://127.0.0.1:${http.addr.port}/mcp`,
    listens,
    close: async () => {
      for (const t of timers) clearInterval(t);
      await handler.close();
      await http.shutdown();
    },
  };
}

Deno.test("/mcp bounds a backend's subscriptions/listen and falls back to polling", async (t) => {
  const tools = ["base"];
  const beta = brokenListenBackend(tools);
  const gw = await serveGateway({
    config: {
      backends: [{ name: "beta", url: beta.url, timeoutMs: 300, listPollSeconds: 1 }],
    },
  });
  const token = await mintAccessToken(gw.deps);
  const requestInit = { headers: { authorization: `Bearer ${token}` } };
  const client = new V1Client({ name: "t", version: "1" });
  let heard = 0;
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => void heard++);
  const failures = () => gw.deps.logs.filter((r) => r.event === "backend_listen_failed");
  try {
    await client.connect(new V1ClientTransport(new URL(`${gw.url}/mcp`), { requestInit }));
    assertEquals((await client.listTools()).tools.map((x: { name: string }) => x.name), [
      "beta__base",
    ]);

    await t.step("the listen times out after the backend's timeoutMs and is logged", async () => {
      assert(await until(() => failures().length > 0), "no backend_listen_failed logged");
      const first = failures()[0]!;
      assertEquals(first.level, "warn");
      assertEquals(first.backend, "beta");
      assertEquals(first.attempt, 1);
      assertEquals(first.retryInMs, LISTEN_RETRY_MIN_MS);
      assertEquals(first.pollMs, 1000);
      assert(String(first.error).includes("timed out"), String(first.error));
      assert(beta.listens.length >= 1);
      // the gateway gave up on the hanging body: the backend saw the stream cancelled
      assert(await until(() => beta.listens[0]!.closed), "the hung listen body was never closed");
    });

    await t.step("it retries with backoff", async () => {
      assert(await until(() => failures().length >= 2), "no second listen attempt");
      const second = failures()[1]!;
      assertEquals(second.attempt, 2);
      assertEquals(second.retryInMs, LISTEN_RETRY_MIN_MS * 2);
      assert(await until(() => beta.listens.length >= 2), "the backend saw no second listen");
    });

    await t.step("a list change still reaches the /mcp client (polling)", async () => {
      assertEquals(heard, 0);
      tools.push("fresh");
      assert(await until(() => heard > 0), "no list_changed reached the /mcp client");
      const names = (await client.listTools()).tools.map((x: { name: string }) => x.name);
      assertEquals(names, ["beta__base", "beta__fresh"]);
    });
  } finally {
    await client.close();
    await closeAggregate(gw.deps);
    await beta.close();
    await gw.close();
  }
});
