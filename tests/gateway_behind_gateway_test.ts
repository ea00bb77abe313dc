/**
 * Gateway behind gateway (issue 9): a second instance of this gateway, with its own OAuth
 * server, is a per-user backend of the first. The front discovers it from its 401 (RFC 9728 →
 * RFC 8414), registers itself there (RFC 7591), a signed-in user approves at the inner gateway
 * (its owner password form), and the user's calls reach the inner gateway's backends with the
 * inner gateway's own tokens: both eras on `/mcp`, and `/mcp/{backend}`. The inner access token
 * expires on the inner gateway's clock and is refreshed with rotation; disconnect revokes it
 * there (RFC 7009).
 */
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1Transport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { z } from "zod";
import { loadConnection, type OAuthSecrets } from "../lib/credentials/connections.ts";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import type { ClientRecord } from "../lib/store.ts";
import { createHandler } from "../main.ts";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { legacyBackend } from "./_aggregate_backends.ts";
import { signedInBrowser, startCredentialsSetup, userRef, userToken } from "./_credentials.ts";
import { makeDeps } from "./_helpers.ts";
import { field } from "./_http_browser.ts";
import { DEFAULT_PASSWORD } from "./_oauth_flow.ts";
import { entries } from "./_sign_in.ts";

/**
 * The inner gateway, on the IPv6 loopback address (another host name than the front's
 * 127.0.0.1, so that a browser keeps their cookies apart, as it would for two real hosts).
 */
async function startInnerGateway() {
  const alpha = legacyBackend("alpha", (s) => {
    s.registerTool("echo", { inputSchema: { text: z.string() } }, ({ text }: { text: string }) => ({
      content: [{ type: "text", text: `inner alpha: ${text}` }],
    }));
  });
  const probe = Deno.listen({ hostname: "::1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const url = `http://[::1]:${port}`;
  const deps = await makeDeps({
    config: { backends: [{ name: "alpha", url: alpha.url }], accessTokenTtlSeconds: 600 },
    env: { PUBLIC_URL: url },
  });
  const server = Deno.serve({ hostname: "::1", port, onListen: () => {} }, createHandler(deps));
  return {
    url,
    deps,
    alpha,
    async close() {
      await closeAggregate(deps);
      await server.shutdown();
      deps.kv.close();
      await alpha.close();
    },
  };
}

const textOf = (result: any) => String(result?.content?.[0]?.text ?? "");

/** A 2026-07-28 v2 SDK client of `url` with `token`. */
async function modernClient(url: string, token: string): Promise<Client> {
  const client = new Client({ name: "modern", version: "1.0.0" }, {
    versionNegotiation: { mode: "auto" },
  });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  return client;
}

Deno.test("gateway behind gateway", async (t) => {
  const inner = await startInnerGateway();
  const s = await startCredentialsSetup({
    backends: () => [{ name: "inner", url: `${inner.url}/mcp`, auth: { type: "oauth" } }],
  });
  const closers: (() => Promise<void>)[] = [];
  try {
    const ana = await userToken(s.gw.deps, userRef("ana"));
    const browser = await signedInBrowser(s.gw.url, "ana");
    const advance = (ms: number) => {
      s.gw.deps.clock.advance(ms);
      inner.deps.clock.advance(ms);
    };

    await t.step(
      "connect: the inner gateway's 401 → its metadata → registration → its owner approves",
      async () => {
        let page = await browser.navigate(`${s.gw.url}/connect/inner`);
        assertEquals(page.status, 200, page.html.slice(0, 300));
        assertEquals(`${page.url.origin}${page.url.pathname}`, `${inner.url}/authorize`);
        assertEquals(page.url.searchParams.get("resource"), `${inner.url}/mcp`);
        assertEquals(page.url.searchParams.get("scope"), "mcp"); // from the inner 401's scope
        const action = page.html.match(/<form method="post" action="([^"]*)"/)![1]!;
        page = await browser.submit(action, {
          request_id: field(page.html, "request_id"),
          csrf_token: field(page.html, "csrf_token"),
          decision: "approve",
          password: DEFAULT_PASSWORD,
        });
        assertEquals(page.status, 200, page.html.slice(0, 300));
        assertEquals(page.url.pathname, "/connections");
        assertStringIncludes(page.html, "inner is connected.");
        const clients = await entries(inner.deps.kv, ["client"]);
        assertEquals(clients.length, 1, "the front registered itself once (RFC 7591)");
        const client = clients[0]!.value as ClientRecord;
        assertEquals(client.redirectUris, [`${s.gw.url}/connect/inner/callback`]);
        assertEquals(client.tokenEndpointAuthMethod, "client_secret_basic");
      },
    );

    await t.step(
      "/mcp, 2026-07-28: the inner gateway's tools under the front's prefix, called with the inner token",
      async () => {
        const client = await modernClient(`${s.gw.url}/mcp`, ana);
        closers.push(() => client.close());
        const names = (await client.listTools()).tools.map((x: { name: string }) => x.name);
        assert(names.includes("inner__alpha__echo"), names.join());
        const result = await client.callTool({
          name: "inner__alpha__echo",
          arguments: { text: "hi" },
        });
        assertEquals(textOf(result), "inner alpha: hi");
        const sent = inner.alpha.seen.at(-1)!;
        assertEquals(sent.authorization, null, "the inner gateway forwards no client token either");
      },
    );

    await t.step("/mcp, 2025 era (v1 SDK client)", async () => {
      const client = new V1Client({ name: "legacy", version: "1.0.0" });
      await client.connect(
        new V1Transport(new URL(`${s.gw.url}/mcp`), {
          requestInit: { headers: { authorization: `Bearer ${ana}` } },
        }),
      );
      closers.push(() => client.close());
      const result = await client.callTool({
        name: "inner__alpha__echo",
        arguments: { text: "old" },
      });
      assertEquals(textOf(result), "inner alpha: old");
    });

    await t.step("/mcp/inner: the pass-through with the user's inner token", async () => {
      const passThroughToken = await userToken(s.gw.deps, userRef("ana"), {
        scope: "mcp:inner",
        resource: `${s.gw.url}/mcp/inner`,
      });
      const client = new V1Client({ name: "legacy", version: "1.0.0" });
      await client.connect(
        new V1Transport(new URL(`${s.gw.url}/mcp/inner`), {
          requestInit: { headers: { authorization: `Bearer ${passThroughToken}` } },
        }),
      );
      closers.push(() => client.close());
      const result = await client.callTool({ name: "alpha__echo", arguments: { text: "direct" } });
      assertEquals(textOf(result), "inner alpha: direct");
    });

    await t.step(
      "the inner access token expires on the inner clock: refreshed, rotation honoured",
      async () => {
        const client = await modernClient(`${s.gw.url}/mcp`, ana);
        closers.push(() => client.close());
        const tokenOf = async () => ((await loadConnection(s.gw.deps, "corp:ana", "inner"))!
          .secrets as OAuthSecrets);
        const first = await tokenOf();
        advance(601_000); // past the inner gateway's 600 s access tokens
        assertEquals(
          textOf(await client.callTool({ name: "inner__alpha__echo", arguments: { text: "1" } })),
          "inner alpha: 1",
        );
        const second = await tokenOf();
        assert(second.accessToken !== first.accessToken);
        assert(
          second.refreshToken !== first.refreshToken,
          "the inner gateway rotated the refresh token",
        );
        advance(601_000); // reusing the first refresh token now would revoke the grant
        assertEquals(
          textOf(await client.callTool({ name: "inner__alpha__echo", arguments: { text: "2" } })),
          "inner alpha: 2",
        );
        assert((await tokenOf()).refreshToken !== second.refreshToken);
      },
    );

    await t.step(
      "disconnect revokes at the inner gateway (RFC 7009): its token stops working there",
      async () => {
        const { accessToken } = (await loadConnection(s.gw.deps, "corp:ana", "inner"))!
          .secrets as OAuthSecrets;
        const direct = () =>
          fetch(`${inner.url}/mcp`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${accessToken}`,
              "content-type": "application/json",
              accept: "application/json, text/event-stream",
            },
            body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }),
          });
        const before = await direct();
        await before.body?.cancel();
        assert(before.status !== 401, `the token works before: ${before.status}`);
        const page = await browser.navigate(`${s.gw.url}/connections`);
        const done = await browser.submit(`${s.gw.url}/connections/inner/disconnect`, {
          csrf_token: field(page.html, "csrf_token"),
        });
        assertStringIncludes(done.html, "inner is disconnected.");
        const after = await direct();
        assertEquals(after.status, 401);
        await after.body?.cancel();
        assertEquals(await entries(inner.deps.kv, ["grant"]), []);
      },
    );
  } finally {
    for (const close of closers) await close().catch(() => {});
    // The inner gateway's streams end first: a pass-through GET stream of the front ends with
    // its upstream (Deno's fetch may keep a closed client's socket open, so the front would
    // otherwise wait for that client).
    await closeAggregate(inner.deps);
    await s.close();
    await inner.close();
  }
});
