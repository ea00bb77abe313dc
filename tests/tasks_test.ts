/**
 * The README's run commands work: `deno task start` and `deno task dev` start the gateway from
 * the repository's own deno.json (dev with its KV file under ./.data/), and it answers.
 */
import { assert, assertEquals } from "./_assert.ts";

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Runs `deno task <name>`, waits (bounded) for /healthz, calls `check`, then stops it. */
async function withTask(
  name: string,
  env: Record<string, string>,
  check: (url: string) => Promise<void>,
): Promise<void> {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", name],
    env: {
      ...env,
      PORT: String(port),
      GATEWAY_OWNER_PASSWORD: "task test password",
      NO_COLOR: "1",
    },
    stdout: "null",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let output = "";
  const drained = (async () => {
    for (;;) {
      const { done, value } = await stderr.read();
      if (done) break;
      output += value;
    }
  })();
  const url = `http://127.0.0.1:${port}`;
  try {
    let up = false;
    for (let i = 0; i < 300 && !up; i++) {
      try {
        const res = await fetch(`${url}/healthz`);
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type"), "application/json");
        assertEquals(await res.json(), { status: "ok" });
        up = true;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert(up, `deno task ${name} did not answer /healthz within 30 s:\n${output.slice(-2000)}`);
    await check(url);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await drained;
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
    await withTask("dev", {}, async (url) => {
      const res = await fetch(`${url}/.well-known/oauth-protected-resource/mcp`);
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals((await res.json()).resource, `${url.replace("127.0.0.1", "localhost")}/mcp`);
      assert((await Deno.stat(".data/gateway.kv")).isFile);
    });
  });
});
