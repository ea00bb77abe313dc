/**
 * KV faults (issue 5 "Faults"): with the Deno KV of a served gateway closed under it, every
 * route that needs storage answers 503 `temporarily_unavailable` with `Retry-After` (RFC 9110
 * §15.6.4, §10.2.3) in the route's standard error shape, never a 500.
 */
import { isKvFailure } from "../lib/infra/kv_errors.ts";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { startRawBackend } from "./_backends.ts";
import { serveGateway } from "./_helpers.ts";
import { authorizeUrl, pkcePair, registerClient } from "./_oauth_flow.ts";
import { issueAccessToken } from "./_tokens.ts";

async function expectOAuth503(res: Response): Promise<void> {
  assertEquals(res.status, 503, `body: ${await res.clone().text()}`);
  assertEquals(res.headers.get("content-type"), "application/json");
  assertEquals(res.headers.get("retry-after"), "5");
  const body = await res.json();
  assertEquals(body.error, "temporarily_unavailable");
  assertStringIncludes(body.error_description, "storage");
}

async function expectJsonRpc503(res: Response): Promise<void> {
  assertEquals(res.status, 503, `body: ${await res.clone().text()}`);
  assertEquals(res.headers.get("content-type"), "application/json");
  assertEquals(res.headers.get("retry-after"), "5");
  const body = await res.json();
  assertEquals(body.jsonrpc, "2.0");
  assertEquals(body.id, null);
  assertEquals(body.error.code, -32603);
  assertStringIncludes(body.error.message, "temporarily_unavailable");
}

Deno.test("KV failures surface as 503 temporarily_unavailable", async (t) => {
  const backend = startRawBackend(() => Response.json({ jsonrpc: "2.0", id: 1, result: {} }));
  const gw = await serveGateway({ config: { backends: [{ name: "alpha", url: backend.url }] } });
  const post = (path: string, body: BodyInit, type: string) =>
    fetch(`${gw.url}${path}`, { method: "POST", headers: { "content-type": type }, body });
  const form = "application/x-www-form-urlencoded";
  const mcpCall = (path: string, token: string) =>
    fetch(`${gw.url}${path}`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
  try {
    const client = await registerClient((r) => fetch(r), {}, gw.url);
    const { challenge } = await pkcePair();
    const { accessToken } = await issueAccessToken(gw.deps, {
      scope: "mcp",
      resource: `${gw.url}/mcp`,
    });
    gw.deps.kv.close();

    await t.step("POST /register", async () => {
      const res = await post(
        "/register",
        JSON.stringify({ client_name: "x", redirect_uris: ["http://127.0.0.1:3000/cb"] }),
        "application/json",
      );
      await expectOAuth503(res);
    });

    await t.step("POST /token", async () => {
      const body = new URLSearchParams({
        grant_type: "authorization_code",
        client_id: client.client_id,
        code: "some-code",
        code_verifier: "v".repeat(43),
        redirect_uri: client.redirect_uris[0]!,
      });
      await expectOAuth503(await post("/token", body, form));
    });

    await t.step("POST /revoke", async () => {
      const body = new URLSearchParams({ client_id: client.client_id, token: "gwrt_x" });
      await expectOAuth503(await post("/revoke", body, form));
    });

    await t.step("GET /authorize", async () => {
      const url = authorizeUrl({
        baseUrl: gw.url,
        clientId: client.client_id,
        redirectUri: client.redirect_uris[0]!,
        codeChallenge: challenge,
      });
      await expectOAuth503(await fetch(url));
    });

    await t.step("POST /mcp/alpha (JSON-RPC shape)", async () => {
      await expectJsonRpc503(await mcpCall("/mcp/alpha", accessToken));
      assertEquals(backend.requests.length, 0);
    });

    await t.step("POST /mcp (JSON-RPC shape)", async () => {
      await expectJsonRpc503(await mcpCall("/mcp", accessToken));
    });

    await t.step("no 500 was answered; failures are logged without secrets", () => {
      const lines = gw.deps.logs.filter((r) => typeof r.status === "number");
      assert(lines.length >= 6);
      assert(lines.every((r) => r.status !== 500), JSON.stringify(lines));
      assert(gw.deps.logs.some((r) => r.kv_failure === true));
      assert(!JSON.stringify(gw.deps.logs).includes(accessToken));
    });
  } finally {
    await gw.deps.mcpRateLimiter.settled();
    await gw.close().catch(() => {});
    await backend.close();
  }
});

Deno.test("isKvFailure recognizes storage errors only", async (t) => {
  await t.step("a closed KV (BadResource) and transient messages", async () => {
    const kv = await Deno.openKv(":memory:");
    kv.close();
    const closed = await kv.get(["x"]).then(() => null, (e) => e);
    assert(isKvFailure(closed));
    assert(isKvFailure(new TypeError("database is locked")));
    assert(isKvFailure(new Error("write failed", { cause: new Error("quota exceeded") })));
  });
  await t.step("programming errors stay 500s", () => {
    assertEquals(isKvFailure(new TypeError("Value too large (max 65536 bytes)")), false);
    assertEquals(isKvFailure(new RangeError("bad")), false);
    assertEquals(isKvFailure("database is locked"), false);
  });
});
