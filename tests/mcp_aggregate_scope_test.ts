/**
 * Per-backend scopes on the aggregated `/mcp`: `mcp` covers every backend, `mcp:<backend>` one;
 * a token never sees a backend outside its scope, and calling one is a 403 step-up challenge
 * (MCP 2025-11-25 Authorization §Scope Challenge Handling; RFC 6750 §3.1).
 */
import { assertEquals, assertMatch } from "./_assert.ts";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { z } from "zod";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { serveGateway } from "./_helpers.ts";
import { legacyBackend, mintAccessToken, modernBackend } from "./_aggregate_backends.ts";

Deno.test("/mcp per-backend scopes", async (t) => {
  const alpha = legacyBackend("alpha", (s) => {
    s.registerTool("echo", { inputSchema: { text: z.string() } }, ({ text }: { text: string }) => ({
      content: [{ type: "text", text: `alpha:${text}` }],
    }));
  }, { instructions: "alpha rules" });
  const beta = modernBackend("beta", (s) => {
    s.registerTool("echo", { inputSchema: z.object({ text: z.string() }) }, ({ text }) => ({
      content: [{ type: "text", text: `beta:${text}` }],
    }));
    s.registerResource("notes", "file:///notes.txt", {}, (uri) => ({
      contents: [{ uri: uri.href, text: "beta notes" }],
    }));
  }, { instructions: "beta rules" });
  const gw = await serveGateway({
    config: { backends: [{ name: "alpha", url: alpha.url }, { name: "beta", url: beta.url }] },
  });
  const alphaOnly = await mintAccessToken(gw.deps, { scope: "mcp:alpha" });
  const headers = { authorization: `Bearer ${alphaOnly}` };
  const call = (body: unknown, extra: HeadersInit = {}) =>
    fetch(`${gw.url}/mcp`, {
      method: "POST",
      headers: {
        ...headers,
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        ...extra,
      },
      body: JSON.stringify(body),
    });
  try {
    await t.step("mcp:alpha sees only alpha (legacy client), instructions too", async () => {
      const client = new V1Client({ name: "t", version: "1" });
      await client.connect(
        new V1ClientTransport(new URL(`${gw.url}/mcp`), { requestInit: { headers } }),
      );
      try {
        assertEquals(client.getInstructions(), "[alpha]\nalpha rules");
        assertEquals(client.getServerCapabilities()?.resources, undefined);
        const tools = await client.listTools();
        assertEquals(tools.tools.map((x: { name: string }) => x.name), ["alpha__echo"]);
      } finally {
        await client.close();
      }
    });

    await t.step("mcp:alpha sees only alpha (modern client)", async () => {
      const client = new Client({ name: "t", version: "1" }, {
        versionNegotiation: { mode: "auto" },
      });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit: { headers } }),
      );
      try {
        const tools = await client.listTools();
        assertEquals(tools.tools.map((x) => x.name), ["alpha__echo"]);
        const ok = await client.callTool({ name: "alpha__echo", arguments: { text: "x" } });
        assertEquals(ok.content, [{ type: "text", text: "alpha:x" }]);
      } finally {
        await client.close();
      }
    });

    await t.step(
      "calling a backend outside the scope → 403 insufficient_scope (modern)",
      async () => {
        const res = await call({
          jsonrpc: "2.0",
          id: 1,
          method: "tools/call",
          params: {
            name: "beta__echo",
            arguments: { text: "x" },
            _meta: {
              "io.modelcontextprotocol/protocolVersion": "2026-07-28",
              "io.modelcontextprotocol/clientCapabilities": {},
            },
          },
        }, {
          "mcp-protocol-version": "2026-07-28",
          "mcp-method": "tools/call",
          "mcp-name": "beta__echo",
        });
        assertEquals(res.status, 403);
        assertEquals(res.headers.get("content-type"), "application/json");
        const challenge = res.headers.get("www-authenticate") ?? "";
        assertMatch(challenge, /^Bearer /);
        assertMatch(challenge, /error="insufficient_scope"/);
        assertMatch(challenge, /scope="mcp:beta"/);
        assertMatch(
          challenge,
          new RegExp(`resource_metadata="${gw.url}/.well-known/oauth-protected-resource/mcp"`),
        );
        assertEquals((await res.json()).error, "insufficient_scope");
      },
    );

    await t.step("reading a resource of a backend outside the scope → 403 (legacy)", async () => {
      const res = await call({
        jsonrpc: "2.0",
        id: 2,
        method: "resources/read",
        params: { uri: "mcpgw-beta+file:///notes.txt" },
      }, { "mcp-session-id": "whatever", "mcp-protocol-version": "2025-11-25" });
      assertEquals(res.status, 403);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertMatch(res.headers.get("www-authenticate") ?? "", /scope="mcp:beta"/);
      await res.body?.cancel();
    });

    await t.step("an unknown backend is a JSON-RPC error, not a 403", async () => {
      const client = new Client({ name: "t", version: "1" }, {
        versionNegotiation: { mode: "auto" },
      });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit: { headers } }),
      );
      try {
        const error = await client.callTool({ name: "gamma__echo", arguments: {} }).then(
          () => null,
          (e) => e as { code?: number },
        );
        assertEquals(error?.code, -32602);
      } finally {
        await client.close();
      }
    });

    await t.step("a token for /mcp/alpha is refused on /mcp (audience)", async () => {
      const narrow = await mintAccessToken(gw.deps, {
        scope: "mcp:alpha",
        resource: `${gw.url}/mcp/alpha`,
      });
      const res = await fetch(`${gw.url}/mcp`, {
        method: "POST",
        headers: { authorization: `Bearer ${narrow}`, "content-type": "application/json" },
        body: "{}",
      });
      assertEquals(res.status, 401);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertMatch(res.headers.get("www-authenticate") ?? "", /error="invalid_token"/);
      await res.body?.cancel();
    });

    await t.step("beta was never contacted for the alpha-only token", () => {
      // The gateway connects to a backend only for a principal whose scope covers it.
      assertEquals(beta.seen.length, 0);
    });
  } finally {
    await closeAggregate(gw.deps);
    await alpha.close();
    await beta.close();
    await gw.close();
  }
});
