/**
 * The `tools/call` fast path of the aggregated `/mcp` (lib/aggregate/fast_call.ts): taken for a
 * modern client calling a modern backend the pool knows, and answering exactly as the SDK path
 * does (each case runs once with the fast path off and once on, and the answers are compared).
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { z } from "zod";
import { fastCallSettings } from "../lib/aggregate/fast_call.ts";
import { closeAggregate } from "../lib/aggregate/handler.ts";
import { type ServedGateway, serveGateway } from "./_helpers.ts";
import {
  lateBackend,
  legacyBackend,
  mintAccessToken,
  modernBackend,
} from "./_aggregate_backends.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const ENVELOPE = {
  "io.modelcontextprotocol/protocolVersion": "2026-07-28",
  "io.modelcontextprotocol/clientCapabilities": {},
  "io.modelcontextprotocol/clientInfo": { name: "t", version: "1" },
};

/** What a client sees of one call: status, media type, the SSE events before the answer. */
interface Outcome {
  status: number;
  type: string;
  notifications: unknown[];
  message: any;
  fast: boolean;
}

async function rawCall(
  gw: ServedGateway,
  token: string,
  name: string,
  options: { args?: unknown; meta?: Record<string, unknown> } = {},
): Promise<Outcome> {
  const before = gw.deps.logs.length;
  const res = await fetch(`${gw.url}/mcp`, {
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
      id: 7,
      method: "tools/call",
      params: { name, arguments: options.args ?? {}, _meta: { ...ENVELOPE, ...options.meta } },
    }),
  });
  const type = (res.headers.get("content-type") ?? "").split(";")[0]!;
  const text = await res.text();
  let messages: any[];
  if (type === "text/event-stream") {
    messages = text.split("\n\n").flatMap((event) => {
      const data = event.split("\n").filter((l) => l.startsWith("data:"));
      return data.length ? [JSON.parse(data.map((l) => l.slice(5).trim()).join("\n"))] : [];
    });
  } else {
    assertEquals(type, "application/json");
    messages = [JSON.parse(text)];
  }
  // The router's log line of this request carries the handler's fields.
  await sleep(0);
  const line = gw.deps.logs.slice(before).find((l) => l.route !== undefined && l.tool === name);
  return {
    status: res.status,
    type,
    notifications: messages.slice(0, -1),
    message: messages.at(-1),
    fast: line?.fast_path === true,
  };
}

/** The same call through the SDK path and through the fast path. */
async function both(
  gw: ServedGateway,
  token: string,
  name: string,
  options?: { args?: unknown; meta?: Record<string, unknown> },
): Promise<{ sdk: Outcome; fast: Outcome }> {
  fastCallSettings.enabled = false;
  try {
    const sdk = await rawCall(gw, token, name, options);
    assert(!sdk.fast, "the SDK path was marked fast");
    fastCallSettings.enabled = true;
    const fast = await rawCall(gw, token, name, options);
    return { sdk, fast };
  } finally {
    fastCallSettings.enabled = true;
  }
}

function assertSame({ sdk, fast }: { sdk: Outcome; fast: Outcome }, expectFast = true): void {
  assertEquals(fast.fast, expectFast, `fast path ${expectFast ? "not " : ""}taken`);
  assertEquals(fast.status, sdk.status);
  assertEquals(fast.type, sdk.type);
  assertEquals(fast.notifications, sdk.notifications);
  assertEquals(fast.message, sdk.message);
}

Deno.test("/mcp tools/call fast path", async (t) => {
  const beta = modernBackend("beta", (s) => {
    s.registerTool("echo", { inputSchema: z.object({ text: z.string() }) }, ({ text }) => ({
      content: [{ type: "text", text }],
    }));
    s.registerTool("link", {}, () => ({
      content: [
        { type: "resource_link", uri: "file:///a.txt", name: "a" },
        { type: "resource", resource: { uri: "file:///b.txt", text: "b" } },
      ],
      _meta: { "example.com/x": 1 },
    }));
    s.registerTool("work", {}, async (ctx) => {
      const token = ctx.mcpReq._meta?.progressToken;
      for (let i = 1; i <= 3; i++) {
        if (token !== undefined) {
          await ctx.mcpReq.notify({
            method: "notifications/progress",
            params: { progressToken: token, progress: i, total: 3 },
          });
        }
        await sleep(5);
      }
      return { content: [{ type: "text", text: "done" }] };
    });
    s.registerTool("boom", {}, () => {
      throw new Error("kaput");
    });
  });
  const gone = modernBackend("gone", (s) => {
    s.registerTool("echo", {}, () => ({ content: [{ type: "text", text: "here" }] }));
  });
  const alpha = legacyBackend("alpha", (s) => {
    s.registerTool("echo", {}, () => ({ content: [{ type: "text", text: "legacy" }] }));
  });
  const late = lateBackend(10_000);
  const gw = await serveGateway({
    config: {
      backends: [
        { name: "beta", url: beta.url },
        { name: "gone", url: gone.url },
        { name: "alpha", url: alpha.url },
        { name: "late", url: late.url, timeoutMs: 300 },
      ],
    },
  });
  const token = await mintAccessToken(gw.deps);
  try {
    await t.step("the first call connects through the SDK; the next ones are fast", async () => {
      const first = await rawCall(gw, token, "beta__echo", { args: { text: "hi" } });
      assertEquals(first.fast, false);
      const second = await rawCall(gw, token, "beta__echo", { args: { text: "hi" } });
      assertEquals(second.fast, true);
      assertEquals(second.message, first.message);
      assertEquals(second.message.result.content, [{ type: "text", text: "hi" }]);
      assertEquals(second.message.result.resultType, "complete");
      assertEquals(
        second.message.result._meta["io.modelcontextprotocol/serverInfo"].name,
        gw.deps.config.serverName,
      );
    });

    await t.step("a JSON result is the same as the SDK path's", async () => {
      assertSame(await both(gw, token, "beta__echo", { args: { text: "same" } }));
      assertSame(await both(gw, token, "beta__echo", { args: { text: 5 } }));
      assertSame(await both(gw, token, "beta__boom"));
    });

    await t.step("resource links and embedded resources get their URIs wrapped", async () => {
      const r = await both(gw, token, "beta__link");
      assertSame(r);
      assertEquals(r.fast.message.result.content[0].uri, "mcpgw-beta+file:///a.txt");
      assertEquals(r.fast.message.result.content[1].resource.uri, "mcpgw-beta+file:///b.txt");
      assertEquals(r.fast.message.result._meta["example.com/x"], 1);
    });

    await t.step("an SSE answer streams the progress, then the rewritten result", async () => {
      const r = await both(gw, token, "beta__work", { meta: { progressToken: "p1" } });
      assertSame(r);
      assertEquals(r.fast.type, "text/event-stream");
      assertEquals(
        r.fast.notifications.map((n: any) => [n.params.progressToken, n.params.progress]),
        [["p1", 1], ["p1", 2], ["p1", 3]],
      );
      assertEquals(r.fast.message.result.content, [{ type: "text", text: "done" }]);
    });

    await t.step("a real client gets progress through the fast path", async () => {
      const client = new Client({ name: "t", version: "1" }, {
        versionNegotiation: { mode: "auto" },
      });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), {
          requestInit: { headers: { authorization: `Bearer ${token}` } },
        }),
      );
      try {
        const seen: number[] = [];
        const before = gw.deps.logs.length;
        const result = await client.callTool({ name: "beta__work", arguments: {} }, {
          onprogress: (p) => void seen.push(p.progress),
        });
        assertEquals(result.content, [{ type: "text", text: "done" }]);
        assertEquals(seen, [1, 2, 3]);
        assert(gw.deps.logs.slice(before).some((l) => l.fast_path === true));
      } finally {
        await client.close();
      }
    });

    await t.step("an unknown tool is the backend's -32602, as before", async () => {
      const r = await both(gw, token, "beta__nope");
      assertSame(r);
      assertEquals(r.fast.message.error.code, -32602);
    });

    await t.step("an unknown backend and a legacy backend take the SDK path", async () => {
      const unknown = await both(gw, token, "nobody__echo");
      assertSame(unknown, false);
      assertEquals(unknown.fast.message.error.code, -32602);
      await rawCall(gw, token, "alpha__echo"); // connects and probes
      const legacy = await both(gw, token, "alpha__echo");
      assertSame(legacy, false);
      assertEquals(legacy.fast.message.result.content, [{ type: "text", text: "legacy" }]);
    });

    await t.step("a call past timeoutMs is 'Backend late timed out', as before", async () => {
      await rawCall(gw, token, "late__nap"); // connects (and times out) through the SDK
      const r = await both(gw, token, "late__nap");
      assertSame(r);
      assertEquals(r.fast.message.error.code, -32603);
      assertMatch(r.fast.message.error.message, /Backend late timed out/);
    });

    await t.step("a backend gone down is 'Backend gone is unavailable', as before", async () => {
      const up = await rawCall(gw, token, "gone__echo");
      assertEquals(up.message.result.content, [{ type: "text", text: "here" }]);
      assertEquals((await rawCall(gw, token, "gone__echo")).fast, true);
      await gone.close();
      const fast = await rawCall(gw, token, "gone__echo");
      assertEquals(fast.fast, true);
      fastCallSettings.enabled = false;
      const sdk = await rawCall(gw, token, "gone__echo").finally(() =>
        fastCallSettings.enabled = true
      );
      assertSame({ sdk, fast });
      assertEquals(fast.message.error.code, -32603);
      assertMatch(fast.message.error.message, /Backend gone is unavailable/);
    });

    await t.step("the client's token never reaches the backend", () => {
      assert(beta.seen.length > 0);
      assert(beta.seen.every((s) => s.authorization === null));
    });

    await t.step("nothing was answered with a 500", () => {
      assertEquals(gw.deps.logs.filter((l) => l.status === 500), []);
    });
  } finally {
    await closeAggregate(gw.deps);
    await beta.close();
    await alpha.close();
    await late.close();
    await gw.close();
  }
});
