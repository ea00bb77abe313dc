import { assert, assertEquals, assertMatch, assertThrows } from "./_assert.ts";
import { ConfigError, loadConfigFile, parseConfig } from "../lib/config.ts";
import { readSettings } from "../lib/deps.ts";
import { configJsonSchema } from "../scripts/write_schema.ts";

const env = (vars: Record<string, string>) => (name: string) => vars[name];

Deno.test("config", async (t) => {
  await t.step("parses a minimal config and applies defaults", () => {
    const config = parseConfig(
      { backends: [{ name: "alpha", url: "https://a.example/mcp" }] },
      env({}),
    );
    assertEquals(config.serverName, "mcp-edge-gateway");
    assertEquals(config.accessTokenTtlSeconds, 3600);
    assertEquals(config.refreshTokenTtlSeconds, 2_592_000);
    assertEquals(config.backends[0]!.timeoutMs, 30_000);
    assertEquals(config.backends[0]!.headers, {});
    assert(Object.isFrozen(config) && Object.isFrozen(config.backends[0]));
  });

  await t.step("reads ${VAR} from the environment", () => {
    const config = parseConfig(
      {
        backends: [{
          name: "alpha",
          url: "https://a.example/mcp",
          headers: { Authorization: "Bearer ${ALPHA_TOKEN}" },
        }],
      },
      env({ ALPHA_TOKEN: "s3cret" }),
    );
    assertEquals(config.backends[0]!.headers.Authorization, "Bearer s3cret");
  });

  await t.step("a missing variable names the field and the variable", () => {
    const e = assertThrows(
      () =>
        parseConfig(
          { backends: [{ name: "a", url: "https://a.example", headers: { X: "${NOPE}" } }] },
          env({}),
          "gw.json",
        ),
      ConfigError,
    );
    assertMatch(e.message, /gw\.json: backends\[0\]\.headers\.X: environment variable NOPE/);
  });

  await t.step("accessTokenTtlSeconds below 300 fails with a one-line reason", () => {
    for (const ttl of [60, 299]) {
      const e = assertThrows(
        () =>
          parseConfig(
            { backends: [{ name: "a", url: "https://a.example" }], accessTokenTtlSeconds: ttl },
            env({}),
            "gw.json",
          ),
        ConfigError,
      );
      assertMatch(
        e.message,
        /^gw\.json: accessTokenTtlSeconds: must be at least 300: MCP clients refresh up to 60 s before expiry/,
      );
      assert(!e.message.includes("\n"));
    }
    const config = parseConfig(
      { backends: [{ name: "a", url: "https://a.example" }], accessTokenTtlSeconds: 300 },
      env({}),
    );
    assertEquals(config.accessTokenTtlSeconds, 300);
  });

  await t.step("a bad URL, a bad name and a duplicate name are named", () => {
    const e = assertThrows(
      () =>
        parseConfig(
          {
            backends: [
              { name: "ok", url: "ftp://a.example" },
              { name: "Bad_Name", url: "https://b.example" },
              { name: "ok", url: "https://c.example" },
            ],
          },
          env({}),
          "gw.json",
        ),
      ConfigError,
    );
    assertMatch(e.message, /backends\[0\]\.url: must be an http\(s\) URL/);
    assertMatch(e.message, /backends\[1\]\.name: must match/);
    assertMatch(e.message, /backends\[2\]\.name: duplicate name "ok"/);
  });

  await t.step("unknown fields are refused (typos do not pass silently)", () => {
    const e = assertThrows(
      () =>
        parseConfig({ backends: [{ name: "a", url: "https://a.example", timeout: 5 }] }, env({})),
      ConfigError,
    );
    assertMatch(e.message, /backends\[0\]/);
  });

  await t.step("an unreadable or non-JSON file fails with its path", async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${dir}/bad.json`, "{ nope");
      const e = await loadConfigFile(`${dir}/bad.json`, env({})).then(
        () => null,
        (e: Error) => e,
      );
      assert(e instanceof ConfigError);
      assertMatch(e.message, /bad\.json: not valid JSON/);
      const missing = await loadConfigFile(`${dir}/none.json`, env({})).catch((e: Error) => e);
      assert(missing instanceof ConfigError);
      assertMatch(missing.message, /none\.json: cannot read/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step("the example gateway.config.json is valid", async () => {
    const config = await loadConfigFile("gateway.config.json", env({}));
    assert(config.backends.length >= 1);
  });

  await t.step("the published JSON Schema is up to date (deno task schema)", async () => {
    assertEquals(await Deno.readTextFile("gateway.config.schema.json"), configJsonSchema());
  });
});

Deno.test("settings from the environment", async (t) => {
  await t.step("PUBLIC_URL defaults to http://localhost:$PORT, no trailing slash", async () => {
    const s = await readSettings(env({ PORT: "8123" }));
    assertEquals(s.publicUrl, "http://localhost:8123");
    assertEquals(
      (await readSettings(env({ PUBLIC_URL: "https://gw.example/" }))).publicUrl,
      "https://gw.example",
    );
  });

  await t.step("https PUBLIC_URL turns on __Host- cookies", async () => {
    assert((await readSettings(env({ PUBLIC_URL: "https://gw.example" }))).secureCookies);
    assert(!(await readSettings(env({}))).secureCookies);
  });

  await t.step("GATEWAY_API_KEY holds comma-separated keys, stored hashed", async () => {
    const s = await readSettings(env({ GATEWAY_API_KEY: "k".repeat(20) + ", " + "m".repeat(20) }));
    assertEquals(s.apiKeyHashes.length, 2);
    assertMatch(s.apiKeyHashes[0]!, /^[0-9a-f]{64}$/);
  });

  await t.step("bad values name the variable", async () => {
    for (
      const [vars, re] of [
        [{ PORT: "eighty" }, /^PORT/],
        [{ PUBLIC_URL: "not a url" }, /^PUBLIC_URL/],
        [{ PUBLIC_URL: "ftp://x" }, /^PUBLIC_URL/],
        [{ GATEWAY_API_KEY: "short" }, /^GATEWAY_API_KEY/],
      ] as const
    ) {
      const e = await readSettings(env(vars)).catch((e: Error) => e);
      assert(e instanceof Error);
      assertMatch(e.message, re);
    }
  });
});
