/**
 * End-to-end: the aggregated `/mcp` endpoint over a legacy (v1 SDK) and a modern (v2 SDK)
 * backend, driven by a legacy client (v1 SDK) and a modern client (v2 SDK, auto negotiation).
 */
import { assert, assertEquals, assertMatch, assertRejects } from "./_assert.ts";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ResourceTemplate as V1ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { completable, ResourceTemplate } from "@modelcontextprotocol/server";
import { z } from "zod";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { shortenedName } from "../lib/mcp/aggregate/naming.ts";
import { type ServedGateway, serveGateway } from "./_helpers.ts";
import {
  legacyBackend,
  mintAccessToken,
  modernBackend,
  type TestBackend,
} from "./_aggregate_backends.ts";

const LONG = "x".repeat(60);

function startBackends(): { alpha: TestBackend; beta: TestBackend } {
  const alpha = legacyBackend("alpha", (s) => {
    s.registerTool(
      "echo",
      { description: "echo", inputSchema: { text: z.string() } },
      ({ text }: { text: string }) => ({ content: [{ type: "text", text: `alpha:${text}` }] }),
    );
    s.registerTool("whoami", {}, () => ({
      content: [
        { type: "text", text: "alpha" },
        { type: "resource_link", uri: "file:///notes.txt", name: "notes" },
      ],
    }));
    s.registerTool(LONG, {}, () => ({ content: [{ type: "text", text: "too long" }] }));
    s.registerPrompt(
      "greet",
      { argsSchema: { who: z.string() } },
      ({ who }: { who: string }) => ({
        messages: [{ role: "user", content: { type: "text", text: `alpha greets ${who}` } }],
      }),
    );
    s.registerResource("notes", "file:///notes.txt", { mimeType: "text/plain" }, (uri: URL) => ({
      contents: [{ uri: uri.href, text: "alpha notes" }],
    }));
    s.registerResource(
      "item",
      new V1ResourceTemplate("item://alpha/{id}", { list: undefined }),
      {},
      (uri: URL, vars: Record<string, unknown>) => ({
        contents: [{ uri: uri.href, text: `alpha item ${vars.id}` }],
      }),
    );
  }, { instructions: "alpha rules" });
  const beta = modernBackend("beta", (s) => {
    s.registerTool(
      "echo",
      { inputSchema: z.object({ text: z.string() }) },
      ({ text }) => ({ content: [{ type: "text", text: `beta:${text}` }] }),
    );
    s.registerTool("whoami", {}, () => ({ content: [{ type: "text", text: "beta" }] }));
    s.registerPrompt(
      "greet",
      {
        argsSchema: z.object({
          color: completable(
            z.string(),
            (v) => ["red", "green", "blue"].filter((c) => c.startsWith(v ?? "")),
          ),
        }),
      },
      ({ color }) => ({
        messages: [{ role: "user", content: { type: "text", text: `beta likes ${color}` } }],
      }),
    );
    s.registerResource("notes", "file:///notes.txt", { mimeType: "text/plain" }, (uri) => ({
      contents: [{ uri: uri.href, text: "beta notes" }],
    }));
    s.registerResource(
      "item",
      new ResourceTemplate("item://beta/{id}", { list: undefined }),
      {},
      (uri, vars) => ({ contents: [{ uri: uri.href, text: `beta item ${vars.id}` }] }),
    );
  }, { instructions: "beta rules" });
  return { alpha, beta };
}

async function legacyClient(gw: ServedGateway, token: string): Promise<V1Client> {
  const client = new V1Client({ name: "legacy-test", version: "1.0.0" });
  await client.connect(
    new V1ClientTransport(new URL(`${gw.url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  return client;
}

async function modernClient(gw: ServedGateway, token: string): Promise<Client> {
  const client = new Client({ name: "modern-test", version: "1.0.0" }, {
    versionNegotiation: { mode: "auto" },
  });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  return client;
}

function texts(result: { content?: unknown }): string[] {
  return ((result.content ?? []) as { type: string; text?: string }[])
    .filter((c) => c.type === "text").map((c) => c.text!);
}

function post(gw: ServedGateway, token: string, body: unknown, headers: HeadersInit = {}) {
  return fetch(`${gw.url}/mcp`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...headers,
    },
    body: JSON.stringify(body),
  });
}

const INIT = {
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: {
    protocolVersion: "2025-11-25",
    capabilities: {},
    clientInfo: { name: "raw", version: "1" },
  },
};

Deno.test("/mcp aggregates a legacy and a modern backend", async (t) => {
  const { alpha, beta } = startBackends();
  const gw = await serveGateway({
    config: {
      serverName: "test-gateway",
      backends: [
        {
          name: "alpha",
          url: alpha.url,
          headers: { authorization: "Bearer backend-secret-${ALPHA}" },
        },
        { name: "beta", url: beta.url },
      ],
    },
    env: { ALPHA: "a1" },
  });
  const token = await mintAccessToken(gw.deps);
  try {
    await t.step("legacy client: initialize is answered by the gateway", async () => {
      const client = await legacyClient(gw, token);
      try {
        assertEquals(client.getServerVersion()?.name, "test-gateway");
        const caps = client.getServerCapabilities()!;
        assert(caps.tools && caps.prompts && caps.resources && caps.completions);
        assertEquals(caps.tools.listChanged, true); // both backends announce it; relayed
        assertEquals(client.getInstructions(), "[alpha]\nalpha rules\n\n[beta]\nbeta rules");
      } finally {
        await client.close();
      }
    });

    for (const era of ["legacy", "modern"] as const) {
      await t.step(`${era} client: lists merge in config order, always prefixed`, async () => {
        const client = era === "legacy"
          ? await legacyClient(gw, token)
          : await modernClient(gw, token);
        try {
          if (era === "modern") assertEquals((client as Client).getProtocolEra(), "modern");
          const tools = await client.listTools();
          assertEquals(tools.tools.map((x: { name: string }) => x.name), [
            "alpha__echo",
            "alpha__whoami",
            shortenedName("alpha", LONG),
            "beta__echo",
            "beta__whoami",
          ]);
          const prompts = await client.listPrompts();
          assertEquals(prompts.prompts.map((x: { name: string }) => x.name), [
            "alpha__greet",
            "beta__greet",
          ]);
          const resources = await client.listResources();
          assertEquals(resources.resources.map((x: { uri: string }) => x.uri), [
            "mcpgw-alpha+file:///notes.txt",
            "mcpgw-beta+file:///notes.txt",
          ]);
          const templates = await client.listResourceTemplates();
          assertEquals(
            templates.resourceTemplates.map((x: { uriTemplate: string }) => x.uriTemplate),
            ["mcpgw-alpha+item://alpha/{id}", "mcpgw-beta+item://beta/{id}"],
          );
        } finally {
          await client.close();
        }
      });

      await t.step(`${era} client: calls route by prefix, collisions stay apart`, async () => {
        const client = era === "legacy"
          ? await legacyClient(gw, token)
          : await modernClient(gw, token);
        try {
          const a = await client.callTool({ name: "alpha__echo", arguments: { text: "hi" } });
          assertEquals(texts(a), ["alpha:hi"]);
          const b = await client.callTool({ name: "beta__echo", arguments: { text: "hi" } });
          assertEquals(texts(b), ["beta:hi"]);
          assertEquals(
            (b._meta as Record<string, { name?: string }> | undefined)
              ?.["io.modelcontextprotocol/serverInfo"]?.name ?? "test-gateway",
            "test-gateway",
          );
          const who = await client.callTool({ name: "alpha__whoami", arguments: {} });
          assertEquals(texts(who), ["alpha"]);
          const link = (who.content as { type: string; uri?: string }[])[1]!;
          assertEquals(link.uri, "mcpgw-alpha+file:///notes.txt");

          const pa = await client.getPrompt({ name: "alpha__greet", arguments: { who: "bob" } });
          assertEquals(pa.messages[0]!.content, { type: "text", text: "alpha greets bob" });
          const pb = await client.getPrompt({ name: "beta__greet", arguments: { color: "red" } });
          assertEquals(pb.messages[0]!.content, { type: "text", text: "beta likes red" });

          const ra = await client.readResource({ uri: "mcpgw-alpha+file:///notes.txt" });
          assertEquals(ra.contents, [{
            uri: "mcpgw-alpha+file:///notes.txt",
            text: "alpha notes",
            ...(ra.contents[0]!.mimeType ? { mimeType: ra.contents[0]!.mimeType } : {}),
          }]);
          const rb = await client.readResource({ uri: "mcpgw-beta+file:///notes.txt" });
          assertEquals(rb.contents[0]!.text, "beta notes");
          assertEquals(rb.contents[0]!.uri, "mcpgw-beta+file:///notes.txt");
          const item = await client.readResource({ uri: "mcpgw-beta+item://beta/42" });
          assertEquals(item.contents[0]!.text, "beta item 42");

          const done = await client.complete({
            ref: { type: "ref/prompt", name: "beta__greet" },
            argument: { name: "color", value: "gr" },
          });
          assertEquals(done.completion.values, ["green"]);
        } finally {
          await client.close();
        }
      });

      await t.step(`${era} client: unknown names are JSON-RPC -32602 errors`, async () => {
        const client = era === "legacy"
          ? await legacyClient(gw, token)
          : await modernClient(gw, token);
        try {
          for (const name of ["gamma__echo", "echo", "alpha__", `alpha__${LONG}`]) {
            const error = await assertRejects(
              () => client.callTool({ name, arguments: {} }),
              Error,
            ) as { code?: number };
            assertEquals(error.code, -32602, name);
          }
          const error = await assertRejects(
            () => client.readResource({ uri: "file:///notes.txt" }),
            Error,
          ) as { code?: number };
          assertEquals(error.code, -32602);
          const missing = await assertRejects(
            () => client.getPrompt({ name: "beta__nope", arguments: {} }),
            Error,
          ) as { code?: number };
          assertEquals(missing.code, -32602);
        } finally {
          await client.close();
        }
      });
    }

    await t.step(
      "a name that cannot fit ^[a-zA-Z0-9_-]{1,64}$ is shortened and callable",
      async () => {
        const short = shortenedName("alpha", LONG);
        assertMatch(short, /^alpha__x{45}--[0-9a-f]{10}$/);
        const client = await modernClient(gw, token);
        try {
          assertEquals(texts(await client.callTool({ name: short, arguments: {} })), ["too long"]);
        } finally {
          await client.close();
        }
      },
    );

    await t.step("backends get only their configured credentials, never the token", () => {
      assert(alpha.seen.length > 0 && beta.seen.length > 0);
      for (const r of alpha.seen) assertEquals(r.authorization, "Bearer backend-secret-a1");
      for (const r of beta.seen) assertEquals(r.authorization, null);
    });

    await t.step("each backend's era is probed once and remembered", () => {
      const connected = gw.deps.logs.filter((l) => l.event === "backend_connected");
      assertEquals(connected.map((l) => [l.backend, l.era]).sort(), [
        ["alpha", "legacy"],
        ["beta", "modern"],
      ]);
    });

    await t.step(
      "initialize with capabilities too large for a session record → 400 -32602, no 500",
      async () => {
        const capabilities = { experimental: { blob: "x".repeat(70_000) } };
        const res = await post(gw, token, { ...INIT, params: { ...INIT.params, capabilities } });
        assertEquals(res.status, 400);
        assertEquals(res.headers.get("content-type"), "application/json");
        const body = await res.json();
        assertEquals(body.id, 1);
        assertEquals(body.error.code, -32602);
        assertMatch(body.error.message, /capabilities is larger than/);
        assertEquals(res.headers.get("mcp-session-id"), null);
      },
    );

    await t.step("legacy session: missing id → 400, unknown → 404, DELETE ends it", async () => {
      const init = await post(gw, token, INIT, { accept: "application/json, text/event-stream" });
      assertEquals(init.status, 200);
      const sid = init.headers.get("mcp-session-id");
      await init.body?.cancel();
      assert(sid && /^[\x21-\x7e]+$/.test(sid));
      const list = { jsonrpc: "2.0", id: 2, method: "tools/list", params: {} };
      const v = { "mcp-protocol-version": "2025-11-25" };

      const noSession = await post(gw, token, list, v);
      assertEquals(noSession.status, 400);
      assertEquals(noSession.headers.get("content-type"), "application/json");
      assertEquals((await noSession.json()).error.code, -32000);

      const unknown = await post(gw, token, list, { ...v, "mcp-session-id": "nope" });
      assertEquals(unknown.status, 404);
      assertEquals(unknown.headers.get("content-type"), "application/json");
      assertEquals((await unknown.json()).error.code, -32001);

      const other = await mintAccessToken(gw.deps, { clientId: "someone-else" });
      const foreign = await post(gw, other, list, { ...v, "mcp-session-id": sid });
      assertEquals(foreign.status, 404);
      await foreign.body?.cancel();

      const ok = await post(gw, token, list, { ...v, "mcp-session-id": sid });
      assertEquals(ok.status, 200);
      await ok.body?.cancel();

      const del = await fetch(`${gw.url}/mcp`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${token}`, "mcp-session-id": sid, ...v },
      });
      assertEquals(del.status, 204);
      await del.body?.cancel();
      const after = await post(gw, token, list, { ...v, "mcp-session-id": sid });
      assertEquals(after.status, 404);
      await after.body?.cancel();
    });

    await t.step("modern request without Mcp-Method header → 400 -32020", async () => {
      const res = await post(gw, token, {
        jsonrpc: "2.0",
        id: 1,
        method: "tools/list",
        params: {
          _meta: {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
          },
        },
      }, { "mcp-protocol-version": "2026-07-28" });
      assertEquals(res.status, 400);
      assertMatch(res.headers.get("content-type") ?? "", /application\/json/);
      assertEquals((await res.json()).error.code, -32020);
    });

    await t.step("no token → 401 with resource_metadata of /mcp", async () => {
      const res = await fetch(`${gw.url}/mcp`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(INIT),
      });
      assertEquals(res.status, 401);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertMatch(
        res.headers.get("www-authenticate") ?? "",
        new RegExp(`resource_metadata="${gw.url}/.well-known/oauth-protected-resource/mcp"`),
      );
      await res.body?.cancel();
    });

    await t.step("a foreign Origin → 403", async () => {
      const res = await post(gw, token, INIT, { origin: "https://evil.example" });
      assertEquals(res.status, 403);
      assertEquals(res.headers.get("content-type"), "application/json");
      await res.body?.cancel();
    });
  } finally {
    await closeAggregate(gw.deps);
    await alpha.close();
    await beta.close();
    await gw.close();
  }
});
