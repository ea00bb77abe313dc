/**
 * Team sign-in with GitHub (issue 8 §3): the web application flow with PKCE and `state`, then
 * `/user`, `/user/emails` (the primary address counts only when verified) and organization
 * membership for `githubOrgs` rules — against a small local server implementing those GitHub
 * endpoints with the response shapes of GitHub's REST documentation (tests/_github.ts), reached
 * through the `authorizeUrl`/`tokenUrl`/`apiUrl` overrides (as for GitHub Enterprise Server).
 */
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import type { TokenRecord, UserRecord } from "../lib/store.ts";
import { sha256Hex } from "../lib/infra/crypto.ts";
import { deadBackendUrl } from "./_aggregate_backends.ts";
import { type GithubUser, startGithub } from "./_github.ts";
import { serveGateway } from "./_helpers.ts";
import { HttpBrowser, type Page, providerHref } from "./_http_browser.ts";
import { authorizeUrl, pkcePair, registerClient } from "./_oauth_flow.ts";
import { approve, redeem, type SignInSetup } from "./_sign_in.ts";

const USERS: GithubUser[] = [
  {
    id: 583231,
    login: "octocat",
    name: "The Octocat",
    emails: [{ email: "octocat@github.com", primary: true, verified: true }],
  },
  {
    id: 1001,
    login: "ana-gh",
    emails: [
      { email: "ana@old.example", primary: false, verified: true },
      { email: "ana@example.com", primary: true, verified: true },
    ],
  },
  {
    id: 1002,
    login: "orgmember",
    emails: [{ email: "member@example.net", primary: true, verified: true }],
    orgs: { "example-org": "active" },
  },
  {
    id: 1003,
    login: "invited",
    emails: [{ email: "invited@example.net", primary: true, verified: true }],
    orgs: { "example-org": "pending" },
  },
  {
    id: 1004,
    login: "mallory",
    emails: [
      { email: "ana@example.com", primary: true, verified: false },
      { email: "mallory@example.net", primary: false, verified: true },
    ],
  },
];

function page(p: Page, status: number) {
  assertEquals(p.status, status, p.html.slice(0, 300));
  assertEquals(p.res.headers.get("content-type"), "text/html; charset=utf-8");
}

Deno.test("team sign-in with GitHub", async (t) => {
  const gh = startGithub(USERS);
  const dead = deadBackendUrl();
  const gw = await serveGateway({
    config: {
      backends: [{ name: "alpha", url: dead }, { name: "beta", url: dead }],
      login: {
        providers: [{
          id: "github",
          type: "github",
          clientId: gh.clientId,
          clientSecret: gh.clientSecret,
          authorizeUrl: `${gh.url}/login/oauth/authorize`,
          tokenUrl: `${gh.url}/login/oauth/access_token`,
          apiUrl: `${gh.url}/api/v3`,
        }],
        access: [
          { emails: ["ana@example.com"], scopes: ["mcp"], admin: true },
          { githubOrgs: ["Example-Org"], scopes: ["mcp:beta"], tools: ["beta__echo"] },
          { githubUsers: ["OctoCat"], scopes: ["mcp:alpha"] },
        ],
      },
    },
  });
  const s = { gw } as SignInSetup;
  /** /authorize → "Continue with GitHub" → GitHub approves as `login` → gateway page. */
  const signIn = async (login: string) => {
    gh.signInAs = login;
    const browser = new HttpBrowser();
    const client = await registerClient((r) => fetch(r), {}, gw.url);
    const pkce = await pkcePair();
    const signInPage = await browser.navigate(authorizeUrl({
      baseUrl: gw.url,
      clientId: client.client_id,
      redirectUri: client.redirect_uris[0]!,
      codeChallenge: pkce.challenge,
      state: "client-state",
    }));
    const landed = await browser.navigate(providerHref(signInPage.html, "GitHub"));
    return { browser, a: { clientId: client.client_id, verifier: pkce.verifier, page: landed } };
  };
  try {
    await t.step(
      "githubUsers rule: web flow with PKCE S256 and state; the user on the grant",
      async () => {
        const { browser, a } = await signIn("octocat");
        page(a.page, 200);
        assertStringIncludes(a.page.html, "The Octocat (octocat@github.com)");
        const q = gh.authorizations.at(-1)!;
        assertEquals(q.get("redirect_uri"), `${gw.url}/login/github/callback`);
        assertEquals(q.get("code_challenge_method"), "S256");
        assertEquals(q.get("scope"), "read:user user:email read:org");
        assert((q.get("state") ?? "").length >= 43, "a random state");
        const tokens = await redeem(s, a, await approve(browser, a.page));
        assertEquals(tokens.scope, "mcp:alpha");
        const record = (await gw.deps.kv.get<TokenRecord>(
          ["access", await sha256Hex(tokens.access_token)],
        )).value!;
        assertEquals(record.user, {
          sub: "github:583231",
          login: "octocat",
          name: "The Octocat",
          email: "octocat@github.com",
        });
        assertEquals(record.tools, ["alpha__*"]);
      },
    );

    await t.step("email rule: the primary verified address counts (admin)", async () => {
      const { a } = await signIn("ana-gh");
      page(a.page, 200);
      assertStringIncludes(a.page.html, "<code>mcp</code>");
      const user = (await gw.deps.kv.get<UserRecord>(["user", "github:1001"])).value!;
      assertEquals(user.email, "ana@example.com");
      assertEquals(user.admin, true);
    });

    await t.step("githubOrgs rule: an active membership; the rule's tools", async () => {
      const { browser, a } = await signIn("orgmember");
      page(a.page, 200);
      const tokens = await redeem(s, a, await approve(browser, a.page));
      assertEquals(tokens.scope, "mcp:beta");
      const grant = (await gw.deps.kv.get<TokenRecord>(
        ["access", await sha256Hex(tokens.access_token)],
      )).value!;
      assertEquals(grant.tools, ["beta__echo"]);
      assertEquals(
        (await gw.deps.kv.get<UserRecord>(["user", "github:1002"])).value?.githubOrgs,
        ["Example-Org"],
      );
    });

    await t.step("a pending organization invitation does not count", async () => {
      const { browser, a } = await signIn("invited");
      page(a.page, 403);
      assertStringIncludes(a.page.html, "invited@example.net");
      assertEquals(browser.cookie(gw.url, "gw_session"), undefined);
    });

    await t.step(
      "an unverified primary email does not count (even if a rule names it)",
      async () => {
        const { a } = await signIn("mallory");
        page(a.page, 403);
        assertStringIncludes(a.page.html, "mallory");
        assert(!a.page.html.includes("ana@example.com"));
        assertEquals((await gw.deps.kv.get(["user", "github:1004"])).value, null);
      },
    );

    await t.step(
      "GitHub refuses the code (200 with error) → error page, nothing stored",
      async () => {
        gh.failNextExchange = true;
        const { browser, a } = await signIn("octocat");
        page(a.page, 502);
        assertStringIncludes(a.page.html, "GitHub refused the sign-in");
        assertEquals(browser.cookie(gw.url, "gw_session"), undefined);
        const line = gw.deps.logs.findLast((l) => l.route === "login_callback");
        assertEquals(line?.sign_in_error, "bad_verification_code");
        assert(!JSON.stringify(gw.deps.logs).includes(gh.clientSecret));
      },
    );
  } finally {
    await gw.close();
    await gh.close();
  }
});
