/**
 * lib/mcp/jsonrpc_inspect.ts: a POST's JSON-RPC messages, and a JSON or SSE answer rewritten
 * message by message (JSON-RPC 2.0 §4–§6; MCP Transports §Streamable HTTP; the SSE event format
 * of WHATWG HTML §9.2).
 */
import { assert, assertEquals } from "./_assert.ts";
import {
  isRequest,
  isResponse,
  type JsonRpcMessage,
  mcpHeaderValue,
  parseJsonRpcBody,
  transformMessages,
} from "../lib/mcp/jsonrpc_inspect.ts";

const encoder = new TextEncoder();

/** A body delivered in the given chunks (to split events and characters across reads). */
function chunked(...parts: string[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(c) {
      for (const p of parts) c.enqueue(encoder.encode(p));
      c.close();
    },
  });
}

const text = (s: ReadableStream<Uint8Array>) => new Response(s).text();

const renameResults = (m: JsonRpcMessage) =>
  isResponse(m) ? { ...m, result: { renamed: true } } : m;

Deno.test("JSON-RPC inspection", async (t) => {
  await t.step("a body parses as one message or a batch; anything else is null", () => {
    assertEquals(parseJsonRpcBody('{"jsonrpc":"2.0","id":1,"method":"ping"}')?.batch, false);
    assertEquals(parseJsonRpcBody('[{"jsonrpc":"2.0","method":"a"},{"id":2}]')?.messages.length, 2);
    for (const bad of ["", "nope", "[]", "[1]", "3", "null", '"s"']) {
      assertEquals(parseJsonRpcBody(bad), null, bad);
    }
  });
  await t.step("requests, notifications and responses are told apart", () => {
    assert(isRequest({ jsonrpc: "2.0", id: 0, method: "x" }));
    assert(!isRequest({ jsonrpc: "2.0", method: "notifications/x" }));
    assert(isResponse({ jsonrpc: "2.0", id: 0, result: {} }));
    assert(!isResponse({ jsonrpc: "2.0", id: 0, method: "elicitation/create" }));
  });

  await t.step("JSON: an unchanged answer keeps its exact bytes", async () => {
    const raw = '{ "jsonrpc": "2.0",  "id": 1, "result": {} }';
    assertEquals(await text(transformMessages(chunked(raw), "application/json", (m) => m)), raw);
  });
  await t.step("JSON: a changed message is re-serialized; a batch stays a batch", async () => {
    const one = await text(transformMessages(
      chunked('{"jsonrpc":"2.0","id":1,"result":{}}'),
      "application/json; charset=utf-8",
      renameResults,
    ));
    assertEquals(JSON.parse(one), { jsonrpc: "2.0", id: 1, result: { renamed: true } });
    const batch = await text(transformMessages(
      chunked('[{"jsonrpc":"2.0","id":1,"result":{}}]'),
      "application/json",
      renameResults,
    ));
    assertEquals(JSON.parse(batch), [{ jsonrpc: "2.0", id: 1, result: { renamed: true } }]);
  });
  await t.step("JSON: prepended messages make a batch; dropped ones vanish", async () => {
    const out = await text(transformMessages(
      chunked('[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","id":2,"result":{}}]'),
      "application/json",
      (m) => (m.id === 2 ? null : m),
      { prepend: [{ jsonrpc: "2.0", id: 3, error: { code: -32602, message: "Unknown tool: x" } }] },
    ));
    assertEquals(JSON.parse(out).map((m: JsonRpcMessage) => m.id), [3, 1]);
  });
  await t.step("JSON: a body that is not JSON passes untouched", async () => {
    assertEquals(
      await text(transformMessages(chunked("oops"), "application/json", () => null)),
      "oops",
    );
  });

  await t.step(
    "SSE: events split across reads (and a split UTF-8 character) are rewritten",
    async () => {
      const euro = encoder.encode("€");
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(
            encoder.encode(': comment\n\nid: 7\nevent: message\ndata: {"jsonrpc":"2.0","me'),
          );
          c.enqueue(encoder.encode('thod":"notifications/progress","params":{"m":"'));
          c.enqueue(euro.slice(0, 1));
          c.enqueue(euro.slice(1));
          c.enqueue(
            encoder.encode('"}}\r\n\r\nid: 8\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\n\n'),
          );
          c.close();
        },
      });
      const out = await text(transformMessages(body, "text/event-stream", renameResults));
      assertEquals(
        out,
        ": comment\n\n" +
          'id: 7\nevent: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"m":"€"}}\n\n' +
          'id: 8\ndata: {"jsonrpc":"2.0","id":1,"result":{"renamed":true}}\n\n',
      );
    },
  );
  await t.step("SSE: prepended messages come first; a dropped event vanishes", async () => {
    const out = await text(transformMessages(
      chunked('data: {"jsonrpc":"2.0","id":1,"result":{}}\n\ndata: not json\n\n'),
      "text/event-stream",
      () => null,
      { prepend: [{ jsonrpc: "2.0", id: 2, error: { code: -32602, message: "no" } }] },
    ));
    assertEquals(
      out,
      'event: message\ndata: {"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"no"}}\n\n' +
        "data: not json\n\n",
    );
  });
  await t.step("SSE: a last event without its blank line is still delivered", async () => {
    const out = await text(transformMessages(
      chunked('data: {"jsonrpc":"2.0","id":1,"result":{}}\n'),
      "text/event-stream",
      renameResults,
    ));
    assertEquals(out, 'data: {"jsonrpc":"2.0","id":1,"result":{"renamed":true}}\n\n');
  });
  await t.step("other media types pass untouched", async () => {
    assertEquals(
      await text(transformMessages(chunked("<html>"), "text/html", () => null)),
      "<html>",
    );
  });
  await t.step("onEnd: once, after the last message, for JSON, SSE and other types", async () => {
    for (
      const [type, raw] of [
        ["application/json", '{"jsonrpc":"2.0","id":1,"result":{}}'],
        ["text/event-stream", 'data: {"jsonrpc":"2.0","id":1,"result":{}}\n\n'],
      ]
    ) {
      const seen: string[] = [];
      const out = transformMessages(chunked(raw!), type!, (m) => {
        seen.push(`message ${m.id}`);
        return m;
      }, { onEnd: (aborted) => seen.push(`end ${aborted}`) });
      assertEquals(await text(out), raw, type);
      assertEquals(seen, ["message 1", "end false"], type);
    }
    const ends: boolean[] = [];
    await text(transformMessages(chunked("<html>"), "text/html", (m) => m, {
      onEnd: (aborted) => ends.push(aborted),
    }));
    assertEquals(ends, [false], "a body passed untouched ends at once");
  });
  await t.step("onEnd: aborted when the body breaks or the reader cancels", async () => {
    for (const type of ["application/json", "text/event-stream"]) {
      const ends: boolean[] = [];
      const broken = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(encoder.encode('data: {"jsonrpc"'));
          c.error(new Error("connection reset"));
        },
      });
      const out = transformMessages(broken, type, (m) => m, { onEnd: (a) => ends.push(a) });
      const failed = await text(out).then(() => false, () => true);
      assert(failed, `${type}: the failure reaches the reader`);
      assertEquals(ends, [true], type);
    }
    const ends: boolean[] = [];
    const open = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(encoder.encode('data: {"jsonrpc":"2.0","method":"notifications/progress"}\n\n'));
      },
    });
    const out = transformMessages(open, "text/event-stream", (m) => m, {
      onEnd: (a) => ends.push(a),
    });
    const reader = out.getReader();
    await reader.read();
    await reader.cancel();
    assertEquals(ends, [true], "the client went away mid-stream");
  });
  await t.step("non-ASCII header values are base64-encoded (MCP 2026-07-28)", () => {
    assertEquals(mcpHeaderValue("search_code"), "search_code");
    assertEquals(mcpHeaderValue("café"), `=?base64?${btoa("caf\xc3\xa9")}?=`);
  });
});
