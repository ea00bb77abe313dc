/**
 * `GET /health`: authenticated backend status, on a real gateway with real backends (a live
 * MCP server, a dead port, a backend answering 500 and one that never answers).
 */
import { HEALTH_CACHE_MS } from "../lib/mcp/health.ts";
import { assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
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
      rateLimits: { healthPerPrincipalPerMinute: 25 },
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

    await t.step("an API key lists each backend up or down", async () => {
      const before = live.requests.length;
      const res = await fetch(`${all.url}/health`, {
        headers: { authorization: `Bearer ${API_KEY}` },
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
    });

    await t.step(
      "a token lists only the backends its scope and audience cover; others are never probed",
      async () => {
        all.deps.clock.advance(HEALTH_CACHE_MS);
        const { accessToken } = await issueAccessToken(all.deps, {
          scope: "mcp",
          resource: `${all.url}/mcp/alpha`,
        });
        const [liveBefore, failingBefore] = [live.requests.length, failing.requests.length];
        for (let i = 0; i < 20; i++) {
          const res = await fetch(`${all.url}/health`, {
            headers: { authorization: `Bearer ${accessToken}` },
          });
          assertEquals(res.status, 200);
          assertEquals(res.headers.get("content-type"), "application/json");
          const body = await res.json();
          assertEquals(body.backends.map((b: { name: string }) => b.name), ["alpha"]);
          assertEquals(body.status, "ok");
        }
        assertEquals(failing.requests.length, failingBefore, "out of scope: never probed");
        assertEquals(live.requests.length, liveBefore + 1, "one probe, cached for a few seconds");
        const two = await issueAccessToken(all.deps, {
          scope: "mcp:alpha mcp:failing",
          resource: `${all.url}/mcp`,
        });
        const res = await fetch(`${all.url}/health`, {
          headers: { authorization: `Bearer ${two.accessToken}` },
        });
        assertEquals(res.status, 200);
        const names = (await res.json()).backends.map((b: { name: string }) => b.name);
        assertEquals(names, ["alpha", "failing"]);
      },
    );

    await t.step("rate-limited per caller: 429 with Retry-After", async () => {
      const { accessToken } = await issueAccessToken(all.deps, {
        scope: "mcp:alpha",
        resource: `${all.url}/mcp/alpha`,
      });
      const call = () =>
        fetch(`${all.url}/health`, { headers: { authorization: `Bearer ${accessToken}` } });
      for (let i = 0; i < 25; i++) {
        const res = await call();
        assertEquals(res.status, 200);
        await res.body?.cancel();
      }
      const res = await call();
      assertEquals(res.status, 429);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertMatch(res.headers.get("retry-after") ?? "", /^[1-9][0-9]*$/);
      assertEquals((await res.json()).error, "temporarily_unavailable");
      const byKey = await fetch(`${all.url}/health`, {
        headers: { authorization: `Bearer ${API_KEY}` },
      });
      assertEquals(byKey.status, 200, "another caller has its own budget");
      await byKey.body?.cancel();
    });

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
