/**
 * Discovery as real MCP clients do it (MCP 2025-11-25 Authorization §Authorization Server
 * Metadata Discovery; RFC 9728 §3): the official SDK clients, v1 and v2, find the gateway
 * through the RFC 8414 document alone — `/.well-known/openid-configuration` is a 404, the
 * gateway being no OpenID Provider — and complete the authorization. A client that only finds
 * the root-form protected resource metadata gets `resource` = `PUBLIC_URL` (RFC 9728 §3.3),
 * sends it (RFC 8707), and its token works on `/mcp` and every `/mcp/<backend>` its scopes
 * allow.
 */
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1Transport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError as V1Unauthorized } from "@modelcontextprotocol/sdk/client/auth.js";
import {
  Client,
  StreamableHTTPClientTransport,
  UnauthorizedError,
} from "@modelcontextprotocol/client";
import { MemoryOAuthProvider } from "./_memory_oauth_provider.ts";
import { z } from "zod";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { legacyBackend } from "./_aggregate_backends.ts";
import { serveGateway } from "./_helpers.ts";
import {
  authorizeCode,
  DEFAULT_PASSWORD,
  pkcePair,
  postDecision,
  readConsentForm,
  registerClient,
} from "./_oauth_flow.ts";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { sha256Hex } from "../lib/infra/crypto.ts";
import type { GrantRecord, TokenRecord } from "../lib/store.ts";

const CALLBACK = "http://127.0.0.1:53682/callback";

/** The test's OAuth client provider. */
const memoryProvider = () => new MemoryOAuthProvider(CALLBACK, "Discovery test", "discovery-state");

/** `fetch` that notes `<path> <status>` of every answer. */
function loggingFetch(log: string[], inner: typeof fetch = fetch): typeof fetch {
  return async (input, init) => {
    const res = await inner(input, init);
    const url = new URL(input instanceof Request ? input.url : String(input));
    log.push(`${url.pathname} ${res.status}`);
    return res;
  };
}

/** The owner approves on the consent page (the test plays the browser); returns the code. */
async function approve(gwUrl: string, url: URL): Promise<URL> {
  const page = await fetch(url);
  assertEquals(page.status, 200);
  assertMatch(page.headers.get("content-type") ?? "", /^text\/html/);
  const html = await page.text();
  assertStringIncludes(html, "Discovery test");
  const form = readConsentForm(html, page);
  const decision = await postDecision(
    (r) => fetch(r, { redirect: "manual" }),
    form,
    "approve",
    DEFAULT_PASSWORD,
    gwUrl,
  );
  await decision.body?.cancel();
  assertEquals(decision.status, 303);
  const redirect = new URL(decision.headers.get("location")!);
  assertEquals(redirect.searchParams.get("iss"), gwUrl);
  return redirect;
}

function echoBackend(name: string) {
  return legacyBackend(name, (s) => {
    s.registerTool("echo", { inputSchema: { text: z.string() } }, ({ text }: { text: string }) => ({
      content: [{ type: "text", text: `${name}:${text}` }],
    }));
  });
}

Deno.test({
  name: "discovery by the SDK clients: RFC 8414 only, root-form metadata → resource = origin",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const alpha = echoBackend("alpha");
    const beta = echoBackend("beta");
    const gw = await serveGateway({
      config: { backends: [{ name: "alpha", url: alpha.url }, { name: "beta", url: beta.url }] },
    });
    const mcpUrl = new URL(`${gw.url}/mcp`);
    const grantOf = async (accessToken: string) => {
      const hash = await sha256Hex(accessToken);
      const token = (await gw.deps.kv.get<TokenRecord>(["access", hash])).value!;
      return (await gw.deps.kv.get<GrantRecord>(["grant", token.grantId])).value!;
    };
    try {
      await t.step(
        "v1 client: RFC 8414 document found first, openid-configuration never needed",
        async () => {
          const log: string[] = [];
          const provider = memoryProvider();
          const options = { authProvider: provider, fetch: loggingFetch(log) };
          const transport = new V1Transport(mcpUrl, options);
          let error: unknown;
          await new V1Client({ name: "v1", version: "1" }).connect(transport).catch((e: unknown) =>
            error = e
          );
          assert(error instanceof V1Unauthorized, `401 first, got ${error}`);
          assert(log.includes("/.well-known/oauth-protected-resource/mcp 200"), log.join(", "));
          assert(log.includes("/.well-known/oauth-authorization-server 200"), log.join(", "));
          assert(!log.some((l) => l.includes("openid-configuration")), log.join(", "));
          assertEquals(provider.authorizationUrl?.searchParams.get("resource"), mcpUrl.href);
          const callback = await approve(gw.url, provider.authorizationUrl!);
          await transport.finishAuth(callback.searchParams.get("code")!);
          assertMatch(provider.savedTokens.access_token, /^gwat_/);
          const client = new V1Client({ name: "v1", version: "1" });
          await client.connect(new V1Transport(mcpUrl, options));
          try {
            const { tools } = await client.listTools();
            assertEquals(tools.map((x: { name: string }) => x.name).sort(), [
              "alpha__echo",
              "beta__echo",
            ]);
          } finally {
            await client.close();
          }
        },
      );

      await t.step("v2 client (modern): same discovery, completes auth, calls a tool", async () => {
        const log: string[] = [];
        const provider = memoryProvider();
        const options = { authProvider: provider, fetch: loggingFetch(log) };
        const make = () =>
          new Client({ name: "v2", version: "2" }, { versionNegotiation: { mode: "auto" } });
        const transport = new StreamableHTTPClientTransport(mcpUrl, options);
        let error: unknown;
        await make().connect(transport).catch((e: unknown) => error = e);
        assert(error instanceof UnauthorizedError, `401 first, got ${error}`);
        assert(log.includes("/.well-known/oauth-authorization-server 200"), log.join(", "));
        assert(!log.some((l) => l.includes("openid-configuration")), log.join(", "));
        const callback = await approve(gw.url, provider.authorizationUrl!);
        await transport.finishAuth(callback.searchParams);
        assertMatch(provider.savedTokens.access_token, /^gwat_/);
        const client = make();
        await client.connect(new StreamableHTTPClientTransport(mcpUrl, options));
        try {
          assertEquals(client.getProtocolEra(), "modern");
          const result = await client.callTool({ name: "beta__echo", arguments: { text: "hi" } });
          assertEquals((result.content as { text: string }[])[0]?.text, "beta:hi");
        } finally {
          await client.close();
        }
      });

      await t.step(
        "v1 client that finds only the root metadata: resource = origin, token works on /mcp and /mcp/beta",
        async () => {
          // A client that reads neither the challenge's resource_metadata nor the path form
          // (as 2025-06-18-era clients did) falls back to the root document.
          const rootOnly: typeof fetch = async (input, init) => {
            const url = new URL(input instanceof Request ? input.url : String(input));
            if (url.pathname === "/.well-known/oauth-protected-resource/mcp") {
              return new Response("not found", { status: 404 });
            }
            const res = await fetch(input, init);
            if (res.status !== 401) return res;
            const headers = new Headers(res.headers);
            headers.set("www-authenticate", 'Bearer error="invalid_token"');
            return new Response(res.body, { status: 401, headers });
          };
          const log: string[] = [];
          const provider = memoryProvider();
          const options = { authProvider: provider, fetch: loggingFetch(log, rootOnly) };
          const transport = new V1Transport(mcpUrl, options);
          let error: unknown;
          await new V1Client({ name: "v1", version: "1" }).connect(transport).catch((e: unknown) =>
            error = e
          );
          assert(error instanceof V1Unauthorized, `401 first, got ${error}`);
          assert(log.includes("/.well-known/oauth-protected-resource 200"), log.join(", "));
          assertEquals(provider.authorizationUrl?.searchParams.get("resource"), gw.url);
          const callback = await approve(gw.url, provider.authorizationUrl!);
          await transport.finishAuth(callback.searchParams.get("code")!);
          const token = provider.savedTokens.access_token;
          assertEquals((await grantOf(token)).resource, gw.url);

          const client = new V1Client({ name: "v1", version: "1" });
          await client.connect(new V1Transport(mcpUrl, options));
          try {
            const result = await client.callTool({ name: "alpha__echo", arguments: { text: "a" } });
            assertEquals((result.content as { text: string }[])[0]?.text, "alpha:a");
          } finally {
            await client.close();
          }
          const direct = new V1Client({ name: "v1", version: "1" });
          await direct.connect(
            new V1Transport(new URL(`${gw.url}/mcp/beta`), {
              requestInit: { headers: { authorization: `Bearer ${token}` } },
            }),
          );
          try {
            const result = await direct.callTool({ name: "echo", arguments: { text: "b" } });
            assertEquals((result.content as { text: string }[])[0]?.text, "beta:b");
          } finally {
            await direct.close();
          }
        },
      );

      await t.step(
        "a token for the origin is still bound by its scopes: mcp:alpha → 403 on /mcp/beta",
        async () => {
          const fetchLike = (r: Request) => fetch(r, { redirect: "manual" });
          const client = await registerClient(fetchLike, { client_name: "Discovery test" }, gw.url);
          const { verifier, challenge } = await pkcePair();
          const { code } = await authorizeCode(fetchLike, {
            baseUrl: gw.url,
            clientId: client.client_id,
            redirectUri: client.redirect_uris[0]!,
            codeChallenge: challenge,
            scope: "mcp:alpha",
            resource: `${gw.url}/`,
          });
          const res = await fetch(`${gw.url}/token`, {
            method: "POST",
            body: new URLSearchParams({
              grant_type: "authorization_code",
              code,
              redirect_uri: client.redirect_uris[0]!,
              client_id: client.client_id,
              code_verifier: verifier,
              resource: gw.url,
            }),
          });
          assertEquals(res.status, 200);
          assertEquals(res.headers.get("content-type"), "application/json");
          const body = await res.json();
          assertEquals(body.scope, "mcp:alpha");
          assertEquals((await grantOf(body.access_token)).resource, gw.url);
          const init = (accept: string) => ({
            method: "POST",
            headers: {
              authorization: `Bearer ${body.access_token}`,
              "content-type": "application/json",
              accept,
            },
            body: JSON.stringify({
              jsonrpc: "2.0",
              id: 1,
              method: "initialize",
              params: {
                protocolVersion: "2025-11-25",
                capabilities: {},
                clientInfo: { name: "t", version: "1" },
              },
            }),
          });
          const denied = await fetch(
            `${gw.url}/mcp/beta`,
            init("application/json, text/event-stream"),
          );
          assertEquals(denied.status, 403);
          assertStringIncludes(
            denied.headers.get("www-authenticate") ?? "",
            'error="insufficient_scope"',
          );
          assertStringIncludes(denied.headers.get("www-authenticate") ?? "", 'scope="mcp:beta"');
          await denied.body?.cancel();
          const allowed = await fetch(
            `${gw.url}/mcp/alpha`,
            init("application/json, text/event-stream"),
          );
          assertEquals(allowed.status, 200);
          await allowed.body?.cancel();
        },
      );
    } finally {
      await closeAggregate(gw.deps);
      await gw.close();
      await alpha.close();
      await beta.close();
    }
  },
});
