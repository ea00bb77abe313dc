/**
 * Team sign-in through an upstream OpenID Provider (panva's oidc-provider, a certified OP, on
 * a real port), driven over HTTP with a cookie jar: the sign-in page, the provider's login and
 * consent forms, the gateway's consent page, the code, the tokens and `/mcp` (issue 8 §1–§7).
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { parseConfig } from "../lib/config.ts";
import type { GrantRecord, TokenRecord, UserRecord } from "../lib/store.ts";
import { sha256Hex } from "../lib/infra/crypto.ts";
import { createHandler } from "../main.ts";
import { field, HttpBrowser, providerHref, signInAtIdp } from "./_http_browser.ts";
import {
  ACCESS,
  approve,
  authorizeWithProvider,
  entries,
  listTools,
  redeem,
  startSignInSetup,
} from "./_sign_in.ts";

const html = (page: { status: number; res: Response }, status: number) => {
  assertEquals(page.status, status);
  assertEquals(page.res.headers.get("content-type"), "text/html; charset=utf-8");
};

Deno.test({
  name: "team sign-in with an OpenID Provider (over HTTP)",
  // oidc-provider (koa on node:http) keeps timers Deno's sanitizers do not follow.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const s = await startSignInSetup();
    const { kv } = s.gw.deps;
    let anaRefresh = "";
    const bobBrowser = new HttpBrowser();
    try {
      await t.step(
        "the sign-in page offers each provider and the owner password (§1)",
        async () => {
          const browser = new HttpBrowser();
          const client = await fetch(`${s.gw.url}/register`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ redirect_uris: ["http://127.0.0.1:3000/callback"] }),
          }).then((r) => r.json());
          const page = await browser.navigate(
            `${s.gw.url}/authorize?response_type=code&client_id=${client.client_id}` +
              `&code_challenge=${"a".repeat(43)}&code_challenge_method=S256`,
          );
          html(page, 200);
          assertMatch(page.html, /href="http:\/\/127\.0\.0\.1:\d+\/login\/corp\?request=[\w-]+"/);
          assertStringIncludes(page.html, "Continue with Corp SSO");
          assertStringIncludes(page.html, 'type="password"');
          assert(!page.html.includes("request_uri") && !page.html.includes("code_challenge="));
        },
      );

      await t.step(
        "allowed user: provider sign-in, consent names the user, tokens and grant carry the user (§4, §6)",
        async () => {
          const browser = new HttpBrowser();
          const a = await authorizeWithProvider(s, browser, "ana", { scope: "mcp" });
          html(a.page, 200);
          assertEquals(a.page.url.pathname, "/login");
          assertStringIncludes(a.page.html, 'id="signed-in"');
          assertStringIncludes(a.page.html, "Ana Lima (ana@example.com)");
          assertStringIncludes(a.page.html, "Corp SSO");
          assert(!a.page.html.includes('type="password"'), "no password for a signed-in user");
          assert(browser.cookie(s.gw.url, "gw_session"), "the browser has a session");
          const tokens = await redeem(s, a, await approve(browser, a.page));
          assertEquals(tokens.scope, "mcp");
          anaRefresh = tokens.refresh_token;
          const user = { sub: "corp:ana", email: "ana@example.com", name: "Ana Lima" };
          const access =
            (await kv.get<TokenRecord>(["access", await sha256Hex(tokens.access_token)]))
              .value!;
          assertEquals(access.user, user);
          assertEquals(access.tools, undefined);
          const grant = (await kv.get<GrantRecord>(["grant", access.grantId])).value!;
          assertEquals(grant.user, user);
          assertEquals(
            (await kv.get(["user_grant", "corp:ana", access.grantId])).value,
            grant.createdAt,
          );
          const record = (await kv.get<UserRecord>(["user", "corp:ana"])).value!;
          assertEquals({ ...record, firstSeenAt: 0, lastSeenAt: 0 }, {
            ...user,
            admin: true,
            groups: [],
            firstSeenAt: 0,
            lastSeenAt: 0,
          });
          assertEquals(await listTools(s, tokens.access_token), ["alpha__echo", "beta__echo"]);
          const lines = s.gw.deps.logs.filter((l) => l.user === "corp:ana");
          assert(lines.some((l) => l.route === "login_callback" && l.sign_in === "allowed"));
          assert(lines.some((l) => l.route === "token"), "the token request logs the user");
          assert(!JSON.stringify(s.gw.deps.logs).includes("ana@example.com"), "no email in logs");
        },
      );

      await t.step(
        "user allowed for one backend: asking for mcp grants mcp:beta; /mcp lists beta only (§5)",
        async () => {
          const a = await authorizeWithProvider(s, bobBrowser, "bob", { scope: "mcp" });
          html(a.page, 200);
          assertStringIncludes(a.page.html, "<code>mcp:beta</code>");
          assert(!a.page.html.includes("<code>mcp</code>"), "consent shows the narrowed scope");
          const tokens = await redeem(s, a, await approve(bobBrowser, a.page));
          assertEquals(tokens.scope, "mcp:beta");
          const record =
            (await kv.get<TokenRecord>(["access", await sha256Hex(tokens.access_token)]))
              .value!;
          assertEquals(record.tools, ["beta__*"]);
          assertEquals(await listTools(s, tokens.access_token), ["beta__echo"]);
        },
      );

      await t.step(
        "signed in, a request for a scope the user lacks → access denied, link back (§5)",
        async () => {
          const again = await authorizeWithProvider(s, bobBrowser, "bob", { scope: "mcp:alpha" });
          html(again.page, 403);
          assertStringIncludes(again.page.html, "Bob Stone (bob@example.com)");
          const back = new URL(
            again.page.html.match(/href="([^"]+)">Return to/)![1]!.replaceAll("&amp;", "&"),
          );
          assertEquals(back.searchParams.get("error"), "access_denied");
          assertEquals(back.searchParams.get("state"), "client-state");
          assertEquals(back.searchParams.get("iss"), s.gw.url);
        },
      );

      await t.step(
        "user not allowed: access denied names the account, links back with access_denied; nothing kept (§4)",
        async () => {
          const browser = new HttpBrowser();
          const authz = await entries(kv, ["authz"]);
          const a = await authorizeWithProvider(s, browser, "eve");
          html(a.page, 403);
          assertStringIncludes(a.page.html, "Access denied");
          assertStringIncludes(a.page.html, "Eve Moss (eve@elsewhere.org)");
          assertStringIncludes(a.page.html, "Corp SSO");
          const back = new URL(
            a.page.html.match(/href="([^"]+)">Return to/)![1]!.replaceAll("&amp;", "&"),
          );
          assertEquals(`${back.origin}${back.pathname}`, "http://127.0.0.1:3000/callback");
          assertEquals(back.searchParams.get("error"), "access_denied");
          assertEquals(browser.cookie(s.gw.url, "gw_session"), undefined);
          assertEquals((await kv.get(["user", "corp:eve"])).value, null);
          assertEquals((await entries(kv, ["authz"])).length, authz.length, "request dropped");
        },
      );

      await t.step("group rule: a user in the groups claim gets the rule's scopes", async () => {
        const browser = new HttpBrowser();
        const a = await authorizeWithProvider(s, browser, "gus", { scope: "mcp:alpha" });
        html(a.page, 200);
        const tokens = await redeem(s, a, await approve(browser, a.page));
        assertEquals(tokens.scope, "mcp:alpha");
        assertEquals((await kv.get<UserRecord>(["user", "corp:gus"])).value?.groups, ["mcp-users"]);
      });

      await t.step("email_verified false: the email does not count (OIDC Core §5.1)", async () => {
        const browser = new HttpBrowser();
        const a = await authorizeWithProvider(s, browser, "uma");
        html(a.page, 403);
        assertStringIncludes(a.page.html, "Uma Reyes");
        assert(!a.page.html.includes("uma@example.com"), "an unverified email is not shown");
        assertEquals((await kv.get(["user", "corp:uma"])).value, null);
      });

      await t.step(
        "sign-out (CSRF-checked) shows the sign-in page of the same request",
        async () => {
          const browser = new HttpBrowser();
          const a = await authorizeWithProvider(s, browser, "ana");
          const form = a.page.html.slice(a.page.html.indexOf(`action="${s.gw.url}/logout"`));
          const fields = {
            csrf_token: field(form, "csrf_token"),
            request_id: field(form, "request_id"),
          };
          const forged = await browser.submit(`${s.gw.url}/logout`, {
            ...fields,
            csrf_token: "forged",
          });
          html(forged, 403);
          assert(browser.cookie(s.gw.url, "gw_session"), "still signed in after a forged sign-out");
          const page = await browser.submit(`${s.gw.url}/logout`, fields);
          html(page, 200);
          assertEquals(page.url.searchParams.get("request"), fields.request_id);
          assertEquals(browser.cookie(s.gw.url, "gw_session"), undefined);
          assertStringIncludes(page.html, "Continue with Corp SSO");
          assert(!page.html.includes('id="signed-in"'));
        },
      );

      await t.step("a return_to sign-in through the provider comes back to the path", async () => {
        const browser = new HttpBrowser();
        const entry = await browser.navigate(
          `${s.gw.url}/login?return_to=${encodeURIComponent("/admin?tab=users")}`,
        );
        html(entry, 200);
        const href = providerHref(entry.html, "Corp SSO");
        assertEquals(new URL(href).searchParams.get("return_to"), "/admin?tab=users");
        const back = await signInAtIdp(
          browser,
          await browser.navigate(href),
          "gus",
          (u) => u.pathname === "/admin",
        );
        assertEquals(back.url.href, `${s.gw.url}/admin?tab=users`);
        assert(browser.cookie(s.gw.url, "gw_session"), "signed in");
        const again = await browser.send(`${s.gw.url}/login?return_to=/admin`);
        assertEquals(again.status, 303);
        assertEquals(again.headers.get("location"), `${s.gw.url}/admin`);
      });

      await t.step(
        "access is re-checked at every refresh: narrowed rules narrow, a removed user loses the grant (§7)",
        async () => {
          const withRules = (access: unknown[]) =>
            createHandler({
              ...s.gw.deps,
              config: parseConfig(
                { ...s.config, login: { ...s.config.login as object, access } },
                () => undefined,
              ),
            });
          const clientOf = async (token: string) =>
            (await kv.get<TokenRecord>(["refresh", await sha256Hex(token)])).value!.clientId;
          const narrowed = withRules([
            { emails: ["ana@example.com"], scopes: ["mcp:alpha"] },
            ACCESS[2],
          ]);
          const body = (token: string, clientId: string) =>
            new URLSearchParams({
              grant_type: "refresh_token",
              refresh_token: token,
              client_id: clientId,
            });
          const post = (
            handler: ReturnType<typeof createHandler>,
            token: string,
            clientId: string,
          ) =>
            handler(
              new Request(`${s.gw.url}/token`, {
                method: "POST",
                headers: { "content-type": "application/x-www-form-urlencoded" },
                body: body(token, clientId),
              }),
            );
          const clientId = await clientOf(anaRefresh);
          const first = await post(narrowed, anaRefresh, clientId);
          assertEquals(first.status, 200);
          const rotated = await first.json();
          assertEquals(rotated.scope, "mcp:alpha");
          const grantId =
            (await kv.get<TokenRecord>(["refresh", await sha256Hex(rotated.refresh_token)])).value!
              .grantId;
          assertEquals((await kv.get<GrantRecord>(["grant", grantId])).value?.tools, ["alpha__*"]);
          const removed = withRules([ACCESS[2]]);
          const second = await post(removed, rotated.refresh_token, clientId);
          assertEquals(second.status, 400);
          assertMatch(second.headers.get("content-type") ?? "", /^application\/json/);
          const error = await second.json();
          assertEquals(error.error, "invalid_grant");
          assertStringIncludes(error.error_description, "no longer has access");
          assertEquals((await kv.get(["grant", grantId])).value, null);
          assertEquals((await kv.get(["user_grant", "corp:ana", grantId])).value, null);
        },
      );
    } finally {
      await s.close();
    }
  },
});
