/**
 * The start-up banner: the pure renderer (data in, lines out), the data it gathers from real
 * backends (one answering, one down), and `main.ts` printing it once, to stderr, at start.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { startModernBackend } from "./_backends.ts";
import { makeDeps } from "./_helpers.ts";
import { freePort, spawnDeno } from "./_process.ts";
import type { BackendConfig } from "../lib/config.ts";
import { type BannerData, printBanner, renderBanner } from "../lib/startup/banner.ts";

const backend = (name: string): BackendConfig => ({
  name,
  url: "http://127.0.0.1:9/mcp",
  headers: {},
  timeoutMs: 1000,
  listPollSeconds: 60,
});

function data(overrides: Partial<BannerData> = {}): BannerData {
  return {
    version: "1.2.3",
    denoVersion: "2.9.6",
    listen: "http://0.0.0.0:8000",
    publicUrl: "https://gw.example",
    publicUrlSet: true,
    backends: [
      {
        backend: backend("docs"),
        health: { name: "docs", status: "up", latencyMs: 12, httpStatus: 200 },
        checkedAt: 0,
      },
      {
        backend: backend("search"),
        health: { name: "search", status: "down", latencyMs: 3, error: "unreachable" },
        checkedAt: 0,
      },
    ],
    kv: { kind: "file", path: "/srv/gw.kv", from: "KV_PATH" },
    signIn: [
      {
        level: "info",
        message: "sign-in with Corp (oidc): register the callback URL " +
          "https://gw.example/login/corp/callback",
      },
      { level: "info", message: "sign-in with the owner password (GATEWAY_OWNER_PASSWORD)" },
    ],
    apiKeys: 2,
    externalIssuers: [],
    ...overrides,
  };
}

Deno.test("renderBanner", async (t) => {
  await t.step("version, URLs with each backend's probe, KV, sign-in methods, API keys", () => {
    assertEquals(renderBanner(data()), [
      "mcp-edge-gateway 1.2.3 (Deno 2.9.6) listening on http://0.0.0.0:8000",
      "  public URL  https://gw.example",
      "  MCP         https://gw.example/mcp         every backend, one sign-in",
      "              https://gw.example/mcp/docs    up (HTTP 200 in 12 ms)",
      "              https://gw.example/mcp/search  DOWN (unreachable)",
      "  guide       https://gw.example/  how to connect each client",
      "  KV          SQLite file /srv/gw.kv (KV_PATH)",
      "  sign-in     Corp (oidc): register the callback URL https://gw.example/login/corp/callback",
      "              the owner password (GATEWAY_OWNER_PASSWORD)",
      "  API keys    2 (GATEWAY_API_KEY)",
      "warning: backend search is down (unreachable): /mcp leaves it out and /mcp/search " +
      "answers 502 until it is back",
    ]);
  });

  await t.step("warns when nobody can authorize clients", () => {
    const lines = renderBanner(data({
      signIn: [{ level: "warn", message: "nobody can authorize clients: set X" }],
      backends: [],
    }));
    assert(lines.includes("  sign-in     none"));
    assertEquals(lines.filter((l) => l.startsWith("warning: ")), [
      "warning: nobody can authorize clients: set X",
    ]);
  });

  await t.step("warns about an http PUBLIC_URL that is not loopback (OAuth 2.1 §1.5)", () => {
    const warnings = (publicUrl: string) =>
      renderBanner(data({ publicUrl, backends: [] })).filter((l) => l.startsWith("warning: "));
    assertEquals(warnings("https://gw.example"), []);
    assertEquals(warnings("http://localhost:8000"), []);
    assertEquals(warnings("http://127.0.0.1:8000"), []);
    const [w] = warnings("http://gw.example");
    assertMatch(w!, /^warning: PUBLIC_URL http:\/\/gw\.example is plain http/);
  });

  await t.step("says when PUBLIC_URL is the default, and where KV lives", () => {
    const lines = renderBanner(data({
      publicUrl: "http://localhost:8000",
      publicUrlSet: false,
      backends: [],
      kv: { kind: "memory" },
    }));
    assertMatch(lines[1]!, /^ {2}public URL {2}http:\/\/localhost:8000 \(PUBLIC_URL unset/);
    assertMatch(lines.find((l) => l.startsWith("  KV"))!, /in memory/);
    assert(lines.some((l) => /^warning: KV is in memory/.test(l)));
    for (const kv of [{ kind: "deploy" }, { kind: "default" }] as const) {
      const line = renderBanner(data({ kv })).find((l) => l.startsWith("  KV"))!;
      assertMatch(line, kv.kind === "deploy" ? /Deno Deploy/ : /DENO_DIR/);
    }
    const remote = renderBanner(data({
      kv: { kind: "remote", url: "http://kv.internal:4512/" },
    }));
    assertStringIncludes(remote.find((l) => l.startsWith("  KV"))!, "KV Connect");
    assert(remote.some((l) => /^warning: KV Connect over plain http/.test(l)));
  });
});

Deno.test("printBanner probes each backend once and prints every line", async () => {
  const up = startModernBackend();
  const deps = await makeDeps({
    config: {
      backends: [
        { name: "alpha", url: up.url },
        { name: "dead", url: "http://127.0.0.1:9/mcp", timeoutMs: 2000 },
      ],
    },
    env: { PUBLIC_URL: "http://localhost:8000" },
  });
  try {
    const lines: string[] = [];
    await printBanner(
      deps,
      { listen: "http://127.0.0.1:8000", publicUrlSet: true, kv: { kind: "memory" } },
      (l) => lines.push(l),
    );
    assertMatch(lines[0]!, /^mcp-edge-gateway \S+ \(Deno \S+\) listening on http:\/\/127\.0\.0\.1/);
    assertMatch(lines.find((l) => l.includes("/mcp/alpha"))!, /up \(HTTP \d{3} in \d+ ms\)$/);
    assertMatch(lines.find((l) => l.includes("/mcp/dead"))!, /DOWN \(unreachable\)$/);
    assert(lines.some((l) => l.includes("the owner password (GATEWAY_OWNER_PASSWORD)")));
    assert(lines.some((l) => l.startsWith("warning: backend dead is down")));
    assertEquals(up.requests.filter((r) => r.method === "POST").length, 1);
  } finally {
    deps.kv.close();
    await up.close();
  }
});

Deno.test("main.ts prints the banner once, to stderr, with the sign-in providers", async () => {
  const up = startModernBackend();
  const dir = await Deno.makeTempDir({ prefix: "gateway-banner-" });
  const port = freePort();
  await Deno.writeTextFile(
    `${dir}/config.json`,
    JSON.stringify({
      backends: [{ name: "alpha", url: up.url }],
      login: {
        providers: [{
          id: "corp",
          type: "oidc",
          issuer: "https://login.example.com",
          clientId: "gw",
          clientSecret: "${CORP_SECRET}",
        }],
        access: [{ domains: ["example.com"], scopes: ["mcp"] }],
      },
    }),
  );
  const gateway = spawnDeno(["run", "-A", "main.ts"], {
    env: {
      PORT: String(port),
      PUBLIC_URL: "https://gw.example",
      KV_PATH: ":memory:",
      GATEWAY_CONFIG: `${dir}/config.json`,
      CORP_SECRET: "corp secret value",
    },
  });
  try {
    await gateway.waitForStderr(/warning: [^\n]*\n?$/);
    const stderr = gateway.stderr();
    assertEquals(stderr.match(/listening on/g)?.length, 1);
    assertStringIncludes(stderr, "https://gw.example/mcp/alpha  up (HTTP ");
    assertStringIncludes(stderr, "https://gw.example/login/corp/callback");
    assertStringIncludes(stderr, "KV          in memory");
    assert(!stderr.includes("corp secret value"), "no secret in the banner");
    assert(!gateway.stdout().includes("listening on"), "the banner is not on stdout");
  } finally {
    await gateway.stop();
    await up.close();
    await Deno.remove(dir, { recursive: true });
  }
});
