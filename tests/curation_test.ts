/**
 * Curation rules (lib/mcp/curation.ts) and their config checks (lib/config.ts): globs, deny over
 * allow, renames both ways, descriptions, pinned defaults, per-user globs, and start-time errors
 * that name the field.
 */
import { assert, assertEquals, assertMatch, assertThrows } from "./_assert.ts";
import { ConfigError, parseConfig } from "../lib/config.ts";
import { backendRules, globMatcher, hasRules, userAllows } from "../lib/mcp/curation.ts";
import { shortenedName } from "../lib/mcp/aggregate/naming.ts";

const env = () => undefined;

function backend(rules: Record<string, unknown>, name = "gh") {
  return parseConfig({ backends: [{ name, url: "https://gh.example/mcp", ...rules }] }, env)
    .backends[0]!;
}

Deno.test("curation globs", async (t) => {
  await t.step("* matches any run, ? one character, the whole name must match", () => {
    const m = globMatcher(["search_*", "get_?"]);
    assert(m("search_code") && m("search_") && m("get_x"));
    assert(!m("xsearch_code") && !m("get_xy") && !m("get_"));
  });
  await t.step("other characters match themselves (no regex injection)", () => {
    const m = globMatcher(["a.b", "(x)+", "[y]"]);
    assert(m("a.b") && m("(x)+") && m("[y]"));
    assert(!m("axb") && !m("xx") && !m("y"));
  });
  await t.step("resource globs span slashes", () => {
    const m = globMatcher(["repo://*"]);
    assert(m("repo://a/b/c.md") && !m("file:///repo://x"));
  });
  await t.step("no globs match nothing; * matches everything", () => {
    assert(!globMatcher([])("x"));
    assert(globMatcher(["*"])(""));
  });
});

Deno.test("curation rules of a backend", async (t) => {
  const gh = backend({
    tools: {
      allow: ["search_*", "get_*", "list_*"],
      deny: ["get_secret*"],
      rename: { search_code: "code_search", list_a: "list_b" },
      describe: { get_issue: "Read one issue by number." },
      defaults: { search_code: { per_page: 20, sort: { by: "stars" } } },
    },
    prompts: { deny: ["*"] },
    resources: { allow: ["repo://*"] },
  });
  const rules = backendRules(gh);

  await t.step("deny wins over allow; what allow does not name is out", () => {
    assert(rules.toolAllowed("search_code") && rules.toolAllowed("get_issue"));
    assert(!rules.toolAllowed("get_secret_key"), "denied although allowed");
    assert(!rules.toolAllowed("delete_repo"), "not allowed");
    assert(!rules.promptAllowed("anything"));
    assert(rules.resourceAllowed("repo://x/y") && !rules.resourceAllowed("file:///etc/passwd"));
  });

  await t.step("a rename is undone on call; the original name no longer reaches the tool", () => {
    assertEquals(rules.shownName("search_code"), "code_search");
    assertEquals(rules.originalOf("code_search"), "search_code");
    assertEquals(rules.originalOf("search_code"), null);
    assertEquals(rules.originalOf("get_issue"), "get_issue");
    assertEquals(rules.exposedName("search_code"), "gh__code_search");
  });

  await t.step("a tool named like another tool's new name is shortened on /mcp", () => {
    // list_a is renamed to list_b: the backend's own list_b must not answer to gh__list_b.
    assertEquals(rules.exposedName("list_a"), "gh__list_b");
    assertEquals(rules.exposedName("list_b"), shortenedName("gh", "list_b"));
    assertEquals(rules.originalOf("list_b"), "list_a");
  });

  await t.step("describe replaces the description; pinned arguments leave the schema", () => {
    const issue = rules.present({ name: "get_issue", description: "old" }, "gh__get_issue");
    assertEquals(issue.description, "Read one issue by number.");
    const search = rules.present({
      name: "search_code",
      description: "Search code",
      inputSchema: {
        type: "object",
        properties: { q: { type: "string" }, per_page: { type: "number" }, sort: {} },
        required: ["q", "per_page"],
      },
    }, "gh__code_search");
    assertEquals(search.name, "gh__code_search");
    assertEquals(search.description, "Search code");
    assertEquals(search.inputSchema, {
      type: "object",
      properties: { q: { type: "string" } },
      required: ["q"],
    });
  });

  await t.step("pinned defaults are injected over the client's values, never overridden", () => {
    assertEquals(rules.withDefaults("search_code", { q: "x", per_page: 99 }), {
      q: "x",
      per_page: 20,
      sort: { by: "stars" },
    });
    assertEquals(rules.withDefaults("search_code", undefined), {
      per_page: 20,
      sort: { by: "stars" },
    });
    const args = { q: "y" };
    assert(rules.withDefaults("get_issue", args) === args, "no defaults: the same object");
    const injected = rules.withDefaults("search_code", {})!;
    (injected.sort as { by: string }).by = "changed";
    assertEquals(rules.withDefaults("search_code", {})!.sort, { by: "stars" });
  });

  await t.step("a backend without rules is not curated", () => {
    assert(hasRules(gh));
    assert(!hasRules(backend({})));
    assert(!hasRules(backend({ tools: {}, prompts: {}, resources: { deny: [] } })));
  });
});

Deno.test("per-user tool globs", async (t) => {
  await t.step("undefined globs narrow nothing", () => {
    assert(userAllows(undefined, "gh__anything"));
  });
  await t.step("globs match the exposed /mcp name", () => {
    const globs = ["docs__*", "gh__get_issue"];
    assert(userAllows(globs, "docs__search") && userAllows(globs, "gh__get_issue"));
    assert(!userAllows(globs, "gh__get_issues") && !userAllows(globs, "get_issue"));
    assert(!userAllows([], "docs__search"));
  });
});

Deno.test("curation config is checked at start, naming the field", async (t) => {
  const fails = (rules: Record<string, unknown>, name = "gh") =>
    assertThrows(() => backend(rules, name), ConfigError).message;

  await t.step("a rename that breaks ^[A-Za-z0-9_-]{1,64}$ names the field", () => {
    assertMatch(
      fails({ tools: { rename: { search_code: "code search" } } }),
      /backends\[0\]\.tools\.rename\.search_code: the advertised name "gh__code search" must match/,
    );
    assertMatch(
      fails({ tools: { rename: { a: "x".repeat(61) } } }),
      /backends\[0\]\.tools\.rename\.a: .*1 to 60 letters/,
    );
    assertMatch(fails({ tools: { rename: { a: "" } } }), /backends\[0\]\.tools\.rename\.a/);
  });
  await t.step("a rename may not end like a shortened name, nor be taken twice", () => {
    assertMatch(
      fails({ tools: { rename: { a: "x--0123456789" } } }),
      /tools\.rename\.a: "x--0123456789" ends like a shortened name/,
    );
    assertMatch(
      fails({ tools: { rename: { a: "same", b: "same" } } }),
      /tools\.rename\.b: "same" is also the new name of "a"/,
    );
  });
  await t.step("unknown curation fields and bad shapes are refused", () => {
    assertMatch(fails({ tools: { alow: ["x"] } }), /backends\[0\]\.tools/);
    assertMatch(fails({ tools: { defaults: { t: 5 } } }), /backends\[0\]\.tools\.defaults\.t/);
    assertMatch(fails({ prompts: { rename: {} } }), /backends\[0\]\.prompts/);
    assertMatch(fails({ resources: { allow: [""] } }), /backends\[0\]\.resources\.allow\[0\]/);
  });
  await t.step("catalog defaults and bounds", () => {
    const config = parseConfig({ backends: [{ name: "a", url: "https://a.example" }] }, env);
    assertEquals(config.catalog, { mode: "full", cacheTtlSeconds: 300 });
    assertThrows(
      () =>
        parseConfig(
          {
            catalog: { mode: "all", searchAbove: 0 },
            backends: [{ name: "a", url: "https://a.example" }],
          },
          env,
          "gw.json",
        ),
      ConfigError,
    );
    const e = assertThrows(
      () =>
        parseConfig(
          {
            catalog: { searchAbove: 0 },
            backends: [{ name: "a", url: "https://a.example" }],
          },
          env,
          "gw.json",
        ),
      ConfigError,
    );
    assertMatch(e.message, /gw\.json: catalog\.searchAbove: /);
  });
});
