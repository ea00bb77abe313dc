/**
 * The admin console in a real headless Chromium (playwright-core), with real sign-in: the owner
 * password, and ana — an administrator by an access rule — through panva's oidc-provider. Every
 * page renders (a screenshot of each is kept under test-artifacts/admin-console/, git-ignored);
 * the audit trail is filtered with its form and exported; a grant is revoked with its button and
 * everything of a user with the confirmation box and button, and the revoked tokens are refused
 * on `/mcp` right after. Tokens come from real OAuth flows (authorize, consent, code, PKCE).
 *
 * Needs /usr/bin/chromium (`apt-get install -y chromium`); without it this test FAILS.
 */
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import type { Browser, BrowserContext, Page } from "playwright-core";
import type { AuditRecord } from "../lib/store.ts";
import { launchChromium } from "./_browser.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { HttpBrowser } from "./_http_browser.ts";
import { DEFAULT_PASSWORD } from "./_oauth_flow.ts";
import {
  approve,
  authorizeWithProvider,
  entries,
  redeem,
  type SignInSetup,
  startSignInSetup,
} from "./_sign_in.ts";

/** Where the screenshots go (git-ignored). */
const ARTIFACTS = new URL("../test-artifacts/admin-console/", import.meta.url);
const LAPTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

async function screenshot(page: Page, name: string): Promise<void> {
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: new URL(`${name}.png`, ARTIFACTS).pathname, fullPage: true });
}

/** A token of `login` for a new client, through the whole OAuth flow (consent approved). */
async function tokenOf(s: SignInSetup, login: string): Promise<string> {
  const browser = new HttpBrowser();
  const a = await authorizeWithProvider(s, browser, login);
  return (await redeem(s, a, await approve(browser, a.page))).access_token;
}

/** Calls `tool` on `/mcp` with `token` (a modern v2 SDK client). */
async function callTool(s: SignInSetup, token: string, tool: string): Promise<void> {
  const client = new Client({ name: "admin console test", version: "1.0.0" }, {
    versionNegotiation: { mode: "auto" },
  });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${s.gw.url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  try {
    const result = await client.callTool({ name: tool, arguments: { text: "hi" } });
    assert(!result.isError, `${tool} answered`);
  } finally {
    await client.close();
  }
}

/** The status `/mcp` answers a request with `token` (401 once it is revoked). */
async function mcpStatus(s: SignInSetup, token: string): Promise<number> {
  const res = await fetch(`${s.gw.url}/mcp`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
  });
  await res.body?.cancel();
  return res.status;
}

/** The newest revocation records of `user`, oldest first. */
async function revocationsOf(s: SignInSetup, user: string): Promise<AuditRecord[]> {
  await s.gw.deps.audit.flush();
  return (await entries(s.gw.deps.kv, ["audit"]))
    .map((e) => e.value as AuditRecord)
    .filter((r) => r.event === "revocation" && r.user === user);
}

Deno.test({
  name: "admin console in a browser",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const s = await startSignInSetup();
    const url = s.gw.url;
    let browser: Browser | undefined;
    const contexts: BrowserContext[] = [];
    const newPage = async () => {
      const context = await browser!.newContext({ viewport: LAPTOP });
      contexts.push(context);
      return await context.newPage();
    };
    try {
      browser = await launchChromium();
      // Tokens of three users, from real OAuth flows, each used once for a tool call.
      const gusToken = await tokenOf(s, "gus");
      const bobToken = await tokenOf(s, "bob");
      await callTool(s, gusToken, "alpha__echo");
      await callTool(s, bobToken, "beta__echo");
      await s.gw.deps.audit.flush();
      const owner = await newPage();
      const ana = await newPage();

      await t.step(
        "owner: signed out → sign-in page → owner password → backends page",
        async () => {
          const res = await owner.goto(`${url}/admin`);
          assertEquals(res?.status(), 200);
          assertEquals(new URL(owner.url()).pathname, "/login");
          await owner.fill("#password", DEFAULT_PASSWORD);
          await Promise.all([
            owner.waitForURL(`${url}/admin`),
            owner.click("button[type=submit]"),
          ]);
          assertEquals(await owner.locator("h1").innerText(), "Backends");
          const rows = owner.locator("tbody tr");
          assertEquals(await rows.count(), 2);
          assertMatch(await rows.nth(0).innerText(), /alpha\s+up/);
          await screenshot(owner, "backends");
        },
      );

      await t.step(
        "an administrator by access rule signs in through the identity provider",
        async () => {
          await ana.goto(`${url}/admin/grants`);
          await ana.click("text=Continue with Corp SSO");
          await ana.waitForURL((u) => u.href.startsWith(s.idp.issuer));
          await ana.fill("input[name=login]", "ana");
          await ana.fill("input[name=password]", "any password");
          await ana.click("button[type=submit]");
          await ana.waitForSelector("input[name=prompt][value=consent]", { state: "attached" });
          await Promise.all([
            ana.waitForURL(`${url}/admin/grants`),
            ana.click("button[type=submit]"),
          ]);
          assertEquals(await ana.locator("h1").innerText(), "Grants");
          assertStringIncludes(await ana.locator("header").innerText(), "Ana Lima");
          await screenshot(ana, "grants");
          // The README's picture (docs/admin-console.png is a copy of it): the top of the page.
          const bottom = await ana.locator("table").boundingBox();
          await ana.screenshot({
            path: new URL("readme.png", ARTIFACTS).pathname,
            clip: {
              x: 0,
              y: 0,
              width: LAPTOP.width,
              height: Math.ceil(bottom!.y + bottom!.height + 24),
            },
          });
        },
      );

      await t.step(
        "revoke a grant with its button: the token is refused on /mcp right after",
        async () => {
          await callTool(s, gusToken, "alpha__echo"); // the token works before
          await ana.click("a:text-is('corp:gus')");
          await ana.waitForURL((u) => u.searchParams.get("user") === "corp:gus");
          assertEquals(await ana.locator("tbody tr").count(), 1);
          await Promise.all([
            ana.waitForURL((u) => u.searchParams.has("revoked")),
            ana.click("button:text-is('Revoke')"),
          ]);
          assertStringIncludes(await ana.locator(".notice").innerText(), "revoked");
          assertStringIncludes(await ana.locator("main").innerText(), "No live grant.");
          assertEquals(await mcpStatus(s, gusToken), 401);
          const [record] = (await revocationsOf(s, "corp:gus")).slice(-1);
          assertEquals([record?.method, record?.actor], ["admin", "corp:ana"]);
        },
      );

      await t.step(
        "users page: revoke everything of a user (confirm box, then button)",
        async () => {
          await owner.goto(`${url}/admin/users`);
          await screenshot(owner, "users");
          const bob = owner.locator("tbody tr", { hasText: "corp:bob" });
          await bob.locator("input[name=confirm]").check();
          await Promise.all([
            owner.waitForURL((u) => u.searchParams.get("revoked") === "corp:bob"),
            bob.locator("button:text-is('Revoke everything')").click(),
          ]);
          assertStringIncludes(
            await owner.locator(".notice").innerText(),
            "Revoked everything of corp:bob: 1 grant(s)",
          );
          assertEquals(await mcpStatus(s, bobToken), 401);
          const records = await revocationsOf(s, "corp:bob");
          assertEquals(records.map((r) => [r.method, r.actor]), [
            ["admin", "owner"],
            ["admin_user", "owner"],
          ]);
        },
      );

      await t.step(
        "audit trail: the filter form narrows the records; the export downloads them",
        async () => {
          await owner.goto(`${url}/admin/audit`);
          await owner.fill("input[name=user]", "corp:gus");
          await owner.fill("input[name=tool]", "alpha__*");
          await owner.fill("input[name=outcome]", "ok");
          await owner.selectOption("select[name=event]", "mcp");
          await owner.fill("input[name=since]", "1h");
          await Promise.all([
            owner.waitForURL((u) => u.pathname === "/admin/audit" && u.searchParams.has("user")),
            owner.click("button:text-is('Filter')"),
          ]);
          const query = new URL(owner.url()).searchParams;
          assertEquals(query.get("user"), "corp:gus");
          assertEquals(query.get("event"), "mcp");
          const rows = owner.locator("tbody tr");
          assertEquals(await rows.count(), 2, "gus's two calls of alpha__echo");
          assertMatch(
            await rows.nth(0).innerText(),
            /corp:gus[^]*alpha[^]*tools\/call[^]*alpha__echo[^]*ok/,
          );
          await screenshot(owner, "audit");
          const [download] = await Promise.all([
            owner.waitForEvent("download"),
            owner.click("text=Export these records"),
          ]);
          assertMatch(download.suggestedFilename(), /^audit-\d{8}T\d{6}Z\.jsonl$/);
          const lines = (await Deno.readTextFile(await download.path())).trim().split("\n");
          const records = lines.map((l) => JSON.parse(l) as AuditRecord);
          assertEquals(records.map((r) => [r.user, r.tool, r.outcome]), [
            ["corp:gus", "alpha__echo", "ok"],
            ["corp:gus", "alpha__echo", "ok"],
          ]);
        },
      );

      await t.step("a bad filter shows the form again with the error (400)", async () => {
        const res = await owner.goto(`${url}/admin/audit?since=yesterday&user=corp%3Agus`);
        assertEquals(res?.status(), 400);
        assertStringIncludes(await owner.locator(".error").innerText(), '"since"');
        assertEquals(await owner.inputValue("input[name=since]"), "yesterday");
      });

      await t.step("clients and configuration pages render", async () => {
        await owner.goto(`${url}/admin/clients`);
        assertEquals(await owner.locator("h1").innerText(), "Clients");
        assertEquals(await owner.locator("tbody tr").count(), 2, "gus's and bob's clients");
        await screenshot(owner, "clients");
        await owner.goto(`${url}/admin/config`);
        assertStringIncludes(
          await owner.locator("pre").innerText(),
          '"clientSecret": "[redacted]"',
        );
        await screenshot(owner, "config");
      });

      await t.step(
        "on a phone the tables read as cards, nothing wider than the screen",
        async () => {
          await owner.setViewportSize(PHONE);
          for (const path of ["/admin", "/admin/grants", "/admin/users", "/admin/audit"]) {
            await owner.goto(`${url}${path}`);
            const width = Number(await owner.evaluate("document.documentElement.scrollWidth"));
            assert(
              width <= PHONE.width,
              `${path} is ${width} px wide on a ${PHONE.width} px screen`,
            );
          }
          await owner.goto(`${url}/admin/users`);
          await screenshot(owner, "users-phone");
        },
      );
    } finally {
      for (const c of contexts) await c.close();
      await browser?.close();
      await s.close();
    }
  },
});
