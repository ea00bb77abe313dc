import { assertEquals } from "./_assert.ts";
import { exposedName, splitName } from "../lib/mcp/aggregate/naming.ts";
import { unwrapUri, wrapContentUris, wrapUri } from "../lib/mcp/aggregate/uri.ts";

Deno.test("aggregate naming", async (t) => {
  await t.step("names are always prefixed backend__name", () => {
    assertEquals(exposedName("alpha", "echo"), "alpha__echo");
    assertEquals(exposedName("my-api", "get_user"), "my-api__get_user");
  });
  await t.step("a name over 64 characters or with other characters is left out", () => {
    assertEquals(exposedName("alpha", "x".repeat(57)), "alpha__" + "x".repeat(57));
    assertEquals(exposedName("alpha", "x".repeat(58)), null);
    assertEquals(exposedName("alpha", "has space"), null);
    assertEquals(exposedName("alpha", "dots.are.out"), null);
    assertEquals(exposedName("alpha", "ünï"), null);
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
  await t.step("every exposed name splits back to its parts", () => {
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
