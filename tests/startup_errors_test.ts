/**
 * A gateway that cannot start says why in one line per problem (file, field, message), exits
 * with code 1 and prints no stack trace; on Deno Deploy it refuses to start without PUBLIC_URL.
 * Real `main.ts` subprocesses with a clean environment.
 */
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "./_assert.ts";
import { spawnDeno } from "./_process.ts";
import { ConfigError } from "../lib/config.ts";
import { readSettings } from "../lib/deps.ts";
import { SettingsError, startupErrorLines } from "../lib/startup/errors.ts";
import { kvLocation } from "../lib/startup/kv_location.ts";

/** Runs main.ts to its end; returns the exit code and stderr. */
async function runMain(env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  const p = spawnDeno(["run", "-A", "main.ts"], { env });
  const timer = setTimeout(() => p.child.kill("SIGKILL"), 60_000);
  const status = await p.status;
  clearTimeout(timer);
  return { code: status.code, stderr: p.stderr() };
}

/** No line of a stack trace ("    at f (file:…)") nor an "Uncaught" report. */
function assertNoStack(stderr: string): void {
  assert(!/^\s+at /m.test(stderr), `a stack trace was printed:\n${stderr}`);
  assert(!/uncaught/i.test(stderr), `an uncaught error was printed:\n${stderr}`);
}

Deno.test("start-up errors", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "gateway-start-errors-" });
  const base = { KV_PATH: ":memory:", PORT: "0", GATEWAY_OWNER_PASSWORD: "start errors test" };
  try {
    await t.step("an unset ${VAR}: one line naming file, field and variable, exit 1", async () => {
      const file = `${dir}/bad.json`;
      await Deno.writeTextFile(
        file,
        JSON.stringify({
          backends: [
            { name: "a", url: "http://127.0.0.1:9/mcp" },
            { name: "ok", url: "http://127.0.0.1:9/mcp", headers: { X: "${NOT_SET_ANYWHERE}" } },
          ],
        }),
      );
      const { code, stderr } = await runMain({ ...base, GATEWAY_CONFIG: file });
      assertEquals(code, 1);
      assertNoStack(stderr);
      const lines = stderr.trim().split("\n");
      assertEquals(lines, [
        `error: ${file}: backends[1].headers.X: environment variable ` +
        "NOT_SET_ANYWHERE is not set",
      ]);
    });

    await t.step("schema problems are all listed, one per line", async () => {
      const file = `${dir}/schema.json`;
      await Deno.writeTextFile(
        file,
        JSON.stringify({ backends: [{ name: "Bad_Name", url: "ftp://x.example/mcp" }], typo: 1 }),
      );
      const { code, stderr } = await runMain({ ...base, GATEWAY_CONFIG: file });
      assertEquals(code, 1);
      assertNoStack(stderr);
      const lines = stderr.trim().split("\n");
      assertEquals(lines.length, 3, stderr);
      for (const line of lines) assertMatch(line, new RegExp(`^error: ${file}: \\S+: .+`));
      assert(lines.some((l) => l.includes("backends[0].name: must match")));
      assert(lines.some((l) => l.includes("backends[0].url: must be an http(s) URL")));
      assert(lines.some((l) => l.includes('Unrecognized key: "typo"')));
    });

    await t.step("a missing or unreadable file is one line", async () => {
      const { code, stderr } = await runMain({ ...base, GATEWAY_CONFIG: `${dir}/none.json` });
      assertEquals(code, 1);
      assertNoStack(stderr);
      assertEquals(
        stderr.trim(),
        `error: ${dir}/none.json: cannot read the config file (no such file)`,
      );
    });

    await t.step("a bad variable and a bad config are both reported", async () => {
      const file = `${dir}/json.json`;
      await Deno.writeTextFile(file, "{ not json");
      const { code, stderr } = await runMain({ ...base, GATEWAY_CONFIG: file, PORT: "eighty" });
      assertEquals(code, 1);
      assertNoStack(stderr);
      const lines = stderr.trim().split("\n");
      assertEquals(lines.length, 2, stderr);
      assertEquals(lines[0], 'error: PORT: "eighty" is not a port number');
      assertMatch(lines[1]!, new RegExp(`^error: ${file}: not valid JSON \\(`));
    });

    await t.step("on Deno Deploy, no PUBLIC_URL: refused, saying how to set it", async () => {
      const { code, stderr } = await runMain({
        ...base,
        KV_PATH: "",
        DENO_DEPLOYMENT_ID: "test-deployment",
        // What a running app gets (Deploy reference, "Predefined environment variables").
        DENO_DEPLOY_APPLICATION_SLUG: "my-gateway",
        DENO_DEPLOY_ORGANIZATION_SLUG: "acme",
      });
      assertEquals(code, 1);
      assertNoStack(stderr);
      const lines = stderr.trim().split("\n");
      assertEquals(lines.length, 1, stderr);
      assertMatch(lines[0]!, /^error: PUBLIC_URL is required on Deno Deploy/);
      assertMatch(
        lines[0]!,
        /deno deploy env add PUBLIC_URL https:\/\/my-gateway\.acme\.deno\.net/,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("settings rules", async (t) => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];

  await t.step("Deno Deploy without PUBLIC_URL is a SettingsError naming PUBLIC_URL", async () => {
    const e = await assertRejects(
      () => readSettings(env({ DENO_DEPLOYMENT_ID: "x" })),
      SettingsError,
    );
    assertMatch(e.message, /^PUBLIC_URL is required on Deno Deploy/);
    assertMatch(e.message, /https:\/\/<app>\.<org>\.deno\.net/);
  });

  await t.step("the suggested URL also comes from a build's slug variables", async () => {
    const e = await assertRejects(
      () =>
        readSettings(
          env({
            DENO_DEPLOYMENT_ID: "x",
            DENO_DEPLOY_APP_SLUG: "gw",
            DENO_DEPLOY_ORG_SLUG: "acme",
          }),
        ),
      SettingsError,
    );
    assertMatch(e.message, /deno deploy env add PUBLIC_URL https:\/\/gw\.acme\.deno\.net /);
  });

  await t.step("Deno Deploy with PUBLIC_URL starts", async () => {
    const s = await readSettings(
      env({ DENO_DEPLOYMENT_ID: "x", PUBLIC_URL: "https://gw.acme.deno.net/" }),
    );
    assertEquals(s.publicUrl, "https://gw.acme.deno.net");
    assertEquals(s.secureCookies, true);
  });

  await t.step("a bad PUBLIC_URL or API key is a SettingsError", async () => {
    await assertRejects(() => readSettings(env({ PUBLIC_URL: "nope" })), SettingsError);
    await assertRejects(() => readSettings(env({ GATEWAY_API_KEY: "short" })), SettingsError);
  });

  await t.step("startupErrorLines flattens config, settings and several errors", () => {
    const lines = startupErrorLines(
      new AggregateError([
        new SettingsError("PORT: bad"),
        new ConfigError(["f.json: a: x", "f.json: b: y"]),
      ]),
    );
    assertEquals(lines, ["error: PORT: bad", "error: f.json: a: x", "error: f.json: b: y"]);
    assertEquals(startupErrorLines(new TypeError("bug")), undefined);
  });

  await t.step("KV_PATH: a file on Deno Deploy is refused; unset means the app's database", () => {
    assertThrows(
      () => kvLocation(env({ DENO_DEPLOYMENT_ID: "x", KV_PATH: "/tmp/gw.kv" })),
      SettingsError,
    );
    assertThrows(
      () => kvLocation(env({ DENO_DEPLOYMENT_ID: "x", KV_PATH: ":memory:" })),
      SettingsError,
    );
    assertEquals(kvLocation(env({ DENO_DEPLOYMENT_ID: "x" })), { kind: "deploy" });
  });

  await t.step("KV_PATH: a KV Connect URL on Deno Deploy is refused (no token there)", () => {
    const e = assertThrows(
      () =>
        kvLocation(
          env({
            DENO_DEPLOYMENT_ID: "x",
            KV_PATH: "https://api.deno.com/v2/databases/0/connect",
            DENO_KV_ACCESS_TOKEN: "t",
          }),
        ),
      SettingsError,
    );
    assertMatch(e.message, /^KV_PATH: KV Connect cannot authenticate on Deno Deploy/);
    assertMatch(e.message, /unset KV_PATH/);
  });

  await t.step("KV_PATH: a URL is KV Connect and needs DENO_KV_ACCESS_TOKEN", () => {
    const e = assertThrows(
      () => kvLocation(env({ KV_PATH: "https://kv.example/db" })),
      SettingsError,
    );
    assertMatch(e.message, /DENO_KV_ACCESS_TOKEN/);
    assertEquals(
      kvLocation(env({ KV_PATH: "https://kv.example/db", DENO_KV_ACCESS_TOKEN: "t" })),
      { kind: "remote", url: "https://kv.example/db" },
    );
    assertThrows(
      () => kvLocation(env({ KV_PATH: "https://u:p@kv.example/", DENO_KV_ACCESS_TOKEN: "t" })),
      SettingsError,
    );
  });

  await t.step("KV_PATH: unset is Deno's default, or dev's file; :memory: and files", () => {
    assertEquals(kvLocation(env({})), { kind: "default" });
    assertEquals(kvLocation(env({}), "./.data/gateway.kv"), {
      kind: "file",
      path: "./.data/gateway.kv",
      from: "task default",
    });
    assertEquals(kvLocation(env({ KV_PATH: ":memory:" })), { kind: "memory" });
    assertEquals(kvLocation(env({ KV_PATH: "/srv/gw.kv" }), "./x.kv"), {
      kind: "file",
      path: "/srv/gw.kv",
      from: "KV_PATH",
    });
  });
});
