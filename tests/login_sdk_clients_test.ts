/**
 * The whole path of an MCP client to a team gateway, with the official SDK clients (v1 legacy
 * and v2 modern): 401 with `resource_metadata` (RFC 9728) → dynamic registration (RFC 7591) →
 * `/authorize` → sign-in at the upstream OpenID Provider (panva's oidc-provider, its login and
 * consent forms driven over HTTP) → the gateway's consent → code + PKCE at `/token` →
 * `tools/list` on `/mcp`, narrowed to the signed-in user's backends.
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
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { HttpBrowser, providerHref, signInAtIdp } from "./_http_browser.ts";
import {
  approveToCallback,
  CLIENT_CALLBACK,
  type SignInSetup,
  startSignInSetup,
} from "./_sign_in.ts";
import type { TokenRecord } from "../lib/store.ts";
import { sha256Hex } from "../lib/infra/crypto.ts";

/** The test's OAuth client provider. */
const memoryProvider = () =>
  new MemoryOAuthProvider(CLIENT_CALLBACK, "SDK sign-in test", "client-state");

/** The user's part: open the authorization URL, sign in at Corp SSO as `login`, approve. */
async function userSignsIn(s: SignInSetup, url: URL, login: string): Promise<URL> {
  assertEquals(`${url.origin}${url.pathname}`, `${s.gw.url}/authorize`);
  assertEquals(url.searchParams.get("code_challenge_method"), "S256");
  const browser = new HttpBrowser();
  const signInPage = await browser.navigate(url);
  assertEquals(signInPage.status, 200);
  assertStringIncludes(signInPage.html, "SDK sign-in test");
  const consent = await signInAtIdp(
    browser,
    await browser.navigate(providerHref(signInPage.html, "Corp SSO")),
    login,
  );
  assertEquals(consent.status, 200, consent.html.slice(0, 300));
  assertStringIncludes(consent.html, 'id="signed-in"');
  const callback = await approveToCallback(browser, consent);
  assertEquals(callback.searchParams.get("iss"), s.gw.url);
  return callback;
}

async function userOf(s: SignInSetup, accessToken: string) {
  const hash = await sha256Hex(accessToken);
  return (await s.gw.deps.kv.get<TokenRecord>(["access", hash])).value?.user?.sub;
}

Deno.test({
  name: "SDK clients through team sign-in to /mcp",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const s = await startSignInSetup();
    const mcpUrl = new URL(`${s.gw.url}/mcp`);
    try {
      await t.step(
        "v1 client (2025-11-25), user allowed for beta only: tools/list shows beta",
        async () => {
          const provider = memoryProvider();
          const first = new V1Client({ name: "v1", version: "1.0.0" });
          const transport = new V1Transport(mcpUrl, { authProvider: provider });
          let error: unknown;
          await first.connect(transport).catch((e: unknown) => error = e);
          assert(error instanceof V1Unauthorized, `401 first, got ${error}`);
          assert(provider.info?.client_id, "the SDK registered (RFC 7591)");
          const callback = await userSignsIn(s, provider.authorizationUrl!, "bob");
          await transport.finishAuth(callback.searchParams.get("code")!);
          assertMatch(provider.savedTokens.access_token, /^gwat_/);
          assertEquals(provider.savedTokens.scope, "mcp:beta");
          assertEquals(await userOf(s, provider.savedTokens.access_token), "corp:bob");
          const client = new V1Client({ name: "v1", version: "1.0.0" });
          await client.connect(new V1Transport(mcpUrl, { authProvider: provider }));
          try {
            const { tools } = await client.listTools();
            assertEquals(tools.map((x: { name: string }) => x.name), ["beta__echo"]);
          } finally {
            await client.close();
          }
        },
      );

      await t.step(
        "v2 client (2026-07-28), user allowed everything: tools/list shows both",
        async () => {
          const provider = memoryProvider();
          const make = () =>
            new Client({ name: "v2", version: "2.0.0" }, { versionNegotiation: { mode: "auto" } });
          const transport = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider });
          let error: unknown;
          await make().connect(transport).catch((e: unknown) => error = e);
          assert(error instanceof UnauthorizedError, `401 first, got ${error}`);
          const callback = await userSignsIn(s, provider.authorizationUrl!, "ana");
          await transport.finishAuth(callback.searchParams);
          assertEquals(provider.savedTokens.scope, "mcp");
          assertEquals(await userOf(s, provider.savedTokens.access_token), "corp:ana");
          const client = make();
          await client.connect(
            new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider }),
          );
          try {
            assertEquals(client.getProtocolEra(), "modern");
            const { tools } = await client.listTools();
            assertEquals(tools.map((x) => x.name).sort(), ["alpha__echo", "beta__echo"]);
            const result = await client.callTool({
              name: "alpha__echo",
              arguments: { text: "hi" },
            });
            assertEquals((result.content as { text: string }[])[0]?.text, "alpha:hi");
          } finally {
            await client.close();
          }
        },
      );
    } finally {
      await s.close();
    }
  },
});
