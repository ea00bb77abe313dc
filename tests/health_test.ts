/**
 * `GET /health`: authenticated backend status, on a real gateway with real backends (a live
 * MCP server, a dead port, a backend answering 500 and one that never answers).
 */
import { assertEquals, assertStringIncludes } from "./_assert.ts";
import { startModernBackend, startRawBackend } from "./_backends.ts";
import { serveGateway } from "./_helpers.ts";
import { issueAccessToken } from "./_tokens.ts";

const API_KEY = "health-api-key-0123456789";

function deadUrl(): string {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return `http://127.0.0.1:${port}/mcp`;
}

Deno.test("GET /health", async (t) => {
  const live = startModernBackend();
  const failing = startRawBackend(() => new Response("boom", { status: 500 }));
  let release = () => {};
  const released = new Promise<void>((r) => release = r);
  const hanging = startRawBackend((req) =>
    new Promise<Response>((resolve) => {
      const done = () => resolve(new Response(null, { status: 204 }));
      req.signal.addEventListener("abort", done, { once: true });
      released.then(done);
    })
  );
  const all = await serveGateway({
    config: {
      backends: [
        { name: "alpha", url: live.url, headers: { "x-backend-key": "alpha-secret" } },
        { name: "dead", url: deadUrl(), timeoutMs: 2000 },
        { name: "failing", url: failing.url },
        { name: "hang", url: hanging.url, timeoutMs: 150 },
      ],
    },
    env: { GATEWAY_API_KEY: API_KEY },
  });
  const healthy = await serveGateway({ config: { backends: [{ name: "alpha", url: live.url }] } });
  try {
    await t.step("401 with a Bearer challenge without credentials (RFC 6750 §3)", async () => {
      const res = await fetch(`${all.url}/health`);
      assertEquals(res.status, 401);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals((await res.json()).error, "invalid_token");
      const challenge = res.headers.get("www-authenticate") ?? "";
      assertStringIncludes(challenge, "Bearer ");
      assertStringIncludes(challenge, `resource_metadata="${all.url}/.well-known/`);
    });

    await t.step("401 invalid_token for an unknown token (RFC 6750 §3.1)", async () => {
      const res = await fetch(`${all.url}/health`, {
        headers: { authorization: "Bearer gwat_unknown" },
      });
      assertEquals(res.status, 401);
      assertEquals(res.headers.get("content-type"), "application/json");
      await res.body?.cancel();
      assertStringIncludes(res.headers.get("www-authenticate") ?? "", 'error="invalid_token"');
    });

    await t.step("401 once the token expired (injected clock)", async () => {
      const { accessToken } = await issueAccessToken(all.deps, {
        scope: "mcp",
        resource: `${all.url}/mcp`,
      });
      all.deps.clock.advance(all.deps.config.accessTokenTtlSeconds * 1000 + 1);
      const res = await fetch(`${all.url}/health`, {
        headers: { authorization: `Bearer ${accessToken}` },
      });
      assertEquals(res.status, 401);
      assertEquals(res.headers.get("content-type"), "application/json");
      await res.body?.cancel();
    });

    await t.step(
      "any live token (here one for /mcp/alpha only) lists each backend up or down",
      async () => {
        const { accessToken } = await issueAccessToken(all.deps, {
          scope: "mcp:alpha",
          resource: `${all.url}/mcp/alpha`,
        });
        const before = live.requests.length;
        const res = await fetch(`${all.url}/health`, {
          headers: { authorization: `Bearer ${accessToken}` },
        });
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type"), "application/json");
        const body = await res.json();
        assertEquals(body.status, "degraded");
        const byName = Object.fromEntries(
          body.backends.map((b: { name: string }) => [b.name, b]),
        );
        assertEquals(Object.keys(byName).sort(), ["alpha", "dead", "failing", "hang"]);
        assertEquals(byName.alpha.status, "up");
        assertEquals(typeof byName.alpha.latencyMs, "number");
        assertEquals(byName.alpha.httpStatus < 500, true);
        assertEquals(byName.dead.status, "down");
        assertEquals(byName.dead.error, "unreachable");
        assertEquals(byName.failing.status, "down");
        assertEquals(byName.failing.httpStatus, 500);
        assertEquals(byName.hang.status, "down");
        assertEquals(byName.hang.error, "timeout");
        const probe = live.requests[before]!;
        assertEquals(probe.method, "POST");
        assertEquals(probe.headers["x-backend-key"], "alpha-secret");
        assertEquals(probe.headers.authorization, undefined);
      },
    );

    await t.step("the API key works; all backends up → ok", async () => {
      const res = await fetch(`${all.url}/health`, {
        headers: { authorization: `Bearer ${API_KEY}` },
      });
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals((await res.json()).status, "degraded");
      const { accessToken } = await issueAccessToken(healthy.deps, {
        scope: "mcp",
        resource: `${healthy.url}/mcp`,
      });
      const ok = await fetch(`${healthy.url}/health`, {
        headers: { authorization: `Bearer ${accessToken}` },
      });
      assertEquals(ok.status, 200);
      assertEquals(ok.headers.get("content-type"), "application/json");
      const body = await ok.json();
      assertEquals(body.status, "ok");
      assertEquals(body.backends.length, 1);
      assertEquals(body.backends[0].status, "up");
    });
  } finally {
    release();
    await all.close();
    await healthy.close();
    all.deps.tokenCache.close();
    healthy.deps.tokenCache.close();
    for (const b of [live, failing, hanging]) await b.close();
  }
});
