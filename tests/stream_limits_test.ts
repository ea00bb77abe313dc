/**
 * Caps on long-lived SSE streams (security review issue 13 §9): per session and per principal
 * (`rateLimits.openStreamsPerSession`, `openStreamsPerPrincipal`), 429 with a JSON-RPC error
 * beyond them, for the legacy change stream (`GET /mcp`), the pass-through (`GET /mcp/<backend>`)
 * and modern `subscriptions/listen` streams, for tokens and API keys; a closed stream gives its
 * place back. Real gateway, real backends, real HTTP connections.
 */
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { OpenStreams } from "../lib/mcp/stream_limits.ts";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./_assert.ts";
import { mintAccessToken, modernBackend } from "./_aggregate_backends.ts";
import { startRawBackend } from "./_backends.ts";
import { serveGateway } from "./_helpers.ts";

const API_KEY = "stream-limits-api-key-0123";
const ACCEPT = "application/json, text/event-stream";
const INITIALIZE = JSON.stringify({
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: {
    protocolVersion: "2025-06-18",
    capabilities: {},
    clientInfo: { name: "t", version: "1" },
  },
});

/** A pass-through backend: initialize opens session `s<n>`, GET holds an SSE stream open. */
function streamingBackend() {
  let sessions = 0;
  const open = new Set<ReadableStreamDefaultController<Uint8Array>>();
  const backend = startRawBackend((req) => {
    if (req.method === "POST") {
      return Response.json({ jsonrpc: "2.0", id: 1, result: {} }, {
        headers: { "mcp-session-id": `s${++sessions}` },
      });
    }
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
        open.add(c);
        c.enqueue(new TextEncoder().encode(": open\n\n"));
      },
      cancel() {
        open.delete(controller);
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  }, () => {
    for (const c of open) c.close();
  });
  return backend;
}

/** Expects the 429 JSON-RPC refusal of a stream. */
async function expectRefused(res: Response, what: string): Promise<void> {
  assertEquals(res.status, 429);
  assertEquals(res.headers.get("content-type"), "application/json");
  const body = await res.json();
  assertEquals(body.jsonrpc, "2.0");
  assertEquals(body.error.code, -32000);
  assertStringIncludes(body.error.message, "too many open streams");
  assertStringIncludes(body.error.message, what);
}

/** Expects an open SSE stream. */
function expectStream(res: Response): Response {
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("content-type"), "text/event-stream");
  return res;
}

/** Retries `attempt` until it is not refused (a cancelled stream is released asynchronously). */
async function afterRelease(attempt: () => Promise<Response>): Promise<Response> {
  for (let i = 0; i < 100; i++) {
    const res = await attempt();
    if (res.status !== 429) return res;
    await res.body?.cancel();
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error("the closed stream was never released");
}

Deno.test("OpenStreams: per session and per principal, released once", () => {
  const streams = new OpenStreams(2, 3);
  const a = streams.acquire("p", "s1");
  const b = streams.acquire("p", "s1");
  assert("release" in a && "release" in b);
  assertEquals(streams.acquire("p", "s1"), { refused: "session" });
  const c = streams.acquire("p", "s2");
  assert("release" in c);
  assertEquals(streams.acquire("p", "s3"), { refused: "principal" });
  assertEquals(streams.acquire("p"), { refused: "principal" });
  assert("release" in streams.acquire("other", "s1"), "another principal's session s1");
  a.release();
  a.release();
  assertEquals(streams.openFor("p"), 2, "a second release takes nothing more back");
  assert("release" in streams.acquire("p", "s1"));
});

Deno.test("open SSE streams are capped per session and per principal", async (t) => {
  const alpha = modernBackend("alpha", (s) => {
    s.registerTool("t", {}, () => ({ content: [{ type: "text", text: "t" }] }));
  });
  const pass = streamingBackend();
  const gw = await serveGateway({
    config: {
      // "pass" is no MCP server: /mcp (API key) gives up on it quickly.
      backends: [{ name: "alpha", url: alpha.url }, {
        name: "pass",
        url: pass.url,
        timeoutMs: 300,
      }],
      rateLimits: { openStreamsPerSession: 2, openStreamsPerPrincipal: 3 },
    },
    env: { GATEWAY_API_KEY: API_KEY },
  });
  const held: Response[] = [];
  const hold = (res: Response) => {
    held.push(expectStream(res));
    return res;
  };
  const headers = (bearer: string, session?: string) => ({
    authorization: `Bearer ${bearer}`,
    accept: ACCEPT,
    "content-type": "application/json",
    ...(session ? { "mcp-session-id": session } : {}),
  });
  const initialize = async (path: string, bearer: string) => {
    const res = await fetch(`${gw.url}${path}`, {
      method: "POST",
      headers: headers(bearer),
      body: INITIALIZE,
    });
    assertEquals(res.status, 200);
    await res.body?.cancel();
    const id = res.headers.get("mcp-session-id");
    assert(id, "initialize opened a session");
    return id;
  };
  const get = (path: string, bearer: string, session: string) =>
    fetch(`${gw.url}${path}`, { headers: headers(bearer, session) });
  try {
    await t.step(
      "GET /mcp: per session, then per principal; a closed stream frees its place",
      async () => {
        const token = await mintAccessToken(gw.deps, { scope: "mcp" });
        const one = await initialize("/mcp", token);
        hold(await get("/mcp", token, one));
        const second = hold(await get("/mcp", token, one));
        await expectRefused(await get("/mcp", token, one), "this session (at most 2)");
        const two = await initialize("/mcp", token);
        hold(await get("/mcp", token, two));
        await expectRefused(await get("/mcp", token, two), "this grant or key (at most 3)");
        await second.body?.cancel();
        held.splice(held.indexOf(second), 1);
        hold(await afterRelease(() => get("/mcp", token, two)));
      },
    );

    await t.step("API keys are capped too", async () => {
      const one = await initialize("/mcp", API_KEY);
      const two = await initialize("/mcp", API_KEY);
      hold(await get("/mcp", API_KEY, one));
      hold(await get("/mcp", API_KEY, one));
      await expectRefused(await get("/mcp", API_KEY, one), "this session");
      hold(await get("/mcp", API_KEY, two));
      await expectRefused(await get("/mcp", API_KEY, two), "this grant or key");
    });

    await t.step("GET /mcp/<backend>: the same caps on the pass-through", async () => {
      const token = await mintAccessToken(gw.deps, {
        scope: "mcp",
        resource: `${gw.url}/mcp/pass`,
      });
      const one = await initialize("/mcp/pass", token);
      hold(await get("/mcp/pass", token, one));
      hold(await get("/mcp/pass", token, one));
      const before = pass.requests.length;
      await expectRefused(await get("/mcp/pass", token, one), "this session (at most 2)");
      assertEquals(pass.requests.length, before, "a refused stream never reaches the backend");
      const two = await initialize("/mcp/pass", token);
      hold(await get("/mcp/pass", token, two));
      await expectRefused(await get("/mcp/pass", token, two), "this grant or key (at most 3)");
    });

    await t.step("modern subscriptions/listen streams count per principal", async () => {
      const token = await mintAccessToken(gw.deps, { scope: "mcp:alpha" });
      const client = new Client({ name: "t", version: "1" }, {
        versionNegotiation: { mode: "auto" },
      });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), {
          requestInit: { headers: { authorization: `Bearer ${token}` } },
        }),
      );
      const subs = [];
      try {
        for (let i = 0; i < 3; i++) subs.push(await client.listen({ toolsListChanged: true }));
        const e = await assertRejects(() => client.listen({ toolsListChanged: true }), Error);
        assertStringIncludes(e.message, "too many open streams");
        await subs.pop()!.close();
        let again;
        for (let i = 0; i < 100 && !again; i++) {
          again = await client.listen({ toolsListChanged: true }).catch(() => undefined);
          if (!again) await new Promise((r) => setTimeout(r, 20));
        }
        assert(again, "a closed listen stream frees its place");
        subs.push(again);
      } finally {
        for (const s of subs) await s.close();
        await client.close();
      }
    });
  } finally {
    for (const res of held) await res.body?.cancel().catch(() => {});
    await closeAggregate(gw.deps);
    await gw.close();
    await alpha.close();
    await pass.close();
  }
});
