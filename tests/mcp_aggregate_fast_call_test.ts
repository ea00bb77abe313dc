/**
 * The `tools/call` fast path of the aggregated `/mcp` (lib/mcp/aggregate/fast_call.ts): taken for a
 * modern or a 2025-era (sessionful) client calling a modern backend the pool knows, and answering
 * exactly as the SDK path does (each case runs once with the fast path off and once on, and the
 * answers are compared).
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { inputRequired } from "@modelcontextprotocol/server";
import { z } from "zod";
import { ElicitResultSchema } from "@modelcontextprotocol/sdk/types.js";
import { fastCallSettings } from "../lib/mcp/aggregate/fast_call.ts";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { aggregateSessionKey, SESSION_CACHE_MS } from "../lib/mcp/aggregate/session.ts";
import { sha256Hex } from "../lib/infra/crypto.ts";
import { type ServedGateway, serveGateway } from "./_helpers.ts";
import {
  lateBackend,
  legacyBackend,
  mintAccessToken,
  modernBackend,
} from "./_aggregate_backends.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const ENVELOPE = {
  "io.modelcontextprotocol/protocolVersion": "2026-07-28",
  "io.modelcontextprotocol/clientCapabilities": {},
  "io.modelcontextprotocol/clientInfo": { name: "t", version: "1" },
};

/** What a client sees of one call: status, media type, the SSE events before the answer. */
interface Outcome {
  status: number;
  type: string;
  notifications: unknown[];
  message: any;
  fast: boolean;
}

interface CallOptions {
  args?: unknown;
  meta?: Record<string, unknown>;
  /** A 2025-era call on this `Mcp-Session-Id` (else a 2026-07-28 call). */
  session?: string;
  /** Called once the response headers are in (e.g. to cancel the call). */
  onHeaders?: () => Promise<void>;
}

const LEGACY = "2025-11-25";

/** POSTs a JSON-RPC message to the gateway's `/mcp` as `token`, with extra `headers`. */
function postMcp(
  gw: ServedGateway,
  token: string,
  headers: Record<string, string>,
  body: unknown,
): Promise<Response> {
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

/** The headers of a 2025-era request on `session`. */
const onSession = (session: string) => ({
  "mcp-session-id": session,
  "mcp-protocol-version": LEGACY,
});

/** Opens a 2025-era session on the gateway's `/mcp` the way a v1 client does. */
async function openSession(gw: ServedGateway, token: string): Promise<string> {
  const post = (body: unknown, session?: string) =>
    postMcp(gw, token, session ? onSession(session) : {}, body);
  const init = await post({
    jsonrpc: "2.0",
    id: 0,
    method: "initialize",
    params: { protocolVersion: LEGACY, capabilities: {}, clientInfo: { name: "t", version: "1" } },
  });
  await init.body?.cancel();
  const session = init.headers.get("mcp-session-id");
  assert(session, "no Mcp-Session-Id");
  const note = await post({ jsonrpc: "2.0", method: "notifications/initialized" }, session);
  await note.body?.cancel();
  return session;
}

/** Sends a 2025-era `notifications/cancelled` for request 7 of `session`. */
async function cancelCall(gw: ServedGateway, token: string, session: string): Promise<void> {
  const res = await postMcp(gw, token, onSession(session), {
    jsonrpc: "2.0",
    method: "notifications/cancelled",
    params: { requestId: 7, reason: "test" },
  });
  assertEquals(res.status, 202);
  await res.body?.cancel();
}

async function rawCall(
  gw: ServedGateway,
  token: string,
  name: string,
  options: CallOptions = {},
): Promise<Outcome> {
  const before = gw.deps.logs.length;
  const legacy = options.session !== undefined;
  const res = await postMcp(
    gw,
    token,
    legacy
      ? onSession(options.session!)
      : { "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": name },
    {
      jsonrpc: "2.0",
      id: 7,
      method: "tools/call",
      params: {
        name,
        arguments: options.args ?? {},
        ...(legacy
          ? (options.meta ? { _meta: options.meta } : {})
          : { _meta: { ...ENVELOPE, ...options.meta } }),
      },
    },
  );
  await options.onHeaders?.();
  const type = (res.headers.get("content-type") ?? "").split(";")[0]!;
  const text = await res.text();
  let messages: any[];
  if (type === "text/event-stream") {
    messages = text.split("\n\n").flatMap((event) => {
      const data = event.split("\n").filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trim()).join("\n");
      // An event with empty data (the 2025-11-25 priming event) carries no message.
      return data ? [JSON.parse(data)] : [];
    });
  } else if (type === "application/json") {
    messages = [JSON.parse(text)];
  } else {
    messages = [text];
  }
  // The router's log line of this request carries the handler's fields.
  await sleep(0);
  const line = gw.deps.logs.slice(before).find((l) => l.route !== undefined && l.tool === name);
  return {
    status: res.status,
    type,
    notifications: messages.slice(0, -1),
    message: messages.at(-1),
    fast: line?.fast_path === true,
  };
}

/** The same call through the SDK path and through the fast path. */
async function both(
  gw: ServedGateway,
  token: string,
  name: string,
  options?: CallOptions,
): Promise<{ sdk: Outcome; fast: Outcome }> {
  fastCallSettings.enabled = false;
  try {
    const sdk = await rawCall(gw, token, name, options);
    assert(!sdk.fast, "the SDK path was marked fast");
    fastCallSettings.enabled = true;
    const fast = await rawCall(gw, token, name, options);
    return { sdk, fast };
  } finally {
    fastCallSettings.enabled = true;
  }
}

function assertSame({ sdk, fast }: { sdk: Outcome; fast: Outcome }, expectFast = true): void {
  assertEquals(fast.fast, expectFast, `fast path ${expectFast ? "not " : ""}taken`);
  assertEquals(fast.status, sdk.status);
  assertEquals(fast.type, sdk.type);
  assertEquals(fast.notifications, sdk.notifications);
  assertEquals(fast.message, sdk.message);
}

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

/**
 * Connects a real client and calls `beta__work` with it: its three progress steps and result,
 * through the fast path.
 */
async function assertFastProgress<T>(
  gw: ServedGateway,
  client: { connect(transport: T): Promise<void>; close(): Promise<void> },
  transport: T,
  callWork: (onprogress: (p: { progress: number }) => void) => Promise<{ content?: unknown }>,
): Promise<void> {
  await client.connect(transport);
  try {
    const seen: number[] = [];
    const before = gw.deps.logs.length;
    const result = await callWork((p) => void seen.push(p.progress));
    assertEquals(result.content, [{ type: "text", text: "done" }]);
    assertEquals(seen, [1, 2, 3]);
    assert(gw.deps.logs.slice(before).some((l) => l.fast_path === true));
  } finally {
    await client.close();
  }
}

/** Tools `echo`, `link`, `work` (progress), `boom`, `slow` (until aborted), `confirm` (MRTR). */
function betaBackend(aborted: string[] = []) {
  return modernBackend("beta", (s) => {
    s.registerTool("echo", { inputSchema: z.object({ text: z.string() }) }, ({ text }) => ({
      content: [{ type: "text", text }],
    }));
    s.registerTool("link", {}, () => ({
      content: [
        { type: "resource_link", uri: "file:///a.txt", name: "a" },
        { type: "resource", resource: { uri: "file:///b.txt", text: "b" } },
      ],
      _meta: { "example.com/x": 1 },
    }));
    s.registerTool("work", {}, async (ctx) => {
      const token = ctx.mcpReq._meta?.progressToken;
      for (let i = 1; i <= 3; i++) {
        if (token !== undefined) {
          await ctx.mcpReq.notify({
            method: "notifications/progress",
            params: { progressToken: token, progress: i, total: 3 },
          });
        }
        await sleep(5);
      }
      return { content: [{ type: "text", text: "done" }] };
    });
    s.registerTool("boom", {}, () => {
      throw new Error("kaput");
    });
    s.registerTool("slow", {}, async (ctx) => {
      const token = ctx.mcpReq._meta?.progressToken;
      // A first event, so that the client has its response headers while the call runs.
      if (token !== undefined) {
        await ctx.mcpReq.notify({
          method: "notifications/progress",
          params: { progressToken: token, progress: 0 },
        });
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 5_000);
        ctx.mcpReq.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          aborted.push("slow");
          resolve();
        });
      });
      return { content: [{ type: "text", text: "slept" }] };
    });
    s.registerTool("confirm", { inputSchema: z.object({}) }, (): any =>
      inputRequired({
        inputRequests: {
          ok: inputRequired.elicit({
            message: "Sure?",
            requestedSchema: { type: "object", properties: { ok: { type: "boolean" } } },
          }),
        },
      }));
  });
}

/** The backends of both suites and a gateway in front of them. */
async function setUp() {
  const aborted: string[] = [];
  const beta = betaBackend(aborted);
  const gone = modernBackend("gone", (s) => {
    s.registerTool("echo", {}, () => ({ content: [{ type: "text", text: "here" }] }));
  });
  const alpha = legacyBackend("alpha", (s) => {
    s.registerTool("echo", {}, () => ({ content: [{ type: "text", text: "legacy" }] }));
  });
  const late = lateBackend(10_000);
  const gw = await serveGateway({
    config: {
      backends: [
        { name: "beta", url: beta.url },
        { name: "gone", url: gone.url },
        { name: "alpha", url: alpha.url },
        { name: "late", url: late.url, timeoutMs: 300 },
      ],
    },
  });
  const token = await mintAccessToken(gw.deps);
  const close = async () => {
    await closeAggregate(gw.deps);
    await beta.close();
    await gone.close().catch(() => {});
    await alpha.close();
    await late.close();
    await gw.close();
  };
  return { aborted, beta, gone, alpha, late, gw, token, close };
}

Deno.test("/mcp tools/call fast path", async (t) => {
  const { beta, gone, gw, token, close } = await setUp();
  try {
    await t.step("the first call connects through the SDK; the next ones are fast", async () => {
      const first = await rawCall(gw, token, "beta__echo", { args: { text: "hi" } });
      assertEquals(first.fast, false);
      const second = await rawCall(gw, token, "beta__echo", { args: { text: "hi" } });
      assertEquals(second.fast, true);
      assertEquals(second.message, first.message);
      assertEquals(second.message.result.content, [{ type: "text", text: "hi" }]);
      assertEquals(second.message.result.resultType, "complete");
      assertEquals(
        second.message.result._meta["io.modelcontextprotocol/serverInfo"].name,
        gw.deps.config.serverName,
      );
    });

    await t.step("a JSON result is the same as the SDK path's", async () => {
      assertSame(await both(gw, token, "beta__echo", { args: { text: "same" } }));
      assertSame(await both(gw, token, "beta__echo", { args: { text: 5 } }));
      assertSame(await both(gw, token, "beta__boom"));
    });

    await t.step("resource links and embedded resources get their URIs wrapped", async () => {
      const r = await both(gw, token, "beta__link");
      assertSame(r);
      assertEquals(r.fast.message.result.content[0].uri, "mcpgw-beta+file:///a.txt");
      assertEquals(r.fast.message.result.content[1].resource.uri, "mcpgw-beta+file:///b.txt");
      assertEquals(r.fast.message.result._meta["example.com/x"], 1);
    });

    await t.step("an SSE answer streams the progress, then the rewritten result", async () => {
      const r = await both(gw, token, "beta__work", { meta: { progressToken: "p1" } });
      assertSame(r);
      assertEquals(r.fast.type, "text/event-stream");
      assertEquals(
        r.fast.notifications.map((n: any) => [n.params.progressToken, n.params.progress]),
        [["p1", 1], ["p1", 2], ["p1", 3]],
      );
      assertEquals(r.fast.message.result.content, [{ type: "text", text: "done" }]);
    });

    await t.step("a real client gets progress through the fast path", async () => {
      const client = new Client({ name: "t", version: "1" }, {
        versionNegotiation: { mode: "auto" },
      });
      const url = new URL(`${gw.url}/mcp`);
      await assertFastProgress(
        gw,
        client,
        new StreamableHTTPClientTransport(url, { requestInit: bearer(token) }),
        (onprogress) => client.callTool({ name: "beta__work", arguments: {} }, { onprogress }),
      );
    });

    await t.step("an unknown tool is the backend's -32602, as before", async () => {
      const r = await both(gw, token, "beta__nope");
      assertSame(r);
      assertEquals(r.fast.message.error.code, -32602);
    });

    await t.step(
      "an unknown backend takes the SDK path; a 2025-era one the fast path",
      async () => {
        const unknown = await both(gw, token, "nobody__echo");
        assertSame(unknown, false);
        assertEquals(unknown.fast.message.error.code, -32602);
        await rawCall(gw, token, "alpha__echo"); // connects and probes
        const legacy = await both(gw, token, "alpha__echo");
        assertSame(legacy);
        assertEquals(legacy.fast.message.result.content, [{ type: "text", text: "legacy" }]);
      },
    );

    await t.step("a call past timeoutMs is 'Backend late timed out', as before", async () => {
      await rawCall(gw, token, "late__nap"); // connects (and times out) through the SDK
      const r = await both(gw, token, "late__nap");
      assertSame(r);
      assertEquals(r.fast.message.error.code, -32603);
      assertMatch(r.fast.message.error.message, /Backend late timed out/);
    });

    await t.step("a backend gone down is 'Backend gone is unavailable', as before", async () => {
      const up = await rawCall(gw, token, "gone__echo");
      assertEquals(up.message.result.content, [{ type: "text", text: "here" }]);
      assertEquals((await rawCall(gw, token, "gone__echo")).fast, true);
      await gone.close();
      const fast = await rawCall(gw, token, "gone__echo");
      assertEquals(fast.fast, true);
      fastCallSettings.enabled = false;
      const sdk = await rawCall(gw, token, "gone__echo").finally(() =>
        fastCallSettings.enabled = true
      );
      assertSame({ sdk, fast });
      assertEquals(fast.message.error.code, -32603);
      assertMatch(fast.message.error.message, /Backend gone is unavailable/);
    });

    await t.step("the client's token never reaches the backend", () => {
      assert(beta.seen.length > 0);
      assert(beta.seen.every((s) => s.authorization === null));
    });

    await t.step("nothing was answered with a 500", () => {
      assertEquals(gw.deps.logs.filter((l) => l.status === 500), []);
    });
  } finally {
    await close();
  }
});

Deno.test("/mcp tools/call fast path for 2025-era clients", async (t) => {
  const { aborted, beta, gone, gw, token, close } = await setUp();
  const call = (session: string, name: string, options: CallOptions = {}) =>
    both(gw, token, name, { ...options, session });
  try {
    const session = await openSession(gw, token);
    // The pool connects and probes through the SDK (a modern call does it as well as any).
    for (const b of ["beta", "gone", "alpha", "late"]) await rawCall(gw, token, `${b}__echo`);

    await t.step("a JSON result is the same SSE answer as the SDK path's", async () => {
      const r = await call(session, "beta__echo", { args: { text: "same" } });
      assertSame(r);
      assertEquals(r.fast.status, 200);
      assertEquals(r.fast.type, "text/event-stream");
      assertEquals(r.fast.message, {
        jsonrpc: "2.0",
        id: 7,
        result: { content: [{ type: "text", text: "same" }] },
      });
      assertSame(await call(session, "beta__echo", { args: { text: 5 } }));
      assertSame(await call(session, "beta__boom"));
    });

    await t.step("resource links and embedded resources get their URIs wrapped", async () => {
      const r = await call(session, "beta__link");
      assertSame(r);
      assertEquals(r.fast.message.result.content[0].uri, "mcpgw-beta+file:///a.txt");
      assertEquals(r.fast.message.result.content[1].resource.uri, "mcpgw-beta+file:///b.txt");
    });

    await t.step("progress reaches the client under its own progressToken", async () => {
      const r = await call(session, "beta__work", { meta: { progressToken: "p1" } });
      assertSame(r);
      assertEquals(
        r.fast.notifications.map((n: any) => [n.params.progressToken, n.params.progress]),
        [["p1", 1], ["p1", 2], ["p1", 3]],
      );
      const quiet = await call(session, "beta__work");
      assertSame(quiet);
      assertEquals(quiet.fast.notifications, []);
    });

    await t.step("an unknown tool is the backend's -32602, as before", async () => {
      const r = await call(session, "beta__nope");
      assertSame(r);
      assertEquals(r.fast.message.error.code, -32602);
    });

    await t.step("input_required from a modern backend fails as on the SDK path", async () => {
      assertSame(await call(session, "beta__confirm"));
    });

    await t.step("unknown backends take the SDK path; 2025-era ones the fast path", async () => {
      assertSame(await call(session, "nobody__echo"), false);
      const legacy = await call(session, "alpha__echo");
      assertSame(legacy);
      assertEquals(legacy.fast.message.result.content, [{ type: "text", text: "legacy" }]);
    });

    await t.step("a call past timeoutMs is 'Backend late timed out', as before", async () => {
      const r = await call(session, "late__nap");
      assertSame(r);
      assertMatch(r.fast.message.error.message, /Backend late timed out/);
    });

    await t.step("notifications/cancelled cancels the backend call", async () => {
      const cancel = { onHeaders: () => cancelCall(gw, token, session) };
      // No progressToken: the SDK path answers with headers before the backend's first event.
      const r = await call(session, "beta__slow", cancel);
      assertSame(r);
      assertEquals(r.fast.message.error.message, "Request cancelled");
      for (let i = 0; i < 50 && aborted.length < 2; i++) await sleep(10);
      assertEquals(aborted, ["slow", "slow"]);
    });

    await t.step("a session is checked as before: missing 400, foreign or ended 404", async () => {
      const other = await mintAccessToken(gw.deps, { clientId: "someone-else" });
      const foreign = await both(gw, other, "beta__echo", { session, args: { text: "x" } });
      assertSame(foreign, false);
      assertEquals(foreign.fast.status, 404);
      const unknown = await call("not-a-session", "beta__echo", { args: { text: "x" } });
      assertSame(unknown, false);
      assertEquals(unknown.fast.status, 404);
      const missing = await both(gw, token, "beta__echo", { session: "", args: { text: "x" } });
      assertSame(missing, false);
      assertEquals(missing.fast.status, 400);
      const ended = await openSession(gw, token);
      assertEquals(
        (await rawCall(gw, token, "beta__echo", { session: ended, args: { text: "x" } })).fast,
        true,
      );
      const del = await fetch(`${gw.url}/mcp`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${token}`, "mcp-session-id": ended },
      });
      assertEquals(del.status, 204);
      const after = await call(ended, "beta__echo", { args: { text: "x" } });
      assertSame(after, false);
      assertEquals(after.fast.status, 404);
    });

    await t.step("a session ended by another isolate is refused within 1 s", async () => {
      const ended = await openSession(gw, token);
      const args = { session: ended, args: { text: "x" } };
      assertEquals((await rawCall(gw, token, "beta__echo", args)).fast, true);
      // Another isolate's DELETE removes the KV record; this isolate has it cached.
      await gw.deps.kv.delete(aggregateSessionKey(await sha256Hex(ended)));
      assertEquals((await rawCall(gw, token, "beta__echo", args)).status, 200);
      gw.deps.clock.advance(SESSION_CACHE_MS);
      assertEquals((await rawCall(gw, token, "beta__echo", args)).status, 404);
    });

    await t.step("a v1 SDK client gets results and progress through the fast path", async () => {
      const client = new V1Client({ name: "t", version: "1" });
      await assertFastProgress(
        gw,
        client,
        new V1ClientTransport(new URL(`${gw.url}/mcp`), { requestInit: bearer(token) }),
        (onprogress) =>
          client.callTool({ name: "beta__work", arguments: {} }, undefined, { onprogress }),
      );
    });

    await t.step("a backend gone down is 'Backend gone is unavailable', as before", async () => {
      assertEquals((await rawCall(gw, token, "gone__echo", { session })).fast, true);
      await gone.close();
      const fast = await rawCall(gw, token, "gone__echo", { session });
      assertEquals(fast.fast, true);
      fastCallSettings.enabled = false;
      const sdk = await rawCall(gw, token, "gone__echo", { session }).finally(() =>
        fastCallSettings.enabled = true
      );
      assertSame({ sdk, fast });
      assertMatch(fast.message.error.message, /Backend gone is unavailable/);
    });

    await t.step("the client's token never reaches the backend", () => {
      assert(beta.seen.every((s) => s.authorization === null));
    });

    await t.step("nothing was answered with a 500", () => {
      assertEquals(gw.deps.logs.filter((l) => l.status === 500), []);
    });
  } finally {
    await close();
  }
});

/**
 * 2025-era backends (v1 SDK, sessions; SSE answers, and JSON answers with `enableJsonResponse`):
 * tools `echo`, `link`, `work` (progress), `boom`, `slow` (until aborted), `ask` (elicitation
 * during the call, which no client here can answer).
 */
function legacyTools(name: string, aborted: string[]) {
  return (s: any) => {
    s.registerTool("echo", { inputSchema: { text: z.any() } }, ({ text }: any) => ({
      content: [{ type: "text", text: String(text) }],
    }));
    s.registerTool("link", {}, () => ({
      content: [
        { type: "resource_link", uri: "file:///a.txt", name: "a" },
        { type: "resource", resource: { uri: "file:///b.txt", text: "b" } },
      ],
      _meta: { "example.com/x": 1 },
    }));
    s.registerTool("work", {}, async (extra: any) => {
      const token = extra._meta?.progressToken;
      for (let i = 1; i <= 3; i++) {
        if (token !== undefined) {
          await extra.sendNotification({
            method: "notifications/progress",
            params: { progressToken: token, progress: i, total: 3 },
          });
        }
        await sleep(5);
      }
      return { content: [{ type: "text", text: "done" }] };
    });
    s.registerTool("boom", {}, () => {
      throw new Error("kaput");
    });
    s.registerTool("steady", {}, async (extra: any) => {
      // 1.5 s of progress every 100 ms: longer than the backend's timeoutMs (1 s) in all.
      for (let i = 1; i <= 15; i++) {
        await sleep(100);
        const token = extra._meta?.progressToken;
        if (token !== undefined) {
          await extra.sendNotification({
            method: "notifications/progress",
            params: { progressToken: token, progress: i },
          });
        }
      }
      return { content: [{ type: "text", text: "steady" }] };
    });
    s.registerTool("slow", {}, async (extra: any) => {
      const token = extra._meta?.progressToken;
      if (token !== undefined) {
        await extra.sendNotification({
          method: "notifications/progress",
          params: { progressToken: token, progress: 0 },
        });
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 5_000);
        extra.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          aborted.push(`${name}-slow`);
          resolve();
        });
      });
      return { content: [{ type: "text", text: "slept" }] };
    });
    s.registerTool("ask", {}, async (extra: any) => {
      try {
        await extra.sendRequest(
          {
            method: "elicitation/create",
            params: { message: "Sure?", requestedSchema: { type: "object", properties: {} } },
          },
          ElicitResultSchema,
        );
        return { content: [{ type: "text", text: "answered" }] };
      } catch (error) {
        return { content: [{ type: "text", text: `refused: ${(error as Error).message}` }] };
      }
    });
  };
}

Deno.test("/mcp tools/call fast path to 2025-era backends", async (t) => {
  const aborted: string[] = [];
  const gamma = legacyBackend("gamma", legacyTools("gamma", aborted));
  const delta = legacyBackend("delta", legacyTools("delta", aborted), { jsonResponse: true });
  const gw = await serveGateway({
    config: {
      backends: [
        { name: "gamma", url: gamma.url, timeoutMs: 1000 },
        { name: "delta", url: delta.url },
      ],
    },
  });
  const token = await mintAccessToken(gw.deps);
  try {
    const session = await openSession(gw, token);
    for (const b of ["gamma", "delta"]) await rawCall(gw, token, `${b}__echo`, { args: {} });
    for (const [who, options] of [["modern", {}], ["2025-era", { session }]] as const) {
      for (const b of ["gamma", "delta"]) {
        await t.step(
          `${who} client, ${b}: results, errors and wrapped URIs as on the SDK path`,
          async () => {
            const r = await both(gw, token, `${b}__echo`, { ...options, args: { text: "hi" } });
            assertSame(r);
            assertEquals(r.fast.message.result.content, [{ type: "text", text: "hi" }]);
            assertSame(await both(gw, token, `${b}__boom`, options));
            assertSame(await both(gw, token, `${b}__nope`, options));
            const link = await both(gw, token, `${b}__link`, options);
            assertSame(link);
            assertEquals(link.fast.message.result.content[0].uri, `mcpgw-${b}+file:///a.txt`);
          },
        );
        await t.step(`${who} client, ${b}: progress under the client's own token`, async () => {
          const r = await both(gw, token, `${b}__work`, {
            ...options,
            meta: { progressToken: "p1" },
          });
          assertSame(r);
          if (b === "gamma") {
            assertEquals(
              r.fast.notifications.map((n: any) => [n.params.progressToken, n.params.progress]),
              [["p1", 1], ["p1", 2], ["p1", 3]],
            );
          }
          assertSame(await both(gw, token, `${b}__work`, options));
        });
      }
      await t.step(
        `${who} client: the backend's elicitation is refused as on the SDK path`,
        async () => {
          const r = await both(gw, token, "gamma__ask", options);
          assertSame(r);
          assertMatch(r.fast.message.result.content[0].text, /^refused: .*did not declare/);
        },
      );
    }
    await t.step("progress keeps a call alive past timeoutMs, without a client token", async () => {
      const r = await both(gw, token, "gamma__steady");
      assertSame(r);
      assertEquals(r.fast.type, "application/json");
      assertEquals(r.fast.message.result.content, [{ type: "text", text: "steady" }]);
    });
    await t.step("a 2025-era client's notifications/cancelled reaches the backend", async () => {
      const cancel = { session, onHeaders: () => cancelCall(gw, token, session) };
      const r = await both(gw, token, "gamma__slow", cancel);
      assertSame(r);
      assertEquals(r.fast.message.error.message, "Request cancelled");
      for (let i = 0; i < 50 && aborted.length < 2; i++) await sleep(10);
      assertEquals(aborted, ["gamma-slow", "gamma-slow"]);
    });
    await t.step("requests to the backend carry its session, never the client's token", () => {
      const calls = gamma.seen.filter((s) => s.rpc?.method === "tools/call");
      assert(calls.length > 10);
      assert(gamma.seen.every((s) => s.authorization === null));
    });
    await t.step("nothing was answered with a 500", () => {
      assertEquals(gw.deps.logs.filter((l) => l.status === 500), []);
    });
  } finally {
    await closeAggregate(gw.deps);
    await gamma.close();
    await delta.close();
    await gw.close();
  }
});
