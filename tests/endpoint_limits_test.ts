/**
 * Limits of the unauthenticated OAuth endpoints (security review issue 13 §2, §3): `/token` and
 * `/revoke` per IP before any client lookup (so no metadata document is fetched for a flood),
 * document fetches per host and in total, documents in KV only once a code was issued, and
 * `/token` failures counted per (client, IP) apart from the client's successes.
 */
import { cimdKey } from "../lib/oauth/client_id_metadata.ts";
import { createHandler } from "../main.ts";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { makeDeps } from "./_helpers.ts";
import { expectOAuthError, expectTokens, formRequest, putClient } from "./_kv_fixtures.ts";
import { authorizeCode, DEFAULT_REDIRECT_URI, pkcePair } from "./_oauth_flow.ts";
import { issueAccessToken } from "./_tokens.ts";

const BACKENDS = [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }];

/** A real document server: any path is a valid metadata document of a public client. */
function documentServer() {
  let fetches = 0;
  let base = "";
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    fetches++;
    const path = new URL(req.url).pathname;
    return Response.json({
      client_id: `${base}${path}`,
      client_name: "Document client",
      redirect_uris: [DEFAULT_REDIRECT_URI],
      token_endpoint_auth_method: "none",
    }, { headers: { "cache-control": "max-age=3600" } });
  });
  base = `http://127.0.0.1:${server.addr.port}`;
  return { base, fetches: () => fetches, close: () => server.shutdown() };
}

const fromIp = (ip: string) => ({ "x-forwarded-for": ip });

async function cimdEntries(kv: Deno.Kv): Promise<number> {
  return (await Array.fromAsync(kv.list({ prefix: ["cimd"] }))).length;
}

Deno.test("/token and /revoke: per-IP limits before any client lookup", async (t) => {
  const docs = documentServer();
  const deps = await makeDeps({
    config: {
      backends: BACKENDS,
      clientIpHeader: "x-forwarded-for",
      clientIdMetadataDocuments: { allowLoopback: true, fetchesPerHostPerMinute: 1000 },
      rateLimits: { revokePerIpPerMinute: 5, tokenPerIpPerMinute: 6 },
    },
  });
  const handle = createHandler(deps);
  try {
    await t.step(
      "/revoke: a flood of metadata-document ids fetches at most the limit",
      async () => {
        for (let i = 0; i < 5; i++) {
          const res = await handle(formRequest("/revoke", {
            client_id: `${docs.base}/revoke/${i}.json`,
            token: "gwat_unknown",
          }, fromIp("198.51.100.1")));
          assertEquals(res.status, 200);
          assertEquals(res.headers.get("content-type"), "application/json");
          assertEquals(await res.json(), {});
        }
        for (let i = 5; i < 12; i++) {
          const res = await handle(formRequest("/revoke", {
            client_id: `${docs.base}/revoke/${i}.json`,
            token: "gwat_unknown",
          }, fromIp("198.51.100.1")));
          assertMatch(res.headers.get("retry-after") ?? "", /^[1-9][0-9]*$/);
          await expectOAuthError(res, 429, "temporarily_unavailable", "/revoke");
        }
        assertEquals(docs.fetches(), 5, "refused requests never looked the client up");
      },
    );

    await t.step("/token: the same, counted apart from /revoke", async () => {
      for (let i = 0; i < 6; i++) {
        const res = await handle(formRequest("/token", {
          grant_type: "refresh_token",
          client_id: `${docs.base}/token/${i}.json`,
          refresh_token: "gwrt_unknown",
        }, fromIp("198.51.100.1")));
        await expectOAuthError(res, 400, "invalid_grant");
      }
      const res = await handle(formRequest("/token", {
        grant_type: "refresh_token",
        client_id: `${docs.base}/token/6.json`,
        refresh_token: "gwrt_unknown",
      }, fromIp("198.51.100.1")));
      await expectOAuthError(res, 429, "temporarily_unavailable", "/token");
      assertEquals(docs.fetches(), 11);
    });

    await t.step("another address is not affected; none of it reached KV", async () => {
      const res = await handle(formRequest("/revoke", {
        client_id: `${docs.base}/revoke/other.json`,
        token: "gwat_unknown",
      }, fromIp("198.51.100.2")));
      assertEquals(res.status, 200);
      await res.body?.cancel();
      assertEquals(await cimdEntries(deps.kv), 0, "unconfirmed documents stay out of KV");
    });
  } finally {
    deps.kv.close();
    await docs.close();
  }
});

Deno.test("metadata documents: fetches limited per host and in total", async (t) => {
  const one = documentServer();
  const two = documentServer();
  const deps = await makeDeps({
    config: {
      backends: BACKENDS,
      clientIpHeader: "x-forwarded-for",
      clientIdMetadataDocuments: {
        allowLoopback: true,
        fetchesPerHostPerMinute: 3,
        fetchesPerMinute: 4,
      },
    },
  });
  const handle = createHandler(deps);
  // Each from its own address: only the document limits are in play.
  const revoke = (clientId: string, n: number) =>
    handle(formRequest("/revoke", { client_id: clientId, token: "x" }, fromIp(`203.0.113.${n}`)));
  try {
    await t.step("per document host", async () => {
      for (let i = 0; i < 3; i++) {
        const res = await revoke(`${one.base}/c/${i}.json`, i);
        assertEquals(res.status, 200);
        await res.body?.cancel();
      }
      const res = await revoke(`${one.base}/c/3.json`, 3);
      assertMatch(res.headers.get("retry-after") ?? "", /^[1-9][0-9]*$/);
      await expectOAuthError(res, 429, "temporarily_unavailable", new URL(one.base).host);
      assertEquals(one.fetches(), 3);
    });
    await t.step("in total, over every host", async () => {
      const ok = await revoke(`${two.base}/c/0.json`, 10);
      assertEquals(ok.status, 200);
      await ok.body?.cancel();
      const res = await revoke(`${two.base}/c/1.json`, 11);
      await expectOAuthError(res, 429, "temporarily_unavailable", "in total");
      assertEquals(two.fetches(), 1);
    });
    await t.step("a cached document needs no fetch, so no budget", async () => {
      const res = await revoke(`${one.base}/c/0.json`, 20);
      assertEquals(res.status, 200);
      await res.body?.cancel();
      assertEquals(one.fetches(), 3);
    });
    await t.step("the next minute allows again", async () => {
      deps.clock.advance(60_000);
      const res = await revoke(`${one.base}/c/9.json`, 30);
      assertEquals(res.status, 200);
      await res.body?.cancel();
    });
  } finally {
    deps.kv.close();
    await one.close();
    await two.close();
  }
});

Deno.test("metadata documents reach KV only once a code was issued", async (t) => {
  const docs = documentServer();
  const deps = await makeDeps({
    config: { backends: BACKENDS, clientIdMetadataDocuments: { allowLoopback: true } },
  });
  const handle = createHandler(deps);
  const clientId = `${docs.base}/app.json`;
  try {
    await t.step("showing the consent page stores nothing", async () => {
      const { challenge } = await pkcePair();
      const url = new URL("http://localhost:8000/authorize");
      url.search = new URLSearchParams({
        response_type: "code",
        client_id: clientId,
        redirect_uri: DEFAULT_REDIRECT_URI,
        code_challenge: challenge,
        code_challenge_method: "S256",
      }).toString();
      const res = await handle(new Request(url));
      assertEquals(res.status, 200);
      await res.body?.cancel();
      assertEquals(await cimdEntries(deps.kv), 0);
    });
    await t.step("an issued code stores the document for its cache lifetime", async () => {
      const { verifier, challenge } = await pkcePair();
      const { code } = await authorizeCode(handle, {
        clientId,
        redirectUri: DEFAULT_REDIRECT_URI,
        codeChallenge: challenge,
      });
      const stored = await deps.kv.get<{ expiresAt: number }>(cimdKey(clientId));
      assert(stored.value, "in KV after the code was issued");
      assert(stored.value.expiresAt > deps.now() + 3_000_000, "max-age=3600 kept");
      await expectTokens(
        await handle(formRequest("/token", {
          grant_type: "authorization_code",
          client_id: clientId,
          code,
          redirect_uri: DEFAULT_REDIRECT_URI,
          code_verifier: verifier,
        })),
      );
      assertEquals(docs.fetches(), 1);
    });
  } finally {
    deps.kv.close();
    await docs.close();
  }
});

Deno.test("/token: failures count per (client, IP), successes per client", async (t) => {
  const deps = await makeDeps({
    config: { backends: BACKENDS, clientIpHeader: "x-forwarded-for" },
  });
  const handle = createHandler(deps);
  const refresh = (clientId: string, token: string, ip: string) =>
    handle(formRequest("/token", {
      grant_type: "refresh_token",
      client_id: clientId,
      refresh_token: token,
    }, fromIp(ip)));
  try {
    const { client: victim } = await putClient(deps);
    const issued = await issueAccessToken(deps, {
      scope: "mcp",
      resource: `${deps.settings.publicUrl}/mcp`,
      clientId: victim.clientId,
    });

    await t.step(
      "70 bogus refreshes stating the victim's client_id block only their sender",
      async () => {
        let refused = 0;
        for (let i = 0; i < 70; i++) {
          const res = await refresh(victim.clientId, `gwrt_bogus${i}`, "203.0.113.66");
          if (res.status === 429) {
            refused++;
            assertMatch(res.headers.get("retry-after") ?? "", /^[1-9][0-9]*$/);
            await expectOAuthError(res, 429, "temporarily_unavailable", "failed token requests");
          } else await expectOAuthError(res, 400, "invalid_grant");
        }
        assertEquals(refused, 70 - 30, "tokenFailuresPerClientAndIpPerMinute defaults to 30");
      },
    );

    await t.step("the victim's real refresh from its own address still works", async () => {
      const tokens = await expectTokens(
        await refresh(victim.clientId, issued.refreshToken, "198.51.100.7"),
      );
      assert(tokens.refresh_token !== issued.refreshToken, "rotated");
    });

    await t.step(
      "a client's successes have their own limit (tokenPerClientPerMinute)",
      async () => {
        const limited = await makeDeps({
          config: { backends: BACKENDS, rateLimits: { tokenPerClientPerMinute: 2 } },
        });
        const h = createHandler(limited);
        const { client } = await putClient(limited);
        let token = (await issueAccessToken(limited, {
          scope: "mcp",
          resource: `${limited.settings.publicUrl}/mcp`,
          clientId: client.clientId,
        })).refreshToken;
        for (let i = 0; i < 2; i++) {
          token = (await expectTokens(
            await h(formRequest("/token", {
              grant_type: "refresh_token",
              client_id: client.clientId,
              refresh_token: token,
            })),
          )).refresh_token;
        }
        const res = await h(formRequest("/token", {
          grant_type: "refresh_token",
          client_id: client.clientId,
          refresh_token: token,
        }));
        await expectOAuthError(res, 429, "temporarily_unavailable", "too many token requests");
        limited.kv.close();
      },
    );
  } finally {
    deps.kv.close();
  }
});
