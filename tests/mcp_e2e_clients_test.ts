/**
 * End to end through the aggregated `/mcp`, with a token from the real OAuth flow (RFC 7591
 * registration, the owner's consent, `/token` with PKCE S256, RFC 8707 `resource` = `/mcp`):
 * a legacy client (v1 SDK, 2025-11-25) and a modern client (v2 SDK, `versionNegotiation: auto`,
 * 2026-07-28) each run every operation — tools list/call, prompts list/get, resources
 * list/read, templates list, completion — over three real backends: a legacy v1-SDK server, a
 * modern v2-SDK server and `@modelcontextprotocol/server-everything` (subprocess).
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { completable } from "@modelcontextprotocol/server";
import { z } from "zod";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { type ServedGateway, serveGateway } from "./_helpers.ts";
import { authorizeCode, pkcePair, registerClient } from "./_oauth_flow.ts";
import {
  everythingBackend,
  legacyBackend,
  modernBackend,
  type TestBackend,
} from "./_aggregate_backends.ts";

/** Runs the authorization code flow with PKCE against the served gateway for `/mcp`. */
async function oauthToken(gw: ServedGateway): Promise<string> {
  const fetchLike = (r: Request) => fetch(r, { redirect: "manual" });
  const client = await registerClient(fetchLike, { client_name: "E2E aggregate" }, gw.url);
  const pkce = await pkcePair();
  const resource = `${gw.url}/mcp`;
  const redirectUri = client.redirect_uris[0]!;
  const { code } = await authorizeCode(fetchLike, {
    baseUrl: gw.url,
    clientId: client.client_id,
    redirectUri,
    codeChallenge: pkce.challenge,
    scope: "mcp",
    resource,
    state: "s1",
  });
  const res = await fetch(`${gw.url}/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: redirectUri,
      client_id: client.client_id,
      code_verifier: pkce.verifier,
      resource,
    }),
  });
  assertEquals(res.status, 200);
  assertMatch(res.headers.get("content-type") ?? "", /^application\/json/);
  const body = await res.json();
  assertEquals(body.token_type, "Bearer");
  assertEquals(body.scope, "mcp");
  assertMatch(body.access_token, /^gwat_/);
  return body.access_token;
}

function startBackends(): { alpha: TestBackend; beta: TestBackend } {
  const alpha = legacyBackend("alpha", (s) => {
    s.registerTool(
      "echo",
      { inputSchema: { text: z.string() } },
      ({ text }: { text: string }) => ({ content: [{ type: "text", text: `alpha:${text}` }] }),
    );
    s.registerPrompt(
      "greet",
      { argsSchema: { who: z.string() } },
      ({ who }: { who: string }) => ({
        messages: [{ role: "user", content: { type: "text", text: `alpha greets ${who}` } }],
      }),
    );
    s.registerResource("notes", "file:///notes.txt", { mimeType: "text/plain" }, (uri: URL) => ({
      contents: [{ uri: uri.href, text: "alpha notes" }],
    }));
  });
  const beta = modernBackend("beta", (s) => {
    s.registerTool(
      "echo",
      { inputSchema: z.object({ text: z.string() }) },
      ({ text }) => ({ content: [{ type: "text", text: `beta:${text}` }] }),
    );
    s.registerPrompt(
      "greet",
      {
        argsSchema: z.object({
          color: completable(
            z.string(),
            (v) => ["red", "green", "blue"].filter((c) => c.startsWith(v ?? "")),
          ),
        }),
      },
      ({ color }) => ({
        messages: [{ role: "user", content: { type: "text", text: `beta likes ${color}` } }],
      }),
    );
    s.registerResource("notes", "file:///notes.txt", { mimeType: "text/plain" }, (uri) => ({
      contents: [{ uri: uri.href, text: "beta notes" }],
    }));
  });
  return { alpha, beta };
}

function texts(result: { content?: unknown }): string[] {
  return ((result.content ?? []) as { type: string; text?: string }[])
    .filter((c) => c.type === "text").map((c) => c.text!);
}

/** What both SDK clients offer (their method names agree). */
type AnyClient = V1Client | Client;

async function fullSetOfOperations(client: AnyClient): Promise<void> {
  const { tools } = await client.listTools();
  const toolNames = tools.map((t: { name: string }) => t.name);
  for (const name of ["alpha__echo", "beta__echo", "ev__echo", "ev__get-sum"]) {
    assert(toolNames.includes(name), `${name} listed in ${toolNames.join(",")}`);
  }
  assert(toolNames.every((n: string) => /^[a-zA-Z0-9_-]{1,64}$/.test(n)), "names are valid");
  assert(toolNames.every((n: string) => /^(alpha|beta|ev)__/.test(n)), "always prefixed");

  assertEquals(
    texts(await client.callTool({ name: "alpha__echo", arguments: { text: "hi" } })),
    ["alpha:hi"],
  );
  assertEquals(
    texts(await client.callTool({ name: "beta__echo", arguments: { text: "hi" } })),
    ["beta:hi"],
  );
  assertEquals(
    texts(await client.callTool({ name: "ev__echo", arguments: { message: "hello" } })),
    ["Echo: hello"],
  );
  const sum = await client.callTool({ name: "ev__get-sum", arguments: { a: 2, b: 3 } });
  assertMatch(texts(sum)[0] ?? "", /\b5\b/);

  const { prompts } = await client.listPrompts();
  const promptNames = prompts.map((p: { name: string }) => p.name);
  for (const name of ["alpha__greet", "beta__greet", "ev__simple-prompt"]) {
    assert(promptNames.includes(name), `${name} listed in ${promptNames.join(",")}`);
  }
  const pa = await client.getPrompt({ name: "alpha__greet", arguments: { who: "bob" } });
  assertEquals(pa.messages[0]!.content, { type: "text", text: "alpha greets bob" });
  const pe = await client.getPrompt({ name: "ev__simple-prompt" });
  assert(pe.messages.length > 0, "server-everything's simple prompt has messages");

  const { resources } = await client.listResources();
  const uris = resources.map((r: { uri: string }) => r.uri);
  assert(uris.includes("mcpgw-alpha+file:///notes.txt"), uris.join(","));
  assert(uris.includes("mcpgw-beta+file:///notes.txt"), uris.join(","));
  const evUri = uris.find((u: string) => u.startsWith("mcpgw-ev+demo://"));
  assert(evUri, `a server-everything resource in ${uris.join(",")}`);
  const rb = await client.readResource({ uri: "mcpgw-beta+file:///notes.txt" });
  assertEquals(rb.contents[0]!.text, "beta notes");
  const re = await client.readResource({ uri: evUri });
  assertEquals(re.contents[0]!.uri, evUri);
  assert(typeof re.contents[0]!.text === "string" && re.contents[0]!.text.length > 0);

  const { resourceTemplates } = await client.listResourceTemplates();
  const templates = resourceTemplates.map((t: { uriTemplate: string }) => t.uriTemplate);
  assert(templates.some((t: string) => t.startsWith("mcpgw-ev+demo://")), templates.join(","));

  const colors = await client.complete({
    ref: { type: "ref/prompt", name: "beta__greet" },
    argument: { name: "color", value: "gr" },
  });
  assertEquals(colors.completion.values, ["green"]);
  const departments = await client.complete({
    ref: { type: "ref/prompt", name: "ev__completable-prompt" },
    argument: { name: "department", value: "Eng" },
  });
  assertEquals(departments.completion.values, ["Engineering"]);
}

Deno.test("/mcp end to end: OAuth token, v1 and v2 clients, server-everything", async (t) => {
  const { alpha, beta } = startBackends();
  const ev = await everythingBackend();
  const gw = await serveGateway({
    config: {
      backends: [
        { name: "alpha", url: alpha.url },
        { name: "beta", url: beta.url },
        { name: "ev", url: ev.url, timeoutMs: 10_000 },
      ],
    },
  });
  const init = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
  try {
    const token = await oauthToken(gw);

    await t.step("legacy client (v1 SDK) runs every operation", async () => {
      const client = new V1Client({ name: "e2e-legacy", version: "1.0.0" });
      await client.connect(
        new V1ClientTransport(new URL(`${gw.url}/mcp`), { requestInit: init(token) }),
      );
      try {
        assertEquals(client.getServerVersion()?.name, gw.deps.config.serverName);
        await fullSetOfOperations(client);
      } finally {
        await client.close();
      }
    });

    await t.step("modern client (v2 SDK, auto negotiation) runs every operation", async () => {
      const client = new Client({ name: "e2e-modern", version: "1.0.0" }, {
        versionNegotiation: { mode: "auto" },
      });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit: init(token) }),
      );
      try {
        assertEquals(client.getProtocolEra(), "modern");
        await fullSetOfOperations(client);
      } finally {
        await client.close();
      }
    });

    await t.step(
      "server-everything's elicitation and sampling reach v1 and v2 clients (2025-era backend)",
      async () => {
        const modern = new Client({ name: "e2e-modern", version: "1.0.0" }, {
          versionNegotiation: { mode: "auto" },
          capabilities: { elicitation: { form: {} }, sampling: {} },
        });
        modern.setRequestHandler("elicitation/create", () => ({ action: "decline" }));
        modern.setRequestHandler("sampling/createMessage", () => ({
          role: "assistant",
          content: { type: "text", text: "sampled by the v2 client" },
          model: "e2e",
        }));
        await modern.connect(
          new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit: init(token) }),
        );
        const legacy = new V1Client({ name: "e2e-legacy", version: "1.0.0" }, {
          capabilities: { elicitation: {}, sampling: {} },
        });
        legacy.setRequestHandler(ElicitRequestSchema, () => ({ action: "decline" }));
        legacy.setRequestHandler(CreateMessageRequestSchema, () => ({
          role: "assistant",
          content: { type: "text", text: "sampled by the v1 client" },
          model: "e2e",
        }));
        await legacy.connect(
          new V1ClientTransport(new URL(`${gw.url}/mcp`), { requestInit: init(token) }),
        );
        try {
          for (const [client, who] of [[modern, "v2"], [legacy, "v1"]] as const) {
            const elicited = await client.callTool({
              name: "ev__trigger-elicitation-request",
              arguments: {},
            });
            assert(!elicited.isError, texts(elicited).join(" "));
            assertMatch(texts(elicited).join(" "), /User declined/);
            const sampled = await client.callTool({
              name: "ev__trigger-sampling-request",
              arguments: { prompt: "hi", maxTokens: 10 },
            });
            assert(!sampled.isError, texts(sampled).join(" "));
            assertMatch(texts(sampled).join(" "), new RegExp(`sampled by the ${who} client`));
          }
        } finally {
          await modern.close();
          await legacy.close();
        }
      },
    );

    await t.step("the log line names the tool of tools/call, never its arguments", () => {
      const calls = gw.deps.logs.filter((l) => l.route === "mcp" && l.tool === "ev__echo");
      assert(calls.length >= 2, "both clients' calls were logged with their tool");
      assert(
        gw.deps.logs.every((l) => !JSON.stringify(l).includes("hello")),
        "arguments are not logged",
      );
    });
  } finally {
    await closeAggregate(gw.deps);
    await gw.close();
    await alpha.close();
    await beta.close();
    await ev.close();
  }
});
