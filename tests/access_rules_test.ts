/**
 * The `login` configuration and the access rules (issue 8 "Configuration", §5): which rules
 * match whom, the union of their scopes, tool globs (the contract of issue 10), the narrowing
 * of requested scopes, and the configuration errors that name the field.
 */
import { assert, assertEquals, assertStringIncludes, assertThrows } from "./_assert.ts";
import { ConfigError, type GatewayConfig, parseConfig } from "../lib/config.ts";
import {
  evaluateAccess,
  globsOf,
  type Identity,
  narrowScope,
  OWNER,
} from "../lib/identity/access_rules.ts";
import { signInMethods } from "../lib/identity/startup.ts";
import { readSettings } from "../lib/deps.ts";

const BACKENDS = [
  { name: "docs", url: "https://docs.example/mcp" },
  { name: "search", url: "https://search.example/mcp" },
];

function config(login: Record<string, unknown>, env: Record<string, string> = {}): GatewayConfig {
  return parseConfig({ backends: BACKENDS, login }, (n) => env[n], "gateway.config.json");
}

/** The example of issue 8, with GitHub Enterprise-style URLs unset (defaults). */
const ISSUE_EXAMPLE = {
  providers: [
    {
      id: "corp",
      type: "oidc",
      issuer: "https://login.example.com",
      clientId: "mcp-gateway",
      clientSecret: "${CORP_OIDC_SECRET}",
      scopes: ["openid", "email", "profile"],
      groupsClaim: "groups",
    },
    { id: "github", type: "github", clientId: "Iv1.abc", clientSecret: "${GITHUB_SECRET}" },
  ],
  access: [
    { emails: ["ana@example.com"], scopes: ["mcp"], admin: true },
    { domains: ["example.com"], scopes: ["mcp:docs", "mcp:search"] },
    { groups: ["mcp-users"], scopes: ["mcp"] },
    { githubOrgs: ["example-org"], githubUsers: ["octocat"], scopes: ["mcp:docs"] },
  ],
};
const SECRETS = { CORP_OIDC_SECRET: "corp-secret", GITHUB_SECRET: "gh-secret" };

const corp = (user: Partial<Identity["user"]>, groups?: string[]): Identity => ({
  providerId: "corp",
  user: { sub: "corp:1", ...user },
  ...(groups ? { groups } : {}),
});
const github = (login: string, extra: Partial<Identity> = {}): Identity => ({
  providerId: "github",
  user: { sub: "github:9", login },
  ...extra,
});

Deno.test("login configuration", async (t) => {
  await t.step("the issue's example parses, with defaults", () => {
    const c = config(ISSUE_EXAMPLE, SECRETS);
    const [oidc, gh] = c.login.providers;
    assertEquals(oidc?.type === "oidc" && oidc.timeoutMs, 10_000);
    assertEquals(gh?.type === "github" && gh.apiUrl, "https://api.github.com");
    assertEquals(
      gh?.type === "github" && gh.tokenUrl,
      "https://github.com/login/oauth/access_token",
    );
    assertEquals(c.login.access[1]!.admin, false);
    assertEquals(config({}).login, { providers: [], access: [] });
  });

  const bad: [string, Record<string, unknown>, string][] = [
    ["provider id outside [a-z0-9-]", {
      providers: [{ ...ISSUE_EXAMPLE.providers[1], id: "Git Hub" }],
    }, "login.providers[0].id"],
    ["duplicate provider ids", {
      providers: [ISSUE_EXAMPLE.providers[1], ISSUE_EXAMPLE.providers[1]],
    }, "login.providers[1].id: duplicate id"],
    ["an http issuer off loopback", {
      providers: [{ ...ISSUE_EXAMPLE.providers[0], issuer: "http://login.example.com" }],
    }, "login.providers[0].issuer: must be https"],
    ["OIDC scopes without openid", {
      providers: [{ ...ISSUE_EXAMPLE.providers[0], scopes: ["email"] }],
    }, 'must include "openid"'],
    [
      "an unknown scope in a rule",
      { access: [{ emails: ["a@b.co"], scopes: ["mcp:nope"] }] },
      'login.access[0].scopes: unknown scope "mcp:nope"',
    ],
    ["a rule that matches nobody", { access: [{ scopes: ["mcp"] }] }, "needs at least one of"],
    ["a groups rule without groupsClaim", {
      providers: [ISSUE_EXAMPLE.providers[1]],
      access: [{ groups: ["g"], scopes: ["mcp"] }],
    }, "login.access[0].groups: no OIDC provider has a groupsClaim"],
    ["a GitHub rule without a GitHub provider", {
      access: [{ githubUsers: ["octocat"], scopes: ["mcp"] }],
    }, "login.access[0].githubUsers: no GitHub provider"],
    ["a rule naming an unknown provider", {
      access: [{ emails: ["a@b.co"], providers: ["corp"], scopes: ["mcp"] }],
    }, 'unknown provider "corp"'],
    [
      "an unknown field",
      { providers: [{ ...ISSUE_EXAMPLE.providers[1], tenant: "x" }] },
      "login.providers[0]",
    ],
  ];
  for (const [what, login, message] of bad) {
    await t.step(`${what} fails the start, naming file and field`, () => {
      const e = assertThrows(() => config(login, SECRETS), ConfigError);
      assertStringIncludes(e.message, "gateway.config.json");
      assertStringIncludes(e.message, message);
    });
  }
});

Deno.test("access rules", async (t) => {
  const c = config(ISSUE_EXAMPLE, SECRETS);

  await t.step("no rule matches → no access", () => {
    assertEquals(evaluateAccess(c, corp({ email: "eve@elsewhere.org" })), null);
    assertEquals(evaluateAccess(c, corp({})), null);
  });

  await t.step("scopes are the union of every matching rule's; admin from any", () => {
    assertEquals(evaluateAccess(c, corp({ email: "Ana@Example.com" })), {
      scopes: ["mcp", "mcp:docs", "mcp:search"],
      admin: true,
    });
    assertEquals(evaluateAccess(c, corp({ email: "bob@example.com" })), {
      scopes: ["mcp:docs", "mcp:search"],
      admin: false,
      tools: ["docs__*", "search__*"],
    });
  });

  await t.step("domains match exactly (no subdomains, no look-alikes)", () => {
    assertEquals(evaluateAccess(c, corp({ email: "x@eu.example.com" })), null);
    assertEquals(evaluateAccess(c, corp({ email: "x@badexample.com" })), null);
  });

  await t.step("groups match from OIDC providers only; GitHub rules from GitHub only", () => {
    assertEquals(evaluateAccess(c, corp({}, ["mcp-users"]))?.scopes, ["mcp"]);
    assertEquals(evaluateAccess(c, github("someone", { groups: ["mcp-users"] })), null);
    assertEquals(evaluateAccess(c, corp({ login: "octocat" })), null);
    assertEquals(evaluateAccess(c, github("OctoCat"))?.scopes, ["mcp:docs"]);
    assertEquals(evaluateAccess(c, github("dev", { githubOrgs: ["Example-Org"] }))?.scopes, [
      "mcp:docs",
    ]);
  });

  await t.step("a subject must belong to its provider; a removed provider matches nothing", () => {
    assertEquals(
      evaluateAccess(c, { ...corp({ email: "ana@example.com" }), providerId: "github" }),
      null,
    );
    assertEquals(
      evaluateAccess(c, { ...corp({ email: "ana@example.com" }), providerId: "gone" }),
      null,
    );
  });

  await t.step("a rule's providers restrict where it applies", () => {
    const only = config({
      ...ISSUE_EXAMPLE,
      access: [{ domains: ["example.com"], providers: ["corp"], scopes: ["mcp"] }],
    }, SECRETS);
    assert(evaluateAccess(only, corp({ email: "a@example.com" })));
    const viaGithub = github("a", { user: { sub: "github:1", email: "a@example.com" } });
    assertEquals(evaluateAccess(only, viaGithub), null);
  });

  await t.step("tools: rule.tools, else globs of its scopes; absent when one is *", () => {
    assertEquals(globsOf(["mcp"]), ["*"]);
    assertEquals(globsOf(["mcp:docs", "offline_access"]), ["docs__*"]);
    const withTools = config({
      ...ISSUE_EXAMPLE,
      access: [
        { domains: ["example.com"], scopes: ["mcp:docs"], tools: ["docs__search", "docs__read_*"] },
        { emails: ["bob@example.com"], scopes: ["mcp:search"] },
      ],
    }, SECRETS);
    assertEquals(evaluateAccess(withTools, corp({ email: "bob@example.com" }))?.tools, [
      "docs__search",
      "docs__read_*",
      "search__*",
    ]);
  });

  await t.step("the owner may use everything and is an administrator", () => {
    assertEquals(evaluateAccess(c, { providerId: "owner", user: OWNER }), {
      scopes: ["mcp"],
      admin: true,
    });
  });
});

Deno.test("narrowScope (issue 8 §5)", async (t) => {
  await t.step("mcp stands for each allowed backend when mcp itself is not allowed", () => {
    assertEquals(narrowScope("mcp", ["mcp:beta"]), "mcp:beta");
    assertEquals(narrowScope("mcp", ["mcp:a", "mcp:b"]), "mcp:a mcp:b");
  });
  await t.step("allowed scopes stay; mcp covers every mcp:<backend>", () => {
    assertEquals(narrowScope("mcp", ["mcp"]), "mcp");
    assertEquals(narrowScope("mcp:a mcp:b", ["mcp"]), "mcp:a mcp:b");
    assertEquals(narrowScope("mcp:a mcp:b", ["mcp:b"]), "mcp:b");
  });
  await t.step("nothing left → null (the caller answers access_denied)", () => {
    assertEquals(narrowScope("mcp:a", ["mcp:b"]), null);
    assertEquals(narrowScope("mcp", []), null);
  });
});

Deno.test("start-up lines about sign-in", async (t) => {
  const settings = (env: Record<string, string>) =>
    readSettings((n) => ({ PUBLIC_URL: "https://gw.example", ...env })[n]);
  await t.step("each provider with its callback URL; the owner password", async () => {
    const lines = signInMethods({
      config: config(ISSUE_EXAMPLE, SECRETS),
      settings: await settings({ GATEWAY_OWNER_PASSWORD: "pw" }),
    });
    assertEquals(lines.map((l) => l.level), ["info", "info", "info"]);
    assertStringIncludes(lines[0]!.message, "https://gw.example/login/corp/callback");
    assertStringIncludes(lines[1]!.message, "https://gw.example/login/github/callback");
    assertStringIncludes(lines[2]!.message, "GATEWAY_OWNER_PASSWORD");
  });
  await t.step("nobody can sign in → a warning", async () => {
    const lines = signInMethods({ config: config({}), settings: await settings({}) });
    assertEquals(lines.length, 1);
    assertEquals(lines[0]!.level, "warn");
    assertStringIncludes(lines[0]!.message, "nobody can authorize");
  });
  await t.step("providers without access rules → a warning", async () => {
    const lines = signInMethods({
      config: config({ providers: ISSUE_EXAMPLE.providers }, SECRETS),
      settings: await settings({}),
    });
    assertEquals(lines.at(-1)!.level, "warn");
    assertStringIncludes(lines.at(-1)!.message, "login.access has no rule");
  });
});
