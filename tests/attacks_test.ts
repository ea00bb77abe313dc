/**
 * Attacks on a served gateway (issue 5 "The battery"), one step each: PKCE downgrade, wrong
 * verifier, code replay, code theft across clients, redirect URI tricks, refresh-token reuse,
 * audience confusion, revoked and expired tokens, tokens in the query, foreign Origins, CSRF and
 * framing of the consent form, and session ids used by another grant.
 */
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { startLegacyBackend, startModernBackend } from "./_backends.ts";
import { serveGateway } from "./_helpers.ts";
import {
  authorizeCode,
  authorizeUrl,
  type ConsentForm,
  pkcePair,
  postDecision,
  readConsentForm,
  registerClient,
} from "./_oauth_flow.ts";
import { issueAccessToken } from "./_tokens.ts";

const REDIRECT = "http://127.0.0.1:3000/callback";
const ACCEPT = "application/json, text/event-stream";

async function expectOAuthError(res: Response, status: number, error: string): Promise<void> {
  const text = await res.text();
  assertEquals(res.status, status, text);
  assertEquals(res.headers.get("content-type"), "application/json");
  assertEquals(JSON.parse(text).error, error, text);
}

async function expectErrorPage(res: Response, status: number): Promise<string> {
  const html = await res.text();
  assertEquals(res.status, status, html.slice(0, 300));
  assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
  assertEquals(res.headers.get("location"), null, "phase-1 errors never redirect");
  return html;
}

/**
 * A phase-2 error of a dynamically registered client: an error page (never a redirect, RFC 9700
 * §4.11.2) whose link carries the error response; returns that link.
 */
async function expectErrorLink(res: Response, error: string): Promise<URL> {
  const html = await expectErrorPage(res, 400);
  const href = /<a class="provider" href="([^"]+)">/.exec(html)?.[1];
  assert(href, "the error page links back to the application");
  const location = new URL(href.replaceAll("&amp;", "&"));
  assertEquals(`${location.origin}${location.pathname}`, REDIRECT);
  assertEquals(location.searchParams.get("error"), error);
  return location;
}

Deno.test("attacks", async (t) => {
  const alpha = startModernBackend();
  const beta = startLegacyBackend();
  const gw = await serveGateway({
    config: {
      backends: [{ name: "alpha", url: alpha.url }, { name: "beta", url: beta.url }],
    },
  });
  const base = gw.url;
  const f = (r: Request) => fetch(r, { redirect: "manual" });
  const token = (fields: Record<string, string>) =>
    fetch(`${base}/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(fields),
    });
  const mcpCall = (path: string, bearer: string, headers: Record<string, string> = {}) =>
    fetch(`${base}${path}`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${bearer}`,
        "content-type": "application/json",
        accept: ACCEPT,
        ...headers,
      },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: {
          protocolVersion: "2025-11-25",
          capabilities: {},
          clientInfo: { name: "attacker", version: "1" },
        },
      }),
    });
  /** Expects the call to be served (200, JSON or SSE); returns the session id, if any. */
  const expectServed = async (res: Response): Promise<string | null> => {
    const text = await res.text();
    assertEquals(res.status, 200, text);
    assert(/json|event-stream/.test(res.headers.get("content-type") ?? ""));
    assertStringIncludes(text, '"result"');
    return res.headers.get("mcp-session-id");
  };
  const expectBearerError = async (res: Response, status: number, error: string) => {
    await expectOAuthError(res, status, error);
    assertStringIncludes(res.headers.get("www-authenticate") ?? "", "resource_metadata=");
  };

  const client = await registerClient(f, { redirect_uris: [REDIRECT] }, base);
  const other = await registerClient(f, { redirect_uris: [REDIRECT] }, base);
  /** A code for `client` through the real consent form. */
  const code = async (options: { resource?: string; scope?: string } = {}) => {
    const pkce = await pkcePair();
    const { code } = await authorizeCode(f, {
      baseUrl: base,
      clientId: client.client_id,
      redirectUri: REDIRECT,
      codeChallenge: pkce.challenge,
      ...options,
    });
    return { code, verifier: pkce.verifier };
  };
  const redeem = (c: { code: string; verifier: string }, clientId = client.client_id) =>
    token({
      grant_type: "authorization_code",
      code: c.code,
      code_verifier: c.verifier,
      redirect_uri: REDIRECT,
      client_id: clientId,
    });
  const tokens = async (options: { resource?: string; scope?: string } = {}) => {
    const res = await redeem(await code(options));
    assertEquals(res.status, 200);
    return await res.json() as { access_token: string; refresh_token: string };
  };
  const refresh = (refreshToken: string) =>
    token({
      grant_type: "refresh_token",
      refresh_token: refreshToken,
      client_id: client.client_id,
    });

  try {
    await t.step(
      "PKCE downgrade: plain or no code_challenge_method is refused (S256 only)",
      async () => {
        const { challenge, verifier } = await pkcePair();
        const url = authorizeUrl({
          baseUrl: base,
          clientId: client.client_id,
          redirectUri: REDIRECT,
          codeChallenge: challenge,
        });
        url.searchParams.set("code_challenge_method", "plain");
        let location = await expectErrorLink(
          await fetch(url, { redirect: "manual" }),
          "invalid_request",
        );
        assertStringIncludes(location.searchParams.get("error_description")!, "S256");
        url.searchParams.delete("code_challenge_method");
        await expectErrorLink(await fetch(url, { redirect: "manual" }), "invalid_request");
        // plain with the verifier as its own challenge: still refused.
        url.searchParams.set("code_challenge_method", "plain");
        url.searchParams.set("code_challenge", verifier);
        await expectErrorLink(await fetch(url, { redirect: "manual" }), "invalid_request");
        url.searchParams.delete("code_challenge");
        url.searchParams.delete("code_challenge_method");
        location = await expectErrorLink(
          await fetch(url, { redirect: "manual" }),
          "invalid_request",
        );
        assertStringIncludes(location.searchParams.get("error_description")!, "code_challenge");
      },
    );

    await t.step(
      "a code without its verifier or with a wrong one gives no token (RFC 7636 §4.6)",
      async () => {
        const c = await code();
        const { code_verifier: _, ...noVerifier } = {
          grant_type: "authorization_code",
          code: c.code,
          code_verifier: "",
          redirect_uri: REDIRECT,
          client_id: client.client_id,
        };
        await expectOAuthError(await token(noVerifier), 400, "invalid_request");
        const wrong = (await pkcePair()).verifier;
        await expectOAuthError(
          await redeem({ code: c.code, verifier: wrong }),
          400,
          "invalid_grant",
        );
      },
    );

    await t.step(
      "code replay is refused and revokes the grant's tokens (RFC 6749 §4.1.2)",
      async () => {
        const c = await code();
        const first = await redeem(c);
        assertEquals(first.status, 200);
        const issued = await first.json();
        await expectServed(await mcpCall("/mcp/alpha", issued.access_token));
        await expectOAuthError(await redeem(c), 400, "invalid_grant");
        await expectBearerError(
          await mcpCall("/mcp/alpha", issued.access_token),
          401,
          "invalid_token",
        );
        await expectOAuthError(await refresh(issued.refresh_token), 400, "invalid_grant");
      },
    );

    await t.step("a code issued to another client is refused (RFC 6749 §4.1.3)", async () => {
      const c = await code();
      await expectOAuthError(await redeem(c, other.client_id), 400, "invalid_grant");
    });

    await t.step(
      "redirect URI mismatch and open-redirect tricks → error page, never a redirect",
      async () => {
        const { challenge } = await pkcePair();
        const attempts = [
          "https://evil.example/callback", // other host
          "http://127.0.0.1:3000/other", // same host, other path
          "http://127.0.0.1:3000/callback/../evil", // dot segments
          "http://127.0.0.1:3000@evil.example/callback", // userinfo trick
          "http://evil.example@127.0.0.1:3000/callback", // userinfo on the right host
          "http://127.0.0.1:3000/%63allback", // percent-encoded path
          "http://127.0.0.1:3000/callback%2F..%2Fevil", // encoded slashes
          "http://127.0.0.1%2Fevil.example:3000/callback",
          "https://127.0.0.1:3000/callback", // loopback, other scheme
          "ftp://127.0.0.1:3000/callback",
          "http://127.0.0.1:3000/callback#frag",
          "javascript://127.0.0.1:3000/callback%0aalert(1)",
          "//evil.example/callback",
          "http://127.0.0.1.evil.example:3000/callback",
        ];
        for (const redirectUri of attempts) {
          const url = authorizeUrl({
            baseUrl: base,
            clientId: client.client_id,
            redirectUri,
            codeChallenge: challenge,
            state: "s",
          });
          const res = await fetch(url, { redirect: "manual" });
          const html = await expectErrorPage(res, 400);
          assert(!html.includes('evil.example/callback"'), `${redirectUri} is not linked`);
        }
        // And at the token endpoint, a code is bound to the redirect URI it was issued with.
        const c = await code();
        await expectOAuthError(
          await token({
            grant_type: "authorization_code",
            code: c.code,
            code_verifier: c.verifier,
            redirect_uri: "https://evil.example/callback",
            client_id: client.client_id,
          }),
          400,
          "invalid_grant",
        );
      },
    );

    await t.step("refresh-token reuse revokes the whole grant (OAuth 2.1 §4.3.1)", async () => {
      const issued = await tokens();
      const rotated = await refresh(issued.refresh_token);
      assertEquals(rotated.status, 200);
      const fresh = await rotated.json();
      await expectServed(await mcpCall("/mcp/alpha", fresh.access_token));
      await expectOAuthError(await refresh(issued.refresh_token), 400, "invalid_grant");
      await expectBearerError(
        await mcpCall("/mcp/alpha", fresh.access_token),
        401,
        "invalid_token",
      );
      await expectOAuthError(await refresh(fresh.refresh_token), 400, "invalid_grant");
    });

    await t.step("a token of one resource is refused on another (RFC 8707 audience)", async () => {
      const issued = await tokens({ resource: `${base}/mcp/alpha`, scope: "mcp:alpha" });
      await expectServed(await mcpCall("/mcp/alpha", issued.access_token));
      await expectBearerError(
        await mcpCall("/mcp/beta", issued.access_token),
        401,
        "invalid_token",
      );
      await expectBearerError(await mcpCall("/mcp", issued.access_token), 401, "invalid_token");
    });

    await t.step("a revoked access token is refused at once (RFC 7009)", async () => {
      const issued = await tokens();
      await expectServed(await mcpCall("/mcp/alpha", issued.access_token));
      const revoked = await fetch(`${base}/revoke`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token: issued.access_token, client_id: client.client_id }),
      });
      assertEquals(revoked.status, 200);
      await revoked.body?.cancel();
      await expectBearerError(
        await mcpCall("/mcp/alpha", issued.access_token),
        401,
        "invalid_token",
      );
    });

    await t.step(
      "a token in the query string is refused (MCP Authorization §Access Token Usage)",
      async () => {
        const issued = await tokens();
        for (const path of ["/mcp/alpha", "/mcp"]) {
          const res = await fetch(`${base}${path}?access_token=${issued.access_token}`, {
            method: "POST",
            headers: { "content-type": "application/json", accept: ACCEPT },
            body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }),
          });
          await expectBearerError(res, 400, "invalid_request");
        }
      },
    );

    await t.step(
      "a foreign Origin is refused with 403 (MCP Transports §Security Warning)",
      async () => {
        const issued = await tokens();
        for (const path of ["/mcp/alpha", "/mcp"]) {
          for (const origin of ["https://evil.example", "http://127.0.0.1:1", "null"]) {
            const res = await mcpCall(path, issued.access_token, { origin });
            const text = await res.text();
            assertEquals(res.status, 403, `${path} ${origin}: ${text}`);
            assertEquals(res.headers.get("content-type"), "application/json");
            assertEquals(JSON.parse(text).error.code, -32600);
          }
        }
      },
    );

    await t.step(
      "CSRF on the consent form: missing/wrong token, other request's cookie, foreign Origin",
      async () => {
        const open = async (): Promise<ConsentForm> => {
          const { challenge } = await pkcePair();
          const page = await fetch(authorizeUrl({
            baseUrl: base,
            clientId: client.client_id,
            redirectUri: REDIRECT,
            codeChallenge: challenge,
          }));
          const html = await page.text();
          assertEquals(page.status, 200);
          return readConsentForm(html, page);
        };
        const form = await open();
        const another = await open();
        const forged: { form: ConsentForm; origin?: string; status?: number }[] = [
          { form: { ...form, csrfToken: "" }, status: 400 }, // missing: an invalid form
          { form: { ...form, csrfToken: another.csrfToken } },
          { form: { ...form, csrfToken: "A".repeat(43) } },
          { form: { ...form, cookie: "" } },
          { form: { ...form, cookie: another.cookie } },
          { form, origin: "https://evil.example" },
        ];
        for (const attempt of forged) {
          let res: Response;
          if (attempt.origin) {
            res = await fetch(`${base}/authorize`, {
              method: "POST",
              redirect: "manual",
              headers: {
                "content-type": "application/x-www-form-urlencoded",
                cookie: attempt.form.cookie,
                origin: attempt.origin,
              },
              body: new URLSearchParams({
                request_id: attempt.form.requestId,
                csrf_token: attempt.form.csrfToken,
                decision: "approve",
                password: "correct horse battery staple",
              }),
            });
          } else {
            res = await postDecision(
              f,
              attempt.form,
              "approve",
              "correct horse battery staple",
              base,
            );
          }
          const html = await expectErrorPage(res, attempt.status ?? 403);
          assertStringIncludes(html, attempt.status ? "csrf_token" : "CSRF");
        }
        // None of the forgeries consumed the request: the genuine form still gets its code.
        const ok = await postDecision(f, form, "approve", "correct horse battery staple", base);
        await ok.body?.cancel();
        assertEquals(ok.status, 303);
        assert(new URL(ok.headers.get("location")!).searchParams.has("code"));
      },
    );

    await t.step(
      "the consent page cannot be framed (CSP frame-ancestors 'none', X-Frame-Options)",
      async () => {
        const { challenge } = await pkcePair();
        const page = await fetch(
          authorizeUrl({
            baseUrl: base,
            clientId: client.client_id,
            redirectUri: REDIRECT,
            codeChallenge: challenge,
          }),
          { headers: { referer: "https://evil.example/frame", "sec-fetch-dest": "iframe" } },
        );
        await page.body?.cancel();
        assertEquals(page.status, 200);
        assertEquals(page.headers.get("content-type"), "text/html; charset=utf-8");
        assertStringIncludes(
          page.headers.get("content-security-policy")!,
          "frame-ancestors 'none'",
        );
        assertEquals(page.headers.get("x-frame-options"), "DENY");
        const cookie = page.headers.get("set-cookie")!;
        assertStringIncludes(cookie, "HttpOnly");
        assertStringIncludes(cookie, "SameSite=Lax");
      },
    );

    await t.step(
      "a session id opened by one grant is 404 for another (/mcp/<backend>)",
      async () => {
        const a = await tokens();
        const b = await tokens();
        const session = await expectServed(await mcpCall("/mcp/beta", a.access_token));
        assert(session, "the legacy backend opened a session");
        const list = (bearer: string) =>
          fetch(`${base}/mcp/beta`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${bearer}`,
              "content-type": "application/json",
              accept: ACCEPT,
              "mcp-session-id": session,
              "mcp-protocol-version": "2025-11-25",
            },
            body: JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" }),
          });
        const stolen = await list(b.access_token);
        const text = await stolen.text();
        assertEquals(stolen.status, 404, text);
        assertEquals(stolen.headers.get("content-type"), "application/json");
        assertEquals(JSON.parse(text).error.code, -32001);
        assertEquals(
          beta.requests.filter((r) => r.headers["mcp-session-id"] === session).length,
          0,
        );
        // The owner still uses it.
        await expectServed(await list(a.access_token));
      },
    );

    await t.step("a legacy session id of /mcp opened by one grant is 404 for another", async () => {
      const a = await tokens();
      const b = await tokens();
      const session = await expectServed(await mcpCall("/mcp", a.access_token));
      assert(session, "the aggregate opened a session");
      const list = (bearer: string) =>
        fetch(`${base}/mcp`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${bearer}`,
            "content-type": "application/json",
            accept: ACCEPT,
            "mcp-session-id": session,
            "mcp-protocol-version": "2025-11-25",
          },
          body: JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" }),
        });
      const stolen = await list(b.access_token);
      const text = await stolen.text();
      assertEquals(stolen.status, 404, text);
      assertEquals(stolen.headers.get("content-type"), "application/json");
      assertEquals(JSON.parse(text).jsonrpc, "2.0");
      assert(JSON.parse(text).error, text);
      await expectServed(await list(a.access_token));
    });

    await t.step(
      "an expired access token is refused (checked on read, not by KV expiry)",
      async () => {
        const { accessToken } = await issueAccessToken(gw.deps, {
          scope: "mcp",
          resource: `${base}/mcp`,
          clientId: client.client_id,
        });
        await expectServed(await mcpCall("/mcp/alpha", accessToken));
        gw.deps.clock.advance(gw.deps.config.accessTokenTtlSeconds * 1000 + 1);
        await expectBearerError(await mcpCall("/mcp/alpha", accessToken), 401, "invalid_token");
        await expectBearerError(await mcpCall("/mcp", accessToken), 401, "invalid_token");
      },
    );
  } finally {
    await closeAggregate(gw.deps);
    await gw.close();
    await alpha.close();
    await beta.close();
  }
});
