import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { makeDeps } from "./_helpers.ts";
import { putClient } from "./_kv_fixtures.ts";
import {
  authorizeCode,
  authorizeUrl,
  DEFAULT_PASSWORD,
  type FetchLike,
  pkcePair,
  postDecision,
  readConsentForm,
  registerClient,
} from "./_oauth_flow.ts";
import { sha256Hex } from "../lib/infra/crypto.ts";
import { hit, peek } from "../lib/infra/rate_limit.ts";
import { authzKey, type AuthzRequestRecord, codeKey, type CodeRecord } from "../lib/store.ts";
import { createHandler } from "../main.ts";

const BASE = "http://localhost:8000";
/** Pre-registered (operator-trusted) clients: phase-2 errors are redirected at once for them. */
const PRE_REGISTERED = "pre-registered-app";
const PRE_REGISTERED_QUERY = "pre-registered-query";
const CONFIG = {
  clients: [
    { clientId: PRE_REGISTERED, redirectUris: ["http://127.0.0.1:3000/callback"] },
    { clientId: PRE_REGISTERED_QUERY, redirectUris: ["https://app.example/cb?tenant=t1"] },
  ],
  backends: [
    { name: "alpha", url: "http://127.0.0.1:9/mcp" },
    { name: "beta", url: "http://127.0.0.1:9/mcp" },
  ],
};
const REDIRECT = "http://127.0.0.1:3000/callback";

/** Asserts an HTML page with the security headers of `htmlResponse`; returns its text. */
async function expectPage(res: Response, status: number): Promise<string> {
  assertEquals(res.status, status);
  assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
  assertStringIncludes(res.headers.get("content-security-policy")!, "frame-ancestors 'none'");
  assertEquals(res.headers.get("x-frame-options"), "DENY");
  assertEquals(res.headers.get("x-content-type-options"), "nosniff");
  assertEquals(res.headers.get("referrer-policy"), "no-referrer");
  assertEquals(res.headers.get("cache-control"), "no-store");
  assertEquals(res.headers.get("location"), null);
  assertEquals(res.headers.get("access-control-allow-origin"), null);
  return await res.text();
}

/** Asserts an authorization error redirect (RFC 6749 §4.1.2.1 + RFC 9207 `iss`). */
async function expectErrorRedirect(
  res: Response,
  error: string,
  state: string | null,
  redirectBase = REDIRECT,
): Promise<URL> {
  assert([302, 303].includes(res.status), `status ${res.status}`);
  assertEquals(res.headers.get("content-type"), null);
  assertEquals(await res.text(), "");
  const url = new URL(res.headers.get("location")!);
  assertEquals(`${url.origin}${url.pathname}`, redirectBase);
  assertEquals(url.searchParams.get("error"), error);
  assert(url.searchParams.get("error_description"));
  assertEquals(url.searchParams.get("state"), state);
  assertEquals(url.searchParams.get("iss"), BASE);
  assertEquals(url.searchParams.get("code"), null);
  return url;
}

function get(params: Record<string, string | string[]>): Request {
  const url = new URL(`${BASE}/authorize`);
  for (const [k, v] of Object.entries(params)) {
    for (const one of Array.isArray(v) ? v : [v]) url.searchParams.append(k, one);
  }
  return new Request(url);
}

async function setup(env: Record<string, string> = {}) {
  const deps = await makeDeps({ config: CONFIG, env });
  const handle = createHandler(deps);
  const fetchLike: FetchLike = (r) => handle(r);
  const client = await registerClient(fetchLike, { client_name: "Claude <script>x</script>" });
  const { challenge } = await pkcePair();
  const valid = {
    response_type: "code",
    client_id: client.client_id,
    redirect_uri: REDIRECT,
    code_challenge: challenge,
    code_challenge_method: "S256",
    state: "st-1",
  };
  return { deps, handle, fetchLike, client, challenge, valid };
}

Deno.test("GET /authorize", async (t) => {
  const { deps, handle, fetchLike, client, challenge, valid } = await setup();

  await t.step(
    "renders the consent page: escaped client name, redirect host, scopes, resource",
    async () => {
      const res = await handle(get({ ...valid, scope: "mcp:alpha offline_access" }));
      const html = await expectPage(res, 200);
      assertStringIncludes(html, "Claude &lt;script&gt;x&lt;/script&gt;");
      assert(!html.includes("<script>"));
      assertStringIncludes(html, `<span class="host" id="redirect-uri">${REDIRECT}</span>`);
      assertStringIncludes(html, `on the web site <b id="redirect-host">127.0.0.1:3000</b>`);
      assertStringIncludes(html, "<code>mcp:alpha</code>");
      assertStringIncludes(html, `<code>${BASE}/mcp</code>`);
      assertStringIncludes(html, `type="password"`);
      assertStringIncludes(html, `value="approve"`);
      assertStringIncludes(html, `value="deny"`);
      assertStringIncludes(html, `action="${BASE}/authorize"`);
    },
  );

  await t.step("stores the request for 10 min with the CSRF hash; cookie per request", async () => {
    const res = await handle(get(valid));
    const html = await expectPage(res, 200);
    const form = readConsentForm(html, res);
    const setCookie = res.headers.get("set-cookie")!;
    assertEquals(form.cookie, `gw_csrf_${form.requestId}=${form.csrfToken}`);
    assertStringIncludes(setCookie, "HttpOnly");
    assertStringIncludes(setCookie, "SameSite=Lax");
    assertStringIncludes(setCookie, "Path=/");
    assertStringIncludes(setCookie, "Max-Age=600");
    assert(!setCookie.includes("Secure"), "no Secure on plain http");
    const stored = (await deps.kv.get<AuthzRequestRecord>(authzKey(form.requestId))).value!;
    assertEquals(stored, {
      clientId: client.client_id,
      redirectUri: REDIRECT,
      codeChallenge: challenge,
      scope: "mcp",
      resource: `${BASE}/mcp`,
      state: "st-1",
      csrfHash: await sha256Hex(form.csrfToken),
      expiresAt: deps.now() + 600_000,
    });
    const second = readConsentForm(await (await handle(get(valid))).text(), res);
    assert(second.requestId !== form.requestId || second.csrfToken !== form.csrfToken);
  });

  await t.step("resource and scope for one backend (RFC 8707 §2)", async () => {
    const res = await handle(get({ ...valid, resource: `${BASE}/mcp/beta`, scope: "mcp:beta" }));
    const html = await expectPage(res, 200);
    assertStringIncludes(html, `<code>${BASE}/mcp/beta</code>`);
    assertStringIncludes(html, "<code>mcp:beta</code>");
  });

  await t.step("shows the client_id when the client has no name", async () => {
    const anon = await registerClient(fetchLike, { client_name: undefined });
    const res = await handle(get({ ...valid, client_id: anon.client_id }));
    const html = await expectPage(res, 200);
    assertStringIncludes(html, `Authorize <span class="client">${anon.client_id}</span>?`);
  });

  await t.step("loopback redirect URI on another port matches (RFC 8252 §7.3)", async () => {
    const res = await handle(get({ ...valid, redirect_uri: "http://127.0.0.1:49152/callback" }));
    const html = await expectPage(res, 200);
    assertStringIncludes(html, "127.0.0.1:49152");
  });

  await t.step("redirect_uri may be omitted when exactly one is registered", async () => {
    const { redirect_uri: _, ...rest } = valid;
    await expectPage(await handle(get(rest)), 200);
  });

  await t.step("phase 1: unknown or missing client → error page, never a redirect", async () => {
    for (
      const params of [
        { ...valid, client_id: "nope" },
        { ...valid, client_id: "" },
        (({ client_id: _, ...r }) => r)(valid),
        { ...valid, client_id: [client.client_id, client.client_id] },
      ]
    ) {
      const html = await expectPage(await handle(get(params)), 400);
      assertMatch(html, /<h1>(Unknown application|Invalid request)<\/h1>/);
    }
  });

  await t.step("phase 1: mismatching redirect URI → error page (RFC 6749 §4.1.2.1)", async () => {
    for (
      const redirect_uri of [
        "https://evil.example/callback",
        "http://127.0.0.1:3000/callback/",
        "http://localhost:3000/callback",
        "http://127.0.0.1:3000/callback?x=1",
        [REDIRECT, "https://evil.example/callback"],
      ]
    ) {
      const html = await expectPage(await handle(get({ ...valid, redirect_uri })), 400);
      assertMatch(html, /<h1>(Invalid redirect URI|Invalid request)<\/h1>/);
    }
  });

  await t.step(
    "phase 1: a loopback port outside 1–65535 → error page, no 500, nothing stored",
    async () => {
      for (const port of ["99999", "65536", "0"]) {
        const redirect_uri = `http://127.0.0.1:${port}/callback`;
        const html = await expectPage(await handle(get({ ...valid, redirect_uri })), 400);
        assertStringIncludes(html, "<h1>Invalid redirect URI</h1>");
      }
      const pending = await Array.fromAsync(deps.kv.list({ prefix: ["authz"] }));
      const stored = pending.map((e) => (e.value as AuthzRequestRecord).redirectUri);
      assert(!stored.some((u) => /:(99999|65536|0)\//.test(u)), stored.join(" "));
    },
  );

  await t.step(
    "phase 1: a registered redirect URI that today's rules refuse (microsoft-edge:) → error page",
    async () => {
      const old = await putClient(deps, { redirectUri: "microsoft-edge:https://evil.example/cb" });
      const html = await expectPage(
        await handle(get({
          ...valid,
          client_id: old.client.clientId,
          redirect_uri: "microsoft-edge:https://evil.example/cb",
        })),
        400,
      );
      assertStringIncludes(html, "<h1>Invalid redirect URI</h1>");
      assertStringIncludes(html, "must not use the microsoft-edge: scheme");
    },
  );

  await t.step(
    "phase 1: redirect_uri omitted while several are registered → error page",
    async () => {
      const two = await registerClient(fetchLike, {
        redirect_uris: [REDIRECT, "https://app.example/cb"],
      });
      const { redirect_uri: _, ...rest } = valid;
      const html = await expectPage(await handle(get({ ...rest, client_id: two.client_id })), 400);
      assertStringIncludes(html, "redirect_uri");
    },
  );

  // Phase-2 errors of pre-registered clients are redirected (RFC 6749 §4.1.2.1).
  const pre = { ...valid, client_id: PRE_REGISTERED };

  await t.step("phase 2: response_type must be code (OAuth 2.1 §4.1.1)", async () => {
    await expectErrorRedirect(
      await handle(get({ ...pre, response_type: "token" })),
      "unsupported_response_type",
      "st-1",
    );
    const { response_type: _, ...rest } = pre;
    await expectErrorRedirect(await handle(get(rest)), "invalid_request", "st-1");
  });

  await t.step(
    "phase 2: PKCE S256 required; plain or missing → invalid_request (RFC 7636 §4.4.1)",
    async () => {
      const { code_challenge: _c, ...noChallenge } = pre;
      const { code_challenge_method: _m, ...noMethod } = pre;
      for (
        const params of [
          noChallenge,
          noMethod,
          { ...pre, code_challenge_method: "plain" },
          { ...pre, code_challenge_method: "s256" },
          { ...pre, code_challenge: "short" },
          { ...pre, code_challenge: challenge.slice(0, 42) + "=" },
        ]
      ) {
        await expectErrorRedirect(await handle(get(params)), "invalid_request", "st-1");
      }
    },
  );

  await t.step("phase 2: unknown scope → invalid_scope", async () => {
    await expectErrorRedirect(
      await handle(get({ ...pre, scope: "mcp:gamma" })),
      "invalid_scope",
      "st-1",
    );
  });

  await t.step("phase 2: foreign resource → invalid_target (RFC 8707 §2)", async () => {
    for (const resource of ["https://other.example/mcp", `${BASE}/mcp/gamma`, "not-a-uri"]) {
      await expectErrorRedirect(
        await handle(get({ ...pre, resource })),
        "invalid_target",
        "st-1",
      );
    }
  });

  await t.step(
    "phase 2: repeated parameter → invalid_request; repeated state not echoed",
    async () => {
      await expectErrorRedirect(
        await handle(get({ ...pre, scope: ["mcp", "mcp"] })),
        "invalid_request",
        "st-1",
      );
      await expectErrorRedirect(
        await handle(get({ ...pre, state: ["a", "b"] })),
        "invalid_request",
        null,
      );
    },
  );

  await t.step(
    "phase 2: error redirect keeps the redirect URI's query; no state when none sent",
    async () => {
      const { state: _, ...rest } = pre;
      const url = await expectErrorRedirect(
        await handle(get({
          ...rest,
          client_id: PRE_REGISTERED_QUERY,
          redirect_uri: "https://app.example/cb?tenant=t1",
          response_type: "token",
        })),
        "unsupported_response_type",
        null,
        "https://app.example/cb",
      );
      assertEquals(url.searchParams.get("tenant"), "t1");
    },
  );

  await t.step(
    "phase 2, registered or metadata-document client: an error page linking to the error " +
      "response, never an automatic redirect (RFC 9700 §4.11.2, open redirector)",
    async () => {
      const res = await handle(get({ ...valid, code_challenge_method: "plain" }));
      const html = await expectPage(res, 400);
      assertStringIncludes(html, "The application&#39;s request is invalid");
      const href = /<a class="provider" href="([^"]+)">Return to /.exec(html)?.[1];
      assert(href, "the page links back to the application");
      const url = new URL(href.replaceAll("&amp;", "&"));
      assertEquals(`${url.origin}${url.pathname}`, REDIRECT);
      assertEquals(url.searchParams.get("error"), "invalid_request");
      assertEquals(url.searchParams.get("state"), "st-1");
      assertEquals(url.searchParams.get("iss"), BASE);
      // The same request from the pre-registered client is redirected at once.
      await expectErrorRedirect(
        await handle(get({ ...pre, code_challenge_method: "plain" })),
        "invalid_request",
        "st-1",
      );
    },
  );

  deps.kv.close();

  await t.step("without GATEWAY_OWNER_PASSWORD consent is disabled (error page)", async () => {
    const s = await setup({ GATEWAY_OWNER_PASSWORD: "" });
    const html = await expectPage(await s.handle(get(s.valid)), 503);
    assertStringIncludes(html, "GATEWAY_OWNER_PASSWORD");
    assert(!html.includes("<form"));
    s.deps.kv.close();
  });

  await t.step("https gateway: __Host- cookie with Secure (RFC 6265bis §4.1.3.2)", async () => {
    const deps2 = await makeDeps({ config: CONFIG, env: { PUBLIC_URL: "https://gw.example" } });
    const h = createHandler(deps2);
    const c = await registerClient((r) => h(r), {}, "https://gw.example");
    const res = await h(
      new Request(authorizeUrl({
        baseUrl: "https://gw.example",
        clientId: c.client_id,
        redirectUri: REDIRECT,
        codeChallenge: challenge,
      })),
    );
    const html = await expectPage(res, 200);
    const form = readConsentForm(html, res);
    const setCookie = res.headers.get("set-cookie")!;
    assert(setCookie.startsWith(`__Host-gw_csrf_${form.requestId}=`));
    assertStringIncludes(setCookie, "; Secure");
    assertStringIncludes(setCookie, "Path=/");
    assert(!/domain=/i.test(setCookie));
    deps2.kv.close();
  });
});

Deno.test("POST /authorize", async (t) => {
  const { deps, handle, fetchLike, client, challenge, valid } = await setup();
  const open = async (params: Record<string, string> = valid) => {
    const res = await handle(get(params));
    return readConsentForm(await expectPage(res, 200), res);
  };

  await t.step(
    "approve with the right password → 303 with code, state, iss (RFC 9207); the owner signs in",
    async () => {
      const form = await open();
      const res = await postDecision(fetchLike, form, "approve", DEFAULT_PASSWORD);
      assertEquals(res.status, 303);
      assertEquals(await res.text(), "");
      const url = new URL(res.headers.get("location")!);
      assertEquals(`${url.origin}${url.pathname}`, REDIRECT);
      assertEquals(url.searchParams.get("state"), "st-1");
      assertEquals(url.searchParams.get("iss"), BASE);
      const code = url.searchParams.get("code")!;
      assertMatch(code, /^[A-Za-z0-9_-]{43}$/);
      assertStringIncludes(res.headers.get("set-cookie")!, "Max-Age=0");
      const stored = (await deps.kv.get<CodeRecord>(codeKey(await sha256Hex(code)))).value!;
      assertEquals(stored, {
        clientId: client.client_id,
        redirectUri: REDIRECT,
        codeChallenge: challenge,
        scope: "mcp",
        resource: `${BASE}/mcp`,
        expiresAt: deps.now() + 60_000,
        user: { sub: "owner", name: "Gateway owner" },
      });
      const cookies = res.headers.getSetCookie();
      assert(cookies.some((c) => c.startsWith("gw_session=")), "the owner is signed in");
      assertEquals((await deps.kv.get(authzKey(form.requestId))).value, null);
      assertEquals((await deps.kv.get(["code", code])).value, null);
    },
  );

  await t.step("a consent request is used once", async () => {
    const form = await open();
    const first = await postDecision(fetchLike, form, "approve", DEFAULT_PASSWORD);
    assertEquals(first.status, 303);
    await first.body?.cancel();
    const html = await expectPage(
      await postDecision(fetchLike, form, "approve", DEFAULT_PASSWORD),
      400,
    );
    assertStringIncludes(html, "expired or was used");
  });

  await t.step("the code carries the requested redirect URI, scope and resource", async () => {
    const { code, location } = await authorizeCode(fetchLike, {
      clientId: client.client_id,
      redirectUri: "http://127.0.0.1:4567/callback",
      codeChallenge: challenge,
      scope: "mcp:alpha",
      resource: `${BASE}/mcp/alpha`,
    });
    assertEquals(location.host, "127.0.0.1:4567");
    assertEquals(location.searchParams.get("state"), null);
    const stored = (await deps.kv.get<CodeRecord>(codeKey(await sha256Hex(code)))).value!;
    assertEquals(stored.redirectUri, "http://127.0.0.1:4567/callback");
    assertEquals(stored.scope, "mcp:alpha");
    assertEquals(stored.resource, `${BASE}/mcp/alpha`);
  });

  await t.step("approval keeps the redirect URI's own query parameters", async () => {
    const c = await registerClient(fetchLike, { redirect_uris: ["https://app.example/cb?a=1"] });
    const { location } = await authorizeCode(fetchLike, {
      clientId: c.client_id,
      redirectUri: "https://app.example/cb?a=1",
      codeChallenge: challenge,
      state: "s",
    });
    assertEquals([...location.searchParams.keys()], ["a", "code", "state", "iss"]);
  });

  await t.step("deny → 303 error=access_denied with state and iss; request dropped", async () => {
    const form = await open();
    const res = await postDecision(fetchLike, form, "deny");
    assertEquals(res.status, 303);
    await expectErrorRedirect(res, "access_denied", "st-1");
    assertEquals((await deps.kv.get(authzKey(form.requestId))).value, null);
  });

  await t.step("CSRF: missing, mismatching or other-tab cookie → 403 page", async () => {
    const form = await open();
    const other = await open();
    const cases = [
      { ...form, cookie: "" },
      { ...form, cookie: `gw_csrf_${form.requestId}=wrong` },
      { ...form, cookie: other.cookie },
      { ...form, csrfToken: "forged", cookie: `gw_csrf_${form.requestId}=forged` },
    ];
    for (const f of cases) {
      const html = await expectPage(
        await postDecision(fetchLike, f, "approve", DEFAULT_PASSWORD),
        403,
      );
      assertStringIncludes(html, "CSRF");
    }
    // The request is still usable with the right token.
    const ok = await postDecision(fetchLike, form, "deny");
    assertEquals(ok.status, 303);
    await ok.body?.cancel();
  });

  await t.step("CSRF: a foreign Origin → 403 page", async () => {
    const form = await open();
    const body = new URLSearchParams({
      request_id: form.requestId,
      csrf_token: form.csrfToken,
      decision: "approve",
      password: DEFAULT_PASSWORD,
    });
    for (
      const origin of ["https://evil.example", "http://localhost:8001", "http://127.0.0.1:8000"]
    ) {
      const res = await handle(
        new Request(`${BASE}/authorize`, {
          method: "POST",
          headers: {
            "content-type": "application/x-www-form-urlencoded",
            cookie: form.cookie,
            origin,
          },
          body,
        }),
      );
      await expectPage(res, 403);
    }
    // No Origin, or "null" (what browsers send under Referrer-Policy: no-referrer) is allowed.
    const nullOrigin = await handle(
      new Request(`${BASE}/authorize`, {
        method: "POST",
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          cookie: form.cookie,
          origin: "null",
        },
        body: new URLSearchParams({ ...Object.fromEntries(body), decision: "deny" }),
      }),
    );
    assertEquals(nullOrigin.status, 303);
    await nullOrigin.body?.cancel();
    const again = await open();
    const noOrigin = await handle(
      new Request(`${BASE}/authorize`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", cookie: again.cookie },
        body: new URLSearchParams({
          request_id: again.requestId,
          csrf_token: again.csrfToken,
          decision: "deny",
        }),
      }),
    );
    assertEquals(noOrigin.status, 303);
    await noOrigin.body?.cancel();
  });

  await t.step("an expired request (10 min) → 400 page", async () => {
    const form = await open();
    deps.clock.advance(600_000);
    const html = await expectPage(
      await postDecision(fetchLike, form, "approve", DEFAULT_PASSWORD),
      400,
    );
    assertStringIncludes(html, "expired");
  });

  await t.step(
    "wrong password → the page again (401) with an error and a fresh CSRF token",
    async () => {
      const form = await open();
      const res = await postDecision(fetchLike, form, "approve", "guess");
      const html = await expectPage(res, 401);
      assertStringIncludes(html, "Wrong password");
      assertStringIncludes(html, "Claude &lt;script&gt;");
      const again = readConsentForm(html, res);
      assertEquals(again.requestId, form.requestId);
      assert(again.csrfToken !== form.csrfToken);
      await expectPage(await postDecision(fetchLike, form, "approve", DEFAULT_PASSWORD), 403);
      const ok = await postDecision(fetchLike, again, "approve", DEFAULT_PASSWORD);
      assertEquals(ok.status, 303);
      assert(new URL(ok.headers.get("location")!).searchParams.get("code"));
    },
  );

  await t.step("missing password on approve counts as wrong (401)", async () => {
    const form = await open();
    await expectPage(await postDecision(fetchLike, form, "approve"), 401);
  });

  await t.step(
    "5 wrong passwords per 15 min per client and IP, then 429 with Retry-After",
    async () => {
      const c = await registerClient(fetchLike);
      const params = { ...valid, client_id: c.client_id };
      const ip = (hostname: string) =>
        ({ remoteAddr: { transport: "tcp", hostname, port: 1 } }) as Deno.ServeHandlerInfo;
      const fromA: FetchLike = (r) => handle(r, ip("10.0.0.1"));
      let form = await open(params);
      for (let i = 0; i < 5; i++) {
        const res = await postDecision(fromA, form, "approve", `wrong-${i}`);
        form = readConsentForm(await expectPage(res, 401), res);
      }
      const blocked = await postDecision(fromA, form, "approve", DEFAULT_PASSWORD);
      const html = await expectPage(blocked, 429);
      assertStringIncludes(html, "Too many");
      const retry = Number(blocked.headers.get("retry-after"));
      assert(retry >= 1 && retry <= 900, `retry-after ${retry}`);
      // Another IP is not blocked.
      const fromB = await postDecision(
        (r) => handle(r, ip("10.0.0.2")),
        form,
        "approve",
        DEFAULT_PASSWORD,
      );
      assertEquals(fromB.status, 303);
      await fromB.body?.cancel();
      // The window passes.
      form = await open(params);
      deps.clock.advance(900_000);
      form = await open(params);
      const later = await postDecision(fromA, form, "approve", DEFAULT_PASSWORD);
      assertEquals(later.status, 303);
      await later.body?.cancel();
    },
  );

  await t.step(
    "bad form: wrong content type, missing field or repeated field → 400 page",
    async () => {
      const form = await open();
      const post = (body: string, type = "application/x-www-form-urlencoded") =>
        handle(
          new Request(`${BASE}/authorize`, {
            method: "POST",
            headers: { "content-type": type, cookie: form.cookie },
            body,
          }),
        );
      const good = `request_id=${form.requestId}&csrf_token=${form.csrfToken}`;
      await expectPage(await post(`${good}&decision=approve`, "application/json"), 400);
      await expectPage(await post(good), 400);
      await expectPage(await post(`${good}&decision=maybe`), 400);
      await expectPage(await post(`${good}&decision=deny&decision=approve`), 400);
      await expectPage(await post(`request_id=../x&csrf_token=a&decision=deny`), 400);
    },
  );

  await t.step("the form is not CORS-enabled", async () => {
    const res = await handle(
      new Request(`${BASE}/authorize`, {
        method: "OPTIONS",
        headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
      }),
    );
    assertEquals(res.headers.get("access-control-allow-origin"), null);
    await res.body?.cancel();
  });

  deps.kv.close();
});

Deno.test("lib/rate_limit (used by POST /authorize)", async (t) => {
  const kv = await Deno.openKv(":memory:");
  const minute = 60_000;
  const t0 = 10 * minute; // start of a window

  await t.step("fixed window: allowed up to the limit, then refused with Retry-After", async () => {
    for (let i = 1; i <= 3; i++) {
      const r = await hit(kv, "b", "s", 3, minute, t0 + 1000);
      assertEquals(r, { allowed: true, count: i, retryAfterSeconds: 59 });
    }
    assertEquals(await hit(kv, "b", "s", 3, minute, t0 + 30_000), {
      allowed: false,
      count: 4,
      retryAfterSeconds: 30,
    });
    assertEquals((await peek(kv, "b", "s", 3, minute, t0 + 30_000)).allowed, false);
  });

  await t.step("counters are per bucket, subject and window; stored under [rate, …]", async () => {
    assertEquals((await peek(kv, "b", "other", 3, minute, t0)).count, 0);
    assertEquals((await peek(kv, "other", "s", 3, minute, t0)).count, 0);
    assertEquals((await peek(kv, "b", "s", 3, minute, t0 + minute)).count, 0);
    const entry = await kv.get<Deno.KvU64>(["rate", "b", "s", 10]);
    assertEquals(entry.value?.value, 3n, "a refused hit writes nothing (the window is full)");
  });

  await t.step("concurrent hits are all counted (atomic check-and-set)", async () => {
    await Promise.all(
      Array.from({ length: 10 }, () => hit(kv, "c", "s", 100, minute, t0)),
    );
    assertEquals((await peek(kv, "c", "s", 100, minute, t0)).count, 10);
  });

  kv.close();
});
