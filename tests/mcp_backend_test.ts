/**
 * End-to-end tests of `/mcp/{backend}`: a real gateway on a loopback port in front of real MCP
 * backends (SDK 1.32 legacy, SDK 2.4 modern) and raw HTTP backends, driven by real SDK clients.
 */
import { Client as ClientV1 } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as TransportV1 } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { sha256Hex } from "../lib/infra/crypto.ts";
import { Deadlines } from "../lib/mcp/proxy.ts";
import { sessionKey } from "../lib/store.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import {
  startLegacyBackend,
  startModernBackend,
  startRawBackend,
  type TestBackend,
} from "./_backends.ts";
import { serveGateway } from "./_helpers.ts";
import { issueAccessToken } from "./_tokens.ts";

const API_KEY = "test-api-key-0123456789";
const BACKEND_SECRET = "alpha-configured-secret";
const ALLOWED_ORIGIN = "http://inspector.localhost:6274";
const ACCEPT = "application/json, text/event-stream";

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => resolve = r);
  return { promise, resolve };
}

/** A port nothing listens on. */
function deadUrl(): string {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return `http://127.0.0.1:${port}/mcp`;
}

const initialize = (id = 1) =>
  JSON.stringify({
    jsonrpc: "2.0",
    id,
    method: "initialize",
    params: {
      protocolVersion: "2025-06-18",
      capabilities: {},
      clientInfo: { name: "raw", version: "1" },
    },
  });

Deno.test("/mcp/{backend}", async (t) => {
  const legacy = startLegacyBackend();
  const modern = startModernBackend();
  // Never answers: held until the gateway gives up (its connection closes) or the test ends.
  const released = deferred();
  const hanging = startRawBackend((req) =>
    new Promise<Response>((resolve) => {
      const done = () => resolve(new Response(null, { status: 204 }));
      req.signal.addEventListener("abort", done, { once: true });
      released.promise.then(done);
    })
  );
  // An endless SSE stream that reports when its reader goes away.
  const streamCancelled = deferred();
  const endless = startRawBackend(() => {
    let timer: ReturnType<typeof setInterval> | undefined;
    let n = 0;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        const enc = new TextEncoder();
        controller.enqueue(enc.encode(`event: message\ndata: {"n":${n++}}\n\n`));
        timer = setInterval(() => {
          try {
            controller.enqueue(enc.encode(`event: message\ndata: {"n":${n++}}\n\n`));
          } catch {
            clearInterval(timer);
          }
        }, 20);
      },
      cancel() {
        clearInterval(timer);
        streamCancelled.resolve();
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  }, () => {
    streamCancelled.resolve();
  });
  const denied = startRawBackend(() =>
    Response.json({ error: "invalid_token" }, {
      status: 401,
      headers: { "www-authenticate": 'Bearer error="invalid_token"' },
    })
  );
  // Holds its answer until the gateway drops the request; reports that moment.
  const slowAborted = deferred();
  const slow = startRawBackend((req) =>
    new Promise<Response>((resolve) => {
      req.signal.addEventListener("abort", () => {
        slowAborted.resolve();
        resolve(new Response(null, { status: 204 }));
      }, { once: true });
      released.promise.then(() => resolve(new Response(null, { status: 204 })));
    })
  );
  const backends: TestBackend[] = [legacy, modern, hanging, endless, denied, slow];
  const gw = await serveGateway({
    config: {
      allowedOrigins: [ALLOWED_ORIGIN],
      backends: [
        { name: "alpha", url: legacy.url, headers: { "x-backend-key": BACKEND_SECRET } },
        { name: "beta", url: modern.url, headers: { "x-backend-key": "beta-secret" } },
        { name: "down", url: deadUrl(), timeoutMs: 2000 },
        { name: "hang", url: hanging.url, timeoutMs: 150 },
        { name: "stream", url: endless.url },
        { name: "denied", url: denied.url },
        { name: "slow", url: slow.url, timeoutMs: 60_000 },
      ],
    },
    env: { GATEWAY_API_KEY: API_KEY },
  });
  const alpha = `${gw.url}/mcp/alpha`;
  const beta = `${gw.url}/mcp/beta`;
  const token = (scope: string, resource: string, clientId?: string) =>
    issueAccessToken(gw.deps, { scope, resource, clientId }).then((r) => r.accessToken);
  const post = (url: string, auth: string | null, body: string, extra: HeadersInit = {}) => {
    const headers = new Headers(extra);
    headers.set("content-type", "application/json");
    headers.set("accept", ACCEPT);
    if (auth) headers.set("authorization", `Bearer ${auth}`);
    return fetch(url, { method: "POST", headers, body });
  };

  try {
    const alphaToken = await token("mcp:alpha", alpha);
    const allToken = await token("mcp", `${gw.url}/mcp`);

    await t.step(
      "legacy backend: tools/list and tools/call via SDK 1.32 (2025-11-25)",
      async () => {
        const client = new ClientV1({ name: "v1-test", version: "1.0.0" });
        const transport = new TransportV1(new URL(alpha), {
          requestInit: { headers: { authorization: `Bearer ${alphaToken}`, cookie: "sid=secret" } },
        });
        await client.connect(transport);
        try {
          const { tools } = await client.listTools();
          assertEquals(tools.map((t: { name: string }) => t.name).sort(), ["add", "echo", "slow"]);
          const result = await client.callTool({ name: "add", arguments: { a: 2, b: 3 } });
          assertEquals(result.content, [{ type: "text", text: "5" }]);
          const prompt = await client.getPrompt({ name: "greet", arguments: { name: "Ada" } });
          assertEquals(prompt.messages[0]?.content, { type: "text", text: "Hello, Ada!" });
          const read = await client.readResource({ uri: "test://info" });
          assertEquals(read.contents[0]?.text, "legacy backend");
          assert(transport.sessionId, "the backend's Mcp-Session-Id reaches the client");
        } finally {
          await client.close();
        }
      },
    );

    await t.step(
      "client Authorization/Cookie never reach the backend; configured header does (MCP Authorization §Token Passthrough)",
      () => {
        assert(legacy.requests.length > 0);
        for (const r of legacy.requests) {
          assertEquals(r.headers.authorization, undefined);
          assertEquals(r.headers.cookie, undefined);
          assertEquals(r.headers["x-backend-key"], BACKEND_SECRET);
        }
      },
    );

    await t.step(
      "modern backend: tools/list and tools/call via SDK 2.4 (2026-07-28), Mcp-Method/Mcp-Name forwarded",
      async () => {
        const before = modern.requests.length;
        const client = new Client({ name: "v2-test", version: "2.0.0" }, {
          versionNegotiation: { mode: "auto" },
        });
        const transport = new StreamableHTTPClientTransport(new URL(beta), {
          requestInit: { headers: { authorization: `Bearer ${allToken}` } },
        });
        await client.connect(transport);
        try {
          assertEquals(client.getProtocolEra(), "modern");
          const { tools } = await client.listTools();
          assertEquals(tools.map((t) => t.name).sort(), ["add", "echo", "slow"]);
          const result = await client.callTool({ name: "echo", arguments: { text: "héllo" } });
          assertEquals(result.content, [{ type: "text", text: "héllo" }]);
        } finally {
          await client.close();
        }
        const seen = modern.requests.slice(before);
        const call = seen.find((r) => r.headers["mcp-method"] === "tools/call");
        assert(call, "Mcp-Method reached the backend");
        assertEquals(call.headers["mcp-name"], "echo");
        assertMatch(call.headers["mcp-protocol-version"] ?? "", /^2026-/);
        for (const r of seen) {
          assertEquals(r.headers.authorization, undefined);
          assertEquals(r.headers["x-backend-key"], "beta-secret");
        }
      },
    );

    await t.step(
      "Mcp-Param-* headers are forwarded untouched (MCP 2026-07-28 Transports)",
      async () => {
        const before = modern.requests.length;
        const res = await post(beta, allToken, initialize(), { "mcp-param-region": "eu-west" });
        await res.body?.cancel();
        assertEquals(modern.requests[before]?.headers["mcp-param-region"], "eu-west");
      },
    );

    await t.step("SSE streaming: progress notifications arrive before the result", async () => {
      for (const url of [alpha, beta]) {
        const client = new ClientV1({ name: "v1-progress", version: "1.0.0" });
        const transport = new TransportV1(new URL(url), {
          requestInit: { headers: { authorization: `Bearer ${allToken}` } },
        });
        await client.connect(transport);
        try {
          const events: string[] = [];
          const result = await client.callTool(
            { name: "slow", arguments: { steps: 3 } },
            undefined,
            {
              onprogress: (p: { progress: number; total?: number }) =>
                void events.push(`progress ${p.progress}/${p.total}`),
            },
          );
          events.push("result");
          assertEquals(result.content, [{ type: "text", text: "done after 3 steps" }]);
          assertEquals(events, ["progress 1/3", "progress 2/3", "progress 3/3", "result"]);
        } finally {
          await client.close();
        }
      }
    });

    await t.step(
      "401 without a token, with resource_metadata of /mcp/alpha (RFC 9728 §5.1)",
      async () => {
        const res = await post(alpha, null, initialize());
        assertEquals(res.status, 401);
        assertEquals(res.headers.get("content-type"), "application/json");
        await res.body?.cancel();
        const challenge = res.headers.get("www-authenticate") ?? "";
        assertStringIncludes(
          challenge,
          `resource_metadata="${gw.url}/.well-known/oauth-protected-resource/mcp/alpha"`,
        );
        assertStringIncludes(challenge, 'scope="mcp:alpha"');
      },
    );

    await t.step("401 invalid_token for an unknown token (RFC 6750 §3.1)", async () => {
      const res = await post(alpha, "gwat_not-a-real-token", initialize());
      assertEquals(res.status, 401);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals((await res.json()).error, "invalid_token");
      assertStringIncludes(res.headers.get("www-authenticate") ?? "", 'error="invalid_token"');
    });

    await t.step("401 for a token issued for /mcp/beta (RFC 8707 audience)", async () => {
      const betaToken = await token("mcp:beta", beta);
      const res = await post(alpha, betaToken, initialize());
      assertEquals(res.status, 401);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals((await res.json()).error, "invalid_token");
    });

    await t.step(
      "403 insufficient_scope for scope mcp:beta at /mcp/alpha (RFC 6750 §3.1)",
      async () => {
        const betaScoped = await token("mcp:beta", `${gw.url}/mcp`);
        const res = await post(alpha, betaScoped, initialize());
        assertEquals(res.status, 403);
        assertEquals(res.headers.get("content-type"), "application/json");
        assertEquals((await res.json()).error, "insufficient_scope");
        assertStringIncludes(res.headers.get("www-authenticate") ?? "", 'scope="mcp:alpha"');
      },
    );

    await t.step("a token for /mcp works at every backend", async () => {
      for (const url of [alpha, beta]) {
        const res = await post(url, allToken, initialize());
        assertEquals(res.status, 200, url);
        await res.body?.cancel();
      }
    });

    await t.step("the API key works", async () => {
      const res = await post(alpha, API_KEY, initialize());
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "text/event-stream");
      assert(res.headers.get("mcp-session-id"));
      await res.body?.cancel();
    });

    await t.step(
      "400 for access_token in the query (MCP Authorization §Access Token Usage)",
      async () => {
        const res = await post(`${alpha}?access_token=${alphaToken}`, null, initialize());
        assertEquals(res.status, 400);
        assertEquals(res.headers.get("content-type"), "application/json");
        assertEquals((await res.json()).error, "invalid_request");
      },
    );

    await t.step(
      "403 for a foreign Origin; an allowedOrigins origin passes (Transports §Security Warning)",
      async () => {
        const foreign = await post(alpha, alphaToken, initialize(), {
          origin: "https://evil.example",
        });
        assertEquals(foreign.status, 403);
        assertEquals(foreign.headers.get("content-type"), "application/json");
        assertEquals((await foreign.json()).error.code, -32600);
        const allowed = await post(alpha, alphaToken, initialize(), { origin: ALLOWED_ORIGIN });
        assertEquals(allowed.status, 200);
        assertEquals(allowed.headers.get("access-control-allow-origin"), ALLOWED_ORIGIN);
        await allowed.body?.cancel();
      },
    );

    await t.step("404 with a JSON-RPC error for an unknown backend", async () => {
      const res = await post(`${gw.url}/mcp/nope`, allToken, initialize());
      assertEquals(res.status, 404);
      assertEquals(res.headers.get("content-type"), "application/json");
      const body = await res.json();
      assertEquals(body.jsonrpc, "2.0");
      assertEquals(body.id, null);
      assertStringIncludes(body.error.message, "unknown backend");
    });

    await t.step(
      "a session id used with another principal's token → 404, backend not contacted (Security Best Practices §Session Hijacking)",
      async () => {
        const opened = await post(alpha, alphaToken, initialize());
        assertEquals(opened.status, 200);
        await opened.body?.cancel();
        const sessionId = opened.headers.get("mcp-session-id")!;
        assert(sessionId);
        const stored = await gw.deps.kv.get(sessionKey("alpha", await sha256Hex(sessionId)));
        assert(stored.value, "the binding is stored in KV");
        const other = await token("mcp:alpha", alpha, "other-client");
        const before = legacy.requests.length;
        const list = JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" });
        const sessionHeaders = {
          "mcp-session-id": sessionId,
          "mcp-protocol-version": "2025-06-18",
        };
        const stolen = await post(alpha, other, list, sessionHeaders);
        assertEquals(stolen.status, 404);
        assertEquals(stolen.headers.get("content-type"), "application/json");
        assertEquals((await stolen.json()).error.message, "session not found");
        assertEquals(legacy.requests.length, before, "the backend was not contacted");
        const unknown = await post(alpha, alphaToken, list, { "mcp-session-id": "made-up" });
        assertEquals(unknown.status, 404);
        await unknown.body?.cancel();

        const ended = await fetch(alpha, {
          method: "DELETE",
          headers: { authorization: `Bearer ${alphaToken}`, ...sessionHeaders },
        });
        assertEquals(ended.status, 200);
        await ended.body?.cancel();
        const gone = await gw.deps.kv.get(sessionKey("alpha", await sha256Hex(sessionId)));
        assertEquals(gone.value, null, "DELETE removed the binding");
        const after = await post(alpha, alphaToken, list, sessionHeaders);
        assertEquals(after.status, 404);
        await after.body?.cancel();
      },
    );

    await t.step("502 with a JSON-RPC error when the backend is unreachable", async () => {
      const res = await post(`${gw.url}/mcp/down`, allToken, initialize());
      assertEquals(res.status, 502);
      assertEquals(res.headers.get("content-type"), "application/json");
      const body = await res.json();
      assertEquals(body.error.code, -32603);
      assertStringIncludes(body.error.message, "backend down");
    });

    await t.step("504 when the backend does not answer within timeoutMs", async () => {
      const res = await post(`${gw.url}/mcp/hang`, allToken, initialize());
      assertEquals(res.status, 504);
      assertEquals(res.headers.get("content-type"), "application/json");
      const body = await res.json();
      assertEquals(body.error.code, -32603);
      assertStringIncludes(body.error.message, "backend hang");
    });

    await t.step("a backend 401 is a 502 without its WWW-Authenticate", async () => {
      const res = await post(`${gw.url}/mcp/denied`, allToken, initialize());
      assertEquals(res.status, 502);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals(res.headers.get("www-authenticate"), null);
      assertStringIncludes((await res.json()).error.message, "credentials");
    });

    await t.step(
      "the stream is relayed as it comes, and a client abort cancels the upstream",
      async () => {
        const controller = new AbortController();
        const res = await fetch(`${gw.url}/mcp/stream`, {
          headers: { authorization: `Bearer ${allToken}`, accept: "text/event-stream" },
          signal: controller.signal,
        });
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type"), "text/event-stream");
        const reader = res.body!.getReader();
        const first = await reader.read();
        assertStringIncludes(new TextDecoder().decode(first.value), '"n":0');
        controller.abort();
        await reader.closed.catch(() => {});
        let timer: ReturnType<typeof setTimeout> | undefined;
        const outcome = await Promise.race([
          streamCancelled.promise.then(() => "cancelled"),
          new Promise((r) => timer = setTimeout(() => r("still streaming"), 3000)),
        ]);
        clearTimeout(timer);
        assertEquals(outcome, "cancelled");
      },
    );

    await t.step("a client leaving before the headers cancels the upstream request", async () => {
      const controller = new AbortController();
      const pending = fetch(`${gw.url}/mcp/slow`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${allToken}`,
          "content-type": "application/json",
          accept: ACCEPT,
        },
        body: initialize(),
        signal: controller.signal,
      }).catch((e: Error) => e.name);
      await new Promise((r) => setTimeout(r, 100));
      controller.abort();
      assertEquals(await pending, "AbortError");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const outcome = await Promise.race([
        slowAborted.promise.then(() => "upstream aborted"),
        new Promise((r) => timer = setTimeout(() => r("upstream still waiting"), 3000)),
      ]);
      clearTimeout(timer);
      assertEquals(outcome, "upstream aborted");
    });

    await t.step("log lines carry backend and principal, never the token", () => {
      const line = gw.deps.logs.find((l) => l.backend === "alpha" && l.principal);
      assert(line);
      const all = JSON.stringify(gw.deps.logs);
      assert(!all.includes(alphaToken) && !all.includes(allToken) && !all.includes(API_KEY));
    });
  } finally {
    released.resolve();
    await gw.close();
    gw.deps.tokenCache.close();
    for (const b of backends) await b.close();
  }
});

Deno.test("/mcp/{backend}: a session id handed to two callers stays with the first", async (t) => {
  // A backend that gives every initialize the same session id (a bug, or an attack).
  const backend = startRawBackend(async (req) => {
    const body = req.method === "POST" ? await req.json() : {};
    return Response.json({ jsonrpc: "2.0", id: body.id ?? null, result: {} }, {
      headers: { "mcp-session-id": "same-session-for-everyone" },
    });
  });
  const gw = await serveGateway({ config: { backends: [{ name: "alpha", url: backend.url }] } });
  const resource = `${gw.url}/mcp/alpha`;
  const post = (token: string, body: string, session?: string) =>
    fetch(resource, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        accept: ACCEPT,
        ...(session ? { "mcp-session-id": session } : {}),
      },
      body,
    });
  const ping = JSON.stringify({ jsonrpc: "2.0", id: 2, method: "ping" });
  try {
    const first = await issueAccessToken(gw.deps, { scope: "mcp", resource });
    const second = await issueAccessToken(gw.deps, { scope: "mcp", resource });

    await t.step("the first caller's initialize binds the id", async () => {
      const res = await post(first.accessToken, initialize());
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals(res.headers.get("mcp-session-id"), "same-session-for-everyone");
      await res.body?.cancel();
    });

    await t.step("the second caller's initialize is refused with a JSON-RPC error", async () => {
      const res = await post(second.accessToken, initialize());
      assertEquals(res.status, 502);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals(res.headers.get("mcp-session-id"), null, "the id is not handed out");
      const body = await res.json();
      assertEquals(body.jsonrpc, "2.0");
      assertEquals(body.error.code, -32603);
      assertStringIncludes(body.error.message, "bound to another caller");
    });

    await t.step("the binding did not move: first works, second gets 404", async () => {
      const mine = await post(first.accessToken, ping, "same-session-for-everyone");
      assertEquals(mine.status, 200);
      assertEquals(mine.headers.get("content-type"), "application/json");
      await mine.body?.cancel();
      const theirs = await post(second.accessToken, ping, "same-session-for-everyone");
      assertEquals(theirs.status, 404);
      assertEquals(theirs.headers.get("content-type"), "application/json");
      assertEquals((await theirs.json()).error.code, -32001);
    });

    await t.step("concurrent initializes of two callers: exactly one binds", async () => {
      const fresh = startRawBackend(async (req) => {
        const body = await req.json();
        return Response.json({ jsonrpc: "2.0", id: body.id, result: {} }, {
          headers: { "mcp-session-id": "raced-session" },
        });
      });
      const raced = await serveGateway({
        config: { backends: [{ name: "alpha", url: fresh.url }] },
      });
      try {
        const r = `${raced.url}/mcp/alpha`;
        const tokens = await Promise.all(
          Array.from(
            { length: 6 },
            () => issueAccessToken(raced.deps, { scope: "mcp", resource: r }),
          ),
        );
        const answers = await Promise.all(tokens.map((tk) =>
          fetch(r, {
            method: "POST",
            headers: {
              authorization: `Bearer ${tk.accessToken}`,
              "content-type": "application/json",
              accept: ACCEPT,
            },
            body: initialize(),
          })
        ));
        const statuses = answers.map((a) => a.status).sort();
        await Promise.all(answers.map((a) => a.body?.cancel()));
        assertEquals(statuses, [200, 502, 502, 502, 502, 502]);
      } finally {
        await raced.close();
        await fresh.close();
      }
    });
  } finally {
    await gw.close();
    await backend.close();
  }
});

Deno.test("lib/proxy Deadlines", async (t) => {
  await t.step(
    "one timer serves many deadlines; settled ones never fire; the timer stops when none is pending",
    async () => {
      const deadlines = new Deadlines(30);
      const fired: string[] = [];
      const a = deadlines.start(() => fired.push("a"));
      let resolveB!: () => void;
      const bFired = new Promise<void>((r) => resolveB = r);
      const b = deadlines.start(() => {
        fired.push("b");
        resolveB();
      });
      const c = deadlines.start(() => fired.push("c"));
      deadlines.settle(a);
      deadlines.settle(c);
      assertEquals(deadlines.pending, 1);
      await bFired;
      assertEquals(fired, ["b"]);
      assertEquals(b.expired, true);
      assertEquals(a.expired, false);
      assertEquals(deadlines.pending, 0);
    },
  );
});
