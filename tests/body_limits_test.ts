/**
 * Request body limits on every route (issue 5 "Abuse limits"): 413 (RFC 9110 §15.5.14) with a
 * clear message, as RFC 6749 §5.2 JSON on OAuth routes and a JSON-RPC error on MCP routes; MCP
 * bodies are capped while streaming (never buffered) and a declared `Content-Length` over the
 * limit is refused before any work.
 */
import { DEFAULT_BODY_LIMIT, limitRequestBody, MCP_BODY_LIMIT } from "../lib/infra/http.ts";
import { createHandler } from "../main.ts";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { startRawBackend } from "./_backends.ts";
import { makeDeps, serveGateway } from "./_helpers.ts";
import { expectOAuthError } from "./_kv_fixtures.ts";
import { issueAccessToken } from "./_tokens.ts";

/** A chunked body (no Content-Length) of `size` bytes, in 64 KiB chunks. */
function stream(size: number, byte = 0x20): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= size) return controller.close();
      const n = Math.min(65_536, size - sent);
      sent += n;
      controller.enqueue(new Uint8Array(n).fill(byte));
    },
  });
}

async function expectJsonRpc413(res: Response, limit: number): Promise<void> {
  assertEquals(res.status, 413, `body: ${await res.clone().text()}`);
  assertEquals(res.headers.get("content-type"), "application/json");
  const body = await res.json();
  assertEquals(body.jsonrpc, "2.0");
  assertEquals(body.error.code, -32600);
  assertEquals(body.error.message, `request body is larger than ${limit} bytes`);
}

Deno.test("body limits on OAuth routes", async (t) => {
  const deps = await makeDeps();
  const handle = createHandler(deps);
  const req = (path: string, type: string, body: BodyInit, headers: Record<string, string> = {}) =>
    handle(
      new Request(`http://localhost:8000${path}`, {
        method: "POST",
        headers: { "content-type": type, ...headers },
        body,
        duplex: "half",
      } as RequestInit),
    );
  const form = "application/x-www-form-urlencoded";
  try {
    await t.step("a declared Content-Length over the route limit is 413 at once", async () => {
      const res = await req("/register", "application/json", "{}", {
        "content-length": String(DEFAULT_BODY_LIMIT + 1),
      });
      await expectOAuthError(res, 413, "invalid_request", "request body is larger than");
    });

    await t.step("POST /register over its 16 KiB limit", async () => {
      const big = JSON.stringify({ client_name: "x".repeat(20_000), redirect_uris: [] });
      await expectOAuthError(
        await req("/register", "application/json", big),
        413,
        "invalid_request",
      );
    });

    await t.step("POST /register, chunked, over the limit", async () => {
      const res = await req("/register", "application/json", stream(DEFAULT_BODY_LIMIT + 10));
      await expectOAuthError(res, 413, "invalid_request", `${16 * 1024} bytes`);
    });

    await t.step("POST /token and POST /revoke forms over 16 KiB", async () => {
      const body = `grant_type=refresh_token&refresh_token=${"a".repeat(17_000)}`;
      await expectOAuthError(await req("/token", form, body), 413, "invalid_request");
      await expectOAuthError(await req("/revoke", form, body), 413, "invalid_request");
    });

    await t.step("POST /authorize (consent form) over 16 KiB", async () => {
      const res = await req("/authorize", form, stream(DEFAULT_BODY_LIMIT + 1));
      assertEquals(res.status, 413);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertStringIncludes((await res.json()).error_description, "larger than");
    });

    await t.step("a body on a GET route is capped too", async () => {
      const res = await handle(
        new Request("http://localhost:8000/healthz", {
          headers: { "content-length": String(DEFAULT_BODY_LIMIT + 1) },
        }),
      );
      await expectOAuthError(res, 413, "invalid_request");
    });
  } finally {
    deps.kv.close();
  }
});

Deno.test("body limits on MCP routes (streamed, never buffered)", async (t) => {
  let received = 0;
  const backend = startRawBackend(async (req) => {
    try {
      const text = await req.text();
      received = text.length;
      return Response.json({ jsonrpc: "2.0", id: 1, result: { size: text.length } });
    } catch {
      return new Response(null, { status: 400 }); // the gateway cut the stream
    }
  });
  const deps = await makeDeps({ config: { backends: [{ name: "alpha", url: backend.url }] } });
  const handle = createHandler(deps);
  const { accessToken } = await issueAccessToken(deps, {
    scope: "mcp",
    resource: `${deps.settings.publicUrl}/mcp`,
  });
  const post = (path: string, body: BodyInit, headers: Record<string, string> = {}) =>
    handle(
      new Request(`${deps.settings.publicUrl}${path}`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${accessToken}`,
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          ...headers,
        },
        body,
        duplex: "half",
      } as RequestInit),
    );
  try {
    await t.step("a chunked body within the limit streams through unchanged", async () => {
      const res = await post("/mcp/alpha", stream(1_000_000));
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals((await res.json()).result, { size: 1_000_000 });
    });

    await t.step("a declared Content-Length over 4 MiB: 413 before the backend", async () => {
      const before = backend.requests.length;
      const res = await post("/mcp/alpha", "{}", { "content-length": String(MCP_BODY_LIMIT + 1) });
      await expectJsonRpc413(res, MCP_BODY_LIMIT);
      assertEquals(backend.requests.length, before);
    });

    await t.step("a chunked body past 4 MiB is cut while streaming: 413", async () => {
      received = 0;
      const res = await post("/mcp/alpha", stream(MCP_BODY_LIMIT + 200_000));
      await expectJsonRpc413(res, MCP_BODY_LIMIT);
      assertEquals(received, 0, "the backend never got a complete body");
    });

    await t.step("the aggregated /mcp endpoint, chunked past 4 MiB: 413", async () => {
      await expectJsonRpc413(await post("/mcp", stream(MCP_BODY_LIMIT + 1)), MCP_BODY_LIMIT);
    });
  } finally {
    await deps.mcpRateLimiter.settled();
    deps.kv.close();
    await backend.close();
  }
});

Deno.test("a served gateway refuses an announced oversize body over the wire", async () => {
  const gw = await serveGateway();
  try {
    const port = Number(new URL(gw.url).port);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const head =
      `POST /mcp/alpha HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n` +
      `content-length: ${MCP_BODY_LIMIT * 4}\r\nconnection: close\r\n\r\n`;
    await conn.write(new TextEncoder().encode(head));
    let text = "";
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
      if (text.includes("}")) break;
    }
    conn.close();
    assertStringIncludes(text, "HTTP/1.1 413");
    assertStringIncludes(text.toLowerCase(), "content-type: application/json");
    assertStringIncludes(text, `request body is larger than ${MCP_BODY_LIMIT} bytes`);
  } finally {
    await gw.close();
  }
});

Deno.test("limitRequestBody leaves a request with a declared length untouched", () => {
  const req = new Request("http://x/", {
    method: "POST",
    body: "abc",
    headers: { "content-length": "3" },
  });
  const limited = limitRequestBody(req, 10);
  assert(limited.request === req);
  assertEquals(limited.overflowed(), false);
});
