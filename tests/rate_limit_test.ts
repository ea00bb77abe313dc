/**
 * Rate limits (issue 5 "Abuse limits"): the batched per-isolate MCP limiter on a real KV, MCP
 * calls per grant through the real router and a real backend (RFC 6585 §4 429 + `Retry-After`,
 * RFC 9110 §10.2.3), and the client IP header (right-most entry, IPv6 /64). The OAuth endpoints'
 * limits are in endpoint_limits_test.ts.
 */
import { clientIp, ipLimitSubject } from "../lib/infra/client_ip.ts";
import { BatchedRateLimiter, hit, peek, rateKey } from "../lib/infra/rate_limit.ts";
import { createHandler } from "../main.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { startRawBackend } from "./_backends.ts";
import { makeDeps } from "./_helpers.ts";
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

    await t.step("a concurrent burst lets exactly the limit through (issue 14)", async () => {
      const now = Date.now();
      const results = await Promise.all(
        Array.from({ length: 20 }, () => hit(kv, "burst", "ip", 6, MINUTE, now)),
      );
      assertEquals(results.filter((r) => r.allowed).length, 6);
      assertEquals((await peek(kv, "burst", "ip", 6, MINUTE, now)).count, 6);
    });

    await t.step("past the limit: refused with Retry-After up to the window's end", async () => {
      const now = Date.now();
      for (let i = 0; i < 3; i++) assert((await hit(kv, "t2", "ip", 3, MINUTE, now)).allowed);
      const over = await hit(kv, "t2", "ip", 3, MINUTE, now);
      assertEquals(over.allowed, false);
      assert(over.retryAfterSeconds >= 1 && over.retryAfterSeconds <= 60);
    });

    await t.step("a subject too long for a KV key is counted under its hash", async () => {
      const now = Date.now();
      const huge = "c".repeat(5000); // e.g. a stated client_id in a 16 KiB /token form
      assert((await hit(kv, "t3", huge, 2, MINUTE, now)).allowed);
      assert((await hit(kv, "t3", huge, 2, MINUTE, now)).allowed);
      assertEquals((await hit(kv, "t3", huge, 2, MINUTE, now)).allowed, false);
      assertEquals((await peek(kv, "t3", "c".repeat(4999), 2, MINUTE, now)).count, 0);
      assertMatch(String(rateKey("t3", huge, MINUTE, now)[2]), /^sha256:[0-9a-f]{64}$/);
    });
  } finally {
    kv.close();
  }
});

Deno.test("/token per-IP limit over real HTTP: a burst of 20 lets exactly 6 through", async () => {
  const deps = await makeDeps({
    config: {
      backends: [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }],
      rateLimits: { tokenPerIpPerMinute: 6 },
    },
  });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    createHandler(deps),
  );
  try {
    const responses = await Promise.all(
      Array.from({ length: 20 }, () =>
        fetch(`http://127.0.0.1:${server.addr.port}/token`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: "grant_type=refresh_token&refresh_token=gwrt_unknown&client_id=nobody",
        })),
    );
    const statuses: number[] = [];
    for (const res of responses) {
      statuses.push(res.status);
      assertEquals(res.headers.get("content-type"), "application/json");
      const body = await res.json();
      if (res.status === 429) assertEquals(body.error, "temporarily_unavailable");
      else assertEquals(res.status, 401, JSON.stringify(body));
    }
    assertEquals(statuses.filter((s) => s !== 429).length, 6, statuses.join(","));
  } finally {
    await server.shutdown();
    deps.kv.close();
  }
});

Deno.test("BatchedRateLimiter (per-isolate counts, flushed to KV with sum)", async (t) => {
  const kv = await Deno.openKv(":memory:");
  // The start of a window, so that advancing by seconds stays in it.
  let now = Math.floor(Date.now() / MINUTE) * MINUTE + 1000;
  const make = () =>
    new BatchedRateLimiter({ bucket: "mcp", limit: 5, windowMs: MINUTE, flushEvery: 100 });
  try {
    await t.step(
      "allows `limit` events, then refuses with Retry-After to the window end",
      async () => {
        const limiter = make();
        for (let i = 1; i <= 5; i++) {
          assertEquals((await limiter.check(kv, "g1", now)).allowed, true);
        }
        const refused = await limiter.check(kv, "g1", now);
        assertEquals(refused.allowed, false);
        assertEquals(refused.retryAfterSeconds, 59);
      },
    );

    await t.step("does not write KV on every event: once per interval or batch", async () => {
      const limiter = make();
      for (let i = 0; i < 4; i++) await limiter.check(kv, "g2", now);
      await limiter.settled();
      assertEquals(await counterIn(kv, "g2", now), 1, "only the window's first event flushed");
      now += 1000;
      await limiter.check(kv, "g2", now);
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
        await limiter.check(kv, "g3", now);
        await limiter.settled();
      }
      assertEquals(await counterIn(kv, "g3", now), 11);
    });

    await t.step("isolates share the window total through KV (approximate)", async () => {
      const a = make();
      const b = make();
      for (let i = 0; i < 3; i++) await a.check(kv, "g4", now);
      await a.flush(kv, now);
      assertEquals(await counterIn(kv, "g4", now), 3);
      // b reads the shared total before its first event of the window.
      assertEquals((await b.check(kv, "g4", now)).allowed, true);
      await b.settled();
      assertEquals((await b.check(kv, "g4", now)).allowed, true, "3 (a) + 1 + 1 = 5");
      assertEquals((await b.check(kv, "g4", now)).allowed, false);
      assertEquals((await peek(kv, "mcp", "g4", 5, MINUTE, now)).count, 4);
    });

    await t.step("a new window starts from zero", async () => {
      const limiter = make();
      for (let i = 0; i < 5; i++) await limiter.check(kv, "g5", now);
      assertEquals((await limiter.check(kv, "g5", now)).allowed, false);
      assertEquals((await limiter.check(kv, "g5", now + MINUTE)).allowed, true);
    });

    await t.step("a burst on a second isolate waits for one read of the KV total", async () => {
      const a = make();
      const b = make();
      for (let i = 0; i < 3; i++) await a.check(kv, "g7", now);
      await a.flush(kv, now);
      const burst = await Promise.all(Array.from({ length: 5 }, () => b.check(kv, "g7", now)));
      assertEquals(burst.filter((r) => r.allowed).length, 2, "3 (a) + 2 = 5");
    });

    await t.step("option timer: a pending count reaches KV with no further event", async () => {
      const limiter = new BatchedRateLimiter({
        bucket: "mcp",
        limit: 100,
        windowMs: MINUTE,
        flushIntervalMs: 20,
        timer: true,
      });
      try {
        for (let i = 0; i < 5; i++) await limiter.check(kv, "g8", now);
        await limiter.settled();
        assertEquals(await counterIn(kv, "g8", now), 1, "only the first event flushed at once");
        const deadline = Date.now() + 10_000;
        while (await counterIn(kv, "g8", now) < 5 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 10));
        }
        assertEquals(await counterIn(kv, "g8", now), 5);
        await limiter.settled();
      } finally {
        limiter.close();
      }
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
      assertEquals((await limiter.check(broken, "g6", now)).allowed, true);
      await limiter.settled();
      assertEquals(errors.length, 2, "the first read and the first flush failed");
      assertEquals((await limiter.check(broken, "g6", now)).allowed, true);
      assertEquals((await limiter.check(broken, "g6", now)).allowed, false, "pending count kept");
    });
  } finally {
    kv.close();
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

Deno.test("client IP (clientIpHeader, clientIpHeaderHops)", async (t) => {
  const h = (value: string) => new Headers({ "x-forwarded-for": value });
  const xff = { header: "x-forwarded-for" };
  await t.step("without a configured header, the socket address", () => {
    assertEquals(clientIp(h("203.0.113.7"), {}, "10.0.0.1"), "10.0.0.1");
  });
  await t.step("the right-most X-Forwarded-For entry: the one our proxy appended", () => {
    // The client wrote "203.0.113.7"; the proxy appended the address it saw (RFC 7239 §5.2).
    assertEquals(clientIp(h("203.0.113.7, 198.51.100.9"), xff, "10.0.0.1"), "198.51.100.9");
    assertEquals(clientIp(h("1.1.1.1, [2001:DB8::1]:443"), xff, "x"), "2001:db8::1");
    assertEquals(clientIp(h("198.51.100.4:5000"), xff, "x"), "198.51.100.4");
  });
  await t.step("clientIpHeaderHops = n: the n-th entry from the right (n proxies of ours)", () => {
    const two = { header: "x-forwarded-for", hops: 2 };
    assertEquals(clientIp(h("6.6.6.6, 203.0.113.7, 10.0.0.2"), two, "10.0.0.1"), "203.0.113.7");
    // Fewer entries than proxies: the chain was bypassed; the socket address is all we know.
    assertEquals(clientIp(h("203.0.113.7"), two, "10.0.0.1"), "10.0.0.1");
  });
  await t.step("RFC 7239 Forwarded syntax, right-most element", () => {
    const headers = new Headers({ forwarded: 'for=1.2.3.4, for="[2001:db8::2]:80";proto=https' });
    assertEquals(clientIp(headers, { header: "forwarded" }, "x"), "2001:db8::2");
  });
  await t.step("IPv6 spellings are normalised (RFC 5952), IPv4-mapped IPv6 is IPv4", () => {
    assertEquals(clientIp(h("2001:0DB8:0000:0000:0000:0000:0000:0001"), xff, "x"), "2001:db8::1");
    assertEquals(clientIp(h("2001:db8:0:0:1:0:0:1"), xff, "x"), "2001:db8::1:0:0:1");
    assertEquals(clientIp(h("::ffff:203.0.113.7"), xff, "x"), "203.0.113.7");
    assertEquals(clientIp(new Headers(), {}, "::FFFF:c000:0201"), "192.0.2.1");
  });
  await t.step("per-IP limits count an IPv6 /64 as one client", () => {
    assertEquals(ipLimitSubject("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
    assertEquals(ipLimitSubject("2001:db8:1:2:bbbb:cccc:dddd:eeee"), "2001:db8:1:2::/64");
    assertEquals(ipLimitSubject("198.51.100.4"), "198.51.100.4");
  });
  await t.step("a missing or malformed value falls back to the socket address", () => {
    assertEquals(clientIp(new Headers(), xff, "10.0.0.1"), "10.0.0.1");
    assertEquals(clientIp(h("evil<script>"), xff, "10.0.0.1"), "10.0.0.1");
    assertEquals(clientIp(h("999.1.1.1"), xff, "10.0.0.1"), "10.0.0.1");
    assertEquals(clientIp(h(""), xff, undefined), "unknown");
  });
});

Deno.test("per-IP limits behind an appending proxy (clientIpHeader)", async (t) => {
  const deps = await makeDeps({
    config: {
      backends: [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }],
      clientIpHeader: "x-forwarded-for",
      rateLimits: { registerPerIpPerHour: 3 },
    },
  });
  const handle = createHandler(deps);
  const register = (forwardedFor: string) =>
    handle(
      new Request("http://localhost:8000/register", {
        method: "POST",
        headers: { "content-type": "application/json", "x-forwarded-for": forwardedFor },
        body: JSON.stringify({
          redirect_uris: ["http://127.0.0.1:3000/callback"],
          token_endpoint_auth_method: "none",
        }),
      }),
    );
  try {
    await t.step("a forged first entry does not buy a fresh limit (RFC 7239 §7.4)", async () => {
      for (let i = 0; i < 3; i++) {
        const res = await register(`203.0.113.${i}, 198.51.100.9`);
        assertEquals(res.status, 201);
        await res.body?.cancel();
      }
      const res = await register("203.0.113.99, 198.51.100.9");
      assertEquals(res.status, 429);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals((await res.json()).error, "temporarily_unavailable");
    });
    await t.step("addresses of one IPv6 /64 share a limit", async () => {
      for (let i = 1; i <= 3; i++) {
        const res = await register(`2001:db8:7:7::${i}`);
        assertEquals(res.status, 201);
        await res.body?.cancel();
      }
      const res = await register("2001:DB8:7:7:ffff:ffff:ffff:ffff");
      assertEquals(res.status, 429);
      await res.body?.cancel();
      const other = await register("2001:db8:7:8::1");
      assertEquals(other.status, 201, "the next /64 is another client");
      await other.body?.cancel();
    });
  } finally {
    deps.kv.close();
  }
});
