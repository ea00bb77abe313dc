/**
 * The audit trail of the pass-through `/mcp/{backend}` (issue 12, lib/admin/pass_through_audit.ts)
 * and of per-user tool-glob refusals on `/mcp`: one record per routed request in both protocol
 * eras, whose outcome is its own JSON-RPC response in a JSON or SSE answer (`ok`, the error code,
 * `tool_error`) with the latency to that message; `denied` for what curation or the caller's tool
 * globs refuse. Real parts: v1 SDK backends (SSE and JSON answers) and a v2 one, v1 (2025-era) and
 * v2 (2026-07-28) SDK clients, a spy in front of each backend recording the media type of every
 * answer, the records read back from KV.
 */
import { assert, assertEquals } from "./_assert.ts";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { McpServer as V1McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { McpServer as V2McpServer } from "@modelcontextprotocol/server";
import { z } from "zod";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import type { AuditRecord } from "../lib/store.ts";
import { REDACTED } from "../lib/infra/log.ts";
import { type ServedGateway, serveGateway } from "./_helpers.ts";
import { deadBackendUrl, legacyBackend, modernBackend } from "./_aggregate_backends.ts";
import { records, token } from "./_audit.ts";

const NAP_MS = 60;
const nap = () => new Promise((r) => setTimeout(r, NAP_MS));

/** The v1 backends' tools: echo, fail (isError), nap (answers after {@linkcode NAP_MS}). */
function v1Tools(s: V1McpServer): void {
  s.registerTool(
    "echo",
    { inputSchema: { text: z.string(), apiKey: z.string().optional() } },
    ({ text }: { text: string }) => ({ content: [{ type: "text", text }] }),
  );
  s.registerTool("fail", {}, () => ({ content: [{ type: "text", text: "no" }], isError: true }));
  s.registerTool("nap", {}, async () => {
    await nap();
    return { content: [{ type: "text", text: "rested" }] };
  });
  s.registerResource("notes", "file:///notes.txt", { mimeType: "text/plain" }, (uri: URL) => ({
    contents: [{ uri: uri.href, text: "notes" }],
  }));
}

/** The same tools on a v2 (2026-07-28) backend. */
function v2Tools(s: V2McpServer): void {
  s.registerTool(
    "echo",
    { inputSchema: z.object({ text: z.string() }) },
    ({ text }) => ({ content: [{ type: "text", text }] }),
  );
  s.registerTool("fail", {}, () => ({ content: [{ type: "text", text: "no" }], isError: true }));
  s.registerTool("nap", {}, async (ctx) => {
    const progressToken = ctx.mcpReq._meta?.progressToken;
    if (progressToken !== undefined) {
      await ctx.mcpReq.notify({
        method: "notifications/progress",
        params: { progressToken, progress: 1, total: 2 },
      });
    }
    await nap();
    return { content: [{ type: "text", text: "rested" }] };
  });
}

/**
 * A loopback proxy in front of `target` recording, per POST, the JSON-RPC methods it carried and
 * the media type the backend answered with (so each step proves which kind of answer it read).
 */
function spy(target: string) {
  const answers: { methods: string[]; type: string }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const body = req.method === "POST" ? await req.text() : null;
    const headers = new Headers(req.headers);
    headers.delete("host");
    const res = await fetch(target, { method: req.method, headers, body });
    if (body !== null) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch {
        parsed = undefined;
      }
      const methods = (Array.isArray(parsed) ? parsed : [parsed])
        .map((m) => String((m as { method?: unknown })?.method));
      const type = (res.headers.get("content-type") ?? "").split(";")[0]!;
      answers.push({ methods, type });
    }
    return new Response(res.body, { status: res.status, headers: res.headers });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/mcp`,
    /** Media types of the answers to POSTs carrying `method`, in order. */
    typesOf: (method: string) =>
      answers.filter((a) => a.methods.includes(method)).map((a) => a.type),
    close: () => server.shutdown(),
  };
}

async function v1Client(gw: ServedGateway, path: string, bearer: string) {
  const client = new V1Client({ name: "pass-through-v1", version: "1.0.0" });
  const transport = new V1ClientTransport(new URL(`${gw.url}${path}`), {
    requestInit: { headers: { authorization: `Bearer ${bearer}` } },
  });
  await client.connect(transport);
  return { client, transport };
}

async function v2Client(gw: ServedGateway, path: string, bearer: string): Promise<Client> {
  const client = new Client({ name: "pass-through-v2", version: "1.0.0" }, {
    versionNegotiation: { mode: "auto" },
  });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${gw.url}${path}`), {
      requestInit: { headers: { authorization: `Bearer ${bearer}` } },
    }),
  );
  return client;
}

/** Polls `get` until it has a value (an event of another task), for at most 5 s. */
async function until<T>(what: string, get: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const v = await get();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`waited 5 s for ${what}`);
}

const mcpRecords = async (gw: ServedGateway, before: number) =>
  (await records(gw.deps)).slice(before).filter((r) => r.event === "mcp");

const brief = (r: AuditRecord) => [r.backend, r.method, r.tool, r.outcome];

/** A 2025-era POST on a session (raw, for batches and exact bodies). */
function legacyPost(
  gw: ServedGateway,
  path: string,
  bearer: string,
  session: string,
  body: unknown,
) {
  return fetch(`${gw.url}${path}`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${bearer}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": "2025-03-26",
      "mcp-session-id": session,
    },
    body: JSON.stringify(body),
  });
}

const call = (id: number | string, name: string, args: Record<string, unknown> = {}) => ({
  jsonrpc: "2.0",
  id,
  method: "tools/call",
  params: { name, arguments: args },
});

Deno.test("audit trail: the pass-through /mcp/{backend}", async (t) => {
  const sseBackend = legacyBackend("sse", v1Tools);
  const jsonBackend = legacyBackend("json", v1Tools, { jsonResponse: true });
  const modern = modernBackend("modern", v2Tools);
  const spies = { sse: spy(sseBackend.url), json: spy(jsonBackend.url), modern: spy(modern.url) };
  const gw = await serveGateway({
    config: {
      backends: [
        { name: "sse", url: spies.sse.url },
        { name: "json", url: spies.json.url },
        { name: "modern", url: spies.modern.url },
        { name: "dead", url: deadBackendUrl() },
        { name: "curated", url: spies.json.url, tools: { deny: ["nap"] } },
        {
          name: "modcur",
          url: spies.modern.url,
          tools: { deny: ["nap"], rename: { echo: "say" } },
        },
      ],
      audit: { arguments: "redacted" },
    },
  });
  const ann = await token(gw.deps, { user: "corp:ann" });
  try {
    for (const backend of ["sse", "json"] as const) {
      await t.step(
        `2025-era client, ${backend.toUpperCase()} answers: each call ends with its own response`,
        async () => {
          const { client } = await v1Client(gw, `/mcp/${backend}`, ann.token);
          try {
            const before = (await records(gw.deps)).length;
            const ok = await client.callTool({
              name: "echo",
              arguments: { text: "hi", apiKey: "k-1" },
            });
            assertEquals((ok.content as { text: string }[])[0]!.text, "hi");
            const failed = await client.callTool({ name: "fail", arguments: {} });
            assertEquals(failed.isError, true);
            const unknown = await client.callTool({ name: "nope", arguments: {} });
            assertEquals(unknown.isError, true, "the v1 SDK answers an unknown tool in-band");
            await client.callTool({ name: "nap", arguments: {} });
            await client.readResource({ uri: "file:///notes.txt" });
            const missing = await client.readResource({ uri: "file:///missing.txt" })
              .then(() => null, (e: { code?: unknown }) => e.code);
            assertEquals(missing, -32602, "a JSON-RPC error inside the 200");
            await client.listTools();
            const found = await mcpRecords(gw, before);
            assertEquals(found.map(brief), [
              [backend, "tools/call", "echo", "ok"],
              [backend, "tools/call", "fail", "tool_error"],
              [backend, "tools/call", "nope", "tool_error"],
              [backend, "tools/call", "nap", "ok"],
              [backend, "resources/read", "file:///notes.txt", "ok"],
              [backend, "resources/read", "file:///missing.txt", "-32602"],
            ], "tools/list is not recorded");
            assertEquals(found[0]!.user, "corp:ann");
            assertEquals(found[0]!.arguments, { text: "hi", apiKey: REDACTED });
            assert(
              found[3]!.latencyMs! >= NAP_MS,
              `latency to the response: ${found[3]!.latencyMs}`,
            );
            const expected = backend === "sse" ? "text/event-stream" : "application/json";
            assertEquals(spies[backend].typesOf("tools/call"), Array(4).fill(expected));
            assertEquals(
              gw.deps.logs.find((l) => l.request_id === found[0]!.requestId && l.route)?.tool,
              "echo",
              "the log line names the tool read from the body",
            );
          } finally {
            await client.close();
          }
        },
      );
    }

    await t.step("2026-07-28 client: the outcome is the response inside the 200", async () => {
      const client = await v2Client(gw, "/mcp/modern", ann.token);
      try {
        const before = (await records(gw.deps)).length;
        await client.callTool({ name: "echo", arguments: { text: "hi" } });
        const failed = await client.callTool({ name: "fail", arguments: {} });
        assertEquals(failed.isError, true);
        await client.callTool({ name: "nope", arguments: {} }).catch(() => {});
        const progress: number[] = [];
        await client.callTool({ name: "nap", arguments: {} }, {
          onprogress: (p: { progress: number }) => void progress.push(p.progress),
        });
        assertEquals(progress, [1], "the progress notification streamed through");
        const found = await mcpRecords(gw, before);
        assertEquals(found.map(brief), [
          ["modern", "tools/call", "echo", "ok"],
          ["modern", "tools/call", "fail", "tool_error"],
          ["modern", "tools/call", "nope", "-32602"],
          ["modern", "tools/call", "nap", "ok"],
        ]);
        assertEquals(found[0]!.arguments, { text: "hi" }, "arguments read when asked for");
        assert(found[3]!.latencyMs! >= NAP_MS, `latency to the response: ${found[3]!.latencyMs}`);
        const types = spies.modern.typesOf("tools/call").slice(-4);
        assertEquals(types.at(-1), "text/event-stream", "with progress, the answer is SSE");
        assertEquals(types[0], "application/json");
      } finally {
        await client.close();
      }
    });

    await t.step("a batch: one record per routed request, each with its own outcome", async () => {
      const { client, transport } = await v1Client(gw, "/mcp/json", ann.token);
      try {
        const before = (await records(gw.deps)).length;
        const res = await legacyPost(gw, "/mcp/json", ann.token, transport.sessionId!, [
          call("a", "fail"),
          { jsonrpc: "2.0", id: "b", method: "tools/list" },
          call(7, "echo", { text: "batched" }),
          { jsonrpc: "2.0", method: "notifications/progress", params: {} },
        ]);
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type")?.split(";")[0], "application/json");
        const answer = await res.json();
        assertEquals(answer.map((m: { id: unknown }) => m.id).sort(), ["a", "b", 7].sort());
        const found = await mcpRecords(gw, before);
        assertEquals(found.map(brief).sort(), [
          ["json", "tools/call", "echo", "ok"],
          ["json", "tools/call", "fail", "tool_error"],
        ]);
        assertEquals(found[0]!.requestId, found[1]!.requestId, "one HTTP request");
      } finally {
        await client.close();
      }
    });

    await t.step("an unchanged answer keeps its exact bytes (JSON)", async () => {
      const { client, transport } = await v1Client(gw, "/mcp/json", ann.token);
      try {
        const direct = await fetch(jsonBackend.url, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
            "mcp-protocol-version": "2025-03-26",
            "mcp-session-id": transport.sessionId!,
          },
          body: JSON.stringify(call(1, "echo", { text: "same" })),
        });
        const viaGateway = await legacyPost(
          gw,
          "/mcp/json",
          ann.token,
          transport.sessionId!,
          call(1, "echo", { text: "same" }),
        );
        assertEquals(viaGateway.status, 200);
        assertEquals(await viaGateway.text(), await direct.text());
      } finally {
        await client.close();
      }
    });

    await t.step("the client goes away mid-answer: cancelled", async () => {
      const { client, transport } = await v1Client(gw, "/mcp/sse", ann.token);
      try {
        const before = (await records(gw.deps)).length;
        const abort = new AbortController();
        const res = await fetch(`${gw.url}/mcp/sse`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${ann.token}`,
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
            "mcp-protocol-version": "2025-03-26",
            "mcp-session-id": transport.sessionId!,
          },
          body: JSON.stringify(call(5, "nap")),
          signal: abort.signal,
        });
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type"), "text/event-stream");
        abort.abort();
        await res.body?.cancel().catch(() => {});
        const found = await until("the abandoned call's record", async () => {
          const r = await mcpRecords(gw, before);
          return r.length > 0 ? r : undefined;
        });
        assertEquals(found.map(brief), [["sse", "tools/call", "nap", "cancelled"]]);
      } finally {
        await client.close();
      }
    });

    await t.step("a 2025-era client's notifications/cancelled: cancelled at once", async () => {
      const { client } = await v1Client(gw, "/mcp/sse", ann.token);
      try {
        const before = (await records(gw.deps)).length;
        const abort = new AbortController();
        const pending = client.callTool({ name: "nap", arguments: {} }, undefined, {
          signal: abort.signal,
        });
        setTimeout(() => abort.abort(), NAP_MS / 3);
        await pending.catch(() => {});
        // The client sends notifications/cancelled in a POST of its own, without waiting.
        const found = await until("the cancelled call's record", async () => {
          const r = await mcpRecords(gw, before);
          return r.length > 0 ? r : undefined;
        });
        assertEquals(found.map(brief), [["sse", "tools/call", "nap", "cancelled"]]);
      } finally {
        await client.close();
      }
    });

    await t.step("a backend that cannot be reached: unavailable", async () => {
      const before = (await records(gw.deps)).length;
      const res = await fetch(`${gw.url}/mcp/dead`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${ann.token}`,
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
        },
        body: JSON.stringify(call(1, "echo", { text: "x" })),
      });
      assertEquals(res.status, 502);
      await res.body?.cancel();
      assertEquals((await mcpRecords(gw, before)).map(brief), [
        ["dead", "tools/call", "echo", "unavailable"],
      ]);
    });

    await t.step(
      "curation and the caller's tool globs: denied, the backend never called",
      async () => {
        const narrow = await token(gw.deps, {
          user: "corp:bob",
          tools: ["json__echo", "curated__*"],
        });
        const { client, transport } = await v1Client(gw, "/mcp/json", narrow.token);
        try {
          const before = (await records(gw.deps)).length;
          const calls = () => spies.json.typesOf("tools/call").length;
          const sent = calls();
          const refused = await client.callTool({ name: "fail", arguments: {} })
            .then(() => false, () => true);
          assert(refused, "outside the globs: refused like an unknown tool");
          const res = await legacyPost(gw, "/mcp/json", narrow.token, transport.sessionId!, [
            call(1, "echo", { text: "allowed" }),
            call(2, "nap"),
          ]);
          assertEquals(res.status, 200);
          const answer = await res.json();
          assertEquals(answer.find((m: { id: number }) => m.id === 2).error.code, -32602);
          assertEquals(calls(), sent + 1, "only the allowed call reached the backend");
          const found = await mcpRecords(gw, before);
          assertEquals(found.map(brief), [
            ["json", "tools/call", "fail", "denied"],
            ["json", "tools/call", "nap", "denied"],
            ["json", "tools/call", "echo", "ok"],
          ]);
          assertEquals(found[0]!.user, "corp:bob");
        } finally {
          await client.close();
        }
        const curated = await v1Client(gw, "/mcp/curated", ann.token);
        try {
          const before = (await records(gw.deps)).length;
          await curated.client.callTool({ name: "nap", arguments: {} }).catch(() => {});
          await curated.client.callTool({ name: "echo", arguments: { text: "c" } });
          assertEquals((await mcpRecords(gw, before)).map(brief), [
            ["curated", "tools/call", "nap", "denied"],
            ["curated", "tools/call", "echo", "ok"],
          ]);
        } finally {
          await curated.client.close();
        }
        const v2 = await v2Client(gw, "/mcp/modcur", ann.token);
        try {
          const before = (await records(gw.deps)).length;
          assert(await v2.callTool({ name: "nap", arguments: {} }).then(() => false, () => true));
          const said = await v2.callTool({ name: "say", arguments: { text: "renamed" } });
          assertEquals((said.content as { text: string }[])[0]!.text, "renamed");
          assertEquals((await mcpRecords(gw, before)).map(brief), [
            ["modcur", "tools/call", "nap", "denied"],
            ["modcur", "tools/call", "say", "ok"],
          ], "a 2026-07-28 call, known from its headers: the name the client used");
        } finally {
          await v2.close();
        }
      },
    );
  } finally {
    // Backends first: they end the sessions' GET streams, which the spies and the gateway relay.
    await sseBackend.close();
    await jsonBackend.close();
    await modern.close();
    for (const s of Object.values(spies)) await s.close();
    await closeAggregate(gw.deps);
    await gw.close();
  }
});

Deno.test("audit trail: /mcp refusals for the user's tool globs are denied", async (t) => {
  const alpha = modernBackend("alpha", v2Tools);
  const beta = legacyBackend("beta", v1Tools);
  const gw = await serveGateway({
    config: {
      backends: [{ name: "alpha", url: alpha.url }, { name: "beta", url: beta.url }],
    },
  });
  const bob = await token(gw.deps, { user: "corp:bob", tools: ["alpha__echo", "beta__echo"] });
  const client = await v2Client(gw, "/mcp", bob.token);
  const refused = (p: Promise<{ isError?: unknown }>) =>
    p.then((r) => r.isError === true, () => true);
  try {
    await t.step("a direct call (fast path and SDK path alike): one denied record", async () => {
      await client.callTool({ name: "alpha__echo", arguments: { text: "warm" } });
      const warm = (await records(gw.deps)).at(-1)!;
      const line = gw.deps.logs.find((l) => l.request_id === warm.requestId && l.route);
      assertEquals(line?.fast_path, true, "alpha is connected: allowed calls take the fast path");
      const before = (await records(gw.deps)).length;
      const reached = alpha.seen.length;
      assert(await refused(client.callTool({ name: "alpha__fail", arguments: {} })));
      assert(await refused(client.callTool({ name: "beta__nap", arguments: {} })));
      assertEquals(alpha.seen.length, reached, "the backend was not called");
      const found = await mcpRecords(gw, before);
      assertEquals(found.map(brief), [
        ["alpha", "tools/call", "alpha__fail", "denied"],
        ["beta", "tools/call", "beta__nap", "denied"],
      ]);
      assertEquals(found[0]!.user, "corp:bob");
    });

    await t.step("through call_tool: denied, naming the tool it would have run", async () => {
      const before = (await records(gw.deps)).length;
      assert(
        await refused(client.callTool({
          name: "call_tool",
          arguments: { name: "alpha__nap", arguments: {} },
        })),
      );
      assertEquals((await mcpRecords(gw, before)).map(brief), [
        ["alpha", "tools/call", "alpha__nap", "denied"],
      ]);
    });

    await t.step("a 2025-era client: the same", async () => {
      const { client: v1 } = await v1Client(gw, "/mcp", bob.token);
      try {
        const before = (await records(gw.deps)).length;
        assert(await refused(v1.callTool({ name: "beta__fail", arguments: {} })));
        await v1.callTool({ name: "beta__echo", arguments: { text: "ok" } });
        assertEquals((await mcpRecords(gw, before)).map(brief), [
          ["beta", "tools/call", "beta__fail", "denied"],
          ["beta", "tools/call", "beta__echo", "ok"],
        ]);
      } finally {
        await v1.close();
      }
    });

    await t.step(
      "a name of no configured backend is unknown, not denied (nothing audited)",
      async () => {
        const wide = await token(gw.deps, { user: "corp:bob", tools: ["alpha__*"] });
        const other = await v2Client(gw, "/mcp", wide.token);
        try {
          const before = (await records(gw.deps)).length;
          assert(await refused(other.callTool({ name: "gamma__x", arguments: {} })));
          assertEquals(await mcpRecords(gw, before), []);
        } finally {
          await other.close();
        }
      },
    );
  } finally {
    await client.close();
    await closeAggregate(gw.deps);
    await gw.close();
    await alpha.close();
    await beta.close();
  }
});

Deno.test("audit trail: a 2026-07-28 pass-through call known from its headers alone", async (t) => {
  const modern = modernBackend("modern", v2Tools);
  const watched = spy(modern.url);
  // No `audit.arguments`: the body of a 2026-07-28 POST is not read.
  const gw = await serveGateway({ config: { backends: [{ name: "modern", url: watched.url }] } });
  const ann = await token(gw.deps, { user: "corp:ann" });
  const client = await v2Client(gw, "/mcp/modern", ann.token);
  try {
    await t.step("outcomes and latency come from the answer, JSON or SSE", async () => {
      const before = (await records(gw.deps)).length;
      await client.callTool({ name: "echo", arguments: { text: "hi" } });
      await client.callTool({ name: "fail", arguments: {} });
      await client.callTool({ name: "nope", arguments: {} }).catch(() => {});
      await client.callTool({ name: "nap", arguments: {} }, { onprogress: () => {} });
      const found = await mcpRecords(gw, before);
      assertEquals(found.map(brief), [
        ["modern", "tools/call", "echo", "ok"],
        ["modern", "tools/call", "fail", "tool_error"],
        ["modern", "tools/call", "nope", "-32602"],
        ["modern", "tools/call", "nap", "ok"],
      ]);
      assertEquals(found[0]!.arguments, undefined);
      assert(found[3]!.latencyMs! >= NAP_MS, `latency to the response: ${found[3]!.latencyMs}`);
      assertEquals(watched.typesOf("tools/call").slice(-4), [
        "application/json",
        "application/json",
        "application/json",
        "text/event-stream",
      ]);
    });
  } finally {
    await client.close();
    await gw.close();
    await watched.close();
    await modern.close();
  }
});
