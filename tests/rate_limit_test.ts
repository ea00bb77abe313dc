/**
 * Rate limits (issue 5 "Abuse limits"): the batched per-isolate MCP limiter on a real KV,
 * `/token` per client (RFC 6585 §4 429 + `Retry-After`, RFC 9110 §10.2.3), MCP calls per grant
 * through the real router and a real backend, and the client IP header.
 */
import { clientIp } from "../lib/infra/client_ip.ts";
import { BatchedRateLimiter, hit, peek, rateKey } from "../lib/infra/rate_limit.ts";
import { createHandler } from "../main.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { startRawBackend } from "./_backends.ts";
import { makeDeps } from "./_helpers.ts";
import { expectOAuthError, formRequest, putClient } from "./_kv_fixtures.ts";
import { issueAccessToken } from "./_tokens.ts";

const MINUTE = 60_000;

async function counterIn(kv: Deno.Kv, subject: string, now: number): Promise<number> {
  const entry = await kv.get(rateKey("mcp", subject, MINUTE, now));
  return entry.value instanceof Deno.KvU64 ? Number(entry.value.value) : 0;
}

Deno.test("hit(): a fixed-window counter in KV", async (t) => {
  const kv = await Deno.openKv(":memory:");
  try {
    await t.step("concurrent hits are all counted; contention alone never refuses", async () => {
      const now = Date.now();
      const results = await Promise.all(
        Array.from({ length: 25 }, () => hit(kv, "test", "ip", 100, MINUTE, now)),
      );
      assert(results.every((r) => r.allowed));
      assertEquals((await peek(kv, "test", "ip", 100, MINUTE, now)).count, 25);
    });

    await t.step("past the limit: refused with Retry-After up to the window's end", async () => {
      const now = Date.now();
      for (let i = 0; i < 3; i++) assert((await hit(kv, "t2", "ip", 3, MINUTE, now)).allowed);
      const over = await hit(kv, "t2", "ip", 3, MINUTE, now);
      assertEquals(over.allowed, false);
      assert(over.retryAfterSeconds >= 1 && over.retryAfterSeconds <= 60);
    });
  } finally {
    kv.close();
  }
});

Deno.test("BatchedRateLimiter (per-isolate counts, flushed to KV with sum)", async (t) => {
  const kv = await Deno.openKv(":memory:");
  // The start of a window, so that advancing by seconds stays in it.
  let now = Math.floor(Date.now() / MINUTE) * MINUTE + 1000;
  const make = () =>
    new BatchedRateLimiter({ bucket: "mcp", limit: 5, windowMs: MINUTE, flushEvery: 100 });
  try {
    await t.step("allows `limit` events, then refuses with Retry-After to the window end", () => {
      const limiter = make();
      for (let i = 1; i <= 5; i++) assertEquals(limiter.check(kv, "g1", now).allowed, true);
      const refused = limiter.check(kv, "g1", now);
      assertEquals(refused.allowed, false);
      assertEquals(refused.retryAfterSeconds, 59);
    });

    await t.step("does not write KV on every event: once per interval or batch", async () => {
      const limiter = make();
      for (let i = 0; i < 4; i++) limiter.check(kv, "g2", now);
      await limiter.settled();
      assertEquals(await counterIn(kv, "g2", now), 1, "only the window's first event flushed");
      now += 1000;
      limiter.check(kv, "g2", now);
      await limiter.settled();
      assertEquals(await counterIn(kv, "g2", now), 5);
    });

    await t.step("a batch of flushEvery events flushes before the interval", async () => {
      const limiter = new BatchedRateLimiter({
        bucket: "mcp",
        limit: 1000,
        windowMs: MINUTE,
        flushEvery: 10,
      });
      for (let i = 0; i < 11; i++) {
        limiter.check(kv, "g3", now);
        await limiter.settled();
      }
      assertEquals(await counterIn(kv, "g3", now), 11);
    });

    await t.step("isolates share the window total through KV (approximate)", async () => {
      const a = make();
      const b = make();
      for (let i = 0; i < 3; i++) a.check(kv, "g4", now);
      await a.flush(kv, now);
      assertEquals(await counterIn(kv, "g4", now), 3);
      // b learns the shared total with its first flush (in the background).
      assertEquals(b.check(kv, "g4", now).allowed, true);
      await b.settled();
      assertEquals(b.check(kv, "g4", now).allowed, true, "3 (a) + 1 + 1 = 5");
      assertEquals(b.check(kv, "g4", now).allowed, false);
      assertEquals((await peek(kv, "mcp", "g4", 5, MINUTE, now)).count, 4);
    });

    await t.step("a new window starts from zero", () => {
      const limiter = make();
      for (let i = 0; i < 5; i++) limiter.check(kv, "g5", now);
      assertEquals(limiter.check(kv, "g5", now).allowed, false);
      assertEquals(limiter.check(kv, "g5", now + MINUTE).allowed, true);
    });

    await t.step("a KV failure keeps the count local and never throws", async () => {
      const broken = await Deno.openKv(":memory:");
      broken.close();
      const errors: unknown[] = [];
      const limiter = new BatchedRateLimiter({
        bucket: "mcp",
        limit: 2,
        windowMs: MINUTE,
        onError: (e) => errors.push(e),
      });
      assertEquals(limiter.check(broken, "g6", now).allowed, true);
      await limiter.settled();
      assertEquals(errors.length, 1);
      assertEquals(limiter.check(broken, "g6", now).allowed, true);
      assertEquals(limiter.check(broken, "g6", now).allowed, false, "pending count kept");
    });
  } finally {
    kv.close();
  }
});

Deno.test("POST /token rate limit per client", async (t) => {
  const deps = await makeDeps({
    config: {
      backends: [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }],
      rateLimits: { tokenPerClientPerMinute: 2 },
    },
  });
  const handle = createHandler(deps);
  const refresh = (clientId: string) =>
    handle(formRequest("/token", {
      grant_type: "refresh_token",
      client_id: clientId,
      refresh_token: "gwrt_not-a-real-token",
    }));
  try {
    const { client } = await putClient(deps);
    const { client: other } = await putClient(deps);

    await t.step("requests within the limit reach the grant logic", async () => {
      await expectOAuthError(await refresh(client.clientId), 400, "invalid_grant");
      await expectOAuthError(await refresh(client.clientId), 400, "invalid_grant");
    });

    await t.step("the next one is 429 temporarily_unavailable with Retry-After", async () => {
      const res = await refresh(client.clientId);
      assertMatch(res.headers.get("retry-after") ?? "", /^[1-9][0-9]*$/);
      await expectOAuthError(res, 429, "temporarily_unavailable", "too many token requests");
    });

    await t.step("another client has its own budget", async () => {
      await expectOAuthError(await refresh(other.clientId), 400, "invalid_grant");
    });

    await t.step("an unknown client is refused (401) before any counting", async () => {
      const res = await handle(formRequest("/token", {
        grant_type: "refresh_token",
        client_id: "no-such-client",
        refresh_token: "x",
      }));
      await expectOAuthError(res, 401, "invalid_client");
    });

    await t.step("the next window allows again", async () => {
      deps.clock.advance(MINUTE);
      await expectOAuthError(await refresh(client.clientId), 400, "invalid_grant");
    });
  } finally {
    deps.kv.close();
  }
});

Deno.test("MCP calls per grant (rateLimits.mcpPerGrantPerMinute)", async (t) => {
  const backend = startRawBackend(async (req) => {
    const body = await req.json();
    return Response.json({ jsonrpc: "2.0", id: body.id, result: { ok: true } });
  });
  const apiKey = "rate-limit-test-api-key";
  const deps = await makeDeps({
    config: {
      backends: [{ name: "alpha", url: backend.url }],
      rateLimits: { mcpPerGrantPerMinute: 3 },
    },
    env: { GATEWAY_API_KEY: apiKey },
  });
  const handle = createHandler(deps);
  const resource = `${deps.settings.publicUrl}/mcp/alpha`;
  const call = (token: string) =>
    handle(
      new Request(resource, {
        method: "POST",
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
        },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
      }),
    );
  try {
    const one = await issueAccessToken(deps, { scope: "mcp", resource });
    const two = await issueAccessToken(deps, { scope: "mcp", resource });

    await t.step("calls within the limit pass through", async () => {
      for (let i = 0; i < 3; i++) {
        const res = await call(one.accessToken);
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type"), "application/json");
        assertEquals((await res.json()).result, { ok: true });
      }
    });

    await t.step("the next call is 429 with Retry-After and a JSON-RPC error", async () => {
      const res = await call(one.accessToken);
      assertEquals(res.status, 429);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertMatch(res.headers.get("retry-after") ?? "", /^[1-9][0-9]*$/);
      const body = await res.json();
      assertEquals(body.jsonrpc, "2.0");
      assertEquals(body.error.code, -32000);
      assertStringIncludes(body.error.message, "rate limit exceeded");
      assertEquals(backend.requests.length, 3, "the refused call never reached the backend");
    });

    await t.step("another grant and the operator's API key are not affected", async () => {
      const res = await call(two.accessToken);
      assertEquals(res.status, 200);
      await res.body?.cancel();
      for (let i = 0; i < 5; i++) {
        const byKey = await call(apiKey);
        assertEquals(byKey.status, 200);
        await byKey.body?.cancel();
      }
    });

    await t.step("the count reaches KV (batched) and the next window allows again", async () => {
      await deps.mcpRateLimiter.flush(deps.kv, deps.now());
      assertEquals(await counterIn(deps.kv, one.grantId, deps.now()), 3);
      deps.clock.advance(MINUTE);
      const res = await call(one.accessToken);
      assertEquals(res.status, 200);
      await res.body?.cancel();
    });

    await t.step("the log line names the client and grant", () => {
      const line = deps.logs.findLast((r) => r.route === "mcp_backend");
      assert(line);
      assertEquals(line.grant_id, one.grantId);
      assertEquals(line.client_id, "test-client");
      assertEquals(line.backend, "alpha");
    });
  } finally {
    await deps.mcpRateLimiter.settled();
    deps.kv.close();
    await backend.close();
  }
});

Deno.test("client IP (clientIpHeader)", async (t) => {
  const h = (value: string) => new Headers({ "x-forwarded-for": value });
  await t.step("without a configured header, the socket address", () => {
    assertEquals(clientIp(h("203.0.113.7"), undefined, "10.0.0.1"), "10.0.0.1");
  });
  await t.step("the first address of an X-Forwarded-For list", () => {
    assertEquals(
      clientIp(h("203.0.113.7, 10.0.0.2"), "x-forwarded-for", "10.0.0.1"),
      "203.0.113.7",
    );
    assertEquals(clientIp(h("[2001:DB8::1]:443, 10.0.0.2"), "x-forwarded-for", "x"), "2001:db8::1");
    assertEquals(clientIp(h("198.51.100.4:5000"), "x-forwarded-for", "x"), "198.51.100.4");
  });
  await t.step("RFC 7239 Forwarded syntax", () => {
    const headers = new Headers({ forwarded: 'for="[2001:db8::2]:80";proto=https, for=1.2.3.4' });
    assertEquals(clientIp(headers, "forwarded", "x"), "2001:db8::2");
  });
  await t.step("a missing or malformed value falls back to the socket address", () => {
    assertEquals(clientIp(new Headers(), "x-forwarded-for", "10.0.0.1"), "10.0.0.1");
    assertEquals(clientIp(h("evil<script>"), "x-forwarded-for", "10.0.0.1"), "10.0.0.1");
    assertEquals(clientIp(h("999.1.1.1"), "x-forwarded-for", "10.0.0.1"), "10.0.0.1");
    assertEquals(clientIp(h(""), "x-forwarded-for", undefined), "unknown");
  });
});
