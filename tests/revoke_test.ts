import { assertEquals } from "./_assert.ts";
import { makeDeps } from "./_helpers.ts";
import {
  basicAuth,
  expectOAuthError,
  expectTokens,
  formRequest,
  putClient,
  putCode,
  type TokenBody,
} from "./_kv_fixtures.ts";
import { authenticate, lookupAccessToken } from "../lib/oauth/bearer.ts";
import { sha256Hex } from "../lib/infra/crypto.ts";
import { type ClientRecord, grantTokenKey } from "../lib/store.ts";
import { createHandler } from "../main.ts";

const MCP = "http://localhost:8000/mcp";

/** Asserts the RFC 7009 §2.2 success answer: 200, JSON, `no-store`. */
async function expectRevoked(res: Response): Promise<void> {
  assertEquals(res.status, 200, await res.clone().text());
  assertEquals(res.headers.get("content-type"), "application/json");
  assertEquals(res.headers.get("cache-control"), "no-store");
  assertEquals(await res.json(), {});
}

Deno.test("POST /revoke", async (t) => {
  const deps = await makeDeps();
  const handle = createHandler(deps);
  const bearerStatus = async (token: string): Promise<number> => {
    const req = new Request(MCP, { headers: { authorization: `Bearer ${token}` } });
    const result = await authenticate(req, deps, MCP);
    return result instanceof Response ? result.status : 200;
  };
  const issue = async (client: ClientRecord, headers: Record<string, string> = {}) => {
    const stored = await putCode(deps, client);
    const fields: Record<string, string> = {
      grant_type: "authorization_code",
      code: stored.code,
      redirect_uri: stored.record.redirectUri,
      code_verifier: stored.verifier,
    };
    if (!headers.authorization) fields.client_id = client.clientId;
    return await expectTokens(await handle(formRequest("/token", fields, headers)));
  };
  const refresh = (client: ClientRecord, tokens: TokenBody) =>
    handle(
      formRequest("/token", {
        grant_type: "refresh_token",
        refresh_token: tokens.refresh_token,
        client_id: client.clientId,
      }),
    );
  try {
    const { client } = await putClient(deps);

    await t.step(
      "revoking an access token takes effect at once, cache included (RFC 7009 §2.1)",
      async () => {
        const tokens = await issue(client);
        assertEquals(await bearerStatus(tokens.access_token), 200, "now in the per-isolate cache");
        const { grantId } = (await lookupAccessToken(deps, tokens.access_token))!;
        const res = await handle(
          formRequest("/revoke", {
            token: tokens.access_token,
            token_type_hint: "access_token",
            client_id: client.clientId,
          }),
        );
        await expectRevoked(res);
        // Same instant: the cache entry (1 s TTL) would still answer had it not been dropped.
        assertEquals(await bearerStatus(tokens.access_token), 401);
        assertEquals(await lookupAccessToken(deps, tokens.access_token), null);
        const hash = await sha256Hex(tokens.access_token);
        assertEquals((await deps.kv.get(grantTokenKey(grantId, "access", hash))).value, null);
        // The grant lives on: its refresh token still works.
        await expectTokens(await refresh(client, tokens));
      },
    );

    await t.step("revoking a refresh token revokes its whole grant (RFC 7009 §2.1)", async () => {
      const tokens = await issue(client);
      assertEquals(await bearerStatus(tokens.access_token), 200);
      const res = await handle(
        formRequest("/revoke", {
          token: tokens.refresh_token,
          token_type_hint: "refresh_token",
          client_id: client.clientId,
        }),
      );
      await expectRevoked(res);
      assertEquals(await bearerStatus(tokens.access_token), 401);
      await expectOAuthError(await refresh(client, tokens), 400, "invalid_grant");
    });

    await t.step("a wrong token_type_hint does not stop the search (RFC 7009 §2.1)", async () => {
      const tokens = await issue(client);
      await expectRevoked(
        await handle(
          formRequest("/revoke", {
            token: tokens.refresh_token,
            token_type_hint: "access_token",
            client_id: client.clientId,
          }),
        ),
      );
      await expectOAuthError(await refresh(client, tokens), 400, "invalid_grant");
      const more = await issue(client);
      await expectRevoked(
        await handle(
          formRequest("/revoke", {
            token: more.access_token,
            token_type_hint: "something_else",
            client_id: client.clientId,
          }),
        ),
      );
      assertEquals(await bearerStatus(more.access_token), 401);
    });

    await t.step(
      "another client's token is not revoked, yet the answer is 200 (RFC 7009 §2.2)",
      async () => {
        const tokens = await issue(client);
        const { client: other } = await putClient(deps);
        for (const token of [tokens.access_token, tokens.refresh_token]) {
          await expectRevoked(
            await handle(formRequest("/revoke", { token, client_id: other.clientId })),
          );
        }
        assertEquals(await bearerStatus(tokens.access_token), 200);
        await expectTokens(await refresh(client, tokens));
      },
    );

    await t.step("an unknown token gets 200 (RFC 7009 §2.2)", async () => {
      await expectRevoked(
        await handle(formRequest("/revoke", { token: "gwat_unknown", client_id: client.clientId })),
      );
    });

    await t.step("token is required (RFC 7009 §2.1, RFC 6749 §5.2)", async () => {
      await expectOAuthError(
        await handle(formRequest("/revoke", { client_id: client.clientId })),
        400,
        "invalid_request",
        '"token" is required',
      );
    });

    await t.step("the body must be form-urlencoded (RFC 7009 §2.1)", async () => {
      const res = await handle(
        new Request("http://localhost:8000/revoke", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ token: "x", client_id: client.clientId }),
        }),
      );
      await expectOAuthError(res, 400, "invalid_request", "x-www-form-urlencoded");
    });

    await t.step("a confidential client authenticates as registered (RFC 7009 §2.1)", async () => {
      const basic = await putClient(deps, { method: "client_secret_basic" });
      const authorization = basicAuth(basic.client.clientId, basic.secret!);
      const tokens = await issue(basic.client, { authorization });
      const wrong = await handle(
        formRequest("/revoke", { token: tokens.access_token }, {
          authorization: basicAuth(basic.client.clientId, "wrong"),
        }),
      );
      assertEquals(wrong.headers.get("www-authenticate"), 'Basic realm="gateway"');
      await expectOAuthError(wrong, 401, "invalid_client");
      const asPublic = await handle(
        formRequest("/revoke", { token: tokens.access_token, client_id: basic.client.clientId }),
      );
      assertEquals(asPublic.headers.get("www-authenticate"), 'Basic realm="gateway"');
      await expectOAuthError(asPublic, 401, "invalid_client");
      assertEquals(await bearerStatus(tokens.access_token), 200, "failed attempts revoke nothing");
      await expectRevoked(
        await handle(formRequest("/revoke", { token: tokens.access_token }, { authorization })),
      );
      assertEquals(await bearerStatus(tokens.access_token), 401);
    });

    await t.step("an unknown client is invalid_client (RFC 6749 §5.2)", async () => {
      const res = await handle(formRequest("/revoke", { token: "x", client_id: "ghost" }));
      assertEquals(res.headers.get("www-authenticate"), 'Basic realm="gateway"');
      await expectOAuthError(res, 401, "invalid_client", "unknown client");
    });
  } finally {
    deps.kv.close();
  }
});
