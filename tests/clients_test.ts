/**
 * Client identity (lib/oauth/clients.ts): pre-registered clients of the config through the whole code
 * flow, their scope restriction, default scopes (RFC 6749 §3.3), idle expiry of registered
 * clients, and the config rules that guard pre-registered clients.
 */
import { assert, assertEquals, assertStringIncludes, assertThrows } from "./_assert.ts";
import { makeDeps } from "./_helpers.ts";
import { basicAuth, expectOAuthError, expectTokens, formRequest } from "./_kv_fixtures.ts";
import {
  authorizeCode,
  authorizeUrl,
  DEFAULT_REDIRECT_URI,
  type FetchLike,
  pkcePair,
  registerClient,
} from "./_oauth_flow.ts";
import { LAST_USED_WRITE_INTERVAL_MS } from "../lib/oauth/clients.ts";
import { ConfigError, parseConfig } from "../lib/config.ts";
import { clientKey, type ClientRecord } from "../lib/store.ts";
import { createHandler } from "../main.ts";

const DAY = LAST_USED_WRITE_INTERVAL_MS;
const SECRET = "pre-registered-secret-0123456789";
const BACKENDS = [
  { name: "alpha", url: "http://127.0.0.1:9/mcp" },
  { name: "beta", url: "http://127.0.0.1:9/mcp" },
];
const CONFIG = {
  backends: BACKENDS,
  defaultScopes: "mcp:alpha",
  clients: [
    {
      clientId: "ops-console",
      clientSecret: "${OPS_SECRET}",
      clientName: "Ops console",
      redirectUris: ["https://ops.example/callback"],
    },
    {
      clientId: "desktop-app",
      redirectUris: [DEFAULT_REDIRECT_URI],
      scopes: ["mcp:beta"],
    },
    {
      clientId: "everything-app",
      redirectUris: [DEFAULT_REDIRECT_URI],
      scopes: ["mcp"],
    },
  ],
};

async function setup(config: Record<string, unknown> = CONFIG) {
  const deps = await makeDeps({ config, env: { OPS_SECRET: SECRET } });
  const handle = createHandler(deps);
  const fetchLike: FetchLike = (r) => handle(r);
  return { deps, handle, fetchLike };
}

/** Runs /authorize + consent for `clientId` and returns the code, verifier and redirect URI. */
async function codeFor(
  fetchLike: FetchLike,
  clientId: string,
  redirectUri: string,
  scope?: string,
) {
  const { verifier, challenge } = await pkcePair();
  const { code } = await authorizeCode(fetchLike, {
    clientId,
    redirectUri,
    codeChallenge: challenge,
    scope,
  });
  return { code, verifier, redirectUri };
}

/** `GET /authorize` and the redirect it answers (phase-2 errors are redirects). */
async function authorizeRedirect(fetchLike: FetchLike, clientId: string, scope?: string) {
  const { challenge } = await pkcePair();
  const res = await fetchLike(
    new Request(
      authorizeUrl({
        clientId,
        redirectUri: DEFAULT_REDIRECT_URI,
        codeChallenge: challenge,
        scope,
      }),
    ),
  );
  assertEquals(res.status, 302);
  assertEquals(res.headers.get("content-type"), null);
  await res.body?.cancel();
  return new URL(res.headers.get("location")!);
}

Deno.test("pre-registered clients (config `clients`)", async (t) => {
  const { deps, handle, fetchLike } = await setup();
  try {
    await t.step("a confidential client completes the code flow with Basic auth", async () => {
      const c = await codeFor(fetchLike, "ops-console", "https://ops.example/callback");
      const fields = {
        grant_type: "authorization_code",
        code: c.code,
        redirect_uri: c.redirectUri,
        code_verifier: c.verifier,
      };
      // Without the secret, and with a wrong one: invalid_client (RFC 6749 §5.2).
      await expectOAuthError(
        await handle(formRequest("/token", { ...fields, client_id: "ops-console" })),
        401,
        "invalid_client",
      );
      await expectOAuthError(
        await handle(
          formRequest("/token", fields, {
            authorization: basicAuth("ops-console", "x".repeat(32)),
          }),
        ),
        401,
        "invalid_client",
      );
      const tokens = await expectTokens(
        await handle(
          formRequest("/token", fields, { authorization: basicAuth("ops-console", SECRET) }),
        ),
      );
      assertEquals(tokens.scope, "mcp:alpha", "defaultScopes applies (no scope requested)");
      const refreshed = await expectTokens(
        await handle(
          formRequest("/token", {
            grant_type: "refresh_token",
            refresh_token: tokens.refresh_token,
          }, { authorization: basicAuth("ops-console", SECRET) }),
        ),
      );
      assertEquals(refreshed.scope, "mcp:alpha");
    });

    await t.step("the secret is never kept in clear (only its SHA-256)", async () => {
      const entries = await Array.fromAsync(deps.kv.list({ prefix: [] }));
      assert(
        !JSON.stringify(
          entries.map((e) => e.value),
          (_, v) => typeof v === "bigint" ? String(v) : v,
        ).includes(SECRET),
      );
      assert(!JSON.stringify(deps.logs).includes(SECRET));
    });

    await t.step("a public client completes the code flow with PKCE only", async () => {
      const c = await codeFor(fetchLike, "desktop-app", DEFAULT_REDIRECT_URI, "mcp:beta");
      const tokens = await expectTokens(
        await handle(
          formRequest("/token", {
            grant_type: "authorization_code",
            client_id: "desktop-app",
            code: c.code,
            redirect_uri: c.redirectUri,
            code_verifier: c.verifier,
          }),
        ),
      );
      assertEquals(tokens.scope, "mcp:beta");
    });

    await t.step("consent page shows the configured client name", async () => {
      const { challenge } = await pkcePair();
      const res = await handle(
        new Request(
          authorizeUrl({
            clientId: "ops-console",
            redirectUri: "https://ops.example/callback",
            codeChallenge: challenge,
          }),
        ),
      );
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
      assertStringIncludes(await res.text(), "Ops console");
    });

    await t.step(
      "a scope outside the client's `scopes` → invalid_scope (RFC 6749 §4.1.2.1)",
      async () => {
        for (const scope of ["mcp:alpha", "mcp", "mcp:beta mcp:alpha"]) {
          const location = await authorizeRedirect(fetchLike, "desktop-app", scope);
          assertEquals(location.searchParams.get("error"), "invalid_scope");
          assertStringIncludes(location.searchParams.get("error_description")!, "may not request");
          assertEquals(location.searchParams.get("code"), null);
        }
      },
    );

    await t.step("default scopes ∩ allowed: none in common → invalid_scope", async () => {
      // defaultScopes is mcp:alpha, desktop-app may only have mcp:beta.
      const location = await authorizeRedirect(fetchLike, "desktop-app");
      assertEquals(location.searchParams.get("error"), "invalid_scope");
    });

    await t.step("allowed `mcp` covers each backend scope; default is kept", async () => {
      const c = await codeFor(fetchLike, "everything-app", DEFAULT_REDIRECT_URI);
      const tokens = await expectTokens(
        await handle(
          formRequest("/token", {
            grant_type: "authorization_code",
            client_id: "everything-app",
            code: c.code,
            redirect_uri: c.redirectUri,
            code_verifier: c.verifier,
          }),
        ),
      );
      assertEquals(tokens.scope, "mcp:alpha");
      const page = await handle(
        new Request(
          authorizeUrl({
            clientId: "everything-app",
            redirectUri: DEFAULT_REDIRECT_URI,
            codeChallenge: (await pkcePair()).challenge,
            scope: "mcp:beta offline_access",
          }),
        ),
      );
      assertEquals(page.status, 200);
      assertEquals(page.headers.get("content-type"), "text/html; charset=utf-8");
      assertStringIncludes(await page.text(), "<code>mcp:beta</code>");
    });

    await t.step("a pre-registered client never goes idle", async () => {
      deps.clock.advance(400 * DAY);
      const location = await authorizeRedirect(fetchLike, "desktop-app", "mcp:alpha");
      assertEquals(location.searchParams.get("error"), "invalid_scope", "still known");
    });
  } finally {
    deps.kv.close();
  }
});

Deno.test("default scopes (RFC 6749 §3.3)", async (t) => {
  const { deps, handle, fetchLike } = await setup({
    backends: BACKENDS,
    defaultScopes: "mcp:alpha mcp:beta",
  });
  try {
    const client = await registerClient(fetchLike);

    await t.step(
      "no scope → defaultScopes; offline_access not needed for a refresh token",
      async () => {
        const c = await codeFor(fetchLike, client.client_id, DEFAULT_REDIRECT_URI);
        const tokens = await expectTokens(
          await handle(
            formRequest("/token", {
              grant_type: "authorization_code",
              client_id: client.client_id,
              code: c.code,
              redirect_uri: c.redirectUri,
              code_verifier: c.verifier,
            }),
          ),
        );
        assertEquals(tokens.scope, "mcp:alpha mcp:beta");
        assert(tokens.refresh_token);
      },
    );

    await t.step("only offline_access → defaultScopes too", async () => {
      const { challenge } = await pkcePair();
      const res = await handle(
        new Request(
          authorizeUrl({
            clientId: client.client_id,
            redirectUri: DEFAULT_REDIRECT_URI,
            codeChallenge: challenge,
            scope: "offline_access",
          }),
        ),
      );
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
      const html = await res.text();
      assertStringIncludes(html, "<code>mcp:alpha</code>");
      assertStringIncludes(html, "<code>mcp:beta</code>");
    });
  } finally {
    deps.kv.close();
  }
});

Deno.test("registered clients expire after registration.clientIdleDays", async (t) => {
  const { deps, handle, fetchLike } = await setup({
    backends: BACKENDS,
    registration: { clientIdleDays: 30 },
  });
  const stored = async (id: string) => (await deps.kv.get<ClientRecord>(clientKey(id)));
  const tokenRequest = (clientId: string) =>
    handle(
      formRequest("/token", {
        grant_type: "refresh_token",
        client_id: clientId,
        refresh_token: "x",
      }),
    );
  try {
    const client = await registerClient(fetchLike);
    const issuedAt = deps.now();

    await t.step("registration stores lastUsedAt", async () => {
      assertEquals((await stored(client.client_id)).value?.lastUsedAt, issuedAt);
    });

    await t.step("a use within a day writes nothing", async () => {
      const before = await stored(client.client_id);
      deps.clock.advance(DAY / 2);
      // Known client (authenticated), bad refresh token → invalid_grant, not invalid_client.
      await expectOAuthError(await tokenRequest(client.client_id), 400, "invalid_grant");
      const after = await stored(client.client_id);
      assertEquals(after.versionstamp, before.versionstamp);
    });

    await t.step("a use a day later or more refreshes lastUsedAt", async () => {
      deps.clock.advance(20 * DAY);
      await expectOAuthError(await tokenRequest(client.client_id), 400, "invalid_grant");
      assertEquals((await stored(client.client_id)).value?.lastUsedAt, deps.now());
    });

    await t.step(
      "used within the idle period, the client lives past its first 30 days",
      async () => {
        deps.clock.advance(25 * DAY); // 45.5 days after registration, 25 after the last use
        await expectOAuthError(await tokenRequest(client.client_id), 400, "invalid_grant");
      },
    );

    await t.step("idle longer than clientIdleDays → unknown at /token and /authorize", async () => {
      deps.clock.advance(31 * DAY);
      await expectOAuthError(
        await tokenRequest(client.client_id),
        401,
        "invalid_client",
        "unknown",
      );
      const res = await handle(
        new Request(
          authorizeUrl({
            clientId: client.client_id,
            redirectUri: DEFAULT_REDIRECT_URI,
            codeChallenge: (await pkcePair()).challenge,
          }),
        ),
      );
      assertEquals(res.status, 400);
      assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
      assertEquals(res.headers.get("location"), null);
      assertStringIncludes(await res.text(), "Unknown application");
    });
  } finally {
    deps.kv.close();
  }
});

Deno.test("config rules of pre-registered clients and scopes", async (t) => {
  const parse = (extra: Record<string, unknown>) =>
    parseConfig({ backends: BACKENDS, ...extra }, () => undefined, "gateway.config.json");
  const client = { clientId: "a", redirectUris: [DEFAULT_REDIRECT_URI] };

  await t.step("accepts known scopes and valid clients", () => {
    const config = parse({
      defaultScopes: "mcp:alpha mcp",
      clients: [{ ...client, scopes: ["mcp", "mcp:beta"] }],
    });
    assertEquals(config.clients[0]?.scopes, ["mcp", "mcp:beta"]);
  });

  const cases: [string, Record<string, unknown>, string][] = [
    [
      "unknown default scope",
      { defaultScopes: "mcp:gamma" },
      'defaultScopes: unknown scope "mcp:gamma"',
    ],
    [
      "unknown client scope",
      { clients: [{ ...client, scopes: ["admin"] }] },
      'clients[0].scopes: unknown scope "admin"',
    ],
    [
      "invalid redirect URI",
      { clients: [{ ...client, redirectUris: ["http://evil.example/cb"] }] },
      "clients[0].redirectUris[0]: redirect URI",
    ],
    ["duplicate client id", { clients: [client, client] }, "clients[1].clientId: duplicate"],
    [
      "secret with method none",
      { clients: [{ ...client, clientSecret: SECRET, tokenEndpointAuthMethod: "none" }] },
      "clients[0].clientSecret: must be absent",
    ],
    [
      "secret method without a secret",
      { clients: [{ ...client, tokenEndpointAuthMethod: "client_secret_post" }] },
      "clients[0].clientSecret: is required",
    ],
  ];
  for (const [name, extra, message] of cases) {
    await t.step(`refuses ${name}, naming the file and field`, () => {
      const e = assertThrows(() => parse(extra), ConfigError);
      assertStringIncludes(e.message, "gateway.config.json");
      assertStringIncludes(e.message, message);
    });
  }
});
