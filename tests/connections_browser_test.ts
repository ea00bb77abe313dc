/**
 * Per-user backend connections in a real headless Chromium (playwright-core): a signed-out
 * browser opens the connect URL an MCP client showed, signs in at the gateway (Corp SSO, panva's
 * oidc-provider), signs in at the backend's authorization server (its login and consent forms),
 * and lands on /connections saying the backend is connected; the same page disconnects it; a
 * user-secret backend's form stores a key. The pages forbid framing.
 *
 * Needs /usr/bin/chromium (`apt-get install -y chromium`); without it this test FAILS.
 */
import type { Page } from "playwright-core";
import { launchChromium } from "./_browser.ts";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { startCredentialsSetup } from "./_credentials.ts";
import { startRawBackend } from "./_backends.ts";
import { backendConnectionKey } from "../lib/store.ts";

/** Signs in at a development interaction of oidc-provider (login, then consent). */
async function signInAtProvider(page: Page, issuer: string, login: string): Promise<void> {
  await page.waitForURL((u) => u.href.startsWith(issuer));
  await page.fill("input[name=login]", login);
  await page.fill("input[name=password]", "any password");
  await page.click("button[type=submit]");
  await page.waitForSelector("input[name=prompt][value=consent]", { state: "attached" });
  await page.click("button[type=submit]");
}

Deno.test({
  name: "connections in a browser",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const search = startRawBackend(() => new Response("unused", { status: 401 }));
    const s = await startCredentialsSetup({
      backends: () => [{
        name: "search",
        url: search.url,
        auth: { type: "user-secret", label: "Search API key" },
      }],
    });
    const browser = await launchChromium();
    try {
      const context = await browser.newContext();
      const page = await context.newPage();

      await t.step(
        "the connect URL: gateway sign-in, the backend's sign-in, then 'notes is connected'",
        async () => {
          const res = await page.goto(`${s.gw.url}/connect/notes`);
          assertEquals(res?.status(), 200); // the gateway's sign-in page
          await page.click("text=Continue with Corp SSO");
          await signInAtProvider(page, s.idp.issuer, "ana");
          await signInAtProvider(page, s.notes.issuer, "ana-at-notes");
          await page.waitForURL((u) => u.pathname === "/connections");
          await page.screenshot({ path: "/tmp/connections-connected.png", fullPage: true });
          assertEquals(await page.locator("[role=status]").innerText(), "notes is connected.");
          assertStringIncludes(
            await page.locator("[data-backend=notes]").innerText(),
            "Connected since",
          );
          assertStringIncludes(
            await page.locator("[data-backend=search]").innerText(),
            "Not connected",
          );
          assert((await s.gw.deps.kv.get(backendConnectionKey("corp:ana", "notes"))).value);
        },
      );

      await t.step("a user-secret backend: the form stores the key", async () => {
        await page.click("[data-backend=search] a");
        await page.waitForURL((u) => u.pathname === "/connect/search");
        assertEquals(await page.locator("label[for=secret]").innerText(), "Search API key");
        await page.fill("#secret", "sk-browser-0123456789");
        await page.click("button[type=submit]");
        await page.waitForURL((u) => u.pathname === "/connections");
        assertEquals(await page.locator("[role=status]").innerText(), "search is connected.");
      });

      await t.step("disconnect from the page", async () => {
        await page.click("[data-backend=notes] button");
        await page.waitForURL((u) => u.searchParams.get("disconnected") === "notes");
        assertEquals(await page.locator("[role=status]").innerText(), "notes is disconnected.");
        assertStringIncludes(
          await page.locator("[data-backend=notes]").innerText(),
          "Not connected",
        );
        assertEquals(
          (await s.gw.deps.kv.get(backendConnectionKey("corp:ana", "notes"))).value,
          null,
        );
      });

      await t.step(
        "the page forbids framing (CSP frame-ancestors 'none', X-Frame-Options)",
        async () => {
          const res = await page.goto(`${s.gw.url}/connections`);
          assertEquals(res?.status(), 200);
          const headers = res!.headers();
          assertStringIncludes(headers["content-security-policy"] ?? "", "frame-ancestors 'none'");
          assertEquals(headers["x-frame-options"], "DENY");
        },
      );
      await context.close();
    } finally {
      await browser.close();
      await s.close();
      await search.close();
    }
  },
});
