/**
 * The README's run commands work: `deno task start` and `deno task dev` start the gateway from
 * the repository's own deno.json (dev with its KV file under ./.data/), and it answers. Each runs
 * with a clean environment in a copy of the project, so the checkout's ./.data is never touched.
 * `deno task start` runs with file permissions limited to the project, the config and the KV
 * directory (security review issue 13 §14): the test reads the flags of the running process
 * and exercises what needs them (the config, a KV write, the lazily loaded /mcp route).
 */
import { startPermissions } from "../scripts/start_permissions.ts";
import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { copyProject, freePort, spawnDeno, waitFor200 } from "./_process.ts";

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

/**
 * Runs `deno task <name>` in a fresh copy of the project, waits (bounded) for /healthz, calls
 * `check` with the URL, the task's pid and the copy's directory, then stops it.
 */
async function withTask(
  name: string,
  env: Record<string, string>,
  check: (url: string, taskPid: number, project: string) => Promise<void>,
): Promise<void> {
  const project = await Deno.makeTempDir({ prefix: `gateway-task-${name}-` });
  await copyProject(project);
  const port = freePort();
  const task = spawnDeno(["task", name], {
    cwd: project,
    env: { ...env, PORT: String(port), GATEWAY_OWNER_PASSWORD: "task test password" },
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    const res = await waitFor200(`${url}/healthz`).catch((e) => {
      throw new Error(`deno task ${name}: ${e.message}\n${task.stderr().slice(-2000)}`);
    });
    assertEquals(res.headers.get("content-type"), "application/json");
    assertEquals(await res.json(), { status: "ok" });
    await check(url, task.child.pid, project);
  } finally {
    await task.stop();
    await Deno.remove(project, { recursive: true });
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
    await withTask("dev", {}, async (url, _pid, project) => {
      const res = await fetch(`${url}/.well-known/oauth-protected-resource/mcp`);
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals((await res.json()).resource, `${url.replace("127.0.0.1", "localhost")}/mcp`);
      assert((await Deno.stat(`${project}/.data/gateway.kv`)).isFile);
    });
  });
});
