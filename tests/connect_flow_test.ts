/**
 * The connect flow over HTTP (issue 9): a user signed in at the gateway opens
 * `/connect/{backend}`, signs in at the backend's authorization server (panva's oidc-provider,
 * RFC 8707 resource indicators, JWT access tokens), and lands on `/connections` saying the
 * backend is connected; the tokens are stored sealed for (user, backend).
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { connectBackend, signedInBrowser, startCredentialsSetup } from "./_credentials.ts";
import { entries } from "./_sign_in.ts";

Deno.test("GET /connect/{backend}", async (t) => {
  const s = await startCredentialsSetup();
  try {
    await t.step(
      "code + PKCE S256 + state + resource (RFC 8707) at the backend's authorization server, then /connections says connected",
      async () => {
        const browser = await signedInBrowser(s.gw.url, "ana");
        const page = await connectBackend(browser, s.gw.url, "notes", "ana-at-notes");
        assertEquals(page.status, 200, page.html.slice(0, 500));
        assertEquals(page.url.pathname, "/connections");
        assertMatch(page.res.headers.get("content-type") ?? "", /^text\/html/);
        assertStringIncludes(page.html, "notes is connected.");
        const rows = await entries(s.gw.deps.kv, ["backend_connection"]);
        assertEquals(rows.length, 1);
        assertEquals(rows[0]!.key, ["backend_connection", "corp:ana", "notes"]);
        console.log(s.notes.seen);
      },
    );
  } finally {
    await s.close();
  }
});
