/**
 * `lib/oauth/bearer.ts` in-process: authentication rules of the MCP routes (RFC 6750, RFC 8707,
 * RFC 9728, MCP 2025-11-25 Authorization) and the Origin check, on real KV and tokens.
 */
import {
  authenticate,
  checkOrigin,
  lookupAccessToken,
  type Principal,
  tokenHash,
} from "../lib/oauth/bearer.ts";
import { sha256HexSync } from "../lib/infra/crypto.ts";
import { revokeGrant } from "../lib/oauth/tokens.ts";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { makeDeps } from "./_helpers.ts";
import { issueAccessToken } from "./_tokens.ts";

const BASE = "http://localhost:8000";
const ALPHA = `${BASE}/mcp/alpha`;
const API_KEY = "bearer-test-api-key-0123";

function request(auth?: string, url = ALPHA, headers: Record<string, string> = {}): Request {
  return new Request(url, {
    method: "POST",
    headers: auth ? { ...headers, authorization: auth } : headers,
  });
}

async function expectChallenge(
  result: Principal | Response,
  status: number,
  error?: string,
): Promise<string> {
  assert(result instanceof Response, "expected an error response");
  assertEquals(result.status, status);
  assertEquals(result.headers.get("content-type"), "application/json");
  const body = await result.json();
  if (error) assertEquals(body.error, error);
  const challenge = result.headers.get("www-authenticate") ?? "";
  assertStringIncludes(
    challenge,
    `resource_metadata="${BASE}/.well-known/oauth-protected-resource/mcp/alpha"`,
  );
  return challenge;
}

Deno.test("lib/bearer authenticate", async (t) => {
  const deps = await makeDeps({
    config: {
      backends: [
        { name: "alpha", url: "http://127.0.0.1:9/mcp" },
        { name: "beta", url: "http://127.0.0.1:9/mcp" },
      ],
    },
    env: { GATEWAY_API_KEY: API_KEY },
  });
  try {
    await t.step(
      "no credentials → 401 with resource_metadata and no error code (RFC 6750 §3.1)",
      async () => {
        const challenge = await expectChallenge(
          await authenticate(request(), deps, ALPHA, "alpha"),
          401,
        );
        assert(!challenge.includes("error="), "no error code without credentials");
        assertStringIncludes(challenge, 'scope="mcp:alpha"');
      },
    );

    await t.step("a non-Bearer scheme → 401 invalid_token (RFC 6750 §2.1)", async () => {
      await expectChallenge(
        await authenticate(request("Basic dXNlcjpwYXNz"), deps, ALPHA, "alpha"),
        401,
        "invalid_token",
      );
    });

    await t.step(
      "access_token in the query → 400 invalid_request (MCP Authorization §Access Token Usage)",
      async () => {
        const { accessToken } = await issueAccessToken(deps, { scope: "mcp", resource: ALPHA });
        await expectChallenge(
          await authenticate(
            request(undefined, `${ALPHA}?access_token=${accessToken}`),
            deps,
            ALPHA,
            "alpha",
          ),
          400,
          "invalid_request",
        );
      },
    );

    await t.step("a live token for the resource → its principal", async () => {
      const { accessToken, grantId } = await issueAccessToken(deps, {
        scope: "mcp:alpha",
        resource: ALPHA,
        clientId: "client-1",
      });
      const principal = await authenticate(request(`Bearer ${accessToken}`), deps, ALPHA, "alpha");
      assert(!(principal instanceof Response));
      assertEquals(principal.id, grantId);
      assertEquals(principal.kind, "token");
      assertEquals(principal.clientId, "client-1");
    });

    await t.step("a token for /mcp covers /mcp/alpha (RFC 8707 §2)", async () => {
      const { accessToken } = await issueAccessToken(deps, {
        scope: "mcp",
        resource: `${BASE}/mcp`,
      });
      const principal = await authenticate(request(`Bearer ${accessToken}`), deps, ALPHA, "alpha");
      assert(!(principal instanceof Response));
      assertEquals(principal.audience, `${BASE}/mcp`);
    });

    await t.step(
      "a token for another backend → 401 invalid_token (RFC 8707 audience)",
      async () => {
        const { accessToken } = await issueAccessToken(deps, {
          scope: "mcp:beta",
          resource: `${BASE}/mcp/beta`,
        });
        await expectChallenge(
          await authenticate(request(`Bearer ${accessToken}`), deps, ALPHA, "alpha"),
          401,
          "invalid_token",
        );
      },
    );

    await t.step(
      "a scope without the backend → 403 insufficient_scope with scope= (RFC 6750 §3.1)",
      async () => {
        const { accessToken } = await issueAccessToken(deps, {
          scope: "mcp:beta",
          resource: `${BASE}/mcp`,
        });
        const challenge = await expectChallenge(
          await authenticate(request(`Bearer ${accessToken}`), deps, ALPHA, "alpha"),
          403,
          "insufficient_scope",
        );
        assertStringIncludes(challenge, 'scope="mcp:alpha"');
      },
    );

    await t.step("an expired token → 401 invalid_token (injected clock)", async () => {
      const { accessToken } = await issueAccessToken(deps, { scope: "mcp", resource: ALPHA });
      assert(await lookupAccessToken(deps, accessToken), "live before expiry (and now cached)");
      deps.clock.advance(deps.config.accessTokenTtlSeconds * 1000);
      assertEquals(await lookupAccessToken(deps, accessToken), null);
      await expectChallenge(
        await authenticate(request(`Bearer ${accessToken}`), deps, ALPHA, "alpha"),
        401,
        "invalid_token",
      );
    });

    await t.step(
      "a revoked grant's token is refused at once in this isolate (RFC 7009 §2.1)",
      async () => {
        const { accessToken, grantId } = await issueAccessToken(deps, {
          scope: "mcp",
          resource: ALPHA,
        });
        assert(await lookupAccessToken(deps, accessToken));
        await revokeGrant(deps, grantId);
        assertEquals(await lookupAccessToken(deps, accessToken), null);
      },
    );

    await t.step(
      "a token authenticated a moment ago (its hash memoized) is refused once revoked",
      async () => {
        const { accessToken, grantId } = await issueAccessToken(deps, {
          scope: "mcp",
          resource: ALPHA,
        });
        const auth = `Bearer ${accessToken}`;
        assert(!(await authenticate(request(auth), deps, ALPHA, "alpha") instanceof Response));
        assert(!(await authenticate(request(auth), deps, ALPHA, "alpha") instanceof Response));
        await revokeGrant(deps, grantId);
        await expectChallenge(
          await authenticate(request(auth), deps, ALPHA, "alpha"),
          401,
          "invalid_token",
        );
      },
    );

    await t.step("tokenHash is the SHA-256 of the string, memoized for at most a second", () => {
      const now = 1_000_000;
      assertEquals(tokenHash("memo-test-token", now), sha256HexSync("memo-test-token"));
      assertEquals(tokenHash("memo-test-token", now + 500), sha256HexSync("memo-test-token"));
      assertEquals(tokenHash("memo-test-token", now + 1500), sha256HexSync("memo-test-token"));
      for (let i = 0; i < 1100; i++) {
        assertEquals(tokenHash(`memo-fill-${i}`, now + 1600), sha256HexSync(`memo-fill-${i}`));
      }
    });

    await t.step("the API key authenticates with scope mcp", async () => {
      const principal = await authenticate(request(`Bearer ${API_KEY}`), deps, ALPHA, "alpha");
      assert(!(principal instanceof Response));
      assertEquals(principal.kind, "api_key");
      assertEquals(principal.scope, "mcp");
      assert(!principal.id.includes(API_KEY), "the principal id does not reveal the key");
    });
  } finally {
    deps.tokenCache.close();
    deps.kv.close();
  }
});

Deno.test("lib/bearer checkOrigin", async (t) => {
  const deps = await makeDeps({
    config: {
      allowedOrigins: ["http://localhost:6274"],
      backends: [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }],
    },
  });
  try {
    await t.step(
      "no Origin, the gateway's own and an allowed one pass (Transports §Security Warning)",
      () => {
        assertEquals(checkOrigin(request(), deps), null);
        assertEquals(checkOrigin(request(undefined, ALPHA, { origin: BASE }), deps), null);
        assertEquals(
          checkOrigin(request(undefined, ALPHA, { origin: "http://localhost:6274" }), deps),
          null,
        );
      },
    );

    await t.step("a foreign Origin → 403 with a JSON-RPC error", async () => {
      const res = checkOrigin(request(undefined, ALPHA, { origin: "https://evil.example" }), deps);
      assert(res);
      assertEquals(res.status, 403);
      assertEquals(res.headers.get("content-type"), "application/json");
      const body = await res.json();
      assertEquals(body.jsonrpc, "2.0");
      assertEquals(body.error.code, -32600);
    });
  } finally {
    deps.tokenCache.close();
    deps.kv.close();
  }
});
