/**
 * Curation end to end (README "Shaping the tool surface"): one rule set on a legacy backend
 * (v1 SDK, 2025-11-25) and on a modern one (v2 SDK, 2026-07-28), seen through `/mcp` by a v1
 * (legacy era) and a v2 (modern era) client, and through the pass-through `/mcp/<backend>` in the
 * backend's era. Denied tools, prompts and resources are absent and refused with -32602 (MCP
 * 2025-11-25 Server/Tools §Error Handling) without reaching the backend; renames and descriptions
 * show; pinned defaults are out of the schema and injected over the client's values; per-user
 * tool globs narrow both endpoints; the modern `tools/call` fast path applies the same rules.
 */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { z } from "zod";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { type ServedGateway, serveGateway } from "./_helpers.ts";
import { legacyBackend, mintAccessToken, modernBackend } from "./_aggregate_backends.ts";

/** Tool calls each backend received: `tool args-as-JSON`. */
const calls: Record<string, string[]> = { alpha: [], beta: [], plain: [] };

const reply = (backend: string, tool: string, args: unknown) => {
  calls[backend]!.push(`${tool} ${JSON.stringify(args)}`);
  return {
    content: [{ type: "text" as const, text: `${backend}:${tool}:${JSON.stringify(args)}` }],
  };
};

/** The same surface on both SDKs. */
function surface(backend: string, v1: boolean) {
  const shape = <T extends z.ZodRawShape>(s: T) => (v1 ? s : z.object(s)) as any;
  return (s: any) => {
    s.registerTool(
      "echo",
      { description: "Echoes text", inputSchema: shape({ text: z.string() }) },
      (a: unknown) => reply(backend, "echo", a),
    );
    s.registerTool(
      "add",
      { description: "adds", inputSchema: shape({ a: z.number(), b: z.number() }) },
      (a: unknown) => reply(backend, "add", a),
    );
    s.registerTool(
      "search_code",
      {
        description: "Search code",
        inputSchema: shape({ query: z.string(), per_page: z.number() }),
      },
      (a: unknown) => reply(backend, "search_code", a),
    );
    s.registerTool(
      "delete_all",
      { description: "Deletes everything" },
      (a: unknown) => reply(backend, "delete_all", a),
    );
    s.registerTool(
      "get_secret",
      { description: "Leaks" },
      (a: unknown) => reply(backend, "get_secret", a),
    );
    for (const name of ["greet", "secret_prompt"]) {
      s.registerPrompt(name, { description: name }, () => ({
        messages: [{ role: "user", content: { type: "text", text: `${backend} ${name}` } }],
      }));
    }
    for (const uri of ["file:///public/readme.txt", "file:///private/key.txt"]) {
      s.registerResource(uri, uri, { mimeType: "text/plain" }, () => ({
        contents: [{ uri, text: `${backend} ${uri}` }],
      }));
    }
  };
}

const RULES = {
  tools: {
    deny: ["delete_*", "get_secret"],
    rename: { search_code: "code_search" },
    describe: { add: "Adds two numbers." },
    defaults: { search_code: { per_page: 20 } },
  },
  prompts: { deny: ["secret*"] },
  resources: { allow: ["file:///public/*"] },
};

type AnyClient = {
  listTools: () => Promise<{ tools: any[] }>;
  callTool: (p: { name: string; arguments?: Record<string, unknown> }) => Promise<any>;
  listPrompts: () => Promise<{ prompts: { name: string }[] }>;
  getPrompt: (p: { name: string }) => Promise<unknown>;
  listResources: () => Promise<{ resources: { uri: string }[] }>;
  readResource: (p: { uri: string }) => Promise<{ contents: { text?: unknown }[] }>;
  close: () => Promise<void>;
};

async function connect(url: string, token: string, era: "legacy" | "modern"): Promise<AnyClient> {
  const init = { requestInit: { headers: { authorization: `Bearer ${token}` } } };
  if (era === "legacy") {
    const client = new V1Client({ name: "curation-v1", version: "1" });
    await client.connect(new V1ClientTransport(new URL(url), init));
    return client as unknown as AnyClient;
  }
  const client = new Client({ name: "curation-v2", version: "1" }, {
    versionNegotiation: { mode: "auto" },
  });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), init));
  return client as unknown as AnyClient;
}

const text = (r: { content?: { text?: string }[] }) => r.content?.[0]?.text;

async function refused(what: () => Promise<unknown>, label: string): Promise<void> {
  const error = await assertRejects(what, Error) as { code?: number };
  assertEquals(error.code, -32602, label);
}

async function withClient(
  url: string,
  token: string,
  era: "legacy" | "modern",
  body: (c: AnyClient) => Promise<void>,
): Promise<void> {
  const client = await connect(url, token, era);
  try {
    await body(client);
  } finally {
    await client.close();
  }
}

Deno.test("curation on /mcp and /mcp/<backend>, both eras", async (t) => {
  const alpha = legacyBackend("alpha", surface("alpha", true));
  const beta = modernBackend("beta", surface("beta", false));
  const plain = modernBackend("plain", surface("plain", false));
  let gw: ServedGateway | undefined;
  try {
    gw = await serveGateway({
      config: {
        backends: [
          { name: "alpha", url: alpha.url, ...RULES },
          { name: "beta", url: beta.url, ...RULES },
          { name: "plain", url: plain.url },
        ],
      },
    });
    const token = await mintAccessToken(gw.deps);
    const g = gw;

    for (const era of ["legacy", "modern"] as const) {
      await t.step(
        `/mcp, ${era} client: denied tools are absent, renames and descriptions show`,
        () =>
          withClient(`${g.url}/mcp`, token, era, async (c) => {
            const tools = (await c.listTools()).tools;
            const names = tools.map((x) => x.name).filter((n: string) => !n.startsWith("plain__"));
            assertEquals(names, [
              "alpha__echo",
              "alpha__add",
              "alpha__code_search",
              "beta__echo",
              "beta__add",
              "beta__code_search",
            ]);
            const add = tools.find((x) => x.name === "beta__add");
            assertEquals(add.description, "Adds two numbers.");
            for (const b of ["alpha", "beta"]) {
              const search = tools.find((x) => x.name === `${b}__code_search`);
              assertEquals(Object.keys(search.inputSchema.properties), ["query"], b);
              assertEquals(search.inputSchema.required, ["query"], b);
            }
          }),
      );

      await t.step(
        `/mcp, ${era} client: pinned defaults are injected, not overridable`,
        () =>
          withClient(`${g.url}/mcp`, token, era, async (c) => {
            for (const b of ["alpha", "beta"]) {
              const r = await c.callTool({
                name: `${b}__code_search`,
                arguments: { query: "x", per_page: 99 },
              });
              assertEquals(text(r), `${b}:search_code:{"query":"x","per_page":20}`);
            }
          }),
      );

      await t.step(
        `/mcp, ${era} client: denied and renamed-away tools are -32602`,
        () =>
          withClient(`${g.url}/mcp`, token, era, async (c) => {
            const before = calls.alpha!.length + calls.beta!.length;
            for (const b of ["alpha", "beta"]) {
              for (const name of ["delete_all", "get_secret", "search_code"]) {
                await refused(() => c.callTool({ name: `${b}__${name}`, arguments: {} }), name);
              }
            }
            assertEquals(calls.alpha!.length + calls.beta!.length, before, "no backend was called");
          }),
      );

      await t.step(
        `/mcp, ${era} client: denied prompts and resources are absent and refused`,
        () =>
          withClient(`${g.url}/mcp`, token, era, async (c) => {
            const prompts = (await c.listPrompts()).prompts.map((p) => p.name);
            assertEquals(prompts.filter((p) => !p.startsWith("plain__")), [
              "alpha__greet",
              "beta__greet",
            ]);
            await refused(() => c.getPrompt({ name: "beta__secret_prompt" }), "prompt");
            const uris = (await c.listResources()).resources.map((r) => r.uri);
            assertEquals(uris.filter((u) => !u.startsWith("mcpgw-plain+")), [
              "mcpgw-alpha+file:///public/readme.txt",
              "mcpgw-beta+file:///public/readme.txt",
            ]);
            const ok = await c.readResource({ uri: "mcpgw-alpha+file:///public/readme.txt" });
            assertEquals(ok.contents[0]!.text, "alpha file:///public/readme.txt");
            await refused(
              () => c.readResource({ uri: "mcpgw-beta+file:///private/key.txt" }),
              "resource",
            );
          }),
      );
    }

    for (const [backend, era] of [["alpha", "legacy"], ["beta", "modern"]] as const) {
      const url = `${g.url}/mcp/${backend}`;
      await t.step(
        `/mcp/${backend} (${era}): lists are curated, names unprefixed`,
        () =>
          withClient(url, token, era, async (c) => {
            const tools = (await c.listTools()).tools;
            assertEquals(tools.map((x) => x.name), ["echo", "add", "code_search"]);
            assertEquals(tools[1].description, "Adds two numbers.");
            assertEquals(Object.keys(tools[2].inputSchema.properties), ["query"]);
            assertEquals((await c.listPrompts()).prompts.map((p) => p.name), ["greet"]);
            assertEquals((await c.listResources()).resources.map((r) => r.uri), [
              "file:///public/readme.txt",
            ]);
          }),
      );

      await t.step(
        `/mcp/${backend} (${era}): renames undone, defaults injected`,
        () =>
          withClient(url, token, era, async (c) => {
            const r = await c.callTool({
              name: "code_search",
              arguments: { query: "y", per_page: 1 },
            });
            assertEquals(text(r), `${backend}:search_code:{"query":"y","per_page":20}`);
            const e = await c.callTool({ name: "echo", arguments: { text: "hi" } });
            assertEquals(text(e), `${backend}:echo:{"text":"hi"}`);
          }),
      );

      await t.step(
        `/mcp/${backend} (${era}): denied calls are -32602 and never forwarded`,
        () =>
          withClient(url, token, era, async (c) => {
            const before = calls[backend]!.length;
            for (const name of ["delete_all", "get_secret", "search_code"]) {
              await refused(() => c.callTool({ name, arguments: {} }), name);
            }
            await refused(() => c.getPrompt({ name: "secret_prompt" }), "prompt");
            await refused(() => c.readResource({ uri: "file:///private/key.txt" }), "resource");
            assertEquals(calls[backend]!.length, before);
          }),
      );
    }

    await t.step(
      "a raw refusal is in-band JSON-RPC: HTTP 200, JSON, the request's id",
      async () => {
        const res = await fetch(`${g.url}/mcp/beta`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${token}`,
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
            "mcp-protocol-version": "2026-07-28",
            "mcp-method": "tools/call",
            "mcp-name": "delete_all",
          },
          body: JSON.stringify({
            jsonrpc: "2.0",
            id: "call-7",
            method: "tools/call",
            params: {
              name: "delete_all",
              arguments: {},
              _meta: {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
              },
            },
          }),
        });
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type"), "application/json");
        assertEquals(await res.json(), {
          jsonrpc: "2.0",
          id: "call-7",
          error: { code: -32602, message: "Unknown tool: delete_all" },
        });
      },
    );

    await t.step("per-user tool globs narrow /mcp and /mcp/<backend> alike", async () => {
      const narrow = await mintAccessToken(g.deps, {
        tools: ["alpha__echo", "beta__code_*", "plain__e*"],
      });
      await withClient(`${g.url}/mcp`, narrow, "modern", async (c) => {
        assertEquals((await c.listTools()).tools.map((x) => x.name), [
          "alpha__echo",
          "beta__code_search",
          "plain__echo",
        ]);
        const r = await c.callTool({ name: "beta__code_search", arguments: { query: "z" } });
        assertEquals(text(r), 'beta:search_code:{"query":"z","per_page":20}');
        await refused(() => c.callTool({ name: "alpha__add", arguments: { a: 1, b: 2 } }), "add");
        await refused(() => c.callTool({ name: "beta__echo", arguments: { text: "x" } }), "echo");
      });
      await withClient(`${g.url}/mcp/alpha`, narrow, "legacy", async (c) => {
        assertEquals((await c.listTools()).tools.map((x) => x.name), ["echo"]);
        await refused(() => c.callTool({ name: "add", arguments: { a: 1, b: 2 } }), "add");
      });
      // A backend without rules is curated too for a user with globs.
      await withClient(`${g.url}/mcp/plain`, narrow, "modern", async (c) => {
        assertEquals((await c.listTools()).tools.map((x) => x.name), ["echo"]);
        await refused(() => c.callTool({ name: "add", arguments: { a: 1, b: 2 } }), "add");
        const e = await c.callTool({ name: "echo", arguments: { text: "ok" } });
        assertEquals(text(e), 'plain:echo:{"text":"ok"}');
      });
    });

    await t.step("the modern fast path applies renames, defaults, denials and globs", async () => {
      const logs = g.deps.logs;
      const fastCalls = () => logs.filter((l) => l.fast_path === true).length;
      await withClient(`${g.url}/mcp`, token, "modern", async (c) => {
        await c.callTool({ name: "beta__echo", arguments: { text: "warm" } }); // connects beta
        const before = fastCalls();
        const r = await c.callTool({
          name: "beta__code_search",
          arguments: { query: "f", per_page: 5 },
        });
        assertEquals(text(r), 'beta:search_code:{"query":"f","per_page":20}');
        assert(fastCalls() > before, "served by the fast path");
        const seen = calls.beta!.length;
        await refused(() => c.callTool({ name: "beta__delete_all", arguments: {} }), "denied");
        await refused(() => c.callTool({ name: "beta__search_code", arguments: {} }), "old name");
        assertEquals(calls.beta!.length, seen);
      });
      const narrow = await mintAccessToken(g.deps, { tools: ["beta__code_search"] });
      await withClient(`${g.url}/mcp`, narrow, "modern", async (c) => {
        await refused(() => c.callTool({ name: "beta__echo", arguments: { text: "no" } }), "glob");
      });
    });

    await t.step("nothing was answered with a 500", () => {
      assertEquals(g.deps.logs.filter((l) => l.status === 500), []);
    });
  } finally {
    // Backends before the gateway: a pass-through GET stream a client left open ends with them.
    if (gw) await closeAggregate(gw.deps);
    await Promise.all([alpha.close(), beta.close(), plain.close()]);
    await gw?.close();
  }
});
