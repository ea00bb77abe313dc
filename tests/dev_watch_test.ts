/**
 * `deno task dev` restarts the gateway when the config file (`GATEWAY_CONFIG`) changes, also
 * after a start that failed on a bad config. A real `deno task dev` subprocess; its config and KV
 * live in a temporary directory, never in the checkout.
 */
import { assertEquals } from "./_assert.ts";
import { freePort, spawnDeno, waitFor200 } from "./_process.ts";

const json = (backends: unknown[]) => JSON.stringify({ backends }, null, 2);

/** GET / as JSON: the names of the configured backends. */
async function backendNames(url: string): Promise<string[]> {
  const res = await fetch(`${url}/`, { headers: { accept: "application/json" } });
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("content-type"), "application/json");
  return (await res.json()).backends.map((b: { name: string }) => b.name);
}

Deno.test("deno task dev watches the config file", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "gateway-dev-watch-" });
  const config = `${dir}/config.json`;
  const port = freePort();
  const url = `http://127.0.0.1:${port}`;
  await Deno.writeTextFile(config, json([{ name: "Not_Valid", url: "http://127.0.0.1:9/mcp" }]));
  const dev = spawnDeno(["task", "dev"], {
    env: {
      PORT: String(port),
      PUBLIC_URL: url,
      GATEWAY_CONFIG: config,
      KV_PATH: `${dir}/gateway.kv`,
      GATEWAY_OWNER_PASSWORD: "dev watch test password",
    },
  });
  try {
    await t.step("a bad config fails the start with its one-line error", async () => {
      await dev.waitForStderr(/error: .*config\.json: backends\[0\]\.name: must match/);
      await dev.waitForStderr(/Restarting on file change/);
    });

    await t.step("fixing the config restarts the gateway (no .ts change needed)", async () => {
      await Deno.writeTextFile(config, json([{ name: "alpha", url: "http://127.0.0.1:9/mcp" }]));
      const res = await waitFor200(`${url}/healthz`);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals(await res.json(), { status: "ok" });
      assertEquals(await backendNames(url), ["alpha"]);
    });

    await t.step("editing a working config restarts it with the new backends", async () => {
      const before = (dev.stderr().match(/listening on/g) ?? []).length;
      await Deno.writeTextFile(
        config,
        json([
          { name: "alpha", url: "http://127.0.0.1:9/mcp" },
          { name: "beta", url: "http://127.0.0.1:9/mcp" },
        ]),
      );
      let names: string[] = [];
      for (let i = 0; i < 300 && names.length < 2; i++) {
        await new Promise((r) => setTimeout(r, 100));
        names = await backendNames(url).catch(() => []);
      }
      assertEquals(names, ["alpha", "beta"]);
      await dev.waitForStderr(/\/mcp\/beta +DOWN/);
      assertEquals((dev.stderr().match(/listening on/g) ?? []).length, before + 1);
    });
  } finally {
    await dev.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
