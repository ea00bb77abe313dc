import { assertEquals } from "./_assert.ts";
import { TokenCache } from "../lib/oauth/token_cache.ts";
import type { TokenRecord } from "../lib/store.ts";

const record = (grantId: string, expiresAt: number): TokenRecord => ({
  grantId,
  clientId: "c",
  scope: "mcp",
  resource: "http://localhost:8000/mcp",
  expiresAt,
});

Deno.test("TokenCache", async (t) => {
  await t.step("an entry lives at most ttlMs, so revocation elsewhere holds within 1 s", () => {
    const cache = new TokenCache({ ttlMs: 1000 });
    cache.set("h", record("g", 10_000_000), 0);
    assertEquals(cache.get("h", 999)?.grantId, "g");
    assertEquals(cache.get("h", 1000), undefined);
  });

  await t.step("never past the token's own expiry", () => {
    const cache = new TokenCache({ ttlMs: 1000 });
    cache.set("h", record("g", 500), 0);
    assertEquals(cache.get("h", 500), undefined);
  });

  await t.step("revoke by hash or by grant drops entries at once", () => {
    const cache = new TokenCache();
    cache.set("a", record("g1", 1e12), 0);
    cache.set("b", record("g2", 1e12), 0);
    cache.set("c", record("g2", 1e12), 0);
    cache.revoke({ tokenHashes: ["a"] });
    cache.revoke({ grantIds: ["g2"] });
    assertEquals([cache.get("a", 1), cache.get("b", 1), cache.get("c", 1)], [
      undefined,
      undefined,
      undefined,
    ]);
  });

  await t.step("negative lookups are cached too; size is bounded", () => {
    const cache = new TokenCache({ maxEntries: 2 });
    cache.set("x", null, 0);
    assertEquals(cache.get("x", 1), null);
    cache.set("y", null, 0);
    cache.set("z", null, 0);
    assertEquals(cache.get("x", 1), undefined);
  });

  await t.step("a revocation broadcast reaches another isolate's cache", async () => {
    const a = new TokenCache({ channel: new BroadcastChannel("test-revocations") });
    const b = new TokenCache({ channel: new BroadcastChannel("test-revocations") });
    b.set("h", record("g", 1e12), 0);
    b.set("k", record("other", 1e12), 0);
    a.revoke({ grantIds: ["g"] });
    for (let i = 0; i < 50 && b.get("h", 1) !== undefined; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assertEquals(b.get("h", 1), undefined);
    assertEquals(b.get("k", 1)?.grantId, "other");
    a.close();
    b.close();
  });
});
