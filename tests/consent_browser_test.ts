/**
 * The consent page in a real headless Chromium (playwright-core): it shows the client name and
 * the redirect host, Approve lands on the client's callback with `code`, `state` and `iss`
 * (RFC 9207), Deny with `error=access_denied` (RFC 6749 §4.1.2.1).
 *
 * Needs /usr/bin/chromium (`apt-get install -y chromium`); without it this test FAILS.
 */
import { launchChromium } from "./_browser.ts";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { serveGateway } from "./_helpers.ts";
import { authorizeUrl, DEFAULT_PASSWORD, pkcePair, registerClient } from "./_oauth_flow.ts";

/** A tiny client callback server on 127.0.0.1:0 that records what it receives. */
function callbackServer() {
  const hits: URL[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    hits.push(new URL(req.url));
    return new Response("<!doctype html><title>callback</title><p>Signed in.</p>", {
      headers: { "content-type": "text/html" },
    });
  });
  return { url: `http://127.0.0.1:${server.addr.port}/callback`, hits, server };
}

Deno.test({
  name: "consent page in a browser",
  // playwright keeps its pipe and child process in ways Deno's sanitizers do not follow.
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const gateway = await serveGateway();
    const callback = callbackServer();
    const browser = await launchChromium();
    try {
      const fetchLike = (r: Request) => fetch(r);
      const client = await registerClient(fetchLike, {
        client_name: "Browser Test App",
        redirect_uris: [callback.url],
      }, gateway.url);
      const { challenge } = await pkcePair();
      const callbackHost = new URL(callback.url).host;

      await t.step(
        "shows client name and redirect host; Approve lands with code, state, iss",
        async () => {
          const context = await browser.newContext();
          try {
            const page = await context.newPage();
            const response = await page.goto(
              authorizeUrl({
                baseUrl: gateway.url,
                clientId: client.client_id,
                redirectUri: callback.url,
                codeChallenge: challenge,
                state: "browser-state",
              }).href,
            );
            assertEquals(response?.status(), 200);
            assertEquals(response?.headers()["content-type"], "text/html; charset=utf-8");
            assertStringIncludes(await page.locator("h1").innerText(), "Browser Test App");
            assertEquals(await page.locator("#redirect-host").innerText(), callbackHost);
            assertEquals(await page.locator("#redirect-uri").innerText(), callback.url);
            await page.screenshot({ path: "/tmp/consent.png", fullPage: true });
            await page.fill("#password", DEFAULT_PASSWORD);
            await Promise.all([
              page.waitForURL((u) => u.href.startsWith(callback.url)),
              page.click("button[value=approve]"),
            ]);
            const landed = new URL(page.url());
            assert(landed.searchParams.get("code"), "code in the callback URL");
            assertEquals(landed.searchParams.get("state"), "browser-state");
            assertEquals(landed.searchParams.get("iss"), gateway.url);
            const received = callback.hits.filter((u) => u.pathname === "/callback");
            assertEquals(
              received.at(-1)?.searchParams.get("code"),
              landed.searchParams.get("code"),
            );
          } finally {
            await context.close();
          }
        },
      );

      await t.step(
        "a private-use redirect URI is shown in full, prominently, not only its scheme",
        async () => {
          const uri = "com.example.gateway-test:/oauth/callback?tenant=t1";
          const native = await registerClient(fetchLike, {
            client_name: "Native App",
            redirect_uris: [uri],
          }, gateway.url);
          const context = await browser.newContext();
          try {
            const page = await context.newPage();
            const response = await page.goto(
              authorizeUrl({
                baseUrl: gateway.url,
                clientId: native.client_id,
                redirectUri: uri,
                codeChallenge: challenge,
              }).href,
            );
            assertEquals(response?.status(), 200);
            assertEquals(response?.headers()["content-type"], "text/html; charset=utf-8");
            const shown = page.locator("#redirect-uri");
            assert(await shown.isVisible(), "the full redirect URI is visible");
            assertEquals(await shown.innerText(), uri);
            // Runs in the page (a DOM global, not Deno's).
            const size = await shown.evaluate((el) =>
              parseFloat((globalThis as any).getComputedStyle(el).fontSize)
            );
            assert(size >= 16, `the redirect URI is prominent (font-size ${size}px)`);
            assertEquals(
              await page.locator("#redirect-host").innerText(),
              "com.example.gateway-test:",
            );
          } finally {
            await context.close();
          }
        },
      );

      await t.step(
        "a wrong password shows the page again; Deny lands with access_denied",
        async () => {
          const context = await browser.newContext();
          try {
            const page = await context.newPage();
            await page.goto(
              authorizeUrl({
                baseUrl: gateway.url,
                clientId: client.client_id,
                redirectUri: callback.url,
                codeChallenge: challenge,
                state: "deny-state",
              }).href,
            );
            await page.fill("#password", "not the password");
            const [wrong] = await Promise.all([
              page.waitForResponse((r) => r.request().method() === "POST"),
              page.click("button[value=approve]"),
            ]);
            assertEquals(wrong.status(), 401);
            await page.waitForLoadState();
            assertStringIncludes(await page.locator("[role=alert]").innerText(), "Wrong password");
            await Promise.all([
              page.waitForURL((u) => u.href.startsWith(callback.url)),
              page.click("button[value=deny]"),
            ]);
            const landed = new URL(page.url());
            assertEquals(landed.searchParams.get("error"), "access_denied");
            assertEquals(landed.searchParams.get("state"), "deny-state");
            assertEquals(landed.searchParams.get("iss"), gateway.url);
            assertEquals(landed.searchParams.get("code"), null);
          } finally {
            await context.close();
          }
        },
      );
    } finally {
      await browser.close();
      await callback.server.shutdown();
      await gateway.close();
    }
  },
});
