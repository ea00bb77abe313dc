/**
 * SSE priming on `/mcp` (issue 15 item 5; MCP 2025-11-25 Transports §Sending Messages to the
 * Server (6), §Listening for Messages from the Server): a 2025-11-25 client's SSE streams (POST
 * responses of the SDK path and of the fast path, GET streams) start with an event carrying an ID,
 * a `retry` field and empty data; 2025-06-18 and 2026-07-28 streams do not (the first cannot parse
 * it, the second has no resumability); SDK clients of both generations still work.
 */
import { assert, assertEquals } from "./_assert.ts";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { SSE_RETRY_MS } from "../lib/mcp/aggregate/sse_priming.ts";
import { type ServedGateway, serveGateway } from "./_helpers.ts";
import { legacyBackend, mintAccessToken, modernBackend } from "./_aggregate_backends.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const ENVELOPE = {
  "io.modelcontextprotocol/protocolVersion": "2026-07-28",
  "io.modelcontextprotocol/clientCapabilities": {},
  "io.modelcontextprotocol/clientInfo": { name: "t", version: "1" },
};

/** The SSE events of a body: each a map of field → values (in order). */
function events(text: string): Map<string, string[]>[] {
  return text.split("\n\n").filter((e) => e.trim() !== "").map((event) => {
    const fields = new Map<string, string[]>();
    for (const line of event.split("\n")) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      fields.set(name, [...fields.get(name) ?? [], value]);
    }
    return fields;
  }).filter((fields) => fields.size > 0);
}

/** Asserts that `first` is a priming event: one ID (`prefix-…`), `retry`, empty data. */
function assertPriming(first: Map<string, string[]> | undefined, prefix: "p" | "g") {
  assert(first, "no event at all");
  const id = first.get("id");
  assertEquals(id?.length, 1, "the first event has no id");
  assert(id![0]!.startsWith(`${prefix}-`) && id![0]!.length > 10, id![0]);
  assertEquals(first.get("data"), [""]);
  assertEquals(first.get("retry"), [String(SSE_RETRY_MS)]);
}

function post(gw: ServedGateway, token: string, headers: Record<string, string>, body: unknown) {
  return fetch(`${gw.url}/mcp`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...headers,
    },
    body: JSON.stringify(body),
  });
}

async function openSession(gw: ServedGateway, token: string, version: string): Promise<string> {
  const init = await post(gw, token, {}, {
    jsonrpc: "2.0",
    id: 0,
    method: "initialize",
    params: { protocolVersion: version, capabilities: {}, clientInfo: { name: "t", version: "1" } },
  });
  await init.body?.cancel();
  const session = init.headers.get("mcp-session-id");
  assert(session, "no Mcp-Session-Id");
  const headers = { "mcp-session-id": session, "mcp-protocol-version": version };
  const note = await post(gw, token, headers, {
    jsonrpc: "2.0",
    method: "notifications/initialized",
  });
  assertEquals(note.status, 202);
  await note.body?.cancel();
  return session;
}

/** A tools/call as a 2025 client of `version` on `session`: status, content type, events. */
async function legacyCall(
  gw: ServedGateway,
  token: string,
  session: string,
  version: string,
  name: string,
) {
  const res = await post(
    gw,
    token,
    { "mcp-session-id": session, "mcp-protocol-version": version },
    {
      jsonrpc: "2.0",
      id: 7,
      method: "tools/call",
      params: { name, arguments: {} },
    },
  );
  return { res, events: events(await res.text()) };
}

/** Reads a GET stream until its first `count` events, then cancels it. */
async function firstEvents(res: Response, count: number): Promise<Map<string, string[]>[]> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  try {
    for (let i = 0; i < 50 && events(text).length < count; i++) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
  } finally {
    await reader.cancel();
  }
  return events(text);
}

Deno.test("/mcp SSE streams are primed for 2025-11-25 clients", async (t) => {
  const alpha = legacyBackend("alpha", (s) => {
    s.registerTool("echo", {}, () => ({ content: [{ type: "text", text: "legacy" }] }));
  });
  const beta = modernBackend("beta", (s) => {
    s.registerTool("echo", {}, () => ({ content: [{ type: "text", text: "modern" }] }));
  });
  const gw = await serveGateway({
    config: { backends: [{ name: "alpha", url: alpha.url }, { name: "beta", url: beta.url }] },
  });
  const token = await mintAccessToken(gw.deps);
  const requestInit = { headers: { authorization: `Bearer ${token}` } };
  try {
    const session = await openSession(gw, token, "2025-11-25");

    await t.step("a POST's stream starts with id + retry + empty data (SDK path)", async () => {
      const { res, events } = await legacyCall(gw, token, session, "2025-11-25", "alpha__echo");
      assertEquals(res.status, 200);
      assert(res.headers.get("content-type")?.startsWith("text/event-stream"));
      assertPriming(events[0], "p");
      const last = JSON.parse(events.at(-1)!.get("data")!.join("\n"));
      assertEquals(last.result.content, [{ type: "text", text: "legacy" }]);
    });

    await t.step("so does the fast path's (a connected 2026-07-28 backend)", async () => {
      for (let i = 0; i < 2; i++) { // the first call connects; the second is a fast one
        const before = gw.deps.logs.length;
        const { res, events } = await legacyCall(gw, token, session, "2025-11-25", "beta__echo");
        assertEquals(res.status, 200);
        assert(res.headers.get("content-type")?.startsWith("text/event-stream"));
        assertPriming(events[0], "p");
        const last = JSON.parse(events.at(-1)!.get("data")!.join("\n"));
        assertEquals(last.result.content, [{ type: "text", text: "modern" }]);
        await sleep(0);
        const line = gw.deps.logs.slice(before).find((l) => l.tool === "beta__echo");
        if (i === 1) assertEquals(line?.fast_path, true);
      }
    });

    await t.step(
      "the fast path primes its one-string answer once (both backend eras)",
      async () => {
        for (const name of ["alpha__echo", "beta__echo"]) {
          for (let i = 0; i < 2; i++) { // the first call may connect; the second is a fast one
            const before = gw.deps.logs.length;
            const { res, events } = await legacyCall(gw, token, session, "2025-11-25", name);
            assertEquals(res.status, 200);
            assertEquals(res.headers.get("content-type"), "text/event-stream");
            assertPriming(events[0], "p");
            assertEquals(events.length, 2, `${name}: priming event, then the result only`);
            assertEquals(events[1]!.get("id"), undefined);
            const last = JSON.parse(events[1]!.get("data")!.join("\n"));
            assertEquals(last.id, 7);
            assertEquals(last.result.content, [{
              type: "text",
              text: name === "alpha__echo" ? "legacy" : "modern",
            }]);
            await sleep(0);
            const line = gw.deps.logs.slice(before).find((l) => l.tool === name);
            if (i === 1) assertEquals(line?.fast_path, true, name);
          }
        }
      },
    );

    await t.step("the session's GET stream starts with its own priming event", async () => {
      const res = await fetch(`${gw.url}/mcp`, {
        headers: {
          authorization: `Bearer ${token}`,
          accept: "text/event-stream",
          "mcp-session-id": session,
          "mcp-protocol-version": "2025-11-25",
        },
      });
      assertEquals(res.status, 200);
      assert(res.headers.get("content-type")?.startsWith("text/event-stream"));
      assertPriming((await firstEvents(res, 1))[0], "g");
    });

    await t.step("a GET resuming a POST's stream is 405 (nothing is replayed)", async () => {
      const res = await fetch(`${gw.url}/mcp`, {
        headers: {
          authorization: `Bearer ${token}`,
          accept: "text/event-stream",
          "mcp-session-id": session,
          "mcp-protocol-version": "2025-11-25",
          "last-event-id": "p-0b9d7c1e-1111-2222-3333-444455556666",
        },
      });
      assertEquals(res.status, 405);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals((await res.json()).error.code, -32000);
    });

    await t.step("2025-06-18 streams are not primed (empty data predates them)", async () => {
      const old = await openSession(gw, token, "2025-06-18");
      const { res, events } = await legacyCall(gw, token, old, "2025-06-18", "alpha__echo");
      assertEquals(res.status, 200);
      assert(res.headers.get("content-type")?.startsWith("text/event-stream"));
      assert(events.every((e) => !e.has("id") && !e.has("retry")), "primed a 2025-06-18 stream");
      assert(events.every((e) => (e.get("data") ?? [""]).join("") !== ""));
    });

    await t.step("2026-07-28 streams are not primed (no resumability)", async () => {
      const res = await post(gw, token, {
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "alpha__echo",
      }, {
        jsonrpc: "2.0",
        id: 7,
        method: "tools/call",
        params: { name: "alpha__echo", arguments: {}, _meta: ENVELOPE },
      });
      assertEquals(res.status, 200);
      const type = res.headers.get("content-type") ?? "";
      const text = await res.text();
      if (type.startsWith("text/event-stream")) {
        assert(events(text).every((e) => !e.has("id") && !e.has("retry")), text);
      } else assertEquals(JSON.parse(text).result.content, [{ type: "text", text: "legacy" }]);
    });

    await t.step("a v1 SDK client works, and its resume of an errored POST gets 405", async () => {
      const client = new V1Client({ name: "t", version: "1" });
      await client.connect(new V1ClientTransport(new URL(`${gw.url}/mcp`), { requestInit }));
      try {
        const result = await client.callTool({ name: "alpha__echo", arguments: {} });
        assertEquals(result.content, [{ type: "text", text: "legacy" }]);
        const before = gw.deps.logs.length;
        const failed = await client.callTool({ name: "nobody__echo", arguments: {} }).then(
          () => undefined,
          (error: { code?: number }) => error,
        );
        assertEquals(failed?.code, -32602);
        // SDK v1 treats an error response as "no response" and resumes after `retry` ms.
        let resumed: Record<string, unknown> | undefined;
        for (let i = 0; i < 100 && !resumed; i++) {
          await sleep(50);
          resumed = gw.deps.logs.slice(before).find((l) => l.method === "GET" && l.route);
        }
        assertEquals(resumed?.status, 405);
        assertEquals((await client.listTools()).tools.length, 2);
      } finally {
        await client.close();
      }
    });

    await t.step("v2 SDK clients (2025 and 2026-07-28) work", async () => {
      for (const mode of ["legacy", "auto"] as const) {
        const client = new Client(
          { name: "t", version: "1" },
          mode === "auto" ? { versionNegotiation: { mode: "auto" } } : {},
        );
        await client.connect(
          new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit }),
        );
        try {
          for (const name of ["alpha__echo", "beta__echo", "beta__echo"]) {
            const result = await client.callTool({ name, arguments: {} });
            assertEquals(result.content, [{
              type: "text",
              text: name.startsWith("alpha") ? "legacy" : "modern",
            }]);
          }
        } finally {
          await client.close();
        }
      }
    });
  } finally {
    await closeAggregate(gw.deps);
    await alpha.close();
    await beta.close();
    await gw.close();
  }
});
