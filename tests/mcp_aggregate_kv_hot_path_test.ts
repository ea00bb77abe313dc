/**
 * Issue 14: the hot path of an authenticated `/mcp` `tools/call` on a warm isolate does no KV
 * write and at most one KV read, for a 2026-07-28 client and for a 2025-era client on its
 * session, to a 2026-07-28 backend and to a 2025-era backend (the fast path, fast_call.ts).
 * Audit records are written by their own batched flush, off the request path, and are flushed
 * before counting.
 */
import { assert, assertEquals } from "./_assert.ts";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { serveGateway } from "./_helpers.ts";
import { legacyBackend, mintAccessToken, modernBackend } from "./_aggregate_backends.ts";

const ENVELOPE = {
  "io.modelcontextprotocol/protocolVersion": "2026-07-28",
  "io.modelcontextprotocol/clientCapabilities": {},
  "io.modelcontextprotocol/clientInfo": { name: "t", version: "1" },
};

/** Counts the KV operations made through `kv` from now on. */
function countKv(kv: Deno.Kv) {
  const counts = { reads: 0, writes: 0 };
  const k = kv as any;
  for (const m of ["get", "getMany", "list"]) {
    const original = k[m].bind(kv);
    k[m] = (...args: unknown[]) => {
      counts.reads++;
      return original(...args);
    };
  }
  for (const m of ["set", "delete", "enqueue"]) {
    const original = k[m].bind(kv);
    k[m] = (...args: unknown[]) => {
      counts.writes++;
      return original(...args);
    };
  }
  const atomic = k.atomic.bind(kv);
  k.atomic = () => {
    const op = atomic();
    const commit = op.commit.bind(op);
    op.commit = () => {
      counts.writes++;
      return commit();
    };
    return op;
  };
  return counts;
}

Deno.test("/mcp tools/call on a warm isolate: no KV write, at most one read", async (t) => {
  const modern = modernBackend("m", (s) => {
    s.registerTool("echo", {}, () => ({ content: [{ type: "text", text: "m" }] }));
  });
  const legacy = legacyBackend("l", (s) => {
    s.registerTool("echo", {}, () => ({ content: [{ type: "text", text: "l" }] }));
  }, { jsonResponse: true });
  const gw = await serveGateway({
    config: { backends: [{ name: "m", url: modern.url }, { name: "l", url: legacy.url }] },
  });
  const token = await mintAccessToken(gw.deps);
  const post = (headers: Record<string, string>, body: unknown) =>
    fetch(`${gw.url}/mcp`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        ...headers,
      },
      body: JSON.stringify(body),
    });
  try {
    const init = await post({}, {
      jsonrpc: "2.0",
      id: 0,
      method: "initialize",
      params: {
        protocolVersion: "2025-11-25",
        capabilities: {},
        clientInfo: { name: "t", version: "1" },
      },
    });
    await init.body?.cancel();
    const session = init.headers.get("mcp-session-id")!;
    const calls = {
      "a 2026-07-28 client": (name: string) =>
        post(
          { "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": name },
          {
            jsonrpc: "2.0",
            id: 1,
            method: "tools/call",
            params: { name, arguments: {}, _meta: ENVELOPE },
          },
        ),
      "a 2025-era client on its session": (name: string) =>
        post({ "mcp-session-id": session, "mcp-protocol-version": "2025-11-25" }, {
          jsonrpc: "2.0",
          id: 1,
          method: "tools/call",
          params: { name, arguments: {} },
        }),
    };
    for (const [who, call] of Object.entries(calls)) {
      for (const backend of ["m", "l"]) {
        await t.step(`${who}, ${backend === "m" ? "2026-07-28" : "2025-era"} backend`, async () => {
          // Warm: the backend connected, the token and session cached.
          for (let i = 0; i < 2; i++) await (await call(`${backend}__echo`)).text();
          await gw.deps.audit.flush();
          const counts = countKv(gw.deps.kv);
          const n = 10;
          for (let i = 0; i < n; i++) {
            const res = await call(`${backend}__echo`);
            assertEquals(res.status, 200);
            assert((await res.text()).includes(`"text":"${backend}"`));
          }
          assertEquals(counts.writes, 0, "KV writes on the hot path");
          assert(counts.reads <= n, `${counts.reads} KV reads for ${n} calls`);
          const fast = gw.deps.logs.filter((l) => l.tool === `${backend}__echo`).slice(-n);
          assert(fast.every((l) => l.fast_path === true), "served by the fast path");
        });
      }
    }
    await t.step(
      "the count sees KV work: a new session is a write, its first call a read",
      async () => {
        const counts = countKv(gw.deps.kv);
        const res = await post({}, {
          jsonrpc: "2.0",
          id: 0,
          method: "initialize",
          params: {
            protocolVersion: "2025-11-25",
            capabilities: {},
            clientInfo: { name: "t", version: "1" },
          },
        });
        await res.body?.cancel();
        assertEquals(counts.writes, 1);
        const fresh = await post({
          "mcp-session-id": res.headers.get("mcp-session-id")!,
          "mcp-protocol-version": "2025-11-25",
        }, { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "m__echo" } });
        await fresh.text();
        assertEquals(counts.reads, 1);
      },
    );
  } finally {
    await closeAggregate(gw.deps);
    await modern.close();
    await legacy.close();
    await gw.close();
  }
});
