import { assert, assertEquals, assertMatch, assertNotEquals } from "./_assert.ts";
import { makeDeps } from "./_helpers.ts";
import {
  basicAuth,
  expectOAuthError,
  expectTokens,
  formRequest,
  putClient,
  putCode,
  type StoredCode,
} from "./_kv_fixtures.ts";
import { authenticate, lookupAccessToken } from "../lib/oauth/bearer.ts";
import { sha256Hex } from "../lib/infra/crypto.ts";
import { type ClientRecord, codeKey, type CodeRecord } from "../lib/store.ts";
import { createHandler } from "../main.ts";

const BASE = "http://localhost:8000";
const MCP = `${BASE}/mcp`;
const ALPHA = `${BASE}/mcp/alpha`;
const CONFIG = {
  backends: [
    { name: "alpha", url: "http://127.0.0.1:9/mcp" },
    { name: "beta", url: "http://127.0.0.1:9/mcp" },
  ],
};

/** The fields of an authorization code request for a stored code. */
function codeFields(client: ClientRecord, stored: StoredCode): Record<string, string> {
  return {
    grant_type: "authorization_code",
    code: stored.code,
    redirect_uri: stored.record.redirectUri,
    code_verifier: stored.verifier,
    client_id: client.clientId,
  };
}

function without(fields: Record<string, string>, name: string): Record<string, string> {
  const copy = { ...fields };
  delete copy[name];
  return copy;
}

/** Whether `token` authenticates at `resource` through lib/oauth/bearer.ts. */
async function bearerOk(
  deps: Awaited<ReturnType<typeof makeDeps>>,
  token: string,
  resource = MCP,
): Promise<boolean> {
  const req = new Request(resource, { headers: { authorization: `Bearer ${token}` } });
  return !((await authenticate(req, deps, resource)) instanceof Response);
}

Deno.test("POST /token: authorization_code", async (t) => {
  const deps = await makeDeps({ config: CONFIG });
  const handle = createHandler(deps);
  try {
    const { client } = await putClient(deps);

    await t.step(
      "issues a token pair for a valid code with PKCE S256 (RFC 6749 §4.1.3, §5.1)",
      async () => {
        const stored = await putCode(deps, client, { scope: "mcp" });
        const body = await expectTokens(
          await handle(formRequest("/token", codeFields(client, stored))),
        );
        assertEquals(body.expires_in, 3600);
        assertEquals(body.scope, "mcp");
        assert(await bearerOk(deps, body.access_token));
        const record = await lookupAccessToken(deps, body.access_token);
        assertEquals(record?.clientId, client.clientId);
        assertEquals(record?.resource, MCP);
      },
    );

    await t.step(
      "accepts a matching resource, trailing slash tolerated (RFC 8707 §2.2)",
      async () => {
        const stored = await putCode(deps, client, { resource: ALPHA });
        const res = await handle(
          formRequest("/token", { ...codeFields(client, stored), resource: `${ALPHA}/` }),
        );
        const body = await expectTokens(res);
        assert(await bearerOk(deps, body.access_token, ALPHA));
        assert(
          !(await bearerOk(deps, body.access_token, MCP)),
          "an /mcp/alpha token is not an /mcp one",
        );
      },
    );

    await t.step("refuses a missing code_verifier (RFC 7636 §4.5)", async () => {
      const stored = await putCode(deps, client);
      const res = await handle(
        formRequest("/token", without(codeFields(client, stored), "code_verifier")),
      );
      await expectOAuthError(res, 400, "invalid_request", '"code_verifier" is required');
    });

    await t.step("refuses a malformed code_verifier (RFC 7636 §4.1)", async () => {
      const stored = await putCode(deps, client);
      for (const verifier of ["short", "a".repeat(129), `${"a".repeat(42)}!`]) {
        const res = await handle(
          formRequest("/token", { ...codeFields(client, stored), code_verifier: verifier }),
        );
        await expectOAuthError(res, 400, "invalid_request", '"code_verifier"');
      }
      // The code was not burnt by malformed requests.
      await expectTokens(await handle(formRequest("/token", codeFields(client, stored))));
    });

    await t.step("refuses a wrong code_verifier (RFC 7636 §4.6)", async () => {
      const stored = await putCode(deps, client);
      const res = await handle(
        formRequest("/token", { ...codeFields(client, stored), code_verifier: "b".repeat(43) }),
      );
      await expectOAuthError(res, 400, "invalid_grant", "code_verifier");
    });

    await t.step("refuses a missing code and an unknown code (RFC 6749 §5.2)", async () => {
      const stored = await putCode(deps, client);
      await expectOAuthError(
        await handle(formRequest("/token", without(codeFields(client, stored), "code"))),
        400,
        "invalid_request",
        '"code" is required',
      );
      await expectOAuthError(
        await handle(formRequest("/token", { ...codeFields(client, stored), code: "nope" })),
        400,
        "invalid_grant",
      );
    });

    await t.step("refuses a code after its 60 s lifetime (RFC 6749 §4.1.2)", async () => {
      const stored = await putCode(deps, client);
      deps.clock.advance(61_000);
      const res = await handle(formRequest("/token", codeFields(client, stored)));
      await expectOAuthError(res, 400, "invalid_grant", "expired");
    });

    await t.step(
      "a replayed code is refused and its tokens are revoked (RFC 6749 §4.1.2)",
      async () => {
        const stored = await putCode(deps, client);
        const first = await expectTokens(
          await handle(formRequest("/token", codeFields(client, stored))),
        );
        assert(await bearerOk(deps, first.access_token), "cached before the replay");
        deps.clock.advance(30_000);
        const res = await handle(formRequest("/token", codeFields(client, stored)));
        await expectOAuthError(res, 400, "invalid_grant", "already used");
        assertEquals(await lookupAccessToken(deps, first.access_token), null);
        assert(!(await bearerOk(deps, first.access_token)));
        const refresh = await handle(
          formRequest("/token", {
            grant_type: "refresh_token",
            refresh_token: first.refresh_token,
            client_id: client.clientId,
          }),
        );
        await expectOAuthError(refresh, 400, "invalid_grant");
      },
    );

    await t.step("replay is still detected after the code's own expiry", async () => {
      const stored = await putCode(deps, client);
      const first = await expectTokens(
        await handle(formRequest("/token", codeFields(client, stored))),
      );
      deps.clock.advance(5 * 60_000);
      const res = await handle(formRequest("/token", codeFields(client, stored)));
      await expectOAuthError(res, 400, "invalid_grant", "already used");
      assertEquals(await lookupAccessToken(deps, first.access_token), null);
    });

    await t.step(
      "another client replaying a used code is refused without revoking the grant",
      async () => {
        const { client: other } = await putClient(deps);
        const stored = await putCode(deps, client);
        const first = await expectTokens(
          await handle(formRequest("/token", codeFields(client, stored))),
        );
        // Another public client states its own id, a wrong verifier and another redirect URI.
        const res = await handle(formRequest("/token", {
          ...codeFields(client, stored),
          client_id: other.clientId,
          code_verifier: "c".repeat(43),
          redirect_uri: "http://127.0.0.1:1/elsewhere",
        }));
        await expectOAuthError(res, 400, "invalid_grant", "invalid or expired");
        assert(await bearerOk(deps, first.access_token), "the victim's access token still works");
        await expectTokens(
          await handle(formRequest("/token", {
            grant_type: "refresh_token",
            refresh_token: first.refresh_token,
            client_id: client.clientId,
          })),
        );
      },
    );

    await t.step(
      "a replay naming the code's own public client without its PKCE verifier revokes nothing " +
        "(RFC 7636 §4.6: the verifier, not the client_id, proves the requester)",
      async () => {
        const stored = await putCode(deps, client);
        const first = await expectTokens(
          await handle(formRequest("/token", codeFields(client, stored))),
        );
        // Whoever saw the used code states the victim's (public) client_id: anyone can.
        const res = await handle(formRequest("/token", {
          ...codeFields(client, stored),
          code_verifier: "d".repeat(43),
        }));
        await expectOAuthError(res, 400, "invalid_grant", "invalid or expired");
        assert(await bearerOk(deps, first.access_token), "the victim's access token still works");
        // The requester itself replaying it (verifier included) still revokes (RFC 6749 §4.1.2).
        const replay = await handle(formRequest("/token", codeFields(client, stored)));
        await expectOAuthError(replay, 400, "invalid_grant", "already used");
        assertEquals(await lookupAccessToken(deps, first.access_token), null);
      },
    );

    await t.step("refuses a code issued to another client (RFC 6749 §4.1.3)", async () => {
      const { client: other } = await putClient(deps);
      const stored = await putCode(deps, client);
      const res = await handle(
        formRequest("/token", { ...codeFields(client, stored), client_id: other.clientId }),
      );
      await expectOAuthError(res, 400, "invalid_grant", "another client");
    });

    await t.step("redirect_uri is required and must match (RFC 6749 §4.1.3)", async () => {
      const stored = await putCode(deps, client);
      await expectOAuthError(
        await handle(formRequest("/token", without(codeFields(client, stored), "redirect_uri"))),
        400,
        "invalid_request",
        '"redirect_uri" is required',
      );
      await expectOAuthError(
        await handle(
          formRequest("/token", {
            ...codeFields(client, stored),
            redirect_uri: "http://127.0.0.1:33418/other",
          }),
        ),
        400,
        "invalid_grant",
        "redirect_uri",
      );
    });

    await t.step("a resource other than the code's is invalid_target (RFC 8707 §2.2)", async () => {
      const stored = await putCode(deps, client, { resource: MCP });
      for (const resource of [ALPHA, "https://evil.example/mcp", "not a uri", `${MCP}#frag`]) {
        const res = await handle(
          formRequest("/token", { ...codeFields(client, stored), resource }),
        );
        await expectOAuthError(res, 400, "invalid_target");
      }
    });

    await t.step("a client not registered for the grant type is unauthorized_client", async () => {
      const { client: limited } = await putClient(deps, { grantTypes: ["refresh_token"] });
      const stored = await putCode(deps, limited);
      const res = await handle(formRequest("/token", codeFields(limited, stored)));
      await expectOAuthError(res, 400, "unauthorized_client");
    });

    await t.step("a client registered for authorization_code alone may still refresh", async () => {
      const { client: codeOnly } = await putClient(deps, { grantTypes: ["authorization_code"] });
      const stored = await putCode(deps, codeOnly);
      const first = await handle(formRequest("/token", codeFields(codeOnly, stored)));
      assertEquals(first.status, 200);
      const { refresh_token } = await first.json();
      const res = await handle(
        formRequest("/token", {
          grant_type: "refresh_token",
          refresh_token,
          client_id: codeOnly.clientId,
        }),
      );
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertMatch((await res.json()).access_token, /^gwat_/);
    });
  } finally {
    deps.kv.close();
  }
});

Deno.test("POST /token: request format", async (t) => {
  const deps = await makeDeps({ config: CONFIG });
  const handle = createHandler(deps);
  try {
    const { client } = await putClient(deps);

    await t.step("grant_type is required (RFC 6749 §5.2 invalid_request)", async () => {
      const res = await handle(formRequest("/token", { client_id: client.clientId }));
      await expectOAuthError(res, 400, "invalid_request", '"grant_type" is required');
    });

    await t.step("an unknown grant_type is unsupported_grant_type (RFC 6749 §5.2)", async () => {
      for (const grantType of ["password", "client_credentials", "implicit"]) {
        const res = await handle(
          formRequest("/token", { grant_type: grantType, client_id: client.clientId }),
        );
        await expectOAuthError(res, 400, "unsupported_grant_type");
      }
    });

    await t.step("only form-urlencoded bodies are accepted (RFC 6749 §3.2)", async () => {
      const res = await handle(
        new Request(`${BASE}/token`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ grant_type: "authorization_code" }),
        }),
      );
      await expectOAuthError(res, 400, "invalid_request", "x-www-form-urlencoded");
    });

    await t.step("a repeated parameter is refused (RFC 6749 §3.1)", async () => {
      const res = await handle(
        new Request(`${BASE}/token`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: "grant_type=refresh_token&refresh_token=a&refresh_token=b",
        }),
      );
      await expectOAuthError(res, 400, "invalid_request", '"refresh_token" is repeated');
    });

    await t.step("GET is not allowed", async () => {
      const res = await handle(new Request(`${BASE}/token`));
      assertEquals(res.status, 405);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals(await res.json(), { error: "method_not_allowed" });
    });
  } finally {
    deps.kv.close();
  }
});

Deno.test("POST /token: client authentication", async (t) => {
  const deps = await makeDeps({ config: CONFIG });
  const handle = createHandler(deps);
  const expectInvalidClient = async (res: Response, part?: string) => {
    assertEquals(res.headers.get("www-authenticate"), 'Basic realm="gateway"');
    await expectOAuthError(res, 401, "invalid_client", part);
  };
  try {
    const basic = await putClient(deps, {
      method: "client_secret_basic",
      clientId: "basic client:1",
      secret: "s3cr+t %:/ value",
    });
    const post = await putClient(deps, { method: "client_secret_post" });
    const pub = await putClient(deps);

    await t.step(
      "client_secret_basic with form-url-encoded id and secret (RFC 6749 §2.3.1)",
      async () => {
        const stored = await putCode(deps, basic.client);
        const res = await handle(
          formRequest("/token", without(codeFields(basic.client, stored), "client_id"), {
            authorization: basicAuth(basic.client.clientId, basic.secret!),
          }),
        );
        await expectTokens(res);
      },
    );

    await t.step("client_secret_basic may repeat the same client_id in the body", async () => {
      const stored = await putCode(deps, basic.client);
      const res = await handle(
        formRequest("/token", codeFields(basic.client, stored), {
          authorization: basicAuth(basic.client.clientId, basic.secret!),
        }),
      );
      await expectTokens(res);
    });

    await t.step("client_secret_post (RFC 6749 §2.3.1)", async () => {
      const stored = await putCode(deps, post.client);
      const res = await handle(
        formRequest("/token", { ...codeFields(post.client, stored), client_secret: post.secret! }),
      );
      await expectTokens(res);
    });

    await t.step("a wrong secret is invalid_client with 401 + Basic (RFC 6749 §5.2)", async () => {
      const stored = await putCode(deps, basic.client);
      await expectInvalidClient(
        await handle(
          formRequest("/token", codeFields(basic.client, stored), {
            authorization: basicAuth(basic.client.clientId, "wrong"),
          }),
        ),
        "authentication failed",
      );
      const postCode = await putCode(deps, post.client);
      await expectInvalidClient(
        await handle(
          formRequest("/token", { ...codeFields(post.client, postCode), client_secret: "wrong" }),
        ),
        "authentication failed",
      );
    });

    await t.step("a client must use the method it registered (OAuth 2.1 §2.4)", async () => {
      const basicCode = await putCode(deps, basic.client);
      await expectInvalidClient(
        await handle(
          formRequest("/token", {
            ...codeFields(basic.client, basicCode),
            client_secret: basic.secret!,
          }),
        ),
        "client_secret_basic",
      );
      const postCode = await putCode(deps, post.client);
      await expectInvalidClient(
        await handle(
          formRequest("/token", without(codeFields(post.client, postCode), "client_id"), {
            authorization: basicAuth(post.client.clientId, post.secret!),
          }),
        ),
        "client_secret_post",
      );
      // A confidential client that sends no secret at all.
      await expectInvalidClient(
        await handle(formRequest("/token", codeFields(post.client, postCode))),
      );
      // A public client that sends a secret.
      const pubCode = await putCode(deps, pub.client);
      await expectInvalidClient(
        await handle(
          formRequest("/token", { ...codeFields(pub.client, pubCode), client_secret: "x" }),
        ),
        "none",
      );
    });

    await t.step("an unknown client is invalid_client (RFC 6749 §5.2)", async () => {
      const stored = await putCode(deps, pub.client);
      await expectInvalidClient(
        await handle(
          formRequest("/token", { ...codeFields(pub.client, stored), client_id: "ghost" }),
        ),
        "unknown client",
      );
      await expectInvalidClient(
        await handle(
          formRequest("/token", without(codeFields(pub.client, stored), "client_id"), {
            authorization: basicAuth("ghost", "secret"),
          }),
        ),
        "unknown client",
      );
    });

    await t.step("no client identification at all is invalid_client", async () => {
      const stored = await putCode(deps, pub.client);
      await expectInvalidClient(
        await handle(formRequest("/token", without(codeFields(pub.client, stored), "client_id"))),
        '"client_id" is required',
      );
    });

    await t.step("two methods at once are invalid_request (RFC 6749 §2.3)", async () => {
      const stored = await putCode(deps, basic.client);
      const res = await handle(
        formRequest(
          "/token",
          { ...codeFields(basic.client, stored), client_secret: basic.secret! },
          {
            authorization: basicAuth(basic.client.clientId, basic.secret!),
          },
        ),
      );
      await expectOAuthError(res, 400, "invalid_request", "only one client authentication method");
      const mismatch = await handle(
        formRequest("/token", { ...codeFields(basic.client, stored), client_id: "someone-else" }, {
          authorization: basicAuth(basic.client.clientId, basic.secret!),
        }),
      );
      await expectOAuthError(mismatch, 400, "invalid_request", '"client_id"');
    });

    await t.step("malformed Basic credentials and other schemes are invalid_client", async () => {
      const stored = await putCode(deps, basic.client);
      for (const authorization of ["Basic !!!", `Basic ${btoa("no-colon")}`, "Bearer abc"]) {
        await expectInvalidClient(
          await handle(formRequest("/token", codeFields(basic.client, stored), { authorization })),
        );
      }
    });
  } finally {
    deps.kv.close();
  }
});

Deno.test("POST /token: refresh_token", async (t) => {
  const deps = await makeDeps({ config: CONFIG });
  const handle = createHandler(deps);
  try {
    const { client } = await putClient(deps);
    const issue = async (scope = "mcp", resource = MCP) => {
      const stored = await putCode(deps, client, { scope, resource });
      return await expectTokens(await handle(formRequest("/token", codeFields(client, stored))));
    };
    const refresh = (token: string, extra: Record<string, string> = {}) =>
      handle(
        formRequest("/token", {
          grant_type: "refresh_token",
          refresh_token: token,
          client_id: client.clientId,
          ...extra,
        }),
      );

    await t.step("rotates the refresh token on every use (OAuth 2.1 §4.3.1)", async () => {
      const first = await issue();
      const second = await expectTokens(await refresh(first.refresh_token));
      assertNotEquals(second.refresh_token, first.refresh_token);
      assertNotEquals(second.access_token, first.access_token);
      assertEquals(second.scope, "mcp");
      assert(await bearerOk(deps, second.access_token));
      const third = await expectTokens(await refresh(second.refresh_token));
      assert(await bearerOk(deps, third.access_token));
    });

    await t.step(
      "reusing a rotated refresh token revokes the grant (RFC 9700 §4.14.2)",
      async () => {
        const first = await issue();
        const second = await expectTokens(await refresh(first.refresh_token));
        assert(await bearerOk(deps, second.access_token), "cached before the reuse");
        await expectOAuthError(
          await refresh(first.refresh_token),
          400,
          "invalid_grant",
          "already used",
        );
        assertEquals(await lookupAccessToken(deps, second.access_token), null);
        assertEquals(await lookupAccessToken(deps, first.access_token), null);
        assert(!(await bearerOk(deps, second.access_token)));
        await expectOAuthError(await refresh(second.refresh_token), 400, "invalid_grant");
      },
    );

    await t.step("scope may narrow the grant, never widen it (RFC 6749 §6)", async () => {
      const first = await issue("mcp:alpha mcp:beta");
      const narrow = await expectTokens(await refresh(first.refresh_token, { scope: "mcp:alpha" }));
      assertEquals(narrow.scope, "mcp:alpha");
      assertEquals((await lookupAccessToken(deps, narrow.access_token))?.scope, "mcp:alpha");
      // The refresh token keeps the whole grant.
      const full = await expectTokens(await refresh(narrow.refresh_token));
      assertEquals(full.scope, "mcp:alpha mcp:beta");
      await expectOAuthError(
        await refresh(full.refresh_token, { scope: "mcp" }),
        400,
        "invalid_scope",
      );
    });

    await t.step("resource may narrow the audience (RFC 8707 §2.2)", async () => {
      const first = await issue();
      const alpha = await expectTokens(await refresh(first.refresh_token, { resource: ALPHA }));
      assert(await bearerOk(deps, alpha.access_token, ALPHA));
      assert(!(await bearerOk(deps, alpha.access_token, MCP)));
      await expectOAuthError(
        await refresh(alpha.refresh_token, { resource: "https://evil.example/mcp" }),
        400,
        "invalid_target",
      );
      const narrow = await issue("mcp", ALPHA);
      await expectOAuthError(
        await refresh(narrow.refresh_token, { resource: MCP }),
        400,
        "invalid_target",
      );
    });

    await t.step(
      "resource = PUBLIC_URL (root metadata, RFC 9728 §3.3) covers every MCP endpoint like /mcp",
      async () => {
        const origin = await issue("mcp", BASE);
        assert(await bearerOk(deps, origin.access_token, MCP));
        assert(await bearerOk(deps, origin.access_token, ALPHA));
        // The same audience, spelled with a trailing slash or as /mcp, is no widening.
        const slash = await expectTokens(
          await refresh(origin.refresh_token, { resource: `${BASE}/` }),
        );
        const mcp = await expectTokens(await refresh(slash.refresh_token, { resource: MCP }));
        assert(await bearerOk(deps, mcp.access_token, ALPHA));
        const back = await expectTokens(await refresh(mcp.refresh_token, { resource: BASE }));
        const alpha = await expectTokens(await refresh(back.refresh_token, { resource: ALPHA }));
        assert(!(await bearerOk(deps, alpha.access_token, MCP)));
        // A grant for one backend never widens to the origin.
        const narrow = await issue("mcp", ALPHA);
        await expectOAuthError(
          await refresh(narrow.refresh_token, { resource: BASE }),
          400,
          "invalid_target",
        );
      },
    );

    await t.step("an expired refresh token is invalid_grant (RFC 6749 §5.2)", async () => {
      const first = await issue();
      deps.clock.advance(deps.config.refreshTokenTtlSeconds * 1000 + 1);
      await expectOAuthError(await refresh(first.refresh_token), 400, "invalid_grant", "expired");
    });

    await t.step("a refresh token of another client is invalid_grant", async () => {
      const first = await issue();
      const { client: other } = await putClient(deps);
      const res = await handle(
        formRequest("/token", {
          grant_type: "refresh_token",
          refresh_token: first.refresh_token,
          client_id: other.clientId,
        }),
      );
      await expectOAuthError(res, 400, "invalid_grant", "another client");
      await expectTokens(await refresh(first.refresh_token));
    });

    await t.step("refresh_token is required; an unknown one is invalid_grant", async () => {
      await expectOAuthError(
        await handle(
          formRequest("/token", { grant_type: "refresh_token", client_id: client.clientId }),
        ),
        400,
        "invalid_request",
        '"refresh_token" is required',
      );
      await expectOAuthError(await refresh("gwrt_unknown"), 400, "invalid_grant");
    });
  } finally {
    deps.kv.close();
  }
});

Deno.test("POST /token: concurrency", async (t) => {
  const deps = await makeDeps({ config: CONFIG });
  const handle = createHandler(deps);
  try {
    await t.step("20 parallel redemptions of one code yield exactly one token pair", async () => {
      const { client } = await putClient(deps);
      const stored = await putCode(deps, client);
      const responses = await Promise.all(
        Array.from({ length: 20 }, () => handle(formRequest("/token", codeFields(client, stored)))),
      );
      const ok = responses.filter((r) => r.status === 200);
      assertEquals(ok.length, 1);
      const body = await expectTokens(ok[0]!);
      for (const res of responses.filter((r) => r.status !== 200)) {
        await expectOAuthError(res, 400, "invalid_grant");
      }
      // A loser that read the code only after the winner's commit sees a replay and revokes
      // the grant (RFC 6749 §4.1.2); one that lost the commit itself revokes nothing.
      const live = await lookupAccessToken(deps, body.access_token);
      const codeEntry = await deps.kv.get<CodeRecord>(codeKey(await sha256Hex(stored.code)));
      assert(codeEntry.value?.redeemedGrantId, "the code is marked redeemed");
      if (live) assertEquals(live.grantId, codeEntry.value.redeemedGrantId);
    });
  } finally {
    deps.kv.close();
  }
});
