/**
 * The audit trail as the gateway writes it (issue 12): one record per MCP operation that reaches a
 * backend — aggregated `/mcp` through the SDK path and the fast path, the pass-through
 * `/mcp/{backend}` (in depth: pass_through_audit_test.ts) — and per OAuth event, with who, what, outcome, latency and
 * the request id of the log line. Real backends (v1 and v2 SDK servers), real SDK clients, real KV.
 */
import { assert, assertEquals } from "./_assert.ts";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { completable } from "@modelcontextprotocol/server";
import { z } from "zod";
import { fastCallSettings } from "../lib/mcp/aggregate/fast_call.ts";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { type AuditRecord, grantUsedKey } from "../lib/store.ts";
import { REDACTED } from "../lib/infra/log.ts";
import { createHandler } from "../main.ts";
import { type ServedGateway, serveGateway } from "./_helpers.ts";
import { lateBackend, legacyBackend, modernBackend } from "./_aggregate_backends.ts";
import { expectTokens, formRequest, putClient, putCode } from "./_kv_fixtures.ts";
import { authorizeUrl, pkcePair, postDecision, readConsentForm } from "./_oauth_flow.ts";
import { makeDeps } from "./_helpers.ts";
import { newRecord, records, token } from "./_audit.ts";

async function modernClient(gw: ServedGateway, bearer: string): Promise<Client> {
  const client = new Client({ name: "audit-test", version: "1.0.0" }, {
    versionNegotiation: { mode: "auto" },
  });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${bearer}` } },
    }),
  );
  return client;
}

/** The router's log line of request `requestId`. */
function logLine(gw: ServedGateway, requestId: string | null) {
  return gw.deps.logs.find((l) => l.request_id === requestId && typeof l.route === "string");
}

Deno.test("audit trail: MCP operations", async (t) => {
  const alpha = modernBackend("alpha", (s) => {
    s.registerTool(
      "echo",
      { inputSchema: z.object({ text: z.string(), apiKey: z.string().optional() }) },
      ({ text }) => ({ content: [{ type: "text", text: `alpha:${text}` }] }),
    );
    s.registerTool("work", {}, async (ctx) => {
      const token = ctx.mcpReq._meta?.progressToken;
      if (token !== undefined) {
        await ctx.mcpReq.notify({
          method: "notifications/progress",
          params: { progressToken: token, progress: 1, total: 2 },
        });
      }
      await new Promise((r) => setTimeout(r, 20));
      return { content: [{ type: "text", text: "half done" }], isError: true };
    });
    s.registerTool("fail", {}, () => ({
      content: [{ type: "text", text: "no" }],
      isError: true,
    }));
    s.registerPrompt(
      "greet",
      {
        argsSchema: {
          who: completable(z.string(), (v) => ["ann", "bob"].filter((n) => n.startsWith(v ?? ""))),
        },
      },
      ({ who }: { who: string }) => ({
        messages: [{ role: "user", content: { type: "text", text: `hi ${who}` } }],
      }),
    );
    s.registerResource("notes", "file:///notes.txt", { mimeType: "text/plain" }, (uri: URL) => ({
      contents: [{ uri: uri.href, text: "notes" }],
    }));
  });
  const beta = legacyBackend("beta", (s) => {
    s.registerTool(
      "echo",
      { inputSchema: { text: z.string() } },
      ({ text }: { text: string }) => ({ content: [{ type: "text", text: `beta:${text}` }] }),
    );
  });
  const slow = lateBackend(5000);
  const gw = await serveGateway({
    config: {
      backends: [
        { name: "alpha", url: alpha.url },
        { name: "beta", url: beta.url },
        { name: "slow", url: slow.url, timeoutMs: 300 },
      ],
      audit: { arguments: "redacted" },
    },
  });
  const owner = await token(gw.deps);
  const ann = await token(gw.deps, { user: "corp:ann" });
  const client = await modernClient(gw, ann.token);
  try {
    await t.step(
      "a tools/call through the SDK path: who, what, outcome, latency, request id",
      async () => {
        fastCallSettings.enabled = false;
        try {
          const before = (await records(gw.deps)).length;
          const result = await client.callTool({
            name: "alpha__echo",
            arguments: { text: "hi", apiKey: "k-123" },
          });
          assertEquals((result.content as { text: string }[])[0]!.text, "alpha:hi");
          const r = await newRecord(gw.deps, before, (r) => r.event === "mcp");
          assertEquals(r.user, "corp:ann");
          assertEquals(r.clientId, "audit-client");
          assertEquals(r.grantId, ann.grantId);
          assertEquals(r.backend, "alpha");
          assertEquals(r.method, "tools/call");
          assertEquals(r.tool, "alpha__echo");
          assertEquals(r.outcome, "ok");
          assert(typeof r.latencyMs === "number" && r.latencyMs >= 0, "latencyMs");
          assertEquals(logLine(gw, r.requestId)?.route, "mcp", "requestId is the log line's");
          assertEquals(r.arguments, { text: "hi", apiKey: REDACTED });
        } finally {
          fastCallSettings.enabled = true;
        }
      },
    );

    await t.step("the fast path (connected modern backend) records the same", async () => {
      const before = (await records(gw.deps)).length;
      await client.callTool({ name: "alpha__echo", arguments: { text: "again" } });
      const r = await newRecord(gw.deps, before, (r) => r.event === "mcp");
      assertEquals(logLine(gw, r.requestId)?.fast_path, true, "the call took the fast path");
      assertEquals([r.user, r.backend, r.tool, r.outcome], [
        "corp:ann",
        "alpha",
        "alpha__echo",
        "ok",
      ]);
      assertEquals(r.arguments, { text: "again" });
    });

    await t.step(
      "a result with isError is tool_error; a backend's JSON-RPC error is its code",
      async () => {
        const before = (await records(gw.deps)).length;
        await client.callTool({ name: "alpha__fail", arguments: {} });
        await client.callTool({ name: "alpha__nope", arguments: {} }).catch(() => {});
        const found = (await records(gw.deps)).slice(before);
        assertEquals(found.map((r) => [r.tool, r.outcome]), [
          ["alpha__fail", "tool_error"],
          ["alpha__nope", "-32602"],
        ]);
      },
    );

    await t.step("a backend past its timeoutMs: outcome timeout", async () => {
      const before = (await records(gw.deps)).length;
      await client.callTool({ name: "slow__nap", arguments: {} }).catch(() => {});
      const r = await newRecord(gw.deps, before, (r) => r.backend === "slow");
      assertEquals(r.outcome, "timeout");
    });

    await t.step("prompts/get, resources/read and completion/complete are recorded", async () => {
      const before = (await records(gw.deps)).length;
      await client.getPrompt({ name: "alpha__greet", arguments: { who: "ann" } });
      await client.readResource({ uri: "mcpgw-alpha+file:///notes.txt" });
      await client.complete({
        ref: { type: "ref/prompt", name: "alpha__greet" },
        argument: { name: "who", value: "a" },
      });
      const found = (await records(gw.deps)).slice(before);
      assertEquals(found.map((r) => [r.method, r.tool, r.backend, r.outcome]), [
        ["prompts/get", "alpha__greet", "alpha", "ok"],
        ["resources/read", "mcpgw-alpha+file:///notes.txt", "alpha", "ok"],
        ["completion/complete", "alpha__greet", "alpha", "ok"],
      ]);
      assertEquals(found[0]!.arguments, { who: "ann" });
      assertEquals(found[2]!.arguments, { name: "who", value: "a" });
    });

    await t.step("lists are not audited (they reach every backend, change nothing)", async () => {
      const before = (await records(gw.deps)).length;
      await client.listTools();
      assertEquals((await records(gw.deps)).length, before);
    });

    await t.step(
      "a 2025-era client on a legacy backend; a grant without user is the owner's",
      async () => {
        const v1 = new V1Client({ name: "legacy-audit", version: "1.0.0" });
        await v1.connect(
          new V1ClientTransport(new URL(`${gw.url}/mcp`), {
            requestInit: { headers: { authorization: `Bearer ${owner.token}` } },
          }),
        );
        try {
          const before = (await records(gw.deps)).length;
          await v1.callTool({ name: "beta__echo", arguments: { text: "x" } });
          const r = await newRecord(gw.deps, before, (r) => r.event === "mcp");
          assertEquals([r.user, r.grantId, r.backend, r.tool, r.outcome], [
            "owner",
            owner.grantId,
            "beta",
            "beta__echo",
            "ok",
          ]);
        } finally {
          await v1.close();
        }
      },
    );

    await t.step(
      "a 2025-era client's fast-path call answers in SSE: the outcome is its final message's",
      async () => {
        const v1 = new V1Client({ name: "legacy-fast", version: "1.0.0" });
        await v1.connect(
          new V1ClientTransport(new URL(`${gw.url}/mcp`), {
            requestInit: { headers: { authorization: `Bearer ${ann.token}` } },
          }),
        );
        try {
          const before = (await records(gw.deps)).length;
          const progress: number[] = [];
          const result = await v1.callTool({ name: "alpha__work", arguments: {} }, undefined, {
            onprogress: (p: { progress: number }) => void progress.push(p.progress),
          });
          assertEquals(result.isError, true);
          assertEquals(progress, [1], "the answer streamed (SSE, progress first)");
          const r = await newRecord(gw.deps, before, (r) => r.event === "mcp");
          assertEquals(logLine(gw, r.requestId)?.fast_path, true, "the fast path served it");
          assertEquals([r.tool, r.outcome], ["alpha__work", "tool_error"]);
          assert(r.latencyMs! >= 20, "latency runs to the final message");
        } finally {
          await v1.close();
        }
      },
    );

    await t.step("a call the token's scope does not cover is recorded as denied", async () => {
      const narrow = await token(gw.deps, { scope: "mcp:beta" });
      const before = (await records(gw.deps)).length;
      const res = await fetch(`${gw.url}/mcp`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${narrow.token}`,
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          "mcp-protocol-version": "2025-11-25",
        },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 3,
          method: "tools/call",
          params: { name: "alpha__echo", arguments: { text: "no" } },
        }),
      });
      assertEquals(res.status, 403);
      await res.body?.cancel();
      const r = await newRecord(gw.deps, before, (r) => r.event === "mcp");
      assertEquals([r.backend, r.tool, r.outcome, r.grantId], [
        "alpha",
        "alpha__echo",
        "denied",
        narrow.grantId,
      ]);
    });

    await t.step(
      "pass-through: a modern call is recorded from Mcp-Method and Mcp-Name",
      async () => {
        const before = (await records(gw.deps)).length;
        const res = await fetch(`${gw.url}/mcp/alpha`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${ann.token}`,
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
            "mcp-protocol-version": "2026-07-28",
            "mcp-method": "tools/call",
            "mcp-name": "echo",
          },
          body: JSON.stringify({
            jsonrpc: "2.0",
            id: 9,
            method: "tools/call",
            params: {
              name: "echo",
              arguments: { text: "direct" },
              _meta: {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
              },
            },
          }),
        });
        assertEquals(res.status, 200);
        await res.body?.cancel();
        const r = await newRecord(gw.deps, before, (r) => r.event === "mcp");
        assertEquals([r.user, r.backend, r.method, r.tool, r.outcome], [
          "corp:ann",
          "alpha",
          "tools/call",
          "echo",
          "ok",
        ]);
        assertEquals(logLine(gw, r.requestId)?.route, "mcp_backend");
      },
    );

    await t.step("each bearer use notes the grant's last use (at most once a minute)", async () => {
      await gw.deps.audit.flush();
      const used = await gw.deps.kv.get<number>(grantUsedKey(ann.grantId));
      assertEquals(typeof used.value, "number");
      assert(used.value! <= gw.deps.now());
    });
  } finally {
    await client.close();
    await closeAggregate(gw.deps);
    await gw.close();
    await alpha.close();
    await beta.close();
    await slow.close();
  }
});

Deno.test("audit trail: OAuth events", async (t) => {
  const deps = await makeDeps({
    config: {
      backends: [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }],
      rateLimits: { tokenPerClientPerMinute: 3 },
    },
  });
  const handle = createHandler(deps);
  const events = async () => (await records(deps)).map((r) => r as AuditRecord);
  try {
    const { client } = await putClient(deps);
    let refresh = "";

    await t.step("a code exchanged for tokens: event token", async () => {
      const code = await putCode(deps, client);
      const tokens = await expectTokens(
        await handle(formRequest("/token", {
          grant_type: "authorization_code",
          code: code.code,
          redirect_uri: code.record.redirectUri,
          code_verifier: code.verifier,
          client_id: client.clientId,
        })),
      );
      refresh = tokens.refresh_token;
      const r = (await events()).at(-1)!;
      assertEquals([r.event, r.method, r.clientId, r.outcome, r.user], [
        "token",
        "authorization_code",
        client.clientId,
        "ok",
        "owner",
      ]);
      assert(r.grantId, "the grant is named");
    });

    await t.step(
      "a refresh: event refresh; presenting the old one again: reuse_detected",
      async () => {
        const fresh = await expectTokens(
          await handle(formRequest("/token", {
            grant_type: "refresh_token",
            refresh_token: refresh,
            client_id: client.clientId,
          })),
        );
        const reused = await handle(formRequest("/token", {
          grant_type: "refresh_token",
          refresh_token: refresh,
          client_id: client.clientId,
        }));
        assertEquals(reused.status, 400);
        await reused.body?.cancel();
        const [a, b] = (await events()).slice(-2);
        assertEquals([a!.event, a!.method, a!.outcome], ["refresh", "refresh_token", "ok"]);
        assertEquals([b!.event, b!.method, b!.outcome], [
          "reuse_detected",
          "refresh_token",
          "invalid_grant",
        ]);
        assertEquals(b!.grantId, a!.grantId);
        assert(fresh.access_token);
      },
    );

    await t.step("a client's RFC 7009 revocation: event revocation", async () => {
      const code = await putCode(deps, client);
      const tokens = await expectTokens(
        await handle(formRequest("/token", {
          grant_type: "authorization_code",
          code: code.code,
          redirect_uri: code.record.redirectUri,
          code_verifier: code.verifier,
          client_id: client.clientId,
        })),
      );
      const res = await handle(formRequest("/revoke", {
        token: tokens.refresh_token,
        client_id: client.clientId,
      }));
      assertEquals(res.status, 200);
      const r = (await events()).at(-1)!;
      assertEquals([r.event, r.method, r.clientId, r.outcome], [
        "revocation",
        "refresh_token",
        client.clientId,
        "ok",
      ]);
    });

    await t.step("a refused request (429) is event rate_limited", async () => {
      const code = await putCode(deps, client);
      const res = await handle(formRequest("/token", {
        grant_type: "authorization_code",
        code: code.code,
        redirect_uri: code.record.redirectUri,
        code_verifier: code.verifier,
        client_id: client.clientId,
      }));
      assertEquals(res.status, 429, "the fourth token of the minute is refused");
      await res.body?.cancel();
      const r = (await events()).at(-1)!;
      assertEquals([r.event, r.method, r.outcome], ["rate_limited", "token", "denied"]);
    });

    await t.step("consent denied, a wrong owner password, consent granted", async () => {
      deps.clock.advance(61_000);
      const pkce = await pkcePair();
      const open = async () => {
        const page = await handle(
          new Request(authorizeUrl({
            clientId: client.clientId,
            redirectUri: client.redirectUris[0]!,
            codeChallenge: pkce.challenge,
          })),
        );
        assertEquals(page.status, 200);
        return readConsentForm(await page.text(), page);
      };
      const denied = await postDecision(handle, await open(), "deny");
      assertEquals(denied.status, 303);
      const form = await open();
      const wrong = await postDecision(handle, form, "approve", "not the password");
      assertEquals(wrong.status, 401);
      const again = readConsentForm(await wrong.text(), wrong);
      const ok = await postDecision(handle, again, "approve", "correct horse battery staple");
      assertEquals(ok.status, 303);
      const found = (await events()).slice(-4).map((r) => [r.event, r.outcome, r.user]);
      assertEquals(found, [
        ["consent", "denied", null],
        ["sign_in", "wrong_password", "owner"],
        ["sign_in", "ok", "owner"],
        ["consent", "ok", "owner"],
      ]);
    });
  } finally {
    deps.kv.close();
  }
});

Deno.test("audit trail: a call through call_tool (catalog search mode)", async (t) => {
  const alpha = modernBackend("alpha", (s) => {
    s.registerTool(
      "echo",
      { inputSchema: z.object({ text: z.string() }) },
      ({ text }) => ({ content: [{ type: "text", text }] }),
    );
  });
  const gw = await serveGateway({
    config: {
      backends: [{ name: "alpha", url: alpha.url }],
      catalog: { mode: "search" },
      audit: { arguments: "redacted" },
    },
  });
  const ann = await token(gw.deps, { user: "corp:ann" });
  const client = await modernClient(gw, ann.token);
  try {
    await t.step("the record names the tool call_tool ran, with its arguments", async () => {
      const before = (await records(gw.deps)).length;
      await client.callTool({
        name: "call_tool",
        arguments: { name: "alpha__echo", arguments: { text: "found" } },
      });
      const r = await newRecord(gw.deps, before, (r) => r.event === "mcp");
      assertEquals([r.backend, r.method, r.tool, r.outcome], [
        "alpha",
        "tools/call",
        "alpha__echo",
        "ok",
      ]);
      assertEquals(r.arguments, { text: "found" });
    });
  } finally {
    await client.close();
    await closeAggregate(gw.deps);
    await gw.close();
    await alpha.close();
  }
});
