/**
 * The connect flow over HTTP (issue 9): a user signed in at the gateway opens
 * `/connect/{backend}`, signs in at the backend's authorization server (panva's oidc-provider,
 * RFC 8707 resource indicators, JWT access tokens), and lands on `/connections` saying the
 * backend is connected; the tokens are stored sealed for (user, backend). And every way it can go
 * wrong: signed out, not allowed, `state` replayed or delivered to another user, a forged `iss`,
 * the user refusing at the server, the server down, forms without their CSRF token.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import {
  assertPage,
  connectBackend,
  signedInBrowser,
  startCredentialsSetup,
} from "./_credentials.ts";
import { field, HttpBrowser, providerHref, signInAtIdp } from "./_http_browser.ts";
import { entries } from "./_sign_in.ts";
import { backendConnectionKey } from "../lib/store.ts";

const atCallback = (u: URL) => u.pathname === "/connect/notes/callback";

Deno.test("GET /connect/{backend}", async (t) => {
  const s = await startCredentialsSetup({
    backends: () => [{ name: "other", url: "http://127.0.0.1:9/mcp" }],
  });
  const kv = s.gw.deps.kv;
  try {
    const ana = await signedInBrowser(s.gw.url, "ana");

    await t.step(
      "code + PKCE S256 + state + resource (RFC 8707) at the backend's authorization server, then /connections says connected",
      async () => {
        const stopped = await connectBackend(ana, s.gw.url, "notes", "ana-at-notes", atCallback);
        const q = stopped.url.searchParams;
        assert(q.get("code") && q.get("state"), stopped.url.href);
        assertEquals(q.get("iss"), s.notes.issuer); // RFC 9207
        const page = await ana.navigate(stopped.url);
        assertPage(page, 200, /notes is connected\./);
        assertEquals(page.url.pathname, "/connections");
        assertStringIncludes(page.html, "Connected since");
        const auth = s.notes.seen.find((l) => l.startsWith("GET /auth"));
        assert(auth, "the browser went to the authorization endpoint");
        const rows = await entries(kv, ["backend_connection"]);
        assertEquals(rows.map((r) => r.key), [["backend_connection", "corp:ana", "notes"]]);
        assertEquals((await entries(kv, ["connect_flow"])).length, 0, "the flow was consumed");
      },
    );

    await t.step(
      "the authorization request carries PKCE S256, state and resource = the backend (RFC 7636, RFC 8707)",
      async () => {
        const res = await ana.send(`${s.gw.url}/connect/notes`);
        assertEquals(res.status, 303);
        const location = new URL(res.headers.get("location")!);
        assertEquals(`${location.origin}${location.pathname}`, `${s.notes.issuer}/auth`);
        const q = location.searchParams;
        assertEquals(q.get("response_type"), "code");
        assertEquals(q.get("code_challenge_method"), "S256");
        assertMatch(q.get("code_challenge") ?? "", /^[A-Za-z0-9_-]{43}$/);
        assertMatch(q.get("state") ?? "", /^[A-Za-z0-9_-]{43}$/);
        assertEquals(q.get("resource"), s.notes.url);
        assertEquals(q.get("redirect_uri"), `${s.gw.url}/connect/notes/callback`);
        assertEquals(q.get("scope"), "notes:read notes:write"); // from the backend's 401
      },
    );

    await t.step(
      "signed out: through GET /login?return_to=/connect/notes and back, then connected",
      async () => {
        const browser = new HttpBrowser();
        const res = await browser.send(`${s.gw.url}/connect/notes`);
        assertEquals(res.status, 303);
        assertEquals(res.headers.get("location"), `${s.gw.url}/login?return_to=%2Fconnect%2Fnotes`);
        let page = await browser.navigate(`${s.gw.url}/connect/notes`);
        page = await browser.navigate(providerHref(page.html, "Corp SSO"));
        // At the gateway's identity provider, until the browser is sent on to the backend's.
        const atNotes = (u: URL) => u.origin === s.notes.issuer;
        page = await signInAtIdp(browser, page, "bob", atNotes);
        assertEquals(page.url.origin, s.notes.issuer); // back at /connect/notes, sent on
        page = await browser.navigate(page.url);
        page = await signInAtIdp(browser, page, "bob-at-notes"); // at the backend's server
        assertPage(page, 200, /notes is connected\./);
      },
    );

    await t.step(
      "a backend the user's access rules do not cover: 403; an unknown or shared backend: 404",
      async () => {
        const eve = await signedInBrowser(s.gw.url, "eve");
        assertPage(await eve.navigate(`${s.gw.url}/connect/notes`), 403, /may not use notes/);
        assertPage(await eve.navigate(`${s.gw.url}/connect/nope`), 404, /no such per-user backend/);
        assertPage(
          await eve.navigate(`${s.gw.url}/connect/other`),
          404,
          /no such per-user backend/,
        );
      },
    );

    await t.step(
      "state replay: a callback delivered twice is refused the second time",
      async () => {
        const stopped = await connectBackend(ana, s.gw.url, "notes", "ana-at-notes", atCallback);
        assertPage(await ana.navigate(stopped.url), 200, /notes is connected\./);
        const before = (await kv.get(backendConnectionKey("corp:ana", "notes"))).versionstamp;
        assertPage(await ana.navigate(stopped.url), 400, /expired, was already used/);
        assertEquals(
          (await kv.get(backendConnectionKey("corp:ana", "notes"))).versionstamp,
          before,
        );
      },
    );

    await t.step(
      "a callback delivered to another signed-in user is refused, and stays usable by its owner",
      async () => {
        const stopped = await connectBackend(
          ana,
          s.gw.url,
          "notes",
          "mallory-at-notes",
          atCallback,
        );
        const bob = await signedInBrowser(s.gw.url, "bob");
        const bobBefore = (await kv.get(backendConnectionKey("corp:bob", "notes"))).versionstamp;
        assertPage(await bob.navigate(stopped.url), 403, /started by another account/);
        assertEquals(
          (await kv.get(backendConnectionKey("corp:bob", "notes"))).versionstamp,
          bobBefore,
        );
        assertPage(await ana.navigate(stopped.url), 200, /notes is connected\./);
      },
    );

    await t.step(
      "an answer whose iss is not the backend's server is refused (RFC 9207 §2.4)",
      async () => {
        const stopped = await connectBackend(ana, s.gw.url, "notes", "ana-at-notes", atCallback);
        const forged = new URL(stopped.url);
        forged.searchParams.set("iss", "https://evil.example");
        const before = (await kv.get(backendConnectionKey("corp:ana", "notes"))).versionstamp;
        assertPage(await ana.navigate(forged), 400, /did not come from notes/);
        assertEquals(
          (await kv.get(backendConnectionKey("corp:ana", "notes"))).versionstamp,
          before,
        );
      },
    );

    await t.step(
      "the user refusing at the server (access_denied): an error page, nothing changed",
      async () => {
        const fresh = await signedInBrowser(s.gw.url, "ana"); // no session at the backend's server
        const page = await fresh.navigate(`${s.gw.url}/connect/notes`);
        assertMatch(page.url.pathname, /^\/interaction\//);
        const before = (await kv.get(backendConnectionKey("corp:ana", "notes"))).versionstamp;
        const aborted = await fresh.navigate(`${s.notes.issuer}${page.url.pathname}/abort`);
        assertPage(aborted, 400, /did not allow the gateway to use your notes account/);
        assertEquals(
          (await kv.get(backendConnectionKey("corp:ana", "notes"))).versionstamp,
          before,
        );
      },
    );

    await t.step(
      "the server down at the code exchange: 502 with a way to start again; nothing stored",
      async () => {
        const stopped = await connectBackend(ana, s.gw.url, "notes", "ana-at-notes", atCallback);
        const before = (await kv.get(backendConnectionKey("corp:ana", "notes"))).versionstamp;
        s.notes.down = true;
        try {
          const page = await ana.navigate(stopped.url);
          assertPage(page, 502, /answered HTTP 503/);
          assertStringIncludes(page.html, `${s.gw.url}/connect/notes`);
        } finally {
          s.notes.down = false;
        }
        assertEquals(
          (await kv.get(backendConnectionKey("corp:ana", "notes"))).versionstamp,
          before,
        );
      },
    );

    await t.step("disconnect needs the session's CSRF token and our Origin", async () => {
      const action = `${s.gw.url}/connections/notes/disconnect`;
      const page = await ana.navigate(`${s.gw.url}/connections`);
      const token = field(page.html, "csrf_token");
      assertPage(await ana.submit(action, { csrf_token: "forged" }), 403, /CSRF/);
      const foreign = await ana.navigate(action, {
        method: "POST",
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          origin: "https://evil.example",
        },
        body: new URLSearchParams({ csrf_token: token }),
      });
      assertPage(foreign, 403, /CSRF/);
      assert((await kv.get(backendConnectionKey("corp:ana", "notes"))).value !== null);
      assertPage(await ana.submit(action, { csrf_token: token }), 200, /notes is disconnected\./);
      assertEquals((await kv.get(backendConnectionKey("corp:ana", "notes"))).value, null);
    });

    await t.step("GET /oauth/client.json: the gateway's Client ID Metadata Document", async () => {
      const res = await fetch(`${s.gw.url}/oauth/client.json`);
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals(await res.json(), {
        client_id: `${s.gw.url}/oauth/client.json`,
        client_name: "mcp-edge-gateway",
        client_uri: s.gw.url,
        redirect_uris: [`${s.gw.url}/connect/notes/callback`],
        grant_types: ["authorization_code", "refresh_token"],
        response_types: ["code"],
        token_endpoint_auth_method: "none",
        application_type: "web",
      });
    });

    await t.step("no token, code or secret in the logs", () => {
      const text = JSON.stringify(s.gw.deps.logs);
      assert(!/eyJ[A-Za-z0-9_-]{10,}/.test(text), "no JWT");
      for (const line of s.gw.deps.logs) {
        for (const [k, v] of Object.entries(line)) {
          if (/token|secret|code|verifier/i.test(k)) assertEquals(v, "[redacted]", k);
        }
      }
      assert(s.gw.deps.logs.some((l) => l.event === "backend_connected" && l.user === "corp:ana"));
    });
  } finally {
    await s.close();
  }
});

Deno.test("GET /connect/{backend} with the backend's authorization server down", async (t) => {
  const s = await startCredentialsSetup();
  try {
    const ana = await signedInBrowser(s.gw.url, "ana");
    await t.step("502 with a way to try again; no flow stored", async () => {
      s.notes.down = true;
      const page = await ana.navigate(`${s.gw.url}/connect/notes`);
      assertPage(page, 502, /Sign-in unavailable/);
      assertStringIncludes(page.html, "answered HTTP 503");
      assertEquals((await entries(s.gw.deps.kv, ["connect_flow"])).length, 0);
      s.notes.down = false;
      assertPage(
        await connectBackend(ana, s.gw.url, "notes", "ana-at-notes"),
        200,
        /notes is connected\./,
      );
    });
  } finally {
    await s.close();
  }
});
