/**
 * Tool search end to end (README "Large catalogs"): 206 tools on 5 real SDK backends (two legacy
 * v1, three modern v2) behind `/mcp`, seen by a v1 (legacy era) and a v2 (modern era) client.
 * `tools/list` offers `search_tools` + `call_tool`; the BM25 ranking puts the right tool in the
 * top 3 for every query of the fixture; `call_tool` is resolved exactly like a direct call (scope
 * step-up 403 per MCP 2025-11-25 Authorization §Scope Challenge Handling, curation, per-user
 * globs); `catalog.searchAbove` switches per user.
 */
import { assert, assertEquals, assertMatch, assertRejects } from "./_assert.ts";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { type ServedGateway, serveGateway } from "./_helpers.ts";
import { mintAccessToken, type TestBackend } from "./_aggregate_backends.ts";
import {
  CATALOG,
  CATALOG_SIZE,
  catalogCalls,
  SEARCH_QUERIES,
  startCatalogBackends,
} from "./_catalog_fixture.ts";

type AnyClient = {
  listTools: () => Promise<{ tools: any[] }>;
  callTool: (p: { name: string; arguments?: Record<string, unknown> }) => Promise<any>;
  close: () => Promise<void>;
};

async function connect(gw: ServedGateway, token: string, era: string): Promise<AnyClient> {
  const init = { requestInit: { headers: { authorization: `Bearer ${token}` } } };
  const url = new URL(`${gw.url}/mcp`);
  if (era === "legacy") {
    const client = new V1Client({ name: "search-v1", version: "1" });
    await client.connect(new V1ClientTransport(url, init));
    return client as unknown as AnyClient;
  }
  const client = new Client({ name: "search-v2", version: "1" }, {
    versionNegotiation: { mode: "auto" },
  });
  await client.connect(new StreamableHTTPClientTransport(url, init));
  return client as unknown as AnyClient;
}

async function using(
  gw: ServedGateway,
  token: string,
  era: string,
  body: (c: AnyClient) => Promise<void>,
) {
  const c = await connect(gw, token, era);
  try {
    await body(c);
  } finally {
    await c.close();
  }
}

const found = async (c: AnyClient, query: string, limit = 3): Promise<any[]> => {
  const r = await c.callTool({ name: "search_tools", arguments: { query, limit } });
  assert(!r.isError, JSON.stringify(r));
  const tools = r.structuredContent.tools as any[];
  if (tools.length > 0) assertEquals(JSON.parse(r.content[0].text).tools, tools);
  return tools;
};

const text = (r: { content?: { text?: string }[] }) => r.content?.[0]?.text;

async function refused(what: () => Promise<unknown>, label: string): Promise<void> {
  const error = await assertRejects(what, Error) as { code?: number };
  assertEquals(error.code, -32602, label);
}

/** A raw 2026-07-28 `tools/call` to `/mcp`. */
function rawCall(gw: ServedGateway, token: string, name: string, args: unknown) {
  return fetch(`${gw.url}/mcp`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": "2026-07-28",
      "mcp-method": "tools/call",
      "mcp-name": name,
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "tools/call",
      params: {
        name,
        arguments: args,
        _meta: {
          "io.modelcontextprotocol/protocolVersion": "2026-07-28",
          "io.modelcontextprotocol/clientCapabilities": {},
        },
      },
    }),
  });
}

Deno.test("tool search over 206 tools on 5 backends", async (t) => {
  let backends: Record<string, TestBackend> = {};
  const gateways: ServedGateway[] = [];
  try {
    backends = startCatalogBackends();
    const list = (extra: Record<string, Record<string, unknown>> = {}) =>
      Object.entries(backends).map(([name, b]) => ({ name, url: b.url, ...extra[name] }));
    const gw = await serveGateway({
      config: {
        catalog: { mode: "search" },
        backends: list({
          github: {
            tools: {
              deny: ["star_repository"],
              rename: { get_me: "whoami" },
              defaults: { list_issues: { state: "open" } },
            },
          },
        }),
      },
    });
    gateways.push(gw);
    const token = await mintAccessToken(gw.deps);
    assert(CATALOG_SIZE >= 200 && Object.keys(CATALOG).length === 5);

    for (const era of ["legacy", "modern"]) {
      await t.step(
        `${era} client: tools/list offers search_tools and call_tool only`,
        () =>
          using(gw, token, era, async (c) => {
            const tools = (await c.listTools()).tools;
            assertEquals(tools.map((x) => x.name), ["search_tools", "call_tool"]);
            assertMatch(tools[0].description, /among the 205 tools of this gateway/);
            assertMatch(tools[0].description, /github \(55\), slack \(40\)/);
            assertEquals(tools[0].inputSchema.required, ["query"]);
          }),
      );

      await t.step(
        `${era} client: the right tool is in the top 3 for every query`,
        () =>
          using(gw, token, era, async (c) => {
            const misses: string[] = [];
            for (const [query, expected] of SEARCH_QUERIES) {
              const names = (await found(c, query)).map((x) => x.name);
              if (!names.includes(expected)) misses.push(`${query} → ${names.join(", ")}`);
            }
            assertEquals(misses, []);
          }),
      );

      await t.step(
        `${era} client: hits carry the tool's full definition`,
        () =>
          using(gw, token, era, async (c) => {
            const [hit] = await found(c, "merge a pull request", 1);
            assertEquals(hit.name, "github__merge_pull_request");
            assertEquals(
              hit.description,
              "Merge a pull request with the merge, squash or rebase method.",
            );
            assertEquals(Object.keys(hit.inputSchema.properties), [
              "owner",
              "repo",
              "pull_number",
              "merge_method",
            ]);
          }),
      );

      await t.step(
        `${era} client: call_tool runs a found tool on a legacy and a modern backend`,
        () =>
          using(gw, token, era, async (c) => {
            const sql = await c.callTool({
              name: "call_tool",
              arguments: { name: "postgres__run_query", arguments: { sql: "select 1" } },
            });
            assertEquals(text(sql), 'postgres:run_query:{"sql":"select 1"}');
            const gh = await c.callTool({
              name: "call_tool",
              arguments: { name: "github__get_issue", arguments: { issue_number: "7" } },
            });
            assertEquals(text(gh), 'github:get_issue:{"issue_number":"7"}');
            const direct = await c.callTool({
              name: "files__count_lines",
              arguments: { path: "/x" },
            });
            assertEquals(
              text(direct),
              'files:count_lines:{"path":"/x"}',
              "direct calls still work",
            );
          }),
      );

      await t.step(
        `${era} client: call_tool honours curation like a direct call`,
        () =>
          using(gw, token, era, async (c) => {
            const names = (await found(c, "star a repository", 5)).map((x) => x.name);
            assert(!names.includes("github__star_repository"), names.join());
            const before = catalogCalls.length;
            await refused(
              () =>
                c.callTool({ name: "call_tool", arguments: { name: "github__star_repository" } }),
              "denied",
            );
            await refused(
              () => c.callTool({ name: "call_tool", arguments: { name: "github__get_me" } }),
              "renamed away",
            );
            assertEquals(catalogCalls.length, before);
            const me = await c.callTool({
              name: "call_tool",
              arguments: { name: "github__whoami" },
            });
            assertEquals(text(me), "github:get_me:{}");
            const issues = await c.callTool({
              name: "call_tool",
              arguments: { name: "github__list_issues", arguments: { state: "closed" } },
            });
            assertEquals(text(issues), 'github:list_issues:{"state":"open"}', "pinned default");
          }),
      );

      await t.step(
        `${era} client: bad search_tools and call_tool input is refused clearly`,
        () =>
          using(gw, token, era, async (c) => {
            const empty = await c.callTool({ name: "search_tools", arguments: { query: " " } });
            assertEquals(empty.isError, true);
            const big = await c.callTool({
              name: "search_tools",
              arguments: { query: "x", limit: 99 },
            });
            assertEquals(big.isError, true);
            await refused(() => c.callTool({ name: "call_tool", arguments: {} }), "no name");
            await refused(
              () => c.callTool({ name: "call_tool", arguments: { name: "nope__x" } }),
              "unknown",
            );
            const none = await c.callTool({ name: "search_tools", arguments: { query: "zebra" } });
            assertEquals(none.structuredContent.tools, []);
          }),
      );
    }

    await t.step("call_tool honours scope: another backend's tool is a 403 step-up", async () => {
      const slackOnly = await mintAccessToken(gw.deps, { scope: "mcp:slack" });
      const res = await rawCall(gw, slackOnly, "call_tool", { name: "github__get_me" });
      assertEquals(res.status, 403);
      assertEquals(res.headers.get("content-type"), "application/json");
      const challenge = res.headers.get("www-authenticate")!;
      assertMatch(challenge, /error="insufficient_scope"/);
      assertMatch(challenge, /scope="mcp:github"/);
      assertEquals((await res.json()).error, "insufficient_scope");
      await using(gw, slackOnly, "modern", async (c) => {
        const names = (await found(c, "merge a pull request", 20)).map((x) => x.name);
        assert(names.every((n) => n.startsWith("slack__")), names.join());
        const ok = await c.callTool({
          name: "call_tool",
          arguments: { name: "slack__send_message", arguments: { channel: "c", text: "hi" } },
        });
        assertEquals(text(ok), 'slack:send_message:{"channel":"c","text":"hi"}');
      });
    });

    await t.step("call_tool and search_tools honour per-user tool globs", async () => {
      const filesOnly = await mintAccessToken(gw.deps, { tools: ["files__*", "github__get_*"] });
      await using(gw, filesOnly, "legacy", async (c) => {
        const names = (await found(c, "merge a pull request", 20)).map((x) => x.name);
        assert(
          names.every((n) => n.startsWith("files__") || n.startsWith("github__get_")),
          names.join(),
        );
        await refused(
          () =>
            c.callTool({ name: "call_tool", arguments: { name: "github__merge_pull_request" } }),
          "outside the globs",
        );
        const ok = await c.callTool({
          name: "call_tool",
          arguments: { name: "github__get_commit", arguments: { sha: "abc" } },
        });
        assertEquals(text(ok), 'github:get_commit:{"sha":"abc"}');
      });
      const res = await rawCall(gw, filesOnly, "call_tool", { name: "jira__get_issue" });
      assertEquals(res.status, 200);
      assertEquals((await res.json()).error.code, -32602);
    });

    await t.step("searchAbove switches each user by the number of tools they see", async () => {
      const auto = await serveGateway({
        config: { catalog: { mode: "full", searchAbove: 100 }, backends: list() },
      });
      gateways.push(auto);
      const everything = await mintAccessToken(auto.deps);
      const few = await mintAccessToken(auto.deps, { tools: ["files__*"] });
      for (const era of ["legacy", "modern"]) {
        await using(auto, everything, era, async (c) => {
          assertEquals((await c.listTools()).tools.map((x) => x.name), [
            "search_tools",
            "call_tool",
          ]);
        });
        await using(auto, few, era, async (c) => {
          const names = (await c.listTools()).tools.map((x) => x.name);
          assertEquals(names.length, CATALOG.files!.length);
          assert(names.every((n) => n.startsWith("files__")));
        });
      }
    });

    await t.step("nothing was answered with a 500", () => {
      for (const g of gateways) assertEquals(g.deps.logs.filter((l) => l.status === 500), []);
    });
  } finally {
    for (const g of gateways) {
      await closeAggregate(g.deps);
      await g.close();
    }
    await Promise.all(Object.values(backends).map((b) => b.close()));
  }
});
