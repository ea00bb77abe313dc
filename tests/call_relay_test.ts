/**
 * The pieces of the /mcp relay that decide where a message goes: the call tap (which call a
 * backend's server-to-client request belongs to, MCP 2025-11-25 Transports §Sending Messages to
 * the Server), the capability gate (Client/Elicitation §Capabilities), client answers, and log
 * levels (Server/Utilities/Logging). The tap reads a real SSE response from a loopback server.
 */
import { assert, assertEquals } from "./_assert.ts";
import {
  type CallRelay,
  CallTap,
  QUIET_WINDOW_MS,
  runInCall,
} from "../lib/mcp/aggregate/call_relay.ts";
import { clientAnswersOf, lacksCapability } from "../lib/mcp/aggregate/input_relay.ts";
import { logAllows, namedLog } from "../lib/mcp/aggregate/log_relay.ts";

/** A loopback server answering each POST with `chunks` as an SSE body (held open until `end`). */
function sseServer(chunks: string[], hold?: Promise<void>) {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    const encoder = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        for (const c of chunks) controller.enqueue(encoder.encode(c));
        await hold;
        controller.close();
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  });
  return { url: `http://127.0.0.1:${server.addr.port}/mcp`, close: () => server.shutdown() };
}

function recordingRelay(): CallRelay & { logs: Record<string, unknown>[] } {
  const logs: Record<string, unknown>[] = [];
  return {
    logs,
    ask: () => Promise.resolve({}),
    log: (params) => void logs.push(params),
  };
}

Deno.test("call tap", async (t) => {
  await t.step(
    "a request on a call's stream is tied to that call, once; its log messages go to the call",
    async () => {
      const chunks = [
        'event: message\r\nid: 1\r\ndata: {"jsonrpc":"2.0","id":5,"method":"elicitation/cr',
        'eate","params":{}}\r\n\r\nevent: message\ndata: {"jsonrpc":"2.0","method":"notifica',
        'tions/message","params":{"level":"info","data":"x"}}\n\n',
        'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{}}\n\n',
        'event: message\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\n\n',
      ];
      const server = sseServer(chunks);
      const tap = new CallTap();
      const relay = recordingRelay();
      try {
        const res = await runInCall(
          relay,
          () => tap.fetch(fetch)(server.url, { method: "POST", body: "{}" }),
        );
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type"), "text/event-stream");
        const text = await res.text();
        assert(text.includes('"method":"elicitation/create"'), text);
        assert(text.includes('"method":"notifications/progress"'), text);
        assert(text.includes('"id":1,"result"'), text);
        assert(!text.includes("notifications/message"), "the log message left the stream");
        assertEquals(relay.logs, [{ level: "info", data: "x" }]);
        assertEquals(tap.take(5), relay);
        assertEquals(tap.take(5), undefined, "taken once; no call is in flight any more");
      } finally {
        await server.close();
      }
    },
  );

  await t.step("outside a call nothing is tapped", async () => {
    const server = sseServer([
      'data: {"jsonrpc":"2.0","id":9,"method":"sampling/createMessage"}\n\n',
    ]);
    const tap = new CallTap();
    try {
      const res = await tap.fetch(fetch)(server.url, { method: "POST", body: "{}" });
      assert((await res.text()).includes("sampling/createMessage"));
      assertEquals(tap.take(9), undefined);
    } finally {
      await server.close();
    }
  });

  await t.step(
    "a request from outside the streams goes to the only call in flight, never a guess",
    async () => {
      let release = () => {};
      const open = new Promise<void>((r) => release = r);
      const server = sseServer([": open\n\n"], open);
      const tap = new CallTap();
      const first = recordingRelay();
      const second = recordingRelay();
      try {
        const a = await runInCall(first, () => tap.fetch(fetch)(server.url, { method: "POST" }));
        assertEquals(tap.take("elsewhere"), first);
        const b = await runInCall(second, () => tap.fetch(fetch)(server.url, { method: "POST" }));
        assertEquals(tap.take("elsewhere"), undefined, "two calls in flight: not placed");
        release();
        await a.text();
        await b.text();
        assertEquals(tap.take("elsewhere"), undefined, "no call in flight");
      } finally {
        release();
        await server.close();
      }
    },
  );

  await t.step(
    "a leftover request never reaches another principal's call ended within the quiet window",
    async () => {
      let release = () => {};
      const open = new Promise<void>((r) => release = r);
      const quick = sseServer([": done\n\n"]);
      const held = sseServer([": open\n\n"], open);
      let clock = 1_000_000;
      const tap = new CallTap(() => clock);
      const cancelled = { ...recordingRelay(), owner: "grant-a" };
      const next = { ...recordingRelay(), owner: "grant-b" };
      const again = { ...recordingRelay(), owner: "grant-b" };
      let release2 = () => {};
      const held2 = sseServer([": open\n\n"], new Promise<void>((r) => release2 = r));
      try {
        const a = await runInCall(cancelled, () => tap.fetch(fetch)(quick.url, { method: "POST" }));
        await a.text();
        clock += 1000;
        const b = await runInCall(next, () => tap.fetch(fetch)(held.url, { method: "POST" }));
        assertEquals(tap.take("leftover"), undefined, "grant-a's call ended 1 s ago: refused");
        clock += QUIET_WINDOW_MS;
        assertEquals(tap.take("later"), next, "no other principal's call in the window: placed");
        release();
        await b.text();
        const c = await runInCall(again, () => tap.fetch(fetch)(held2.url, { method: "POST" }));
        assertEquals(tap.take("x"), again, "the same principal's earlier call does not block");
        release2();
        await c.text();
      } finally {
        release();
        release2();
        await quick.close();
        await held.close();
        await held2.close();
      }
    },
  );
});

Deno.test("call tap: calls the fast path makes outside the SDK client", async (t) => {
  await t.step(
    "a tracked call counts as in flight: an off-stream request is not given to another call",
    async () => {
      let release = () => {};
      const open = new Promise<void>((r) => release = r);
      const server = sseServer([": open\n\n"], open);
      let clock = 1_000_000;
      const tap = new CallTap(() => clock);
      const sdkCall = { ...recordingRelay(), owner: "grant-b" };
      const fastCall = { ...recordingRelay(), owner: "grant-a" };
      try {
        const res = await runInCall(
          sdkCall,
          () => tap.fetch(fetch)(server.url, { method: "POST" }),
        );
        assertEquals(tap.take("elsewhere"), sdkCall, "alone in flight: placed");
        const end = tap.track(fastCall);
        assertEquals(tap.take("elsewhere"), undefined, "a fast-path call in flight: not placed");
        end();
        end(); // once
        clock += 1000;
        assertEquals(
          tap.take("leftover"),
          undefined,
          "another principal's fast-path call ended 1 s ago: refused",
        );
        clock += QUIET_WINDOW_MS;
        assertEquals(tap.take("later"), sdkCall);
        release();
        await res.text();
      } finally {
        release();
        await server.close();
      }
    },
  );
});

Deno.test("relay rules", async (t) => {
  await t.step("elicitation needs the capability of its mode (MCP 2025-11-25)", () => {
    assertEquals(lacksCapability({ elicitation: {} }, "elicitation/create", {}), false);
    assertEquals(lacksCapability({ elicitation: { form: {} } }, "elicitation/create", {}), false);
    assertEquals(lacksCapability({ elicitation: { url: {} } }, "elicitation/create", {}), true);
    assertEquals(
      lacksCapability({ elicitation: { url: {} } }, "elicitation/create", { mode: "url" }),
      false,
    );
    assertEquals(lacksCapability({ elicitation: {} }, "elicitation/create", { mode: "url" }), true);
    assertEquals(lacksCapability({ sampling: {} }, "sampling/createMessage", {}), false);
    assertEquals(lacksCapability({}, "sampling/createMessage", {}), true);
    assertEquals(lacksCapability(undefined, "elicitation/create", {}), true);
    assertEquals(lacksCapability({ roots: {} }, "roots/list", {}), true, "roots never relayed");
  });

  await t.step("only well-formed answers to the gateway's own ids are answers", () => {
    assertEquals(
      clientAnswersOf({ jsonrpc: "2.0", id: "mcpgw-1", result: { action: "decline" } }),
      [
        { id: "mcpgw-1", answer: { result: { action: "decline" } } },
      ],
    );
    assertEquals(
      clientAnswersOf([{ jsonrpc: "2.0", id: "mcpgw-2", error: { code: -1, message: "no" } }]),
      [{ id: "mcpgw-2", answer: { error: { code: -1, message: "no" } } }],
    );
    assertEquals(clientAnswersOf({ jsonrpc: "2.0", id: 3, result: {} }), undefined);
    assertEquals(
      clientAnswersOf({ jsonrpc: "2.0", id: "mcpgw-4", error: { code: "x" } }),
      undefined,
    );
    assertEquals(clientAnswersOf({ jsonrpc: "2.0", id: "mcpgw-5", method: "ping" }), undefined);
    assertEquals(clientAnswersOf([]), undefined);
  });

  await t.step("log levels and the backend's name in logger (RFC 5424 severities)", () => {
    assertEquals(logAllows("info", "error"), true);
    assertEquals(logAllows("error", "info"), false);
    assertEquals(logAllows(undefined, "emergency"), false, "no level set: nothing");
    assertEquals(logAllows("info", "loud"), false);
    assertEquals(namedLog("gh", { level: "info", data: 1 }).params.logger, "gh");
    assertEquals(namedLog("gh", { level: "info", logger: "db", data: 1 }).params.logger, "gh/db");
  });
});
