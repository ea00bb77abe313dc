/**
 * The backend list cache (lib/mcp/aggregate/list_cache.ts) on a real Deno KV: two caches on one
 * KV stand for two isolates of one deployment (each its own memory, one shared database), linked
 * by real BroadcastChannels.
 */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { parseConfig } from "../lib/config.ts";
import { ListCache } from "../lib/mcp/aggregate/list_cache.ts";
import { memoryLogger } from "../lib/infra/log.ts";
import { listCacheKey } from "../lib/store.ts";
import { testClock } from "./_helpers.ts";

const config = parseConfig(
  { backends: [{ name: "alpha", url: "http://127.0.0.1:9/a" }] },
  () => undefined,
);
const alpha = config.backends[0]!;

/** A fetch that counts its calls and answers `items`. */
function counter(items: unknown[] = [{ name: "echo" }]) {
  const f = () => {
    f.calls++;
    return Promise.resolve(structuredClone(items));
  };
  f.calls = 0;
  return f;
}

async function setup(ttlMs = 60_000, channelName = `lists-${crypto.randomUUID()}`) {
  const kv = await Deno.openKv(":memory:");
  const clock = testClock();
  const log = memoryLogger();
  const channels = [new BroadcastChannel(channelName), new BroadcastChannel(channelName)];
  const make = (channel?: BroadcastChannel) =>
    new ListCache({ kv, now: clock.now, ttlMs, log, channel });
  const a = make(channels[0]);
  const b = make(channels[1]);
  return {
    kv,
    clock,
    log,
    a,
    b,
    close: async () => {
      await a.close();
      await b.close();
      for (const c of channels) c.close();
      kv.close();
    },
  };
}

/** Lets a BroadcastChannel message arrive (delivered as a task). */
const tick = () => new Promise((r) => setTimeout(r, 20));

Deno.test("backend list cache", async (t) => {
  await t.step("a second list in the isolate does not reach the backend", async () => {
    const s = await setup();
    try {
      const fetch = counter();
      assertEquals(await s.a.get(alpha, "tools", fetch), [{ name: "echo" }]);
      const again = await s.a.get(alpha, "tools", fetch);
      assertEquals(again, [{ name: "echo" }]);
      assertEquals(fetch.calls, 1);
    } finally {
      await s.close();
    }
  });

  await t.step("a cold isolate reads the list from KV, not from the backend", async () => {
    const s = await setup();
    try {
      await s.a.get(alpha, "tools", counter());
      const cold = counter([{ name: "never" }]);
      assertEquals(await s.b.get(alpha, "tools", cold), [{ name: "echo" }]);
      assertEquals(cold.calls, 0);
      const meta = await s.kv.get<{ expiresAt: number }>(listCacheKey("alpha", "tools"));
      assertEquals(meta.value!.expiresAt, s.clock.now() + 60_000);
    } finally {
      await s.close();
    }
  });

  await t.step("an entry expires with its TTL (expiresAt checked on read)", async () => {
    const s = await setup();
    try {
      const fetch = counter();
      await s.a.get(alpha, "tools", fetch);
      s.clock.advance(60_001);
      await s.a.get(alpha, "tools", fetch);
      assertEquals(fetch.calls, 2, "the isolate's copy expired");
      const cold = counter();
      s.clock.advance(60_001);
      await s.b.get(alpha, "tools", cold);
      assertEquals(cold.calls, 1, "the KV copy expired too");
    } finally {
      await s.close();
    }
  });

  await t.step("list_changed drops the list here, in KV and in the other isolates", async () => {
    const s = await setup();
    try {
      await s.a.get(alpha, "tools", counter());
      await s.b.get(alpha, "tools", counter());
      s.a.invalidate("alpha", "tools");
      await tick();
      const fa = counter([{ name: "new" }]);
      const fb = counter([{ name: "new" }]);
      assertEquals(await s.a.get(alpha, "tools", fa), [{ name: "new" }]);
      assertEquals(fa.calls, 1);
      // b's own copy was dropped by the broadcast; it then finds a's fresh list in KV.
      assertEquals(await s.b.get(alpha, "tools", fb), [{ name: "new" }]);
      assertEquals(fb.calls, 0);
    } finally {
      await s.close();
    }
  });

  await t.step("a list fetched before a change is never stored after it", async () => {
    const s = await setup();
    try {
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const slow = async () => {
        await gate;
        return [{ name: "stale" }];
      };
      const pending = s.a.get(alpha, "tools", slow);
      await tick();
      s.b.invalidate("alpha", "tools");
      await tick();
      release();
      assertEquals(await pending, [{ name: "stale" }], "the caller still gets its answer");
      const fa = counter([{ name: "fresh" }]);
      assertEquals(await s.a.get(alpha, "tools", fa), [{ name: "fresh" }]);
      assertEquals(fa.calls, 1, "the broadcast kept it out of the isolate");
    } finally {
      await s.close();
    }
  });

  await t.step("without the broadcast, the KV tombstone still fails the stale write", async () => {
    const s = await setup();
    try {
      const lone = new ListCache({ kv: s.kv, now: s.clock.now, ttlMs: 60_000, log: s.log });
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const pending = s.a.get(alpha, "tools", async () => {
        await gate;
        return [{ name: "stale" }];
      });
      await tick();
      lone.invalidate("alpha", "tools");
      await lone.close();
      release();
      await pending;
      const cold = new ListCache({ kv: s.kv, now: s.clock.now, ttlMs: 60_000, log: s.log });
      const fetch = counter([{ name: "fresh" }]);
      assertEquals(await cold.get(alpha, "tools", fetch), [{ name: "fresh" }]);
      assertEquals(fetch.calls, 1, "KV held no stale list");
      await cold.close();
    } finally {
      await s.close();
    }
  });

  await t.step("concurrent misses share one fetch", async () => {
    const s = await setup();
    try {
      const fetch = counter();
      const all = await Promise.all([1, 2, 3].map(() => s.a.get(alpha, "tools", fetch)));
      assertEquals(all.length, 3);
      assertEquals(fetch.calls, 1);
    } finally {
      await s.close();
    }
  });

  await t.step("a failed fetch is not cached", async () => {
    const s = await setup();
    try {
      await assertRejects(
        () => s.a.get(alpha, "tools", () => Promise.reject(new Error("down"))),
        Error,
      );
      const fetch = counter();
      await s.a.get(alpha, "tools", fetch);
      assertEquals(fetch.calls, 1);
    } finally {
      await s.close();
    }
  });

  await t.step("a list larger than one KV value is stored in slices", async () => {
    const s = await setup();
    try {
      const big = Array.from({ length: 400 }, (_, i) => ({
        name: `tool_${i}`,
        description: "é".repeat(300),
      }));
      await s.a.get(alpha, "tools", counter(big));
      const cold = counter();
      assertEquals(await s.b.get(alpha, "tools", cold), big);
      assertEquals(cold.calls, 0);
    } finally {
      await s.close();
    }
  });

  await t.step("a backend whose URL changed misses (the config was edited)", async () => {
    const s = await setup();
    try {
      await s.a.get(alpha, "tools", counter());
      const moved = { ...alpha, url: "http://127.0.0.1:9/moved" };
      const fetch = counter();
      await s.b.get(moved, "tools", fetch);
      assertEquals(fetch.calls, 1);
    } finally {
      await s.close();
    }
  });

  await t.step("TTL 0 disables the cache", async () => {
    const s = await setup(0);
    try {
      const fetch = counter();
      await s.a.get(alpha, "tools", fetch);
      await s.a.get(alpha, "tools", fetch);
      assertEquals(fetch.calls, 2);
      assert(!s.a.enabled);
      let stored = 0;
      for await (const _ of s.kv.list({ prefix: [] })) stored++;
      assertEquals(stored, 0);
    } finally {
      await s.close();
    }
  });
});
