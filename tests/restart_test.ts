import { assert, assertEquals } from "./_assert.ts";
import { makeDeps } from "./_helpers.ts";
import { expectTokens, formRequest, putClient, putCode, type TokenBody } from "./_kv_fixtures.ts";
import { authenticate } from "../lib/oauth/bearer.ts";
import { createHandler } from "../main.ts";

const MCP = "http://localhost:8000/mcp";

/** Before the restart: a client, a code, and tokens issued through POST /token; KV closed. */
async function issueBeforeRestart(
  kvPath: string,
): Promise<{ tokens: TokenBody; clientId: string }> {
  const deps = await makeDeps({ kvPath });
  try {
    const { client } = await putClient(deps);
    const stored = await putCode(deps, client);
    const tokens = await expectTokens(
      await createHandler(deps)(
        formRequest("/token", {
          grant_type: "authorization_code",
          code: stored.code,
          redirect_uri: stored.record.redirectUri,
          code_verifier: stored.verifier,
          client_id: client.clientId,
        }),
      ),
    );
    return { tokens, clientId: client.clientId };
  } finally {
    deps.kv.close();
  }
}

Deno.test("restart", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "gateway-restart-" });
  const kvPath = `${dir}/gateway.kv`;
  try {
    const { tokens, clientId } = await issueBeforeRestart(kvPath);

    // After: fresh deps (new KV handle, empty token cache) on the same file.
    const after = await makeDeps({ kvPath });
    try {
      const handle = createHandler(after);

      await t.step("an access token issued before a restart still authenticates", async () => {
        const req = new Request(MCP, {
          headers: { authorization: `Bearer ${tokens.access_token}` },
        });
        const principal = await authenticate(req, after, MCP);
        assert(!(principal instanceof Response), "the token is accepted at /mcp");
        assertEquals(principal.kind, "token");
        assertEquals(principal.clientId, clientId);
        assertEquals(principal.audience, MCP);
      });

      await t.step("a refresh token issued before a restart still refreshes", async () => {
        const res = await handle(
          formRequest("/token", {
            grant_type: "refresh_token",
            refresh_token: tokens.refresh_token,
            client_id: clientId,
          }),
        );
        const fresh = await expectTokens(res);
        assertEquals(fresh.scope, "mcp");
        const req = new Request(MCP, {
          headers: { authorization: `Bearer ${fresh.access_token}` },
        });
        assert(!((await authenticate(req, after, MCP)) instanceof Response));
      });
    } finally {
      after.kv.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
