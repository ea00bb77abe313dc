/**
 * `GET /` (the metadata's `service_documentation`, RFC 8414 §2): HTML for browsers, JSON for
 * `Accept: application/json`; the URLs to paste into each client, each backend's public status
 * from a cached probe, no backend URL and no secret. In-process, then in a real Chromium.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { startModernBackend } from "./_backends.ts";
import { launchChromium } from "./_browser.ts";
import { makeDeps, serveGateway } from "./_helpers.ts";
import { STATUS_TTL_MS } from "../lib/home/backend_status.ts";
import { createHandler } from "../main.ts";
import { prefersJson } from "../routes/home.ts";

const DEAD = "http://127.0.0.1:9/mcp";

function get(path: string, accept?: string): Request {
  return new Request(`http://localhost:8000${path}`, {
    headers: accept ? { accept } : {},
  });
}

Deno.test("GET /", async (t) => {
  const up = startModernBackend();
  const deps = await makeDeps({
    config: {
      serverName: "acme-tools",
      backends: [
        { name: "docs", url: up.url, description: "Company documentation" },
        { name: "dead", url: DEAD, timeoutMs: 1000 },
      ],
    },
    env: { PUBLIC_URL: "https://gw.example", GATEWAY_API_KEY: "an-api-key-of-the-owner" },
  });
  const handle = createHandler(deps);
  try {
    await t.step("Accept: application/json → the JSON document", async () => {
      const res = await handle(get("/", "application/json"));
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals(res.headers.get("vary"), "Accept");
      const body = await res.json();
      assertEquals(body.name, "acme-tools");
      assertEquals(body.mcp, "https://gw.example/mcp");
      assertEquals(
        body.authorizationServerMetadata,
        "https://gw.example/.well-known/oauth-authorization-server",
      );
      assertEquals(body.loopbackOnly, false);
      assertEquals(
        body.backends.map((b: Record<string, unknown>) => [b.name, b.url, b.status]),
        [
          ["docs", "https://gw.example/mcp/docs", "up"],
          ["dead", "https://gw.example/mcp/dead", "down"],
        ],
      );
      assertEquals(body.backends[0].description, "Company documentation");
      assertMatch(body.backends[0].checkedAt, /^\d{4}-\d\d-\d\dT/);
      assertEquals(
        body.clients.map((c: { id: string }) => c.id),
        ["claude", "claude-code", "chatgpt", "cursor", "vscode", "inspector"],
      );
      const code = body.clients.find((c: { id: string }) => c.id === "claude-code");
      assertEquals(code.snippet, "claude mcp add --transport http gateway https://gw.example/mcp");
      const vscode = body.clients.find((c: { id: string }) => c.id === "vscode");
      assertEquals(JSON.parse(vscode.snippet), {
        servers: { gateway: { type: "http", url: "https://gw.example/mcp" } },
      });
    });

    await t.step("no backend URL, header or secret appears", async () => {
      for (const accept of ["application/json", "text/html"]) {
        const text = await (await handle(get("/", accept))).text();
        assert(!text.includes(up.url), "the backend's URL is not shown");
        assert(!text.includes("127.0.0.1:9"), "the dead backend's URL is not shown");
        assert(!text.includes("an-api-key-of-the-owner"), "no API key");
        assert(!text.includes("correct horse battery staple"), "no owner password");
      }
    });

    await t.step("a browser's Accept → the HTML page with the security headers", async () => {
      const res = await handle(
        get("/", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
      );
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
      assertMatch(res.headers.get("content-security-policy")!, /frame-ancestors 'none'/);
      const html = await res.text();
      assertStringIncludes(html, "<h1>acme-tools</h1>");
      assertStringIncludes(html, '<code class="url">https://gw.example/mcp</code>');
      assertStringIncludes(html, '<td class="up">up</td>');
      assertStringIncludes(html, '<td class="down">down</td>');
      assertStringIncludes(html, "Company documentation");
    });

    await t.step("the probe is cached: one per backend per STATUS_TTL_MS", async () => {
      const probes = () => up.requests.filter((r) => r.method === "POST").length;
      const before = probes();
      await (await handle(get("/"))).body?.cancel();
      assertEquals(probes(), before);
      deps.clock.advance(STATUS_TTL_MS + 1);
      // Stale: answered at once from the old result while one new probe runs.
      await (await handle(get("/"))).body?.cancel();
      await (await handle(get("/"))).body?.cancel();
      for (let i = 0; i < 100 && probes() === before; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assertEquals(probes(), before + 1);
    });

    await t.step("Accept negotiation (RFC 9110 §12.5.1)", () => {
      assertEquals(prefersJson(null), false);
      assertEquals(prefersJson("*/*"), false);
      assertEquals(prefersJson("application/json"), true);
      assertEquals(prefersJson("application/json, text/html;q=0.5"), true);
      assertEquals(prefersJson("text/html, application/json"), false);
      assertEquals(prefersJson("application/json;q=0, */*"), false);
      assertEquals(prefersJson("application/*"), true);
    });

    await t.step("POST / is 405 with Allow: GET, HEAD", async () => {
      const res = await handle(new Request("http://localhost:8000/", { method: "POST" }));
      assertEquals(res.status, 405);
      assertEquals(res.headers.get("allow"), "GET, HEAD");
    });
  } finally {
    deps.kv.close();
    await up.close();
  }
});

Deno.test({
  name: "GET / in a browser",
  // playwright keeps its pipe and child process in ways Deno's sanitizers do not follow.
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const up = startModernBackend();
    const gateway = await serveGateway({
      config: { backends: [{ name: "docs", url: up.url }, { name: "dead", url: DEAD }] },
    });
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const res = await page.goto(`${gateway.url}/`);
      await t.step("renders with status 200 and the gateway's name", async () => {
        assertEquals(res?.status(), 200);
        assertEquals(await page.title(), "mcp-edge-gateway");
        assertEquals(await page.locator("h1").innerText(), "mcp-edge-gateway");
      });
      await t.step("shows the /mcp URL and each backend with its status", async () => {
        assertEquals(await page.locator("code.url").innerText(), `${gateway.url}/mcp`);
        const rows = await page.locator("tbody tr").allInnerTexts();
        assertEquals(rows.length, 2);
        assertMatch(rows[0]!, new RegExp(`^docs\\s+${gateway.url}/mcp/docs\\s+up$`));
        assertMatch(rows[1]!, /^dead\s+\S+\/mcp\/dead\s+down$/);
      });
      await t.step("on a loopback URL, says web clients need a tunnel", async () => {
        const claude = await page.locator("section#claude").innerText();
        assertStringIncludes(claude, "cannot reach this localhost address");
        const code = await page.locator("section#claude-code").innerText();
        assert(!code.includes("cannot reach"), "Claude Code runs locally: no tunnel needed");
        assertStringIncludes(code, `claude mcp add --transport http gateway ${gateway.url}/mcp`);
      });
    } finally {
      await browser.close();
      await gateway.close();
      await up.close();
    }
  },
});
