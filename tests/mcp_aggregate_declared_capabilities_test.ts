/**
 * What `/mcp` declares to backends (issue 15 item 2; MCP 2025-11-25 Basic/Lifecycle §Capability
 * Negotiation): only what it can relay for the calling client. A backend that offers tools only
 * to clients with elicitation or sampling (server-everything, a 2025-era v1-SDK server; a
 * 2026-07-28 v2-SDK backend reading the request envelope) shows them only to clients that
 * declared the capability, and they work for those; lists are cached per declaration.
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { createMcpHandler, McpServer } from "@modelcontextprotocol/server";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { serveGateway } from "./_helpers.ts";
import { everythingBackend, mintAccessToken } from "./_aggregate_backends.ts";

const CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities";
const ELICIT = "ev__trigger-elicitation-request";
const SAMPLE = "ev__trigger-sampling-request";

/**
 * A 2026-07-28 backend that lists `ask` only when the request's envelope declares elicitation,
 * and records the capabilities each `tools/call` declared.
 */
function envelopeBackend() {
  const declaredBy = new WeakMap<Request, Record<string, unknown>>();
  const calls: unknown[] = [];
  const handler = createMcpHandler((ctx) => {
    const declared = ctx.requestInfo ? declaredBy.get(ctx.requestInfo) : undefined;
    const server = new McpServer({ name: "beta", version: "2.0.0" });
    server.registerTool("plain", {}, () => ({ content: [{ type: "text", text: "plain" }] }));
    if (declared?.elicitation) {
      server.registerTool("ask", {}, () => ({ content: [{ type: "text", text: "asked" }] }));
    }
    return server;
  }, { legacy: "reject" });
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    if (req.method === "POST") {
      const body = await req.clone().json().catch(() => undefined);
      const declared = body?.params?._meta?.[CAPABILITIES_KEY];
      if (declared && typeof declared === "object") declaredBy.set(req, declared);
      if (body?.method === "tools/call") calls.push(declared);
    }
    return handler.fetch(req);
  });
  return {
    url: `http://127.0.0.1:${http.addr.port}/mcp`,
    calls,
    close: async () => {
      await handler.close();
      await http.shutdown();
    },
  };
}

const texts = (result: any): string[] =>
  (result.content ?? []).map((c: { text?: string }) => c.text ?? "");

Deno.test("/mcp declares to backends only what it can relay for the client", async (t) => {
  const ev = await everythingBackend();
  const beta = envelopeBackend();
  const gw = await serveGateway({
    config: {
      backends: [
        { name: "ev", url: ev.url, timeoutMs: 10_000 },
        { name: "beta", url: beta.url },
      ],
    },
  });
  assert(gw.deps.config.catalog.cacheTtlSeconds > 0, "the list cache is on in this test");
  const token = await mintAccessToken(gw.deps);
  const requestInit = { headers: { authorization: `Bearer ${token}` } };
  const names = async (client: { listTools(): Promise<{ tools: { name: string }[] }> }) =>
    (await client.listTools()).tools.map((x) => x.name);
  const plain = new V1Client({ name: "plain", version: "1" });
  try {
    await plain.connect(new V1ClientTransport(new URL(`${gw.url}/mcp`), { requestInit }));

    await t.step("a client that declared neither sees no tool that needs them", async () => {
      const listed = await names(plain);
      assert(listed.includes("ev__echo"), listed.join(" "));
      assert(listed.includes("beta__plain"), listed.join(" "));
      assert(!listed.includes(ELICIT), `${ELICIT} listed for a client without elicitation`);
      assert(!listed.includes(SAMPLE), `${SAMPLE} listed for a client without sampling`);
      assert(!listed.includes("beta__ask"), "beta__ask listed for a client without elicitation");
    });

    await t.step("a 2025 client that declared both sees them, and they work", async () => {
      const both = new V1Client({ name: "both", version: "1" }, {
        capabilities: { elicitation: {}, sampling: {} },
      });
      both.setRequestHandler(ElicitRequestSchema, () => ({ action: "decline" }));
      both.setRequestHandler(CreateMessageRequestSchema, () => ({
        role: "assistant",
        content: { type: "text", text: "sampled by the client" },
        model: "t",
      }));
      await both.connect(new V1ClientTransport(new URL(`${gw.url}/mcp`), { requestInit }));
      try {
        const listed = await names(both);
        assert(listed.includes(ELICIT) && listed.includes(SAMPLE), listed.join(" "));
        assert(listed.includes("beta__ask"), listed.join(" "));
        const elicited = await both.callTool({ name: ELICIT, arguments: {} });
        assert(!elicited.isError, texts(elicited).join(" "));
        assertMatch(texts(elicited).join(" "), /User declined/);
        const sampled = await both.callTool({
          name: SAMPLE,
          arguments: { prompt: "hi", maxTokens: 10 },
        });
        assert(!sampled.isError, texts(sampled).join(" "));
        assertMatch(texts(sampled).join(" "), /sampled by the client/);
      } finally {
        await both.close();
      }
    });

    await t.step("a 2026-07-28 client that declared elicitation only", async () => {
      const modern = new Client({ name: "modern", version: "1" }, {
        versionNegotiation: { mode: "auto" },
        capabilities: { elicitation: { form: {}, url: {} }, roots: {} },
      });
      await modern.connect(
        new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit }),
      );
      try {
        assertEquals(modern.getProtocolEra(), "modern");
        const listed = await names(modern);
        assert(listed.includes(ELICIT), listed.join(" "));
        assert(!listed.includes(SAMPLE), `${SAMPLE} listed for a client without sampling`);
        assert(listed.includes("beta__ask"), listed.join(" "));
        // beta is connected: the call takes the fast path, with the same declaration
        beta.calls.length = 0;
        const before = gw.deps.logs.length;
        const asked = await modern.callTool({ name: "beta__ask", arguments: {} });
        assertEquals(texts(asked), ["asked"]);
        assertEquals(beta.calls, [{ elicitation: { form: {} } }]);
        const line = gw.deps.logs.slice(before).find((l) => l.tool === "beta__ask");
        assertEquals(line?.fast_path, true);
      } finally {
        await modern.close();
      }
    });

    await t.step("each client keeps its own list (cached per declaration)", async () => {
      const listed = await names(plain);
      assert(!listed.includes(ELICIT) && !listed.includes(SAMPLE), listed.join(" "));
      assert(!listed.includes("beta__ask"), listed.join(" "));
      beta.calls.length = 0;
      const called = await plain.callTool({ name: "beta__plain", arguments: {} });
      assertEquals(texts(called), ["plain"]);
      assertEquals(beta.calls, [{}]);
    });
  } finally {
    await plain.close();
    await closeAggregate(gw.deps);
    await gw.close();
    await beta.close();
    await ev.close();
  }
});
