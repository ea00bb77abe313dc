/**
 * Logs (issue 5): one structured line per request with route, client_id, grant id, backend,
 * tool, status and latency, and never a secret (RFC 6749 §10.3/§10.5, RFC 6819 §5.1.6). A full
 * flow runs on a served gateway with the memory logger and every record is scanned for every
 * secret used.
 */
import { REDACTED, redactRecord } from "../lib/infra/log.ts";
import { assert, assertEquals } from "./_assert.ts";
import { startRawBackend } from "./_backends.ts";
import { serveGateway } from "./_helpers.ts";
import { expectTokens } from "./_kv_fixtures.ts";
import { authorizeCode, DEFAULT_PASSWORD, pkcePair, registerClient } from "./_oauth_flow.ts";

Deno.test("logs of a full flow hold identifiers and no secret", async (t) => {
  const backend = startRawBackend(async (req) => {
    const body = await req.json();
    return Response.json({ jsonrpc: "2.0", id: body.id, result: { content: [] } });
  });
  const gw = await serveGateway({ config: { backends: [{ name: "alpha", url: backend.url }] } });
  const f = (r: Request) => fetch(r, { redirect: "manual" });
  const secrets: Record<string, string> = { owner_password: DEFAULT_PASSWORD };
  const form = (fields: Record<string, string>) =>
    fetch(`${gw.url}/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(fields),
    });
  try {
    let accessToken = "";
    let grantClientId = "";
    await t.step("register, authorize, token, refresh, MCP call, revoke", async () => {
      const client = await registerClient(
        f,
        { token_endpoint_auth_method: "client_secret_post" },
        gw.url,
      );
      grantClientId = client.client_id;
      secrets.client_secret = client.client_secret;
      const { verifier, challenge } = await pkcePair();
      secrets.code_verifier = verifier;
      const resource = `${gw.url}/mcp/alpha`;
      const { code } = await authorizeCode(f, {
        baseUrl: gw.url,
        clientId: client.client_id,
        redirectUri: client.redirect_uris[0]!,
        codeChallenge: challenge,
        resource,
        scope: "mcp:alpha",
        state: "state-123",
      });
      secrets.code = code;
      const creds = { client_id: client.client_id, client_secret: client.client_secret };
      const first = await expectTokens(
        await form({
          grant_type: "authorization_code",
          code,
          code_verifier: verifier,
          redirect_uri: client.redirect_uris[0]!,
          resource,
          ...creds,
        }),
      );
      secrets.access_token_1 = first.access_token;
      secrets.refresh_token_1 = first.refresh_token;
      const second = await expectTokens(
        await form({ grant_type: "refresh_token", refresh_token: first.refresh_token, ...creds }),
      );
      secrets.access_token_2 = second.access_token;
      secrets.refresh_token_2 = second.refresh_token;
      accessToken = second.access_token;

      const mcp = await fetch(resource, {
        method: "POST",
        headers: {
          authorization: `Bearer ${accessToken}`,
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          "mcp-method": "tools/call",
          "mcp-name": "echo",
        },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 7,
          method: "tools/call",
          params: { name: "echo", arguments: { text: "hi" } },
        }),
      });
      assertEquals(mcp.status, 200);
      assertEquals(mcp.headers.get("content-type"), "application/json");
      assertEquals((await mcp.json()).id, 7);

      const revoked = await fetch(`${gw.url}/revoke`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token: second.refresh_token, ...creds }),
      });
      assertEquals(revoked.status, 200);
      assertEquals(revoked.headers.get("content-type"), "application/json");
      assertEquals(await revoked.json(), {});

      // A refused call with the revoked token is logged too.
      const refused = await fetch(resource, {
        method: "POST",
        headers: { authorization: `Bearer ${accessToken}`, "content-type": "application/json" },
        body: "{}",
      });
      assertEquals(refused.status, 401);
      await refused.body?.cancel();
    });

    await t.step("one line per request with route, method, status and latency", () => {
      const lines = gw.deps.logs.filter((r) => "route" in r && "ms" in r);
      const routes = lines.map((r) => r.route);
      for (const route of ["register", "authorize", "authorize_decision", "token", "revoke"]) {
        assert(routes.includes(route), `no line for ${route}: ${routes}`);
      }
      assertEquals(routes.filter((r) => r === "mcp_backend").length, 2);
      for (const line of lines) {
        assertEquals(typeof line.method, "string");
        assertEquals(typeof line.status, "number");
        assertEquals(typeof line.ms, "number");
      }
    });

    await t.step("client_id, grant id, backend and tool appear where known", () => {
      const token = gw.deps.logs.find((r) => r.route === "token");
      assertEquals(token?.client_id, grantClientId);
      const mcp = gw.deps.logs.find((r) => r.route === "mcp_backend" && r.status === 200);
      assert(mcp);
      assertEquals(mcp.client_id, grantClientId);
      assertEquals(typeof mcp.grant_id, "string");
      assertEquals(mcp.backend, "alpha");
      assertEquals(mcp.tool, "echo");
    });

    await t.step("no record holds any secret used in the flow", () => {
      assertEquals(Object.keys(secrets).length, 8);
      const all = gw.deps.logs.map((r) => JSON.stringify(r));
      for (const [name, secret] of Object.entries(secrets)) {
        assert(secret.length >= 16, `${name} is a real secret`);
        for (const line of all) assert(!line.includes(secret), `${name} leaked: ${line}`);
      }
    });
  } finally {
    await gw.deps.mcpRateLimiter.settled();
    await gw.close();
    await backend.close();
  }
});

Deno.test("redactRecord (the guard behind every logger)", async (t) => {
  await t.step("drops values under secret field names, at any depth", () => {
    const out = redactRecord({
      route: "token",
      client_id: "c1",
      grant_id: "g1",
      code: "abc",
      code_verifier: "v",
      client_secret: "s",
      password: "p",
      refresh_token: "r",
      nested: { Authorization: "x", cookie: "y", csrf_token: "z", list: [{ api_key: "k" }] },
    });
    assertEquals(out, {
      route: "token",
      client_id: "c1",
      grant_id: "g1",
      code: REDACTED,
      code_verifier: REDACTED,
      client_secret: REDACTED,
      password: REDACTED,
      refresh_token: REDACTED,
      nested: {
        Authorization: REDACTED,
        cookie: REDACTED,
        csrf_token: REDACTED,
        list: [{ api_key: REDACTED }],
      },
    });
  });

  await t.step("masks tokens, Bearer values, JWTs and secret query parameters in strings", () => {
    const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    const out = redactRecord({
      message: "bad gwat_AAAAbbbbCCCC and gwrt_ddddEEEE_ffff-1",
      header: "Bearer abc.def-ghi",
      basic: "Basic dXNlcjpwYXNz==",
      jwt: `token ${jwt} here`,
      url: "https://x/cb?state=s&code=SECRETCODE&iss=y",
      status: 200,
      ok: true,
    });
    assertEquals(out, {
      message: `bad ${REDACTED} and ${REDACTED}`,
      header: REDACTED,
      basic: REDACTED,
      jwt: `token ${REDACTED} here`,
      url: `https://x/cb?state=s&code=${REDACTED}&iss=y`,
      status: 200,
      ok: true,
    });
  });
});
