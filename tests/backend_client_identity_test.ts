/**
 * Who the gateway is at a backend's authorization server (issue 9), against panva's
 * oidc-provider: a client configured by hand; the gateway's own Client ID Metadata Document when
 * the server advertises support and `PUBLIC_URL` is https (the server fetches
 * `${PUBLIC_URL}/oauth/client.json` from the gateway); else dynamic registration (RFC 7591) once,
 * kept in KV with its secret sealed; and the fall back from a refused metadata document to
 * registration, logged with why.
 */
import { chooseBackendClient } from "../lib/credentials/backend_client_identity.ts";
import { backendOAuthPlan } from "../lib/credentials/backend_oauth_discovery.ts";
import { unseal } from "../lib/credentials/encryption.ts";
import type { BackendClientRecord } from "../lib/store.ts";
import { createHandler } from "../main.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import {
  connectBackend,
  ENCRYPTION_KEY,
  signedInBrowser,
  startCredentialsSetup,
} from "./_credentials.ts";
import { makeDeps } from "./_helpers.ts";
import { field, HttpBrowser } from "./_http_browser.ts";
import { startNotesBackend } from "./_oauth_backend.ts";
import { DEFAULT_PASSWORD } from "./_oauth_flow.ts";
import { entries } from "./_sign_in.ts";

const registrations = (seen: string[]) => seen.filter((l) => l === "POST /reg").length;

Deno.test("the gateway's client identity at a backend's authorization server", async (t) => {
  await t.step(
    "dynamic registration (RFC 7591) once per backend and server, its secret sealed in KV",
    async () => {
      const s = await startCredentialsSetup();
      try {
        const ana = await signedInBrowser(s.gw.url, "ana");
        const bob = await signedInBrowser(s.gw.url, "bob");
        await connectBackend(ana, s.gw.url, "notes", "ana-at-notes");
        await connectBackend(bob, s.gw.url, "notes", "bob-at-notes");
        assertEquals(registrations(s.notes.seen), 1);
        const rows = await entries(s.gw.deps.kv, ["backend_client"]);
        assertEquals(rows.map((r) => r.key), [["backend_client", "notes", s.notes.issuer]]);
        const record = rows[0]!.value as BackendClientRecord;
        assertEquals(record.registration?.authMethod, "client_secret_basic");
        assertEquals(record.registration?.redirectUri, `${s.gw.url}/connect/notes/callback`);
        const { clientSecret } = await unseal<{ clientSecret: string }>(
          s.gw.deps.settings.encryptionKey!,
          rows[0]!.key,
          record.registration!.sealedSecret!,
        );
        assert(clientSecret.length >= 32);
        assert(
          !JSON.stringify(rows[0]!.value, (_k, v) => v instanceof Uint8Array ? [...v] : v).includes(
            clientSecret,
          ),
        );
        assert(
          s.gw.deps.logs.some((l) =>
            l.event === "backend_client_fallback" && l.from === "metadata document" &&
            l.reason === "the server does not advertise client_id_metadata_document_supported"
          ),
        );
      } finally {
        await s.close();
      }
    },
  );

  await t.step("concurrent first connects agree on one registration", async () => {
    const notes = await startNotesBackend();
    const deps = await makeDeps({
      config: { backends: [{ name: "notes", url: notes.url, auth: { type: "oauth" } }] },
      env: { GATEWAY_ENCRYPTION_KEY: ENCRYPTION_KEY },
    });
    try {
      const backend = deps.config.backends[0]!;
      const { server } = await backendOAuthPlan(deps, backend);
      const clients = await Promise.all(
        Array.from({ length: 6 }, () => chooseBackendClient(deps, backend, server)),
      );
      assertEquals(new Set(clients.map((c) => c.clientId)).size, 1);
      assertEquals(clients[0]!.method, "dcr");
      assertEquals((await entries(deps.kv, ["backend_client"])).length, 1);
    } finally {
      deps.kv.close();
      await notes.close();
    }
  });

  await t.step(
    "a client configured by hand (auth.clientId, client_secret_post): no registration",
    async () => {
      const s = await startCredentialsSetup({
        configFor: async (url, notes) => {
          const res = await fetch(`${notes.issuer}/reg`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
              client_name: "registered by hand",
              redirect_uris: [`${url}/connect/notes/callback`],
              grant_types: ["authorization_code", "refresh_token"],
              token_endpoint_auth_method: "client_secret_post",
            }),
          });
          const client = await res.json();
          return {
            backends: [{
              name: "notes",
              url: notes.url,
              auth: {
                type: "oauth",
                clientId: client.client_id,
                clientSecret: client.client_secret,
                tokenEndpointAuthMethod: "client_secret_post",
              },
            }],
          };
        },
      });
      try {
        const browser = await ownerBrowser(s.gw.url, (r) => fetch(r));
        const page = await connectBackend(browser, s.gw.url, "notes", "owner-at-notes");
        assertStringIncludes(page.html, "notes is connected.");
        assertEquals(registrations(s.notes.seen), 1, "only the hand registration");
        assertEquals((await entries(s.gw.deps.kv, ["backend_client"])).length, 0);
        assert(
          s.gw.deps.logs.some((l) =>
            l.event === "backend_connected" && l.client_method === "configured"
          ),
        );
      } finally {
        await s.close();
      }
    },
  );
});

/** A browser signed in to the gateway at `base` with the owner password. */
async function ownerBrowser(
  base: string,
  route: (req: Request) => Promise<Response>,
): Promise<HttpBrowser> {
  const browser = new HttpBrowser({ [new URL(base).origin]: route });
  const page = await browser.navigate(`${base}/login?return_to=/connections`);
  assertEquals(page.status, 200, page.html.slice(0, 300));
  const landed = await browser.submit(`${base}/login`, {
    signin_id: field(page.html, "signin_id"),
    csrf_token: field(page.html, "csrf_token"),
    return_to: "/connections",
    password: DEFAULT_PASSWORD,
  });
  assertEquals(landed.url.pathname, "/connections", landed.html.slice(0, 300));
  return browser;
}

Deno.test("the gateway's Client ID Metadata Document at an authorization server that accepts one", async (t) => {
  const base = "https://gw.test";
  let handler: (req: Request) => Promise<Response> = () => Promise.reject(new Error("not yet"));
  let refuseAtToken = false;
  const notes = await startNotesBackend({
    cimd: true,
    // The server fetches the document from the gateway (served in-process at https://gw.test).
    cimdFetch: (url, init) =>
      String(url).startsWith(base) ? handler(new Request(String(url), init)) : fetch(url, init),
    cimdAllowed: (route) => !(refuseAtToken && route === "token"),
  });
  const deps = await makeDeps({
    config: { backends: [{ name: "notes", url: notes.url, auth: { type: "oauth" } }] },
    env: { PUBLIC_URL: base, GATEWAY_ENCRYPTION_KEY: ENCRYPTION_KEY },
  });
  const served = createHandler(deps);
  handler = (req) => served(req);
  try {
    const browser = await ownerBrowser(base, handler);

    await t.step(
      "client_id = ${PUBLIC_URL}/oauth/client.json, fetched by the server; no registration",
      async () => {
        const start = await browser.send(`${base}/connect/notes`);
        assertEquals(start.status, 303);
        const location = new URL(start.headers.get("location")!);
        assertEquals(location.searchParams.get("client_id"), `${base}/oauth/client.json`);
        const page = await connectBackend(browser, base, "notes", "owner-at-notes");
        assertEquals(page.url.href, `${base}/connections?connected=notes`);
        assertStringIncludes(page.html, "notes is connected.");
        assertEquals(registrations(notes.seen), 0);
        assert(
          deps.logs.some((l) => l.event === "backend_connected" && l.client_method === "cimd"),
        );
      },
    );

    await t.step(
      "refused by the server (invalid_client at its token endpoint): logged, and the next connect registers (RFC 7591)",
      async () => {
        refuseAtToken = true;
        const refused = await connectBackend(browser, base, "notes", "owner-at-notes");
        assertEquals(refused.status, 400);
        assertMatch(refused.html, /refused the code \(invalid_client\)/);
        assert(deps.logs.some((l) =>
          l.event === "backend_client_fallback" && l.from === "cimd" &&
          l.to === "dynamic registration" && String(l.reason).includes("invalid_client")
        ));
        const again = await connectBackend(browser, base, "notes", "owner-at-notes");
        assertStringIncludes(again.html, "notes is connected.");
        assertEquals(registrations(notes.seen), 1);
        assert(deps.logs.some((l) => l.event === "backend_connected" && l.client_method === "dcr"));
      },
    );
  } finally {
    deps.kv.close();
    await notes.close();
  }
});
