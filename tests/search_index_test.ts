/**
 * The BM25 ranking of `search_tools` (lib/mcp/aggregate/search_index.ts): tokenizer, stemmer and
 * the ranking's properties. The end-to-end ranking over 200+ real tools is in
 * tests/mcp_tool_search_test.ts.
 */
import { assert, assertEquals } from "./_assert.ts";
import { rank, stem, tokenize } from "../lib/mcp/aggregate/search_index.ts";

Deno.test("search tokenizer", async (t) => {
  await t.step("snake_case, camelCase, acronyms and the backend prefix are split", () => {
    assertEquals(tokenize("gh__search_code"), ["gh", "search", "code"]);
    assertEquals(tokenize("getPullRequest"), ["get", "pull", "request"]);
    assertEquals(tokenize("HTTPServer v2"), ["http", "server", "v2"]);
  });
  await t.step("stop words are dropped, case folded", () => {
    assertEquals(tokenize("Read THE contents of a File"), ["read", "content", "file"]);
  });
  await t.step("the stemmer joins inflections of one word", () => {
    for (
      const group of [
        ["merge", "merged", "merging", "merges"],
        ["issue", "issues"],
        ["branch", "branches"],
        ["query", "queries"],
        ["create", "created", "creating"],
        ["list", "listing", "lists"],
        ["run", "running", "runs"],
        ["message", "messages"],
        ["address", "addresses"],
      ]
    ) {
      assertEquals(new Set(group.map(stem)).size, 1, group.join(","));
    }
  });
  await t.step("short words and words ending in -ss/-us/-is keep their form", () => {
    for (const w of ["status", "access", "this", "ping", "need", "red", "string"]) {
      assertEquals(stem(w), w);
    }
  });
});

Deno.test("search ranking (BM25)", async (t) => {
  const tools = [
    { name: "gh__merge_pull_request", description: "Merge a pull request (squash or rebase)." },
    { name: "gh__create_pull_request", description: "Open a pull request from a branch." },
    { name: "gh__list_issues", description: "List issues of a repository." },
    { name: "slack__send_message", description: "Post a message to a channel." },
    { name: "fs__read_file", description: "Read a file's complete contents." },
  ];
  const docOf = (x: typeof tools[number]) => x;

  await t.step("the tool sharing the rarest terms ranks first", () => {
    const hits = rank(tools, docOf, "merge the pull request", 3);
    assertEquals(hits[0]!.item.name, "gh__merge_pull_request");
    assertEquals(hits[1]!.item.name, "gh__create_pull_request");
  });
  await t.step("inflected queries match (merging, messages)", () => {
    assertEquals(rank(tools, docOf, "merging pulls", 1)[0]!.item.name, "gh__merge_pull_request");
    assertEquals(rank(tools, docOf, "posting messages", 1)[0]!.item.name, "slack__send_message");
  });
  await t.step("name matches weigh more than description matches", () => {
    const docs = [
      { name: "docs__other", description: "read the docs" },
      { name: "docs__read", description: "the docs" },
    ];
    assertEquals(rank(docs, (d) => d, "read", 2)[0]!.item.name, "docs__read");
  });
  await t.step("no shared term, no hit; an empty query finds nothing", () => {
    assertEquals(rank(tools, docOf, "kubernetes", 5), []);
    assertEquals(rank(tools, docOf, "the of a", 5), []);
  });
  await t.step("limit is honoured and ties are broken by name (deterministic)", () => {
    const same = [{ name: "bb__x" }, { name: "aa__x" }, { name: "cc__x" }];
    const hits = rank(same, (d) => d, "x", 2);
    assertEquals(hits.map((h) => h.item.name), ["aa__x", "bb__x"]);
    assert(hits[0]!.score === hits[1]!.score);
  });
});
