/**
 * Team sign-in under bad input and faults (issue 8 "Bad input and faults"), against panva's
 * oidc-provider on a real port: a provider down or slow, `state` missing, unknown, replayed or
 * foreign, ID tokens with a bad signature, wrong `aud`, expired, wrong `nonce` or `azp` (signed
 * with the provider's own key, as a broken or hostile provider would send them), an error from
 * the provider, unknown provider ids, and a sign-in finished in another browser. Each gets a
 * clear error page; none stores a session, a user or a grant, and no log line holds a secret.
 */
import { decodeJwt } from "jose";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { deadBackendUrl } from "./_aggregate_backends.ts";
import { HttpBrowser, type Page, providerHref } from "./_http_browser.ts";
import { approve, authorizeWithProvider, entries, startSignInSetup } from "./_sign_in.ts";
import { authorizeUrl, pkcePair, registerClient } from "./_oauth_flow.ts";

const atCallback = (u: URL) => u.pathname === "/login/corp/callback";

function errorPage(page: Page, status: number, text: string) {
  assertEquals(page.status, status, page.html.slice(0, 300));
  assertEquals(page.res.headers.get("content-type"), "text/html; charset=utf-8");
  assertStringIncludes(page.html, text);
}

Deno.test({
  name: "team sign-in: bad input and faults",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const s = await startSignInSetup({
      providerExtra: { timeoutMs: 400 },
      moreProviders: (idp) => [
        { id: "corp2", type: "oidc", issuer: idp.issuer, clientId: "other" },
        { id: "down", type: "oidc", issuer: new URL(deadBackendUrl()).origin, clientId: "x" },
      ],
    });
    const { kv } = s.gw.deps;
    const secrets: string[] = [s.idp.clientSecret];
    const stored = async () => ({
      grants: (await entries(kv, ["grant"])).length,
      users: (await entries(kv, ["user"])).length,
      userGrants: (await entries(kv, ["user_grant"])).length,
      sessions: (await entries(kv, ["browser_session"])).length,
      codes: (await entries(kv, ["code"])).length,
    });
    /** Runs a sign-in up to the provider's redirect to the gateway's callback (not loaded). */
    const toCallback = async (browser = new HttpBrowser()) => {
      const a = await authorizeWithProvider(s, browser, "ana", { stop: atCallback });
      assert(atCallback(a.page.url), `stopped at the callback, not ${a.page.url}`);
      secrets.push(a.page.url.searchParams.get("code")!, a.page.url.searchParams.get("state")!);
      return { browser, callback: a.page.url };
    };
    /** The gateway's sign-in page of a new authorization request, in `browser`. */
    const signInPage = async (browser: HttpBrowser) => {
      const client = await registerClient((r) => fetch(r), {}, s.gw.url);
      return await browser.navigate(authorizeUrl({
        baseUrl: s.gw.url,
        clientId: client.client_id,
        redirectUri: client.redirect_uris[0]!,
        codeChallenge: (await pkcePair()).challenge,
      }));
    };
    const before = await stored();
    try {
      await t.step("unknown provider id → 404 page (start and callback)", async () => {
        const browser = new HttpBrowser();
        errorPage(await browser.navigate(`${s.gw.url}/login/nope?return_to=/`), 404, "no such");
        errorPage(
          await browser.navigate(`${s.gw.url}/login/nope/callback?state=x`),
          404,
          "no such",
        );
      });

      await t.step("provider down: discovery fails → 502 page, nothing stored", async () => {
        const page = await new HttpBrowser().navigate(`${s.gw.url}/login/down?return_to=/`);
        errorPage(page, 502, "cannot be reached");
        assertEquals((await entries(kv, ["login_flow"])).length, 0);
        assert(
          s.gw.deps.logs.some((l) => l.route === "login" && l.sign_in_error === "unreachable"),
        );
      });

      await t.step(
        "state missing, unknown, or issued for another provider → 400 page",
        async () => {
          const browser = new HttpBrowser();
          const base = `${s.gw.url}/login/corp/callback?code=abc`;
          errorPage(await browser.navigate(base), 400, "no &quot;state&quot;");
          errorPage(await browser.navigate(`${base}&state=not-ours`), 400, "expired");
          const { browser: b, callback } = await toCallback();
          const foreign = new URL(callback);
          foreign.pathname = "/login/corp2/callback";
          errorPage(await b.navigate(foreign), 400, "not started here");
        },
      );

      await t.step("replayed callback URL: the state is single use", async () => {
        const { browser, callback } = await toCallback();
        const first = await browser.navigate(callback);
        assertEquals(first.status, 200, "the first delivery signs in (consent page)");
        errorPage(await browser.navigate(callback), 400, "already used");
        errorPage(await new HttpBrowser().navigate(callback), 400, "already used");
        await approve(browser, first);
      });

      await t.step(
        "a callback delivered to another browser fails (flow cookie), the right browser still can",
        async () => {
          const { browser, callback } = await toCallback();
          const other = new HttpBrowser();
          errorPage(await other.navigate(callback), 400, "another browser");
          assertEquals(other.cookie(s.gw.url, "gw_session"), undefined);
          assertEquals((await browser.navigate(callback)).status, 200);
        },
      );

      await t.step("a pending request continued from another browser → 400 page", async () => {
        const href = providerHref((await signInPage(new HttpBrowser())).html, "Corp SSO");
        errorPage(await new HttpBrowser().navigate(href), 400, "another browser");
      });

      await t.step(
        "error returned by the provider (error=access_denied) → error page",
        async () => {
          const browser = new HttpBrowser();
          const login = await browser.navigate(
            providerHref((await signInPage(browser)).html, "Corp SSO"),
          );
          assertEquals(login.status, 200);
          const abort = new URL(`${login.url.pathname}/abort`, login.url);
          const page = await browser.navigate(abort);
          assertEquals(page.url.pathname, "/login/corp/callback");
          errorPage(page, 400, "did not sign you in (access_denied)");
          assertStringIncludes(page.html, "Try again");
          assertEquals(browser.cookie(s.gw.url, "gw_session"), undefined);
        },
      );

      await t.step("provider slow: the token endpoint does not answer → timeout page", async () => {
        const { browser, callback } = await toCallback();
        s.idp.hang.add("/token");
        try {
          errorPage(await browser.navigate(callback), 502, "did not answer in time");
        } finally {
          s.idp.hang.delete("/token");
        }
        assertEquals(browser.cookie(s.gw.url, "gw_session"), undefined);
      });

      const forged: [string, string, (idToken: string) => Promise<string>][] = [
        ["bad signature", "id_token_ERR_JWS_SIGNATURE_VERIFICATION_FAILED", (tok) => {
          const [h, , sig] = tok.split(".");
          const payload = { ...decodeJwt(tok), sub: "eve" };
          const body = btoa(JSON.stringify(payload)).replace(/=+$/, "").replace(/\+/g, "-")
            .replace(/\//g, "_");
          return Promise.resolve(`${h}.${body}.${sig}`);
        }],
        [
          "wrong aud",
          "id_token_ERR_JWT_CLAIM_VALIDATION_FAILED",
          (tok) => s.idp.sign({ ...decodeJwt(tok), aud: "someone-else" }),
        ],
        [
          "several audiences without our azp",
          "azp_mismatch",
          (tok) => s.idp.sign({ ...decodeJwt(tok), aud: [s.idp.clientId, "other"], azp: "other" }),
        ],
        ["expired", "id_token_ERR_JWT_EXPIRED", (tok) => {
          const now = Math.floor(Date.now() / 1000);
          return s.idp.sign({ ...decodeJwt(tok), iat: now - 7200, exp: now - 3600 });
        }],
        [
          "wrong nonce",
          "nonce_mismatch",
          (tok) => s.idp.sign({ ...decodeJwt(tok), nonce: "not-the-nonce" }),
        ],
      ];
      for (const [fault, reason, forge] of forged) {
        await t.step(`ID token with ${fault} → 401 page (OIDC Core §3.1.3.7)`, async () => {
          const { browser, callback } = await toCallback();
          const realFetch = s.gw.deps.fetch;
          s.gw.deps.fetch = async (input, init) => {
            const res = await realFetch(input, init);
            if (new URL(input instanceof Request ? input.url : input).pathname !== "/token") {
              return res;
            }
            const body = await res.json();
            secrets.push(body.id_token, body.access_token);
            body.id_token = await forge(body.id_token);
            return Response.json(body, { status: res.status });
          };
          try {
            errorPage(await browser.navigate(callback), 401, "could not be verified");
          } finally {
            s.gw.deps.fetch = realFetch;
          }
          const line = s.gw.deps.logs.findLast((l) => l.route === "login_callback");
          assertEquals(line?.sign_in_error, reason);
          assertEquals(browser.cookie(s.gw.url, "gw_session"), undefined);
        });
      }

      await t.step(
        "nothing half-written: no grant, user, session or code beyond the one approval",
        async () => {
          const after = await stored();
          assertEquals(after, {
            grants: before.grants,
            users: before.users + 1, // ana, from the replay step's first (good) delivery
            userGrants: before.userGrants,
            sessions: before.sessions + 2, // the replay step and the right-browser step
            codes: before.codes + 1, // the replay step's approval
          });
        },
      );

      await t.step("no log line holds a code, state, token, ID token or the client secret", () => {
        const text = JSON.stringify(s.gw.deps.logs);
        for (const secret of secrets.filter(Boolean)) {
          assert(!text.includes(secret), `a log line holds ${secret.slice(0, 12)}…`);
        }
        const reasons = s.gw.deps.logs.map((l) => l.sign_in_error).filter(Boolean);
        assert(reasons.includes("timeout") && reasons.includes("bad_state"), String(reasons));
        assert(reasons.some((r) => String(r).startsWith("id_token_")), String(reasons));
      });
    } finally {
      await s.close();
    }
  },
});
