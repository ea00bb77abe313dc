/**
 * Exposed names end to end (lib/mcp/aggregate/naming.ts, catalog.ts): names that cannot be shown
 * as is are shortened and still callable in both eras, a real 40-bit hash clash leaves both tools
 * out (logged) instead of serving one name for two tools, and a rename onto an existing tool's
 * name never makes two tools answer to one name, on `/mcp` or on `/mcp/<backend>`.
 */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { shortenedName } from "../lib/mcp/aggregate/naming.ts";
import { serveGateway } from "./_helpers.ts";
import { mintAccessToken, modernBackend } from "./_aggregate_backends.ts";
import { CLASHING } from "./_names.ts";

const LONG = "analyse_".repeat(10);
const ORIGINALS = ["dots.are.ok", "list_a", "list_b", LONG, ...CLASHING];

type AnyClient = {
  listTools: () => Promise<{ tools: { name: string }[] }>;
  callTool: (p: { name: string; arguments?: Record<string, unknown> }) => Promise<any>;
  close: () => Promise<void>;
};

const text = (r: { content?: { text?: string }[] }) => r.content?.[0]?.text;

Deno.test("exposed names: shortened, clashing, renamed onto", async (t) => {
  const backend = modernBackend("names", (s) => {
    for (const name of ORIGINALS) {
      s.registerTool(name, {}, () => ({ content: [{ type: "text", text: `called ${name}` }] }));
    }
  });
  const gw = await serveGateway({
    config: {
      backends: [{ name: "names", url: backend.url, tools: { rename: { list_a: "list_b" } } }],
    },
  });
  try {
    const token = await mintAccessToken(gw.deps);
    const init = { requestInit: { headers: { authorization: `Bearer ${token}` } } };
    const connect = async (era: string, path: string): Promise<AnyClient> => {
      const url = new URL(`${gw.url}${path}`);
      if (era === "legacy") {
        const c = new V1Client({ name: "names-v1", version: "1" });
        await c.connect(new V1ClientTransport(url, init));
        return c as unknown as AnyClient;
      }
      const c = new Client({ name: "names-v2", version: "1" }, {
        versionNegotiation: { mode: "auto" },
      });
      await c.connect(new StreamableHTTPClientTransport(url, init));
      return c as unknown as AnyClient;
    };
    const expected = [
      [shortenedName("names", "dots.are.ok"), "dots.are.ok"],
      ["names__list_b", "list_a"],
      [shortenedName("names", "list_b"), "list_b"],
      [shortenedName("names", LONG), LONG],
    ];

    for (const era of ["legacy", "modern"]) {
      await t.step(
        `${era} client on /mcp: every tool has one name, and it reaches it`,
        async () => {
          const c = await connect(era, "/mcp");
          try {
            const names = (await c.listTools()).tools.map((x) => x.name);
            assertEquals(names, expected.map(([exposed]) => exposed));
            for (const [exposed, original] of expected) {
              assertEquals(
                text(await c.callTool({ name: exposed!, arguments: {} })),
                `called ${original}`,
              );
            }
          } finally {
            await c.close();
          }
        },
      );

      await t.step(`${era} client on /mcp: a hash clash serves neither tool`, async () => {
        const c = await connect(era, "/mcp");
        try {
          const clash = shortenedName("names", CLASHING[0]);
          assertEquals(clash, shortenedName("names", CLASHING[1]));
          const error = await assertRejects(
            () => c.callTool({ name: clash, arguments: {} }),
            Error,
          ) as { code?: number };
          assertEquals(error.code, -32602);
        } finally {
          await c.close();
        }
      });
    }

    await t.step("the clash is logged once per tool", () => {
      const logged = gw.deps.logs.filter((l) => l.event === "name_left_out");
      assertEquals(logged.map((l) => l.name).sort(), [...CLASHING].sort());
    });

    await t.step(
      "/mcp/names: names as the backend has them, the shadowed tool hidden",
      async () => {
        const c = await connect("modern", "/mcp/names");
        try {
          const names = (await c.listTools()).tools.map((x) => x.name);
          assertEquals(names, ["dots.are.ok", "list_b", LONG, ...CLASHING]);
          assertEquals(text(await c.callTool({ name: "list_b", arguments: {} })), "called list_a");
          assertEquals(
            text(await c.callTool({ name: CLASHING[1], arguments: {} })),
            `called ${CLASHING[1]}`,
          );
          const error = await assertRejects(
            () => c.callTool({ name: "list_a", arguments: {} }),
            Error,
          ) as { code?: number };
          assertEquals(error.code, -32602);
        } finally {
          await c.close();
        }
      },
    );

    await t.step("nothing was answered with a 500", () => {
      assert(gw.deps.logs.every((l) => l.status !== 500));
    });
  } finally {
    await closeAggregate(gw.deps);
    await backend.close();
    await gw.close();
  }
});
