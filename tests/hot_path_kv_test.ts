/**
 * KV operations on the hot path of an authenticated MCP call with a warm isolate (issue 14:
 * 0 writes, at most 1 read), counted for real with a counting wrapper around the `Deno.Kv`
 * that the gateway's own `loadDeps()` opens (bench/kv_ops.ts), over real HTTP to the gateway
 * in this process and a real JSON-RPC backend on a loopback port.
 */
import { hotPathKv, startCountedGateway } from "../bench/kv_ops.ts";
import { modernRequest } from "../bench/mcp.ts";
import { backendHandler } from "../bench/servers.ts";
import { assert, assertEquals } from "./_assert.ts";

Deno.test({
  name: "hot path of a warm authenticated call: no KV write, at most one read",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const backend = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      backendHandler(0),
    );
    const gw = await startCountedGateway([
      { name: "alpha", url: `http://127.0.0.1:${backend.addr.port}/mcp` },
    ]);
    try {
      await t.step("the counter sees the gateway's KV (minting wrote)", () => {
        assert(gw.ops.writes > 0);
      });
      await t.step("/mcp/{backend} tools/call (2026-07-28)", async () => {
        const req = modernRequest(
          "tools/call",
          { name: "echo", arguments: {} },
          `Bearer ${gw.token}`,
        );
        const r = await hotPathKv(gw, `${gw.url}/mcp/alpha`, req, 50);
        assertEquals(r.writes, 0, JSON.stringify(r));
        assert(r.maxReadsPerCall <= 1, JSON.stringify(r));
      });
      await t.step("/mcp tools/call (2026-07-28 client, aggregated)", async () => {
        const req = modernRequest(
          "tools/call",
          { name: "alpha__echo", arguments: {} },
          `Bearer ${gw.token}`,
        );
        const r = await hotPathKv(gw, `${gw.url}/mcp`, req, 50);
        assertEquals(r.writes, 0, JSON.stringify(r));
        assert(r.maxReadsPerCall <= 1, JSON.stringify(r));
      });
    } finally {
      await gw.close();
      await backend.shutdown();
    }
  },
});
