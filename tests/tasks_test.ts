/**
 * The README's run commands work: `deno task start` and `deno task dev` start the gateway from
 * the repository's own deno.json (dev with its KV file under ./.data/), and it answers.
 * `deno task start` runs with file permissions limited to the project, the config and the KV
 * directory (security review issue 13 §14): the test reads the flags of the running process
 * and exercises what needs them (the config, a KV write, the lazily loaded /mcp route).
 */
import { startPermissions } from "../scripts/start_permissions.ts";
import { assert, assertEquals, assertThrows } from "./_assert.ts";

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * The command line of the `deno run` process `deno task` started (Linux /proc): the child of
 * `taskPid` whose arguments name main.ts.
 */
async function gatewayArgs(taskPid: number): Promise<string[]> {
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid !== taskPid) continue;
      const args = (await Deno.readTextFile(`/proc/${entry.name}/cmdline`)).split("\0");
      if (args.includes("main.ts")) return args.filter(Boolean);
    } catch {
      // the process ended meanwhile
    }
  }
  throw new Error(`no gateway process under deno task (pid ${taskPid})`);
}

/** Runs `deno task <name>`, waits (bounded) for /healthz, calls `check`, then stops it. */
async function withTask(
  name: string,
  env: Record<string, string>,
  check: (url: string, taskPid: number) => Promise<void>,
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
    await check(url, child.pid);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await drained;
  }
}

Deno.test("deno tasks", async (t) => {
  await t.step(
    "deno task start: read only the project, the config and the KV directory; write only the " +
      "KV directory; net and env stay broad",
    async () => {
      const dir = await Deno.makeTempDir();
      const configDir = await Deno.makeTempDir();
      try {
        const config = `${configDir}/gateway.json`;
        await Deno.writeTextFile(
          config,
          JSON.stringify({ backends: [{ name: "alpha", url: "https://alpha.example/mcp" }] }),
        );
        const env = { KV_PATH: `${dir}/gateway.kv`, GATEWAY_CONFIG: config };
        await withTask("start", env, async (url, taskPid) => {
          if (Deno.build.os === "linux") {
            const args = await gatewayArgs(taskPid);
            const flags = args.filter((a) => a.startsWith("--allow") || a === "-A");
            assertEquals(flags.sort(), [
              "--allow-env",
              "--allow-net",
              `--allow-read=.,${config},${dir}`,
              `--allow-write=${dir}`,
            ]);
          }
          const res = await fetch(`${url}/.well-known/oauth-protected-resource/mcp/alpha`);
          assertEquals(res.status, 200, "the config outside the project was read");
          assertEquals(res.headers.get("content-type"), "application/json");
          assertEquals(
            (await res.json()).resource,
            `${url.replace("127.0.0.1", "localhost")}/mcp/alpha`,
          );
          const registered = await fetch(`${url}/register`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ redirect_uris: ["http://127.0.0.1:3000/cb"] }),
          });
          assertEquals(registered.status, 201, "KV is written in its directory");
          assertEquals(registered.headers.get("content-type"), "application/json");
          await registered.body?.cancel();
          assert((await Deno.stat(`${dir}/gateway.kv`)).isFile);
          const mcp = await fetch(`${url}/mcp`, { method: "POST" });
          assertEquals(mcp.status, 401, "the lazily loaded /mcp route (and its SDK) loads");
          assertEquals(mcp.headers.get("content-type"), "application/json");
          await mcp.body?.cancel();
        });
      } finally {
        await Deno.remove(dir, { recursive: true });
        await Deno.remove(configDir, { recursive: true });
      }
    },
  );

  await t.step("start_permissions: the flags for each kind of KV_PATH", () => {
    const env = (vars: Record<string, string>) => (name: string) => vars[name];
    const d = "./.data/gateway.kv";
    assertEquals(startPermissions(env({}), d), [
      "--allow-read=.,./gateway.config.json,./.data",
      "--allow-write=./.data",
    ]);
    assertEquals(startPermissions(env({ KV_PATH: ":memory:" }), d), [
      "--allow-read=.,./gateway.config.json",
    ]);
    assertEquals(
      startPermissions(env({ KV_PATH: "https://kv.example/db", GATEWAY_CONFIG: "c.json" }), d),
      ["--allow-read=.,c.json"],
    );
    assertEquals(startPermissions(env({ KV_PATH: "gateway.kv" }), d), [
      "--allow-read=.,./gateway.config.json",
      "--allow-write=.",
    ]);
    assertThrows(() => startPermissions(env({ KV_PATH: "/my data/g.kv" }), d), Error);
    assertThrows(() => startPermissions(env({ GATEWAY_CONFIG: "a,b.json" }), d), Error);
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
