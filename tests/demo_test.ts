/**
 * `deno task demo`: starts the example MCP server at the config's `example` URL (loopback) and
 * the gateway for it, offline, then prints what to do next; a real MCP client sees the example
 * tools through `/mcp` with the API key. Also: the shipped gateway.config.json names that
 * example backend on loopback, so the shipped setup works without the internet.
 */
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { freePort, ROOT, spawnDeno } from "./_process.ts";
import { loadConfigFile } from "../lib/config.ts";
import { isLoopbackHost } from "../lib/oauth/redirect_uri.ts";

const API_KEY = "demo-test-api-key-0123456789";

Deno.test("the shipped config's backend is the demo's local example server", async () => {
  const config = await loadConfigFile(`${ROOT}gateway.config.json`, () => undefined);
  assertEquals(config.backends.map((b) => b.name), ["example"]);
  const url = new URL(config.backends[0]!.url);
  assertEquals(url.protocol, "http:");
  assert(isLoopbackHost(url.hostname), "offline: the example backend is on loopback");
});

Deno.test("deno task demo", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "gateway-demo-" });
  const port = freePort();
  const examplePort = freePort();
  await Deno.writeTextFile(
    `${dir}/config.json`,
    JSON.stringify({
      backends: [{ name: "example", url: `http://127.0.0.1:${examplePort}/mcp` }],
    }),
  );
  const demo = spawnDeno(["task", "demo"], {
    env: {
      PORT: String(port),
      GATEWAY_CONFIG: `${dir}/config.json`,
      KV_PATH: ":memory:",
      GATEWAY_API_KEY: API_KEY,
    },
  });
  try {
    await t.step("prints the banner, then what to do next", async () => {
      await demo.waitForStderr(/stop with Ctrl-C/);
      const err = demo.stderr();
      assertMatch(err, /\/mcp\/example +up \(HTTP 200/);
      assertMatch(err, /owner password {2}\S+ {2}\(generated for this run/);
      assertMatch(err, /API key {9}\(GATEWAY_API_KEY\)/);
      assert(!err.includes(API_KEY), "a given API key is not echoed");
      assertMatch(err, /claude mcp add --transport http demo http:\/\/localhost:\d+\/mcp/);
      assertMatch(err, /npx @modelcontextprotocol\/inspector --transport http --server-url/);
    });

    await t.step("an MCP client lists and calls the example tools through /mcp", async () => {
      const client = new Client({ name: "demo test", version: "1.0.0" }, {
        versionNegotiation: { mode: "auto" },
      });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`), {
          requestInit: { headers: { authorization: `Bearer ${API_KEY}` } },
        }),
      );
      try {
        const names = (await client.listTools()).tools.map((tool) => tool.name).sort();
        assertEquals(names, ["example__add", "example__echo", "example__time"]);
        const result = await client.callTool({ name: "example__add", arguments: { a: 2, b: 3 } });
        assertEquals(result.content, [{ type: "text", text: "5" }]);
      } finally {
        await client.close();
      }
    });
  } finally {
    await demo.stop();
    await Deno.remove(dir, { recursive: true });
  }
  await t.step("stopping the demo stops the example server too", async () => {
    const refused = await fetch(`http://127.0.0.1:${examplePort}/mcp`).then(
      async (res) => (await res.body?.cancel(), false),
      () => true,
    );
    assert(refused, "the example server is gone");
  });
});
