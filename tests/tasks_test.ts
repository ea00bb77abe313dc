/**
 * The README's run commands work: `deno task start` and `deno task dev` start the gateway from
 * the repository's own deno.json (dev with its KV file under ./.data/), and it answers. Each runs
 * with a clean environment; dev runs in a copy of the project, so the checkout's ./.data is
 * never touched.
 */
import { assert, assertEquals } from "./_assert.ts";
import { copyProject, freePort, spawnDeno, waitFor200 } from "./_process.ts";

/** Runs `deno task <name>` in `cwd`, waits (bounded) for /healthz, calls `check`, stops it. */
async function withTask(
  name: string,
  env: Record<string, string>,
  check: (url: string) => Promise<void>,
  cwd?: string,
): Promise<void> {
  const port = freePort();
  const task = spawnDeno(["task", name], {
    cwd,
    env: { ...env, PORT: String(port), GATEWAY_OWNER_PASSWORD: "task test password" },
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    const res = await waitFor200(`${url}/healthz`).catch((e) => {
      throw new Error(`deno task ${name}: ${e.message}\n${task.stderr().slice(-2000)}`);
    });
    assertEquals(res.headers.get("content-type"), "application/json");
    assertEquals(await res.json(), { status: "ok" });
    await check(url);
  } finally {
    await task.stop();
  }
}

Deno.test("deno tasks", async (t) => {
  await t.step("deno task start serves the gateway with KV_PATH", async () => {
    const dir = await Deno.makeTempDir();
    try {
      await withTask("start", { KV_PATH: `${dir}/gateway.kv` }, async (url) => {
        const res = await fetch(`${url}/.well-known/oauth-authorization-server`);
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type"), "application/json");
        assertEquals((await res.json()).issuer, url.replace("127.0.0.1", "localhost"));
        assert((await Deno.stat(`${dir}/gateway.kv`)).isFile);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step("deno task dev keeps its KV file under ./.data/ when KV_PATH is unset", async () => {
    const dir = await Deno.makeTempDir({ prefix: "gateway-dev-copy-" });
    try {
      await copyProject(dir);
      await withTask("dev", {}, async (url) => {
        const res = await fetch(`${url}/.well-known/oauth-protected-resource/mcp`);
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type"), "application/json");
        assertEquals((await res.json()).resource, `${url.replace("127.0.0.1", "localhost")}/mcp`);
        assert((await Deno.stat(`${dir}/.data/gateway.kv`)).isFile);
      }, dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});
