/**
 * The backend list cache end to end (lib/mcp/aggregate/list_cache.ts): a legacy (v1 SDK) and a
 * modern (v2 SDK) backend behind two gateway instances on one KV file (two isolates of one
 * deployment), each backend behind a counting proxy that sees every JSON-RPC method the gateway
 * sends. A warm isolate lists from memory, a cold one from KV without touching any backend, and a
 * backend's list_changed (MCP 2025-11-25 Server/Tools §List Changed Notification) drops the list
 * everywhere.
 */
import { assertEquals } from "./_assert.ts";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import type { McpServer as V1McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { type ServedGateway, serveGateway } from "./_helpers.ts";
import {
  legacyBackend,
  mintAccessToken,
  modernBackend,
  type TestBackend,
} from "./_aggregate_backends.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A proxy in front of `target` that counts the JSON-RPC methods going through. */
function countingProxy(target: string) {
  const methods: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const headers = new Headers(req.headers);
    headers.delete("host");
    let body: string | undefined;
    if (req.method === "POST") {
      body = await req.text();
      try {
        const parsed = JSON.parse(body);
        for (const m of Array.isArray(parsed) ? parsed : [parsed]) {
          if (typeof m?.method === "string") methods.push(m.method);
        }
      } catch {
        // counted as nothing
      }
    }
    const res = await fetch(target, { method: req.method, headers, body, signal: req.signal });
    return new Response(res.body, { status: res.status, headers: res.headers });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/mcp`,
    count: (method: string) => methods.filter((m) => m === method).length,
    total: () => methods.length,
    close: () => server.shutdown(),
  };
}

async function names(gw: ServedGateway, token: string): Promise<string[]> {
  const client = new Client({ name: "cache-test", version: "1" }, {
    versionNegotiation: { mode: "auto" },
  });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  try {
    return (await client.listTools()).tools.map((t) => t.name);
  } finally {
    await client.close();
  }
}

Deno.test("tool lists are cached per isolate and in KV, dropped on list_changed", async (t) => {
  const legacyServers: V1McpServer[] = [];
  const alpha = legacyBackend("alpha", (s) => {
    legacyServers.push(s);
    s.registerTool("one", {}, () => ({ content: [{ type: "text", text: "one" }] }));
  });
  const betaTools = ["two"];
  const beta = modernBackend("beta", (s) => {
    for (const name of betaTools) {
      s.registerTool(name, {}, () => ({ content: [{ type: "text", text: name }] }));
    }
  });
  const proxies = { alpha: countingProxy(alpha.url), beta: countingProxy(beta.url) };
  const dir = await Deno.makeTempDir({ prefix: "list-cache-" });
  const gateways: ServedGateway[] = [];
  const backends: TestBackend[] = [alpha, beta];
  try {
    const options = {
      kvPath: `${dir}/gateway.kv`,
      env: { PUBLIC_URL: "http://gateway.test" },
      config: {
        backends: [
          { name: "alpha", url: proxies.alpha.url },
          { name: "beta", url: proxies.beta.url },
        ],
      },
    };
    const warm = await serveGateway(options);
    gateways.push(warm);
    const token = await mintAccessToken(warm.deps);
    const listed = () => proxies.alpha.count("tools/list") + proxies.beta.count("tools/list");

    await t.step("a second tools/list is served from the isolate's cache", async () => {
      assertEquals(await names(warm, token), ["alpha__one", "beta__two"]);
      assertEquals(listed(), 2);
      assertEquals(await names(warm, token), ["alpha__one", "beta__two"]);
      assertEquals(listed(), 2, "no backend was asked again");
    });

    await t.step("a cold isolate lists from KV without reaching any backend", async () => {
      const cold = await serveGateway(options);
      gateways.push(cold);
      // A modern client that already knows the gateway sends tools/list with no handshake
      // (sessionless, MCP 2026-07-28): nothing reaches a backend.
      const before = proxies.alpha.total() + proxies.beta.total();
      const res = await fetch(`${cold.url}/mcp`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          "mcp-protocol-version": "2026-07-28",
          "mcp-method": "tools/list",
        },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 1,
          method: "tools/list",
          params: {
            _meta: {
              "io.modelcontextprotocol/protocolVersion": "2026-07-28",
              "io.modelcontextprotocol/clientCapabilities": {},
            },
          },
        }),
      });
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "application/json");
      const body = await res.json();
      assertEquals(body.result.tools.map((x: { name: string }) => x.name), [
        "alpha__one",
        "beta__two",
      ]);
      assertEquals(proxies.alpha.total() + proxies.beta.total(), before, "no connect, no list");
      // A new client's handshake connects the backends (capabilities, instructions) but the
      // list still comes from the cache.
      assertEquals(await names(cold, token), ["alpha__one", "beta__two"]);
      assertEquals(listed(), 2);
    });

    await t.step("list_changed from a modern backend drops its list in every isolate", async () => {
      betaTools.push("three");
      (beta as { handler: { notify: { toolsChanged(): void } } }).handler.notify.toolsChanged();
      let seen: string[] = [];
      for (let i = 0; i < 300 && !seen.includes("beta__three"); i++) {
        await sleep(10);
        seen = await names(warm, token);
      }
      assertEquals(seen, ["alpha__one", "beta__two", "beta__three"]);
      assertEquals(await names(gateways[1]!, token), seen, "the cold isolate heard it too");
      assertEquals(proxies.alpha.count("tools/list"), 1, "alpha's list stayed cached");
    });

    await t.step("list_changed from a legacy backend drops its list", async () => {
      for (const s of legacyServers) {
        s.registerTool("four", {}, () => ({ content: [{ type: "text", text: "four" }] }));
      }
      let seen: string[] = [];
      for (let i = 0; i < 300 && !seen.includes("alpha__four"); i++) {
        await sleep(10);
        seen = await names(warm, token);
      }
      assertEquals(seen, ["alpha__one", "alpha__four", "beta__two", "beta__three"]);
    });

    await t.step("an entry expires with catalog.cacheTtlSeconds", async () => {
      const before = listed();
      await names(warm, token);
      assertEquals(listed(), before);
      warm.deps.clock.advance(301_000);
      await names(warm, token);
      assertEquals(listed(), before + 2);
    });

    await t.step("with cacheTtlSeconds 0 every list reaches the backends", async () => {
      const uncached = await serveGateway({
        ...options,
        kvPath: `${dir}/uncached.kv`,
        config: { ...options.config, catalog: { cacheTtlSeconds: 0 } },
      });
      gateways.push(uncached);
      const tk = await mintAccessToken(uncached.deps);
      const before = listed();
      await names(uncached, tk);
      await names(uncached, tk);
      assertEquals(listed(), before + 4);
    });
  } finally {
    for (const g of gateways) {
      await closeAggregate(g.deps);
      await g.close();
    }
    // Backends first: their end closes the streams the proxies still relay.
    for (const b of backends) await b.close();
    await proxies.alpha.close();
    await proxies.beta.close();
    await Deno.remove(dir, { recursive: true });
  }
});
