/**
 * Issue 15, defects 1 and 4 on the aggregated `/mcp`: a 2026-07-28 backend's result without
 * `resultType` is refused alike on the fast path and the SDK path, with an error naming the
 * backend's fault, and never leaves the backend unusable; a body that is not JSON is a JSON-RPC
 * -32700 Parse error whatever the session headers say (JSON-RPC 2.0 §5.1).
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { createMcpHandler, McpServer } from "@modelcontextprotocol/server";
import { fastCallSettings } from "../lib/mcp/aggregate/fast_call.ts";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { type ServedGateway, serveGateway } from "./_helpers.ts";
import { mintAccessToken } from "./_aggregate_backends.ts";

const ENVELOPE = {
  "io.modelcontextprotocol/protocolVersion": "2026-07-28",
  "io.modelcontextprotocol/clientCapabilities": {},
  "io.modelcontextprotocol/clientInfo": { name: "t", version: "1" },
};

/**
 * A real v2 SDK backend (2026-07-28 only) whose `bare` tool's result reaches the wire without
 * `resultType` (the fault the conformance reference server showed), in JSON or in SSE.
 */
function faultyBackend() {
  const handler = createMcpHandler(() => {
    const server = new McpServer({ name: "faulty", version: "1.0.0" });
    server.registerTool("ok", {}, () => ({ content: [{ type: "text", text: "fine" }] }));
    server.registerTool("bare", {}, () => ({ content: [{ type: "text", text: "bare" }] }));
    return server;
  }, { legacy: "reject" });
  let sse = false;
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const name = req.headers.get("mcp-name");
    const res = await handler.fetch(req);
    if (name !== "bare") return res;
    const text = await res.text();
    const strip = (json: string) => {
      const msg = JSON.parse(json);
      if (msg.result) delete msg.result.resultType;
      return JSON.stringify(msg);
    };
    const type = res.headers.get("content-type") ?? "";
    const body = type.startsWith("text/event-stream")
      ? text.replace(/^data: (.*)$/gm, (_, json) => `data: ${strip(json)}`)
      : strip(text);
    if (sse && !type.startsWith("text/event-stream")) {
      return new Response(`event: message\ndata: ${body}\n\n`, {
        headers: { "content-type": "text/event-stream" },
      });
    }
    return new Response(body, { status: res.status, headers: { "content-type": type } });
  });
  return {
    url: `http://127.0.0.1:${http.addr.port}/mcp`,
    setSse: (on: boolean) => void (sse = on),
    close: async () => {
      await handler.close();
      await http.shutdown();
    },
  };
}

async function call(gw: ServedGateway, token: string, name: string) {
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
      id: 3,
      method: "tools/call",
      params: { name, arguments: {}, _meta: ENVELOPE },
    }),
  });
  const type = (res.headers.get("content-type") ?? "").split(";")[0];
  const text = await res.text();
  const data = type === "text/event-stream"
    ? text.split("\n").filter((l) => l.startsWith("data:")).at(-1)!.slice(5)
    : text;
  await new Promise((r) => setTimeout(r, 0));
  const fast = gw.deps.logs.slice(before).some((l) => l.route !== undefined && l.fast_path);
  return { status: res.status, type, message: JSON.parse(data), fast };
}

Deno.test("/mcp: a backend's result without resultType (issue 15, defect 1)", async (t) => {
  const backend = faultyBackend();
  const gw = await serveGateway({ config: { backends: [{ name: "faulty", url: backend.url }] } });
  const token = await mintAccessToken(gw.deps);
  try {
    assertEquals((await call(gw, token, "faulty__ok")).message.result.content[0].text, "fine");
    for (const fastPath of [false, true]) {
      for (const sse of [false, true]) {
        await t.step(
          `${fastPath ? "fast" : "SDK"} path, ${sse ? "SSE" : "JSON"}: refused naming the ` +
            "backend's fault, and the next call succeeds",
          async () => {
            fastCallSettings.enabled = fastPath;
            backend.setSse(sse);
            try {
              // A live connection in the pool: the fast path is taken when enabled.
              await call(gw, token, "faulty__ok");
              const ok = await call(gw, token, "faulty__ok");
              assertEquals(ok.status, 200);
              assertEquals(ok.fast, fastPath);
              const connects = () =>
                gw.deps.logs.filter((l) => l.event === "backend_connected").length;
              const before = connects();
              const bad = await call(gw, token, "faulty__bare");
              assertEquals(bad.status, 200);
              assertEquals(bad.fast, fastPath);
              assertEquals(bad.message.id, 3);
              assertEquals(bad.message.error.code, -32603);
              assertMatch(
                bad.message.error.message,
                /^Backend faulty returned an invalid result: .*resultType/,
              );
              const next = await call(gw, token, "faulty__ok");
              assertEquals(next.status, 200);
              assertEquals(next.type, "application/json");
              assertEquals(next.message.result.content, [{ type: "text", text: "fine" }]);
              // The connection was kept: no reconnect, and the fast path still applies.
              assertEquals(next.fast, fastPath);
              assertEquals(connects(), before);
            } finally {
              fastCallSettings.enabled = true;
              backend.setSse(false);
            }
          },
        );
      }
    }
    await t.step("the failure is logged as the backend's fault", () => {
      const failed = gw.deps.logs.filter((l) => l.event === "backend_call_failed");
      assert(failed.length >= 4);
      assert(failed.every((l) => l.backend === "faulty"));
    });
  } finally {
    await closeAggregate(gw.deps);
    await backend.close();
    await gw.close();
  }
});

Deno.test("/mcp: invalid JSON is -32700 Parse error (issue 15, defect 4)", async (t) => {
  const backend = faultyBackend();
  const gw = await serveGateway({ config: { backends: [{ name: "faulty", url: backend.url }] } });
  const token = await mintAccessToken(gw.deps);
  const post = (headers: Record<string, string>) =>
    fetch(`${gw.url}/mcp`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        ...headers,
      },
      body: '{"jsonrpc": "2.0", "id": 1, "method": "tools/li',
    });
  try {
    for (
      const [what, headers] of [
        ["no session and no version", {}],
        ["a 2025-era version header", { "mcp-protocol-version": "2025-11-25" }],
        ["an unknown session", { "mcp-session-id": "nope" }],
        ["2026-07-28 headers", {
          "mcp-protocol-version": "2026-07-28",
          "mcp-method": "tools/list",
        }],
      ] as const
    ) {
      await t.step(`with ${what}`, async () => {
        const res = await post(headers);
        assertEquals(res.status, 400);
        assertEquals(res.headers.get("content-type")?.split(";")[0], "application/json");
        assertEquals(await res.json(), {
          jsonrpc: "2.0",
          id: null,
          error: { code: -32700, message: "Parse error" },
        });
      });
    }
  } finally {
    await closeAggregate(gw.deps);
    await backend.close();
    await gw.close();
  }
});
