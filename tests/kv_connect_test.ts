/**
 * `KV_PATH=https://…` is KV Connect: the URL and `DENO_KV_ACCESS_TOKEN` reach `Deno.openKv`,
 * which starts with the protocol's metadata exchange (a POST with the token as a Bearer
 * credential). A real HTTP server on loopback records that exchange and refuses it, so the start
 * fails, with one line naming KV_PATH. (No `denokv` server is available to the test suite; the
 * point proven here is that the gateway hands the URL and the token to Deno's KV Connect client.)
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { spawnDeno } from "./_process.ts";

Deno.test("KV_PATH as a KV Connect URL", async (t) => {
  const seen: { method: string; path: string; authorization: string | null; body: string }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    seen.push({
      method: req.method,
      path: new URL(req.url).pathname,
      authorization: req.headers.get("authorization"),
      body: await req.text(),
    });
    return new Response("refused by the test", { status: 503 });
  });
  const url = `http://127.0.0.1:${server.addr.port}/databases/test/connect`;
  try {
    const gateway = spawnDeno(["run", "-A", "main.ts"], {
      env: {
        PORT: "0",
        KV_PATH: url,
        DENO_KV_ACCESS_TOKEN: "kv-connect-test-token",
        GATEWAY_OWNER_PASSWORD: "kv connect test",
      },
    });
    const status = await gateway.status;

    await t.step("Deno.openKv gets the URL and DENO_KV_ACCESS_TOKEN (metadata exchange)", () => {
      assertEquals(seen.length >= 1, true, "the KV Connect endpoint was called");
      assertEquals(seen[0]!.method, "POST");
      assertEquals(seen[0]!.path, "/databases/test/connect");
      assertEquals(seen[0]!.authorization, "Bearer kv-connect-test-token");
      assert(Array.isArray(JSON.parse(seen[0]!.body).supportedVersions));
    });

    await t.step("an unusable KV Connect database stops the start with one line", () => {
      assertEquals(status.code, 1);
      const lines = gateway.stderr().trim().split("\n");
      assertEquals(lines.length, 1, gateway.stderr());
      assertMatch(lines[0]!, new RegExp(`^error: KV_PATH: cannot open ${url} \\(.*503`));
      assert(!gateway.stderr().includes("kv-connect-test-token"), "the token is not printed");
    });
  } finally {
    await server.shutdown();
  }
});
