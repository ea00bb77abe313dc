/**
 * The sign-in entry and the browser session (in-process, real KV): `GET /login?return_to=`,
 * the owner password form `POST /login` (CSRF, rate limit, same-origin `return_to` only),
 * `currentBrowserSession` (12 h, rules re-checked, owner sessions end with a new password),
 * session rotation, sign-out, and a signed-in browser approving `/authorize` without password.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { makeDeps } from "./_helpers.ts";
import { deadBackendUrl } from "./_aggregate_backends.ts";
import { HttpBrowser } from "./_http_browser.ts";
import { authorizeUrl, DEFAULT_PASSWORD, pkcePair, registerClient } from "./_oauth_flow.ts";
import { parseConfig } from "../lib/config.ts";
import { readSettings } from "../lib/deps.ts";
import {
  BROWSER_SESSION_TTL_MS,
  currentBrowserSession,
  startBrowserSession,
} from "../lib/identity/browser_session.ts";
import { parseReturnTo } from "../lib/identity/pending_request.ts";
import { sha256Hex } from "../lib/infra/crypto.ts";
import type { CodeRecord, UserRecord } from "../lib/store.ts";
import { createHandler } from "../main.ts";

const BASE = "http://localhost:8000";
const OIDC = {
  id: "corp",
  type: "oidc",
  issuer: "https://login.example.com",
  clientId: "gw",
  clientSecret: "s",
};

function expectPage(res: Response, status: number) {
  assertEquals(res.status, status);
  assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
}

/** Reads the password form of a `return_to` sign-in page. */
function passwordForm(html: string) {
  const value = (name: string) => html.match(new RegExp(`name="${name}" value="([^"]*)"`))![1]!;
  return {
    signin_id: value("signin_id"),
    csrf_token: value("csrf_token"),
    return_to: value("return_to"),
  };
}

Deno.test("sign-in entry and owner password form (GET/POST /login)", async (t) => {
  const deps = await makeDeps();
  const handle = createHandler(deps);
  const browser = new HttpBrowser({ [BASE]: (r) => handle(r) });
  const open = async (returnTo = "/admin") => {
    const page = await browser.navigate(`${BASE}/login?return_to=${encodeURIComponent(returnTo)}`);
    expectPage(page.res, 200);
    return { page, form: passwordForm(page.html) };
  };
  try {
    await t.step("signed out: the sign-in page with the owner password form", async () => {
      const { page, form } = await open();
      assertStringIncludes(page.html, "Gateway owner password");
      assertEquals(form.return_to, "/admin");
      assert(browser.cookie(BASE, `gw_csrf_${form.signin_id}`), "the form's CSRF cookie is set");
    });

    await t.step("CSRF: a forged token, a missing cookie or a foreign Origin → 403", async () => {
      const { form } = await open();
      const post = (fields: Record<string, string>, headers: HeadersInit = {}) =>
        handle(
          new Request(`${BASE}/login`, {
            method: "POST",
            headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
            body: new URLSearchParams({ ...fields, password: DEFAULT_PASSWORD }),
          }),
        );
      const cookie = `gw_csrf_${form.signin_id}=${form.csrf_token}`;
      expectPage(await post(form), 403);
      expectPage(await post({ ...form, csrf_token: "forged" }, { cookie }), 403);
      expectPage(await post(form, { cookie, origin: "https://evil.example" }), 403);
    });

    await t.step("a wrong password shows the form again (401)", async () => {
      const { form } = await open();
      const page = await browser.submit(`${BASE}/login`, { ...form, password: "nope" });
      expectPage(page.res, 401);
      assertStringIncludes(page.html, "Wrong password");
      assertEquals(browser.cookie(BASE, "gw_session"), undefined);
    });

    await t.step("the right password signs the owner in and returns to the path", async () => {
      const { form } = await open();
      const res = await browser.send(`${BASE}/login`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ ...form, password: DEFAULT_PASSWORD }),
      });
      assertEquals(res.status, 303);
      assertEquals(res.headers.get("location"), `${BASE}/admin`);
      const cookie = res.headers.getSetCookie().find((c) => c.startsWith("gw_session="))!;
      assertMatch(cookie, /^gw_session=[\w-]{43}; Path=\/; Max-Age=43200; HttpOnly; SameSite=Lax$/);
      const user = (await deps.kv.get<UserRecord>(["user", "owner"])).value!;
      assertEquals([user.sub, user.admin], ["owner", true]);
    });

    await t.step("signed in: /login?return_to= goes straight back", async () => {
      const res = await browser.send(`${BASE}/login?return_to=/admin/users`);
      assertEquals(res.status, 303);
      assertEquals(res.headers.get("location"), `${BASE}/admin/users`);
    });

    await t.step("a new sign-in replaces the browser's session (no fixation)", async () => {
      const before = browser.cookie(BASE, "gw_session")!;
      const fresh = await startBrowserSession(
        new Request(BASE, { headers: { cookie: `gw_session=${before}` } }),
        deps,
        { providerId: "owner", user: { sub: "owner" } },
      );
      assert(!fresh.includes(before));
      assertEquals((await deps.kv.get(["browser_session", await sha256Hex(before)])).value, null);
    });

    await t.step("return_to must be a path on this gateway", async () => {
      for (
        const bad of ["//evil.example/x", "/\\evil.example", "https://evil.example", "admin", ""]
      ) {
        assertEquals(parseReturnTo(bad), null, bad);
        const res = await handle(new Request(`${BASE}/login?return_to=${encodeURIComponent(bad)}`));
        expectPage(res, 400);
      }
      assertEquals(parseReturnTo("/admin?tab=users"), "/admin?tab=users");
    });

    await t.step("wrong passwords are rate-limited (checkPasswordAttempt) → 429", async () => {
      const limit = deps.config.rateLimits.passwordFailuresPer15Minutes;
      let last: Response | undefined;
      for (let i = 0; i <= limit; i++) {
        const { form } = await open();
        last = (await browser.submit(`${BASE}/login`, { ...form, password: `guess-${i}` })).res;
      }
      expectPage(last!, 429);
      assert(last!.headers.get("retry-after"));
    });
  } finally {
    deps.kv.close();
  }
});

Deno.test("browser session (currentBrowserSession)", async (t) => {
  const deps = await makeDeps({
    config: {
      backends: [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }],
      login: {
        providers: [OIDC],
        access: [{ emails: ["ana@example.com"], scopes: ["mcp:alpha"] }],
      },
    },
  });
  const ana = { providerId: "corp", user: { sub: "corp:1", email: "ana@example.com" } };
  const withCookie = (setCookie: string) =>
    new Request(BASE, { headers: { cookie: setCookie.split(";")[0]! } });
  try {
    await t.step("carries the user, the current access and a CSRF token", async () => {
      const req = withCookie(await startBrowserSession(new Request(BASE), deps, ana));
      const session = (await currentBrowserSession(req, deps))!;
      assertEquals(session.user, ana.user);
      assertEquals(session.access, { scopes: ["mcp:alpha"], admin: false, tools: ["alpha__*"] });
      assertMatch(session.csrfToken, /^[0-9a-f]{64}$/);
    });

    await t.step("ends after 12 hours (expiresAt checked on read)", async () => {
      const req = withCookie(await startBrowserSession(new Request(BASE), deps, ana));
      deps.clock.advance(BROWSER_SESSION_TTL_MS - 1000);
      assert(await currentBrowserSession(req, deps));
      deps.clock.advance(2000);
      assertEquals(await currentBrowserSession(req, deps), null);
    });

    await t.step("a user the current rules no longer allow is signed out", async () => {
      const req = withCookie(await startBrowserSession(new Request(BASE), deps, ana));
      const config = parseConfig({
        backends: [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }],
        login: { providers: [OIDC], access: [{ emails: ["bob@example.com"], scopes: ["mcp"] }] },
      }, () => undefined);
      assertEquals(await currentBrowserSession(req, { ...deps, config }), null);
    });

    await t.step("owner sessions end when the owner password changes or goes", async () => {
      const owner = { providerId: "owner", user: { sub: "owner" } };
      const req = withCookie(await startBrowserSession(new Request(BASE), deps, owner));
      assertEquals((await currentBrowserSession(req, deps))?.admin, true);
      const other = await readSettings((n) => ({ GATEWAY_OWNER_PASSWORD: "a new one" })[n]);
      assertEquals(await currentBrowserSession(req, { ...deps, settings: other }), null);
      const none = await readSettings(() => undefined);
      assertEquals(await currentBrowserSession(req, { ...deps, settings: none }), null);
    });

    await t.step("on https the cookie is __Host- and Secure (RFC 6265bis §4.1.3.2)", async () => {
      const settings = await readSettings((n) =>
        ({ PUBLIC_URL: "https://gw.example", GATEWAY_OWNER_PASSWORD: "pw" })[n]
      );
      const cookie = await startBrowserSession(new Request("https://gw.example"), {
        ...deps,
        settings,
      }, ana);
      assertMatch(
        cookie,
        /^__Host-gw_session=[\w-]{43}; Path=\/; Max-Age=43200; HttpOnly; SameSite=Lax; Secure$/,
      );
    });
  } finally {
    deps.kv.close();
  }
});

Deno.test("/authorize in a signed-in browser", async (t) => {
  const deps = await makeDeps();
  const handle = createHandler(deps);
  const browser = new HttpBrowser({ [BASE]: (r) => handle(r) });
  const client = await registerClient(handle);
  const open = async () =>
    await browser.navigate(authorizeUrl({
      clientId: client.client_id,
      redirectUri: client.redirect_uris[0]!,
      codeChallenge: (await pkcePair()).challenge,
      state: "s",
    }));
  const fieldOf = (html: string, name: string) =>
    html.match(new RegExp(`name="${name}" value="([^"]*)"`))![1]!;
  try {
    await t.step(
      "approving with the password signs the owner in; next time no password",
      async () => {
        const first = await open();
        await browser.submit(`${BASE}/authorize`, {
          request_id: fieldOf(first.html, "request_id"),
          csrf_token: fieldOf(first.html, "csrf_token"),
          decision: "approve",
          password: DEFAULT_PASSWORD,
        }, () => true);
        assert(browser.cookie(BASE, "gw_session"));
        const second = await open();
        expectPage(second.res, 200);
        assertStringIncludes(second.html, 'id="signed-in"');
        assertStringIncludes(second.html, "Gateway owner");
        assert(!second.html.includes('type="password"'));
        const landed = await browser.submit(`${BASE}/authorize`, {
          request_id: fieldOf(second.html, "request_id"),
          csrf_token: fieldOf(second.html, "csrf_token"),
          decision: "approve",
        }, () => true);
        assertEquals(landed.status, 303);
        const code = landed.url.searchParams.get("code")!;
        const stored = (await deps.kv.get<CodeRecord>(["code", await sha256Hex(code)])).value!;
        assertEquals(stored.user?.sub, "owner");
      },
    );

    await t.step("a pending request cannot be continued by another browser", async () => {
      const page = await open();
      const res = await handle(
        new Request(`${BASE}/login?request=${fieldOf(page.html, "request_id")}`),
      );
      expectPage(res, 400);
      assertStringIncludes(await res.text(), "another browser");
    });
  } finally {
    deps.kv.close();
  }
});

Deno.test("/authorize with providers and no owner password", async (t) => {
  const deps = await makeDeps({
    env: { GATEWAY_OWNER_PASSWORD: "" },
    config: {
      backends: [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }],
      login: { providers: [OIDC], access: [{ domains: ["example.com"], scopes: ["mcp"] }] },
    },
  });
  const handle = createHandler(deps);
  const browser = new HttpBrowser({ [BASE]: (r) => handle(r) });
  try {
    const client = await registerClient(handle);
    const page = await browser.navigate(authorizeUrl({
      clientId: client.client_id,
      redirectUri: client.redirect_uris[0]!,
      codeChallenge: (await pkcePair()).challenge,
    }));
    await t.step("the sign-in page has the provider button and no password form", () => {
      expectPage(page.res, 200);
      assertStringIncludes(page.html, "Continue with login.example.com"); // default label: the issuer host
      assert(!page.html.includes('type="password"'));
      assert(!page.html.includes('value="approve"'), "nothing to approve before signing in");
    });
    await t.step("approving without a session → the sign-in page again (401)", async () => {
      const field = (name: string) =>
        page.html.match(new RegExp(`name="${name}" value="([^"]*)"`))![1]!;
      const res = await browser.submit(`${BASE}/authorize`, {
        request_id: field("request_id"),
        csrf_token: field("csrf_token"),
        decision: "approve",
        password: "anything",
      });
      expectPage(res.res, 401);
      assertStringIncludes(res.html, "Sign in first");
    });
  } finally {
    deps.kv.close();
  }
});

Deno.test("GET /login/{providerId} is rate-limited per IP (authorizePerIpPerMinute)", async () => {
  const deps = await makeDeps({
    config: {
      backends: [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }],
      rateLimits: { authorizePerIpPerMinute: 2 },
      login: {
        providers: [{ ...OIDC, issuer: new URL(deadBackendUrl()).origin }],
        access: [{ domains: ["example.com"], scopes: ["mcp"] }],
      },
    },
  });
  const handle = createHandler(deps);
  try {
    const start = () => handle(new Request(`${BASE}/login/corp?return_to=/`));
    for (let i = 0; i < 2; i++) expectPage(await start(), 502); // the provider is down
    const limited = await start();
    expectPage(limited, 429);
    assert(Number(limited.headers.get("retry-after")) > 0);
    assertEquals((await Array.fromAsync(deps.kv.list({ prefix: ["login_flow"] }))).length, 0);
  } finally {
    deps.kv.close();
  }
});
