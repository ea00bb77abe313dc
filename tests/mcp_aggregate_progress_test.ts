/**
 * Progress notifications and cancellation through the aggregated `/mcp`, end to end (MCP
 * 2025-11-25 Basic/Utilities/Progress and Cancellation; 2026-07-28: progress on the request's
 * stream, cancellation by closing it).
 */
import { assert, assertEquals } from "./_assert.ts";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { type ServedGateway, serveGateway } from "./_helpers.ts";
import { legacyBackend, mintAccessToken, modernBackend } from "./_aggregate_backends.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 3000): Promise<boolean> {
  for (let waited = 0; waited < ms && !cond(); waited += 10) await sleep(10);
  return cond();
}

async function client(gw: ServedGateway, era: "legacy" | "modern"): Promise<V1Client | Client> {
  const token = await mintAccessToken(gw.deps);
  const requestInit = { headers: { authorization: `Bearer ${token}` } };
  const url = new URL(`${gw.url}/mcp`);
  if (era === "legacy") {
    const c = new V1Client({ name: "t", version: "1" });
    await c.connect(new V1ClientTransport(url, { requestInit }));
    return c;
  }
  const c = new Client({ name: "t", version: "1" }, { versionNegotiation: { mode: "auto" } });
  await c.connect(new StreamableHTTPClientTransport(url, { requestInit }));
  return c;
}

Deno.test("/mcp relays progress and cancellation", async (t) => {
  const cancelled: string[] = [];
  const alpha = legacyBackend("alpha", (s) => {
    s.registerTool("work", {}, async (extra: any) => {
      const token = extra._meta?.progressToken;
      for (let i = 1; i <= 3; i++) {
        if (token !== undefined) {
          await extra.sendNotification({
            method: "notifications/progress",
            params: { progressToken: token, progress: i, total: 3, message: `step ${i}` },
          });
        }
        await sleep(5);
      }
      return { content: [{ type: "text", text: "alpha done" }] };
    });
    s.registerTool("wait", {}, async (extra: any) => {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 5000);
        extra.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          cancelled.push(`alpha ${extra.requestId}`);
          resolve();
        });
      });
      return { content: [{ type: "text", text: "waited" }] };
    });
  });
  const beta = modernBackend("beta", (s) => {
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
      return { content: [{ type: "text", text: "beta done" }] };
    });
  });
  const gw = await serveGateway({
    config: { backends: [{ name: "alpha", url: alpha.url }, { name: "beta", url: beta.url }] },
  });
  try {
    for (const era of ["legacy", "modern"] as const) {
      for (const backend of ["alpha", "beta"]) {
        await t.step(`${era} client gets ${backend}'s progress on the call's stream`, async () => {
          const c = await client(gw, era);
          try {
            const seen: { progress: number; total?: number }[] = [];
            const onprogress = (p: { progress: number; total?: number }) => void seen.push(p);
            const params = { name: `${backend}__work`, arguments: {} };
            const result = era === "legacy"
              ? await (c as V1Client).callTool(params, undefined, { onprogress })
              : await (c as Client).callTool(params, { onprogress });
            assertEquals(result.content, [{ type: "text", text: `${backend} done` }]);
            assertEquals(seen.map((p) => [p.progress, p.total]), [[1, 3], [2, 3], [3, 3]]);
          } finally {
            await c.close();
          }
        });
      }

      await t.step(`${era} client cancelling a call cancels the backend call`, async () => {
        const before = cancelled.length;
        const c = await client(gw, era);
        try {
          const abort = new AbortController();
          const params = { name: "alpha__wait", arguments: {} };
          const call = (era === "legacy"
            ? (c as V1Client).callTool(params, undefined, { signal: abort.signal })
            : (c as Client).callTool(params, { signal: abort.signal })).then(
              () =>
                "resolved",
              () => "rejected",
            );
          await sleep(200);
          abort.abort("user cancelled");
          assertEquals(await call, "rejected");
          assert(
            await until(() => cancelled.length > before),
            "the backend call was not cancelled",
          );
        } finally {
          await c.close();
        }
      });
    }
  } finally {
    await closeAggregate(gw.deps);
    await alpha.close();
    await beta.close();
    await gw.close();
  }
});
