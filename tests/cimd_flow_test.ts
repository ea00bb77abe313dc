/**
 * Client ID Metadata Documents through the OAuth flow (MCP 2025-11-25 Authorization §Client ID
 * Metadata Documents): a real document server on 127.0.0.1 (`allowLoopback` on in this test's
 * config), `/authorize` → consent (document host shown, localhost warning) → `/token`, and a
 * document that cannot be fetched or is invalid → an error page, never a redirect.
 */
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { makeDeps } from "./_helpers.ts";
import { basicAuth, expectOAuthError, expectTokens, formRequest } from "./_kv_fixtures.ts";
import {
  authorizeCode,
  authorizeUrl,
  DEFAULT_REDIRECT_URI,
  type FetchLike,
  pkcePair,
} from "./_oauth_flow.ts";
import { createHandler } from "../main.ts";

const BACKENDS = [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }];
const WEB_REDIRECT = "https://app.example.com/cb";

/** A real document server on 127.0.0.1:<free port>. */
function serveDocuments() {
  let base = "";
  const doc = (path: string, redirectUris: string[]) => ({
    client_id: `${base}${path}`,
    client_name: "Example <MCP> Client",
    redirect_uris: redirectUris,
    token_endpoint_auth_method: "none",
  });
  const json = (body: unknown, status = 200) =>
    new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    switch (path) {
      case "/native.json":
        return json(doc(path, [DEFAULT_REDIRECT_URI]));
      case "/web.json":
        return json(doc(path, [WEB_REDIRECT, DEFAULT_REDIRECT_URI]));
      case "/mismatch.json":
        return json({ ...doc(path, [DEFAULT_REDIRECT_URI]), client_id: `${base}/other.json` });
      case "/redirect.json":
        return new Response(null, { status: 302, headers: { location: `${base}/native.json` } });
      default:
        return json({ error: "not found" }, 404);
    }
  });
  base = `http://127.0.0.1:${server.addr.port}`;
  return { base, close: () => server.shutdown() };
}

async function setup(cimd: Record<string, unknown> = { enabled: true, allowLoopback: true }) {
  const deps = await makeDeps({ config: { backends: BACKENDS, clientIdMetadataDocuments: cimd } });
  const handle = createHandler(deps);
  const fetchLike: FetchLike = (r) => handle(r);
  return { deps, handle, fetchLike };
}

async function consentPage(fetchLike: FetchLike, clientId: string, redirectUri: string) {
  const { challenge } = await pkcePair();
  return await fetchLike(
    new Request(authorizeUrl({ clientId, redirectUri, codeChallenge: challenge })),
  );
}

Deno.test("CIMD client through /authorize and /token", async (t) => {
  const docs = serveDocuments();
  const { deps, handle, fetchLike } = await setup();
  const nativeId = `${docs.base}/native.json`;
  const webId = `${docs.base}/web.json`;
  const host = new URL(docs.base).host;
  try {
    await t.step(
      "consent shows the document host and warns: every redirect URI is localhost",
      async () => {
        const res = await consentPage(fetchLike, nativeId, DEFAULT_REDIRECT_URI);
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
        const html = await res.text();
        assertStringIncludes(html, `<span class="host" id="client-host">${host}</span>`);
        assertStringIncludes(html, "Client identified by");
        assertStringIncludes(html, `id="loopback-warning"`);
        assertStringIncludes(html, "Example &lt;MCP&gt; Client");
      },
    );

    await t.step("no localhost warning when a redirect URI is on the web", async () => {
      const res = await consentPage(fetchLike, webId, WEB_REDIRECT);
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
      const html = await res.text();
      assertStringIncludes(html, `id="client-host">${host}</span>`);
      assert(!html.includes("loopback-warning"));
    });

    await t.step("code flow: a public client (auth none), tokens and refresh", async () => {
      const { verifier, challenge } = await pkcePair();
      const { code } = await authorizeCode(fetchLike, {
        clientId: nativeId,
        redirectUri: DEFAULT_REDIRECT_URI,
        codeChallenge: challenge,
      });
      const tokens = await expectTokens(
        await handle(formRequest("/token", {
          grant_type: "authorization_code",
          client_id: nativeId,
          code,
          redirect_uri: DEFAULT_REDIRECT_URI,
          code_verifier: verifier,
        })),
      );
      assertEquals(tokens.scope, "mcp");
      const refreshed = await expectTokens(
        await handle(formRequest("/token", {
          grant_type: "refresh_token",
          client_id: nativeId,
          refresh_token: tokens.refresh_token,
        })),
      );
      assert(refreshed.refresh_token !== tokens.refresh_token, "rotated");
      const revoked = await handle(
        formRequest("/revoke", { client_id: nativeId, token: refreshed.refresh_token }),
      );
      assertEquals(revoked.status, 200);
      assertEquals(revoked.headers.get("content-type"), "application/json");
      await revoked.body?.cancel();
    });

    await t.step("a CIMD client cannot authenticate with a secret (draft §4.1)", async () => {
      await expectOAuthError(
        await handle(
          formRequest("/token", { grant_type: "refresh_token", refresh_token: "x" }, {
            authorization: basicAuth(nativeId, "some-secret-0123456789"),
          }),
        ),
        401,
        "invalid_client",
        "none",
      );
    });

    await t.step("a redirect URI the document does not list → error page", async () => {
      const res = await consentPage(fetchLike, nativeId, "http://127.0.0.1:3000/other");
      assertEquals(res.status, 400);
      assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
      assertEquals(res.headers.get("location"), null);
      assertStringIncludes(await res.text(), "Invalid redirect URI");
    });
  } finally {
    deps.kv.close();
    await docs.close();
  }
});

Deno.test("CIMD fetch failures are error pages, never redirects", async (t) => {
  const docs = serveDocuments();
  const { deps, handle, fetchLike } = await setup();
  try {
    const cases: [string, string][] = [
      ["/missing.json", "HTTP 404"],
      ["/mismatch.json", "does not equal the document URL"],
      ["/redirect.json", "redirects are not followed"],
    ];
    for (const [path, why] of cases) {
      await t.step(`${path}: ${why}`, async () => {
        const res = await consentPage(fetchLike, `${docs.base}${path}`, DEFAULT_REDIRECT_URI);
        assertEquals(res.status, 400);
        assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
        assertEquals(res.headers.get("location"), null);
        const html = await res.text();
        assertStringIncludes(html, "Application could not be identified");
        assertStringIncludes(html, why);
      });
    }

    await t.step("a server that is down → error page", async () => {
      const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (probe.addr as Deno.NetAddr).port;
      probe.close();
      const res = await consentPage(
        fetchLike,
        `http://127.0.0.1:${port}/client.json`,
        DEFAULT_REDIRECT_URI,
      );
      assertEquals(res.status, 400);
      assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
      assertEquals(res.headers.get("location"), null);
      assertStringIncludes(await res.text(), "could not be fetched");
    });

    await t.step("at /token a failing document is invalid_client (401)", async () => {
      await expectOAuthError(
        await handle(formRequest("/token", {
          grant_type: "refresh_token",
          client_id: `${docs.base}/missing.json`,
          refresh_token: "x",
        })),
        401,
        "invalid_client",
        "HTTP 404",
      );
    });
  } finally {
    deps.kv.close();
    await docs.close();
  }
});

Deno.test("CIMD policy of the config", async (t) => {
  const docs = serveDocuments();
  try {
    await t.step("loopback documents are refused without allowLoopback (SSRF guard)", async () => {
      const { deps, fetchLike } = await setup({ enabled: true });
      try {
        const res = await consentPage(fetchLike, `${docs.base}/native.json`, DEFAULT_REDIRECT_URI);
        assertEquals(res.status, 400);
        assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
        assertEquals(res.headers.get("location"), null);
        assertStringIncludes(await res.text(), "https");
      } finally {
        deps.kv.close();
      }
    });

    await t.step("disabled: a URL client_id is an unknown client", async () => {
      const { deps, handle, fetchLike } = await setup({ enabled: false, allowLoopback: true });
      try {
        const res = await consentPage(fetchLike, `${docs.base}/native.json`, DEFAULT_REDIRECT_URI);
        assertEquals(res.status, 400);
        assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
        assertStringIncludes(await res.text(), "Unknown application");
        await expectOAuthError(
          await handle(formRequest("/token", {
            grant_type: "refresh_token",
            client_id: `${docs.base}/native.json`,
            refresh_token: "x",
          })),
          401,
          "invalid_client",
          "unknown client",
        );
      } finally {
        deps.kv.close();
      }
    });
  } finally {
    await docs.close();
  }
});
