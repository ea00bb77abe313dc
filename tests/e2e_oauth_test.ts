/**
 * End to end: the official MCP SDK client (v1) does the whole flow against the gateway on a
 * real port — discovery from a 401, dynamic registration, authorization (this test plays the
 * browser on the consent form), token exchange with PKCE, tools/list and tools/call on a real
 * SDK backend behind /mcp/{backend}, refresh after expiry, and revocation.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { startLegacyBackend } from "./_backends.ts";
import { MemoryOAuthProvider } from "./_memory_oauth_provider.ts";
import { serveGateway } from "./_helpers.ts";
import { DEFAULT_PASSWORD, postDecision, readConsentForm } from "./_oauth_flow.ts";

/** The test's OAuth client provider, redirecting to `redirect`. */
const testProvider = (redirect: string) =>
  new MemoryOAuthProvider(redirect, "E2E Test Client", "e2e-state");

Deno.test("end to end: SDK client through OAuth to /mcp/{backend}", async (t) => {
  const backend = startLegacyBackend();
  const gw = await serveGateway({
    config: { backends: [{ name: "alpha", url: backend.url }] },
  });
  const mcpUrl = new URL(`${gw.url}/mcp/alpha`);
  const provider = testProvider("http://127.0.0.1:53682/callback");
  const connect = async () => {
    const client = new Client({ name: "e2e", version: "1.0.0" });
    await client.connect(new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider }));
    return client;
  };

  try {
    await t.step("discovery from a 401 and dynamic registration (RFC 9728, RFC 7591)", async () => {
      const transport = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider });
      const client = new Client({ name: "e2e", version: "1.0.0" });
      let error: unknown;
      try {
        await client.connect(transport);
      } catch (e) {
        error = e;
      }
      assert(error instanceof UnauthorizedError, `expected UnauthorizedError, got ${error}`);
      assert(provider.info?.client_id, "the SDK registered a client");
      const authUrl = provider.authorizationUrl;
      assert(authUrl, "the SDK asked to open the authorization URL");
      assertEquals(authUrl.origin + authUrl.pathname, `${gw.url}/authorize`);
      assertEquals(authUrl.searchParams.get("code_challenge_method"), "S256");
      assertEquals(authUrl.searchParams.get("resource"), mcpUrl.href);

      // The owner approves on the consent page (this test plays the browser).
      const page = await fetch(authUrl);
      assertEquals(page.status, 200);
      assertMatch(page.headers.get("content-type") ?? "", /^text\/html/);
      const html = await page.text();
      assertMatch(html, /E2E Test Client/);
      const form = readConsentForm(html, page);
      const decision = await postDecision(
        (r) => fetch(r, { redirect: "manual" }),
        form,
        "approve",
        DEFAULT_PASSWORD,
        gw.url,
      );
      await decision.body?.cancel();
      assertEquals(decision.status, 303);
      const redirect = new URL(decision.headers.get("location")!);
      assertEquals(redirect.searchParams.get("state"), "e2e-state");
      assertEquals(redirect.searchParams.get("iss"), gw.url);
      const code = redirect.searchParams.get("code");
      assert(code);

      await transport.finishAuth(code);
      assertMatch(provider.savedTokens?.access_token ?? "", /^gwat_/);
      assertMatch(provider.savedTokens?.refresh_token ?? "", /^gwrt_/);
      await client.close();
    });

    await t.step("tools/list and tools/call on the backend behind /mcp/alpha", async () => {
      const client = await connect();
      const { tools } = await client.listTools();
      assert(tools.some((tool: { name: string }) => tool.name === "echo"));
      const result = await client.callTool({ name: "echo", arguments: { text: "hi there" } });
      assertEquals((result.content as { text: string }[])[0]?.text, "hi there");
      await client.close();
      const seen = backend.requests.map((r) => r.headers.authorization);
      assert(seen.every((h) => h === undefined), "the client's token never reaches the backend");
    });

    await t.step("after the access token expires, the SDK refreshes and goes on", async () => {
      const before = provider.savedTokens!;
      gw.deps.clock.advance((gw.deps.config.accessTokenTtlSeconds + 5) * 1000);
      const client = await connect();
      const result = await client.callTool({ name: "add", arguments: { a: 2, b: 3 } });
      assertEquals((result.content as { text: string }[])[0]?.text, "5");
      await client.close();
      const after = provider.savedTokens!;
      assert(after.access_token !== before.access_token, "a new access token");
      assert(after.refresh_token !== before.refresh_token, "the refresh token rotated");
    });

    await t.step("revoking the refresh token ends the grant (RFC 7009 §2.1)", async () => {
      const res = await fetch(`${gw.url}/revoke`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({
          token: provider.savedTokens!.refresh_token!,
          client_id: provider.info!.client_id,
        }),
      });
      assertEquals(res.status, 200);
      await res.body?.cancel();
      const denied = await fetch(mcpUrl, {
        method: "POST",
        headers: {
          authorization: `Bearer ${provider.savedTokens!.access_token}`,
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
        },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
      });
      assertEquals(denied.status, 401);
      assertEquals(denied.headers.get("content-type"), "application/json");
      assertMatch(denied.headers.get("www-authenticate") ?? "", /error="invalid_token"/);
      assertEquals((await denied.json()).error, "invalid_token");
    });
  } finally {
    await gw.close();
    await backend.close();
  }
});
