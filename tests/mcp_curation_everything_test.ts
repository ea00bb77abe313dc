/**
 * Curation in front of the reference server `@modelcontextprotocol/server-everything` (a real
 * third-party backend answering over SSE): the pass-through `/mcp/everything` with a v1 client
 * and the aggregated `/mcp` with a v2 client (modern era toward the gateway, legacy behind it).
 */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { serveGateway } from "./_helpers.ts";
import { everythingBackend, mintAccessToken } from "./_aggregate_backends.ts";

const text = (r: { content?: unknown }) =>
  ((r.content ?? []) as { type: string; text?: string }[]).find((c) => c.type === "text")?.text;

async function refused(what: () => Promise<unknown>, label: string): Promise<void> {
  const error = await assertRejects(what, Error) as { code?: number };
  assertEquals(error.code, -32602, label);
}

Deno.test("curation in front of server-everything", async (t) => {
  const everything = await everythingBackend();
  const gw = await serveGateway({
    config: {
      backends: [{
        name: "everything",
        url: everything.url,
        tools: {
          deny: ["get-env", "toggle-*"],
          rename: { echo: "say" },
          describe: { "get-sum": "Adds a and b." },
          defaults: { "get-sum": { b: 100 } },
        },
        prompts: { allow: ["simple-prompt", "args-prompt"] },
        resources: { allow: ["demo://resource/static/*"] },
      }],
    },
  });
  try {
    const token = await mintAccessToken(gw.deps);
    const requestInit = { headers: { authorization: `Bearer ${token}` } };

    await t.step("/mcp/everything (2025-11-25): the surface is curated", async () => {
      const c = new V1Client({ name: "v1", version: "1" });
      await c.connect(new V1ClientTransport(new URL(`${gw.url}/mcp/everything`), { requestInit }));
      try {
        const tools: { name: string; description?: string; inputSchema: any }[] =
          (await c.listTools()).tools;
        const names = tools.map((x) => x.name);
        assert(names.includes("say") && names.includes("get-sum"), names.join());
        for (const gone of ["echo", "get-env", "toggle-simulated-logging"]) {
          assert(!names.includes(gone), gone);
        }
        const sum = tools.find((x) => x.name === "get-sum")!;
        assertEquals(sum.description, "Adds a and b.");
        assertEquals(Object.keys(sum.inputSchema.properties ?? {}), ["a"]);
        assertEquals(sum.inputSchema.required, ["a"]);

        assertEquals(
          text(await c.callTool({ name: "say", arguments: { message: "hi" } })),
          "Echo: hi",
        );
        const r = await c.callTool({ name: "get-sum", arguments: { a: 1, b: 2 } });
        assert(text(r)?.includes("101"), text(r));
        await refused(() => c.callTool({ name: "get-env", arguments: {} }), "denied");
        await refused(() => c.callTool({ name: "echo", arguments: { message: "x" } }), "old name");

        assertEquals((await c.listPrompts()).prompts.map((p: { name: string }) => p.name), [
          "simple-prompt",
          "args-prompt",
        ]);
        await refused(() => c.getPrompt({ name: "completable-prompt" }), "prompt");
        await refused(
          () =>
            c.complete({
              ref: { type: "ref/prompt", name: "completable-prompt" },
              argument: { name: "department", value: "E" },
            }),
          "completion of a denied prompt",
        );
        const uris = (await c.listResources()).resources.map((x: { uri: string }) => x.uri);
        assert(
          uris.length > 0 && uris.every((u: string) => u.startsWith("demo://resource/static/")),
        );
        assertEquals((await c.listResourceTemplates()).resourceTemplates, []);
        await refused(
          () => c.readResource({ uri: "demo://resource/dynamic/text/1" }),
          "resource",
        );
        await refused(
          () => c.subscribeResource({ uri: "demo://resource/dynamic/text/1" }),
          "subscription to a denied resource",
        );
        assertEquals(await c.subscribeResource({ uri: uris[0]! }), {});
      } finally {
        await c.close();
      }
    });

    await t.step("/mcp (2026-07-28 client): the same rules, prefixed", async () => {
      const c = new Client({ name: "v2", version: "1" }, { versionNegotiation: { mode: "auto" } });
      await c.connect(
        new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit }),
      );
      try {
        const names = (await c.listTools()).tools.map((x) => x.name);
        assert(names.includes("everything__say") && !names.includes("everything__echo"));
        assert(!names.some((n) => n.startsWith("everything__toggle-")), names.join());
        const r = await c.callTool({ name: "everything__get-sum", arguments: { a: 5, b: 1 } });
        assert(text(r)?.includes("105"), text(r));
        await refused(() => c.callTool({ name: "everything__get-env", arguments: {} }), "denied");
        await refused(
          () => c.readResource({ uri: "mcpgw-everything+demo://resource/dynamic/text/1" }),
          "resource",
        );
      } finally {
        await c.close();
      }
    });

    await t.step("/mcp (2025-11-25 client): a denied resource cannot be subscribed", async () => {
      const c = new V1Client({ name: "v1", version: "1" });
      await c.connect(new V1ClientTransport(new URL(`${gw.url}/mcp`), { requestInit }));
      try {
        assert(c.getServerCapabilities()?.resources?.subscribe, "subscriptions are offered");
        await refused(
          () => c.subscribeResource({ uri: "mcpgw-everything+demo://resource/dynamic/text/1" }),
          "denied",
        );
        const ok = await c.subscribeResource({
          uri: "mcpgw-everything+demo://resource/static/document/features.md",
        });
        assertEquals(ok, {});
      } finally {
        await c.close();
      }
    });

    await t.step("nothing was answered with a 500", () => {
      assertEquals(gw.deps.logs.filter((l) => l.status === 500), []);
    });
  } finally {
    // The backend before the gateway: a pass-through GET stream a client left open ends with it.
    await closeAggregate(gw.deps);
    await everything.close();
    await gw.close();
  }
});
