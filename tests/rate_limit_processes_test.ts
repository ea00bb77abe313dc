/**
 * The per-grant MCP rate limit across two real gateway processes sharing one KV file (issue 14):
 * each process counts locally and flushes to KV on a timer and at shutdown, and a process reads
 * the window's KV total before its first call of a grant's window, so a burst on the second
 * process sees what the first one counted.
 */
import { launchGateway, mint } from "../bench/gateway.ts";
import { modernRequest } from "../bench/mcp.ts";
import { freePort, type Proc, startBenchServer, startGateway } from "../bench/procs.ts";
import { rateKey } from "../lib/infra/rate_limit.ts";
import { assertEquals } from "./_assert.ts";

const REPO_ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Sends `n` concurrent `tools/call`s and returns their statuses (bodies read and checked). */
async function burst(url: string, token: string, n: number): Promise<number[]> {
  const call = modernRequest("tools/call", { name: "echo", arguments: {} }, `Bearer ${token}`);
  return await Promise.all(Array.from({ length: n }, async () => {
    const res = await fetch(url, { method: "POST", headers: call.headers, body: call.body });
    const body = await res.json();
    if (res.status === 429) assertEquals(body.error.code, -32000);
    else assertEquals(body.result.content[0].text, "ok");
    return res.status;
  }));
}

async function counted(kv: Deno.Kv, grantId: string): Promise<number> {
  const entry = await kv.get(rateKey("mcp", grantId, 60_000, Date.now()));
  return entry.value instanceof Deno.KvU64 ? Number(entry.value.value) : 0;
}

/** Polls KV until the grant's count reaches `n` (bounded); returns the last count read. */
async function countReaches(kv: Deno.Kv, grantId: string, n: number): Promise<number> {
  const deadline = Date.now() + 15_000;
  let c = await counted(kv, grantId);
  while (c < n && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    c = await counted(kv, grantId);
  }
  return c;
}

Deno.test({
  name: "MCP rate limit per grant, shared by two gateway processes on one KV file",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const backend = await startBenchServer("backend", ["backend", "0"]);
    const a = await launchGateway(
      "rl-a",
      REPO_ROOT,
      [{ name: "alpha", url: `${backend.url}/mcp` }],
      [],
      {
        rateLimits: { mcpPerGrantPerMinute: 60 },
      },
    );
    let b: Proc | undefined;
    try {
      b = await startGateway("rl-b", REPO_ROOT, a.env, freePort());
      const resource = `${a.publicUrl}/mcp`;
      const [first, second] = [
        (await mint(a, 1, { resource })).accessTokens[0]!,
        (await mint(a, 1, { resource })).accessTokens[0]!,
      ];
      // Not at the last seconds of a minute: the bursts must fall in one window.
      const intoMinute = Date.now() % 60_000;
      if (intoMinute > 40_000) await new Promise((r) => setTimeout(r, 60_500 - intoMinute));
      const grants: string[] = [];
      for await (const e of a.kv.list({ prefix: ["grant"] })) grants.push(String(e.key[1]));
      assertEquals(grants.length, 2);
      /** The grant of `first`: the one that has counted calls after the first burst. */
      let firstGrant = "";

      await t.step("50 calls on one process reach KV on the flush timer", async () => {
        const statuses = await burst(`${a.proc.url}/mcp/alpha`, first, 50);
        assertEquals(statuses.filter((s) => s === 200).length, 50);
        // The grant of `first` is the one with counted calls (the other's count stays 0).
        const deadline = Date.now() + 15_000;
        while (!firstGrant && Date.now() < deadline) {
          for (const g of grants) if (await counted(a.kv, g) > 0) firstGrant = g;
          await new Promise((r) => setTimeout(r, 20));
        }
        assertEquals(
          await countReaches(a.kv, firstGrant, 50),
          50,
          "the 50 calls are in KV without a further call",
        );
      });

      await t.step("then 50 on the other process: 10 pass, 40 get 429 (limit 60)", async () => {
        const statuses = await burst(`${b!.url}/mcp/alpha`, first, 50);
        assertEquals(statuses.filter((s) => s === 200).length, 10, statuses.join(","));
        assertEquals(statuses.filter((s) => s === 429).length, 40);
      });

      await t.step("a process's pending counts are flushed when it stops (SIGTERM)", async () => {
        const statuses = await burst(`${b!.url}/mcp/alpha`, second, 30);
        assertEquals(statuses.filter((s) => s === 200).length, 30);
        await b!.stop();
        const counts = await Promise.all(grants.map((g) => counted(a.kv, g)));
        assertEquals(counts.sort((x, y) => x - y), [30, 60]);
      });
    } finally {
      await b?.stop();
      await a.stop();
      await backend.stop();
    }
  },
});
