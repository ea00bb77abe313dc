/**
 * `user-secret` backends (issue 9): the connect page asks the signed-in user for their own
 * secret (a CSRF-protected form), the gateway stores it sealed and sends it in the configured
 * header and template on both `/mcp` and `/mcp/{backend}`; the backend refusing it (401) drops
 * it and the user is asked again.
 */
import type { AuditRecord } from "../lib/store.ts";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { createMcpHandler, McpServer } from "@modelcontextprotocol/server";
import { backendConnectionKey } from "../lib/store.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import {
  assertPage,
  signedInBrowser,
  startCredentialsSetup,
  userRef,
  userToken,
} from "./_credentials.ts";
import { field } from "./_http_browser.ts";

/** A search backend (official SDK server) that knows a few API keys, sent as `X-Api-Key: key=…`. */
function startSearchBackend(keys: Record<string, string>) {
  const seen: (string | null)[] = [];
  const mcp = createMcpHandler((ctx) => {
    const account = (ctx.authInfo?.extra as { account: string }).account;
    const server = new McpServer({ name: "search", version: "1.0.0" });
    server.registerTool("whoami", { description: "The account of the key" }, () => ({
      content: [{ type: "text", text: `search account ${account}` }],
    }));
    return server;
  }, { keepAliveMs: 0 });
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const header = req.headers.get("x-api-key");
    seen.push(header);
    const account = header?.startsWith("key=") ? keys[header.slice(4)] : undefined;
    if (!account) return new Response("bad key", { status: 401 });
    return mcp.fetch(req, {
      authInfo: { token: "", clientId: "", scopes: [], extra: { account } },
    });
  });
  return {
    url: `http://127.0.0.1:${http.addr.port}/mcp`,
    seen,
    keys,
    close: async () => {
      await mcp.close();
      await http.shutdown();
    },
  };
}

const textOf = (result: any) => String(result?.content?.[0]?.text ?? "");

Deno.test("user-secret backends", async (t) => {
  const search = startSearchBackend({ "sk-ana-0123456789": "ana-search" });
  const s = await startCredentialsSetup({
    backends: () => [{
      name: "search",
      url: search.url,
      auth: {
        type: "user-secret",
        label: "Search API key",
        header: "X-Api-Key",
        template: "key={secret}",
      },
    }],
  });
  const connectUrl = `${s.gw.url}/connect/search`;
  const clients: Client[] = [];
  const client = async (url: string, token: string) => {
    const c = new Client({ name: "secret test", version: "1.0.0" }, {
      versionNegotiation: { mode: "auto" },
    });
    await c.connect(
      new StreamableHTTPClientTransport(new URL(url), {
        requestInit: { headers: { authorization: `Bearer ${token}` } },
      }),
    );
    clients.push(c);
    return c;
  };
  try {
    const ana = await signedInBrowser(s.gw.url, "ana");
    const token = await userToken(s.gw.deps, userRef("ana"));

    await t.step("not connected: the connect answer names /connect/search", async () => {
      const c = await client(`${s.gw.url}/mcp`, token);
      assert(
        (await c.listTools()).tools.some((x: { name: string }) => x.name === "search__connect"),
      );
      const result = await c.callTool({ name: "search__whoami", arguments: {} });
      assertEquals(result.isError, true);
      assertStringIncludes(textOf(result), connectUrl);
      assertEquals(search.seen.length, 0);
    });

    await t.step(
      "GET /connect/search: a password form labelled as configured, with the session's CSRF token",
      async () => {
        const page = await ana.navigate(connectUrl);
        assertPage(page, 200, /Search API key/);
        assertMatch(page.html, /<input type="password" id="secret" name="secret"/);
        assert(field(page.html, "csrf_token").length > 20);
        assertEquals(page.res.headers.get("x-frame-options"), "DENY");
      },
    );

    await t.step("the form needs its CSRF token, our Origin, and a usable value", async () => {
      const page = await ana.navigate(connectUrl);
      const csrf = field(page.html, "csrf_token");
      assertPage(await ana.submit(connectUrl, { csrf_token: "forged", secret: "x" }), 403, /CSRF/);
      const foreign = await ana.navigate(connectUrl, {
        method: "POST",
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          origin: "https://evil.example",
        },
        body: new URLSearchParams({ csrf_token: csrf, secret: "sk-ana-0123456789" }),
      });
      assertPage(foreign, 403, /CSRF/);
      assertPage(
        await ana.submit(connectUrl, { csrf_token: csrf, secret: "   " }),
        400,
        /Enter a value/,
      );
      assertPage(
        await ana.submit(connectUrl, { csrf_token: csrf, secret: "a\r\nX-Evil: 1" }),
        400,
        /Control characters/,
      );
      assertEquals(
        (await s.gw.deps.kv.get(backendConnectionKey("corp:ana", "search"))).value,
        null,
      );
    });

    await t.step(
      "a saved secret is sealed in KV and sent with the template on /mcp and /mcp/search",
      async () => {
        const page = await ana.navigate(connectUrl);
        const done = await ana.submit(connectUrl, {
          csrf_token: field(page.html, "csrf_token"),
          secret: "sk-ana-0123456789",
        });
        assertPage(done, 200, /search is connected\./);
        const row = await s.gw.deps.kv.get(backendConnectionKey("corp:ana", "search"));
        assert(
          !JSON.stringify(row.value, (_k, v) => v instanceof Uint8Array ? [...v] : v).includes(
            "sk-ana",
          ),
        );
        const c = await client(`${s.gw.url}/mcp`, token);
        assertEquals(
          textOf(await c.callTool({ name: "search__whoami", arguments: {} })),
          "search account ana-search",
        );
        assertEquals(search.seen.at(-1), "key=sk-ana-0123456789");
        const pt = await client(
          `${s.gw.url}/mcp/search`,
          await userToken(s.gw.deps, userRef("ana"), {
            scope: "mcp:search",
            resource: `${s.gw.url}/mcp/search`,
          }),
        );
        assertEquals(
          textOf(await pt.callTool({ name: "whoami", arguments: {} })),
          "search account ana-search",
        );
        assert(!JSON.stringify(s.gw.deps.logs).includes("sk-ana"), "never in the logs");
      },
    );

    await t.step(
      "the backend refusing the secret (401): dropped, and the user is asked again",
      async () => {
        delete search.keys["sk-ana-0123456789"];
        const c = await client(`${s.gw.url}/mcp`, token);
        const result = await c.callTool({ name: "search__whoami", arguments: {} });
        assertEquals(result.isError, true);
        assertStringIncludes(textOf(result), connectUrl);
        assertEquals(
          (await s.gw.deps.kv.get(backendConnectionKey("corp:ana", "search"))).value,
          null,
        );
        const page = await ana.navigate(`${s.gw.url}/connections`);
        assertMatch(page.html, /data-backend="search"[\s\S]*?Not connected/);
      },
    );

    await t.step("the audit trail names who connected and why the connection went", async () => {
      await s.gw.deps.audit.flush();
      const events: string[] = [];
      for await (const e of s.gw.deps.kv.list<AuditRecord>({ prefix: ["audit"] })) {
        const r = e.value;
        if (r.backend !== "search" || !r.event.startsWith("backend_")) continue;
        events.push(`${r.event} ${r.user} ${r.method} ${r.outcome}`);
      }
      assertEquals(events, [
        "backend_connect corp:ana user-secret ok",
        "backend_disconnect corp:ana backend_401 ok",
      ]);
    });
  } finally {
    for (const c of clients) await c.close().catch(() => {});
    await s.close();
    await search.close();
  }
});
