/**
 * Team sign-in in a real headless Chromium (playwright-core): the gateway's sign-in page, the
 * development login and consent forms of panva's oidc-provider (the upstream OpenID Provider),
 * the gateway's consent page naming the signed-in user, and the client's callback — for an
 * allowed user, a user allowed for one backend only (tools/list shows only its tools), a user
 * not allowed, a group rule and an unverified email (issue 8 "Tests with real parts").
 *
 * Needs /usr/bin/chromium (`apt-get install -y chromium`); without it this test FAILS.
 */
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "./_browser.ts";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { authorizeUrl, pkcePair, registerClient } from "./_oauth_flow.ts";
import { listTools, type SignInSetup, startSignInSetup } from "./_sign_in.ts";

/** The MCP client's redirect URI: a tiny page on 127.0.0.1:0. */
function callbackServer() {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () =>
      new Response("<!doctype html><title>callback</title><p>Back in the app.</p>", {
        headers: { "content-type": "text/html" },
      }),
  );
  return { url: `http://127.0.0.1:${server.addr.port}/callback`, server };
}

/**
 * Opens /authorize in a fresh browser context, clicks "Continue with Corp SSO", signs in at
 * the provider as `login` (its login form, then its consent form) and returns the page the
 * gateway shows next, with what the test needs to redeem a code.
 */
async function signIn(
  s: SignInSetup,
  browser: Browser,
  callback: string,
  login: string,
  scope = "mcp",
) {
  const client = await registerClient((r) => fetch(r), { redirect_uris: [callback] }, s.gw.url);
  const pkce = await pkcePair();
  const context = await browser.newContext();
  const page = await context.newPage();
  const res = await page.goto(
    authorizeUrl({
      baseUrl: s.gw.url,
      clientId: client.client_id,
      redirectUri: callback,
      codeChallenge: pkce.challenge,
      scope,
      state: "browser-state",
    }).href,
  );
  assertEquals(res?.status(), 200);
  await page.screenshot({ path: "/tmp/sign-in-page.png", fullPage: true });
  await page.click("text=Continue with Corp SSO");
  await page.waitForURL((u) => u.href.startsWith(s.idp.issuer));
  await page.fill("input[name=login]", login);
  await page.fill("input[name=password]", "any password");
  await page.click("button[type=submit]");
  await page.waitForSelector("input[name=prompt][value=consent]", { state: "attached" });
  await page.click("button[type=submit]");
  // Back at the gateway: its consent page (/login?request=…) or the callback's denied page.
  await page.waitForURL((u) => u.href.startsWith(s.gw.url));
  return { context, page, clientId: client.client_id, verifier: pkce.verifier };
}

async function approveInPage(page: Page, callback: string): Promise<string> {
  await Promise.all([
    page.waitForURL((u) => u.href.startsWith(callback)),
    page.click("button[value=approve]"),
  ]);
  const landed = new URL(page.url());
  assertEquals(landed.searchParams.get("state"), "browser-state");
  return landed.searchParams.get("code")!;
}

Deno.test({
  name: "team sign-in in a browser",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const s = await startSignInSetup();
    const callback = callbackServer();
    const browser = await launchChromium();
    try {
      await t.step(
        "allowed user: consent names the user, asks no password; tokens work",
        async () => {
          const r = await signIn(s, browser, callback.url, "ana");
          try {
            assertStringIncludes(await r.page.locator("#signed-in").innerText(), "Ana Lima");
            assertEquals(await r.page.locator("#password").count(), 0);
            await r.page.screenshot({ path: "/tmp/sign-in-consent.png", fullPage: true });
            const code = await approveInPage(r.page, callback.url);
            const tokens = await redeemWith(s, r, callback.url, code);
            assertEquals(tokens.scope, "mcp");
            assertEquals(await listTools(s, tokens.access_token), ["alpha__echo", "beta__echo"]);
          } finally {
            await r.context.close();
          }
        },
      );

      await t.step("user allowed for one backend: tools/list shows only its tools", async () => {
        const r = await signIn(s, browser, callback.url, "bob");
        try {
          assertStringIncludes(await r.page.locator("dd ul").innerText(), "mcp:beta");
          const tokens = await redeemWith(
            s,
            r,
            callback.url,
            await approveInPage(r.page, callback.url),
          );
          assertEquals(tokens.scope, "mcp:beta");
          assertEquals(await listTools(s, tokens.access_token), ["beta__echo"]);
        } finally {
          await r.context.close();
        }
      });

      await t.step("user not allowed: access denied, the link returns access_denied", async () => {
        const r = await signIn(s, browser, callback.url, "eve");
        try {
          assertEquals(await r.page.locator("h1").innerText(), "Access denied");
          assertStringIncludes(
            await r.page.locator("main").innerText(),
            "Eve Moss (eve@elsewhere.org)",
          );
          await Promise.all([
            r.page.waitForURL((u) => u.href.startsWith(callback.url)),
            r.page.click("text=Return to"),
          ]);
          const landed = new URL(r.page.url());
          assertEquals(landed.searchParams.get("error"), "access_denied");
          assertEquals(landed.searchParams.get("state"), "browser-state");
          assertEquals(landed.searchParams.get("code"), null);
        } finally {
          await r.context.close();
        }
      });

      await t.step("group rule: the groups claim grants the rule's scopes", async () => {
        const r = await signIn(s, browser, callback.url, "gus", "mcp:alpha");
        try {
          assertStringIncludes(await r.page.locator("#signed-in").innerText(), "Gus Hale");
          const tokens = await redeemWith(
            s,
            r,
            callback.url,
            await approveInPage(r.page, callback.url),
          );
          assertEquals(tokens.scope, "mcp:alpha");
        } finally {
          await r.context.close();
        }
      });

      await t.step("email_verified false: access denied, the email is not used", async () => {
        const r = await signIn(s, browser, callback.url, "uma");
        try {
          assertEquals(await r.page.locator("h1").innerText(), "Access denied");
          const text = await r.page.locator("main").innerText();
          assertStringIncludes(text, "Uma Reyes");
          assert(!text.includes("uma@example.com"));
        } finally {
          await r.context.close();
        }
      });
    } finally {
      await browser.close();
      await callback.server.shutdown();
      await s.close();
    }
  },
});

/** Redeems a code for a client whose redirect URI is `callback`. */
async function redeemWith(
  s: SignInSetup,
  r: { clientId: string; verifier: string },
  callback: string,
  code: string,
) {
  const res = await fetch(`${s.gw.url}/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: callback,
      client_id: r.clientId,
      code_verifier: r.verifier,
    }),
  });
  assertEquals(res.status, 200);
  return await res.json() as { access_token: string; scope: string };
}
