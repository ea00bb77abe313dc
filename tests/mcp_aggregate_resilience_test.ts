/**
 * The aggregated `/mcp` with a dead backend, a slow backend and a paginating backend: the
 * others still answer, failures are logged and never a 500, pages are walked and re-paginated.
 */
import { assert, assertEquals } from "./_assert.ts";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { z } from "zod";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { PAGE_SIZE } from "../lib/mcp/aggregate/server.ts";
import { type ServedGateway, serveGateway } from "./_helpers.ts";
import {
  deadBackendUrl,
  lateBackend,
  mintAccessToken,
  modernBackend,
  paginatedBackend,
  slowBackend,
} from "./_aggregate_backends.ts";

async function connect(gw: ServedGateway): Promise<Client> {
  const token = await mintAccessToken(gw.deps);
  const client = new Client({ name: "t", version: "1" }, { versionNegotiation: { mode: "auto" } });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  return client;
}

Deno.test("/mcp with a dead and a slow backend", async (t) => {
  const ok = modernBackend("ok", (s) => {
    s.registerTool("echo", { inputSchema: z.object({ text: z.string() }) }, ({ text }) => ({
      content: [{ type: "text", text }],
    }));
  });
  const slow = slowBackend(10_000);
  const late = lateBackend(10_000);
  const gw = await serveGateway({
    config: {
      backends: [
        { name: "dead", url: deadBackendUrl() },
        { name: "ok", url: ok.url },
        { name: "slow", url: slow.url, timeoutMs: 300 },
        { name: "late", url: late.url, timeoutMs: 300 },
      ],
    },
  });
  try {
    const client = await connect(gw);
    try {
      await t.step("lists leave the dead, the slow and the late backend out", async () => {
        const started = performance.now();
        const tools = await client.listTools();
        assertEquals(tools.tools.map((x) => x.name), ["ok__echo"]);
        assert(performance.now() - started < 3000, "the slow backend was not cut at its timeout");
      });
      await t.step("failures are logged with the backend name", () => {
        const left = gw.deps.logs.filter((l) => l.event === "backend_left_out");
        assert(left.some((l) => l.backend === "dead"));
        assert(left.some((l) => l.backend === "slow"));
        assert(left.some((l) => l.backend === "late" && l.what === "tools/list"));
      });
      await t.step("calls to the healthy backend still work", async () => {
        const r = await client.callTool({ name: "ok__echo", arguments: { text: "hi" } });
        assertEquals(r.content, [{ type: "text", text: "hi" }]);
      });
      await t.step("a call to the dead backend is a JSON-RPC -32603 error", async () => {
        const error = await client.callTool({ name: "dead__echo", arguments: {} }).then(
          () => null,
          (e) => e as { code?: number; message?: string },
        );
        assertEquals(error?.code, -32603);
        assert(error?.message?.includes("Backend dead is unavailable"), error?.message);
      });
      await t.step("a backend that cannot connect in time is unavailable", async () => {
        const error = await client.callTool({ name: "slow__echo", arguments: {} }).then(
          () => null,
          (e) => e as { code?: number; message?: string },
        );
        assertEquals(error?.code, -32603);
        assert(error?.message?.includes("Backend slow"), error?.message);
      });
      await t.step("a call that runs past timeoutMs is a JSON-RPC error", async () => {
        const error = await client.callTool({ name: "late__nap", arguments: {} }).then(
          () => null,
          (e) => e as { code?: number; message?: string },
        );
        assertEquals(error?.code, -32603);
        assert(error?.message?.includes("Backend late timed out"), error?.message);
      });
    } finally {
      await client.close();
    }
    await t.step("nothing was answered with a 500", () => {
      assertEquals(gw.deps.logs.filter((l) => l.status === 500), []);
    });
  } finally {
    await closeAggregate(gw.deps);
    await ok.close();
    await slow.close();
    await late.close();
    await gw.close();
  }
});

Deno.test("/mcp pagination", async (t) => {
  const paged = paginatedBackend(PAGE_SIZE + 20, 50);
  const small = modernBackend("small", (s) => {
    s.registerTool("last", {}, () => ({ content: [{ type: "text", text: "last" }] }));
  });
  const gw = await serveGateway({
    config: { backends: [{ name: "paged", url: paged.url }, { name: "small", url: small.url }] },
  });
  try {
    const client = await connect(gw);
    try {
      await t.step("the backend's pages are walked, the gateway pages by PAGE_SIZE", async () => {
        // The v1 client fetches one page per call (the v2 client walks them all).
        const legacy = new V1Client({ name: "t", version: "1" });
        await legacy.connect(
          new V1ClientTransport(new URL(`${gw.url}/mcp`), {
            requestInit: { headers: { authorization: `Bearer ${await mintAccessToken(gw.deps)}` } },
          }),
        );
        try {
          const first = await legacy.listTools();
          assertEquals(first.tools.length, PAGE_SIZE);
          assertEquals(first.tools[0]!.name, "paged__t000");
          assert(typeof first.nextCursor === "string");
          const second = await legacy.listTools({ cursor: first.nextCursor });
          assertEquals(second.tools.length, 21);
          assertEquals(second.tools.at(-1)!.name, "small__last");
          assertEquals(second.nextCursor, undefined);
        } finally {
          await legacy.close();
        }
      });
      await t.step("the auto-walk of a client gets every tool once, in order", async () => {
        const all = await client.listTools();
        assertEquals(all.tools.length, PAGE_SIZE + 21);
        assertEquals(new Set(all.tools.map((x) => x.name)).size, PAGE_SIZE + 21);
      });
      await t.step("a bad cursor is -32602", async () => {
        const error = await client.listTools({ cursor: "not-a-cursor" }).then(
          () => null,
          (e) => e as { code?: number },
        );
        assertEquals(error?.code, -32602);
      });
      await t.step("routing works for a backend that paginates", async () => {
        const r = await client.callTool({ name: "paged__t119", arguments: {} });
        assertEquals(r.content, [{ type: "text", text: "called t119" }]);
      });
    } finally {
      await client.close();
    }
  } finally {
    await closeAggregate(gw.deps);
    await paged.close();
    await small.close();
    await gw.close();
  }
});
