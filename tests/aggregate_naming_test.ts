import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { sha256HexSync } from "../lib/infra/crypto.ts";
import { CLASHING } from "./_names.ts";
import {
  EXPOSED_NAME,
  exposedName,
  looksShortened,
  plainName,
  shortenedName,
  splitName,
} from "../lib/mcp/aggregate/naming.ts";
import { unwrapUri, wrapContentUris, wrapUri } from "../lib/mcp/aggregate/uri.ts";

Deno.test("aggregate naming", async (t) => {
  await t.step("names are always prefixed backend__name", () => {
    assertEquals(exposedName("alpha", "echo"), "alpha__echo");
    assertEquals(exposedName("my-api", "get_user"), "my-api__get_user");
  });
  await t.step("a name that fits stays as is, up to 64 characters", () => {
    assertEquals(exposedName("alpha", "x".repeat(57)), "alpha__" + "x".repeat(57));
    assertEquals(plainName("alpha", "x".repeat(58)), null);
  });
  await t.step(
    "a name too long or with other characters is shortened to 64 valid characters",
    () => {
      for (const name of ["x".repeat(58), "has space", "dots.are.out", "ünï", "a/b", "", "🚀"]) {
        const short = exposedName("alpha", name);
        assertMatch(short, /^alpha__[A-Za-z0-9_-]*--[0-9a-f]{10}$/, name);
        assert(EXPOSED_NAME.test(short) && short.length <= 64, short);
        assertEquals(short, shortenedName("alpha", name));
      }
      assertEquals(exposedName("alpha", "dots.are.out").startsWith("alpha__dots_are_out--"), true);
      assertEquals(exposedName("a".repeat(40), "y".repeat(100)).length, 64);
    },
  );
  await t.step("shortening is deterministic (the same on every isolate and restart)", () => {
    // Pinned: a change of the scheme would rename tools under every client's feet.
    assertEquals(
      shortenedName("alpha", "x".repeat(60)),
      "alpha__" + "x".repeat(45) + "--" +
        sha256HexSync("x".repeat(60)).slice(0, 10),
    );
    assertEquals(shortenedName("alpha", "a.b"), shortenedName("alpha", "a.b"));
  });
  await t.step("a name that looks shortened, or is a rename's target, is never shown as is", () => {
    const lookalike = "x--0123456789";
    assert(looksShortened(lookalike));
    assertEquals(plainName("alpha", lookalike), null);
    assert(exposedName("alpha", lookalike) !== `alpha__${lookalike}`);
    assertEquals(
      exposedName("alpha", "code_search", new Set(["code_search"])),
      shortenedName("alpha", "code_search"),
    );
  });
  await t.step(
    "adversarial names never collide: plain, shortened and lookalikes stay apart",
    () => {
      const long = "z".repeat(70);
      const names = [
        "echo",
        long,
        // the shortened form of `long`, minus the prefix, offered as a plain name
        shortenedName("alpha", long).slice("alpha__".length),
        // same 45-character head as `long`, another tail
        "z".repeat(69) + "y",
        "z".repeat(45),
        "zz.zz",
        "zz_zz",
        "zz-zz",
        "a__b",
        "a___b",
        "_",
        "-",
      ];
      const exposed = names.map((n) => exposedName("alpha", n));
      assertEquals(new Set(exposed).size, names.length, exposed.join("\n"));
      for (const e of exposed) assert(EXPOSED_NAME.test(e), e);
    },
  );
  await t.step("seeded random names: valid, unique, stable", () => {
    let seed = 42;
    // mulberry32: a small seeded PRNG with 32-bit integer arithmetic.
    const next = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let r = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
      return (r ^ (r >>> 14)) >>> 0;
    };
    const alphabet = "ab_-.Z9é/ --0123456789abcdef";
    const names = new Set<string>();
    while (names.size < 3000) {
      const length = next() % 90;
      let n = "";
      for (let i = 0; i < length; i++) n += alphabet[next() % alphabet.length];
      names.add(n);
    }
    const exposed = [...names].map((n) => exposedName("b-1", n));
    assertEquals(new Set(exposed).size, names.size);
    for (const e of exposed) assert(EXPOSED_NAME.test(e) && splitName(e)?.backend === "b-1", e);
    assertEquals([...names].map((n) => exposedName("b-1", n)), exposed);
  });
  await t.step("a 40-bit hash clash gives one shortened name: the catalog leaves both out", () => {
    const [a, b] = CLASHING;
    assertEquals(sha256HexSync(a).slice(0, 10), sha256HexSync(b).slice(0, 10));
    assertEquals(shortenedName("alpha", a), shortenedName("alpha", b));
  });
  await t.step("split happens on the first __ (tool names may contain __)", () => {
    assertEquals(splitName("alpha__echo"), { backend: "alpha", name: "echo" });
    assertEquals(splitName("alpha__a__b"), { backend: "alpha", name: "a__b" });
    assertEquals(splitName("alpha___x"), { backend: "alpha", name: "_x" });
  });
  await t.step("names without a prefix or a name are refused", () => {
    assertEquals(splitName("echo"), null);
    assertEquals(splitName("__echo"), null);
    assertEquals(splitName("alpha__"), null);
    assertEquals(splitName("a b__c"), null);
  });
  await t.step("every plain exposed name splits back to its parts", () => {
    for (const [b, n] of [["alpha", "echo"], ["x-1", "a__b"], ["b", "_"]] as const) {
      assertEquals(splitName(exposedName(b, n)!), { backend: b, name: n });
    }
  });
});

Deno.test("aggregate URI rewriting", async (t) => {
  await t.step("mcpgw-<backend>+<uri> round-trips exactly", () => {
    for (
      const uri of [
        "file:///notes.txt",
        "https://example.com/a?b=c#d",
        "postgres://db/table+x",
        "custom:opaque+data",
      ]
    ) {
      const wrapped = wrapUri("alpha", uri);
      assertEquals(wrapped, `mcpgw-alpha+${uri}`);
      assertEquals(unwrapUri(wrapped), { backend: "alpha", uri });
    }
  });
  await t.step("two backends with the same URI do not collide", () => {
    const a = wrapUri("alpha", "file:///x");
    const b = wrapUri("beta", "file:///x");
    assertEquals(a === b, false);
    assertEquals(unwrapUri(b)?.backend, "beta");
  });
  await t.step("templates keep their variables", () => {
    assertEquals(wrapUri("alpha", "file:///{path}"), "mcpgw-alpha+file:///{path}");
    assertEquals(unwrapUri("mcpgw-alpha+file:///docs/a.md"), {
      backend: "alpha",
      uri: "file:///docs/a.md",
    });
  });
  await t.step("a scheme lower-cased by a client still unwraps", () => {
    assertEquals(unwrapUri("MCPGW-Alpha+file:///x"), { backend: "alpha", uri: "file:///x" });
  });
  await t.step("foreign URIs are not ours", () => {
    assertEquals(unwrapUri("file:///x"), null);
    assertEquals(unwrapUri("mcpgw-+file:///x"), null);
    assertEquals(unwrapUri("mcpgw-alpha+"), null);
    assertEquals(unwrapUri("mcpgw-alpha"), null);
  });
  await t.step("resource links and embedded resources in results are rewritten", () => {
    assertEquals(
      wrapContentUris("alpha", [
        { type: "text", text: "t" },
        { type: "resource_link", uri: "file:///a", name: "a" },
        { type: "resource", resource: { uri: "file:///b", text: "b" } },
      ]),
      [
        { type: "text", text: "t" },
        { type: "resource_link", uri: "mcpgw-alpha+file:///a", name: "a" },
        { type: "resource", resource: { uri: "mcpgw-alpha+file:///b", text: "b" } },
      ],
    );
  });
});
