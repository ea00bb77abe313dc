/**
 * External JWT access tokens (RFC 9068) accepted by a served gateway at `/mcp/<backend>`: a
 * real JWKS server on 127.0.0.1, jose-signed tokens, a raw backend behind the gateway.
 */
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from "jose";
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { startRawBackend } from "./_backends.ts";
import { serveGateway } from "./_helpers.ts";

const ISSUER = "https://idp.example.com/";
const DOWN_ISSUER = "https://down.example.com/";

function deadUrl(): string {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return `http://127.0.0.1:${port}/jwks.json`;
}

Deno.test("external JWT access tokens at /mcp/<backend>", async (t) => {
  const keys = await generateKeyPair("RS256");
  const jwk = { ...(await exportJWK(keys.publicKey)), kid: "k1", alg: "RS256", use: "sig" };
  let jwksHits = 0;
  const idp = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    jwksHits++;
    return Response.json({ keys: [jwk] });
  });
  const backend = startRawBackend(async (req) => {
    const body = await req.json();
    return Response.json({ jsonrpc: "2.0", id: body.id, result: { tools: [] } });
  });
  const gw = await serveGateway({
    config: {
      backends: [{ name: "alpha", url: backend.url }, { name: "beta", url: backend.url }],
      externalIssuers: [
        { issuer: ISSUER, jwksUrl: `http://127.0.0.1:${idp.addr.port}/jwks.json` },
        { issuer: DOWN_ISSUER, jwksUrl: deadUrl() },
      ],
    },
  });
  const alpha = `${gw.url}/mcp/alpha`;
  const sign = (claims: JWTPayload = {}, key: CryptoKey = keys.privateKey) => {
    const sec = Math.floor(gw.deps.now() / 1000);
    return new SignJWT({ scope: "mcp:alpha", azp: "idp-client-7", ...claims })
      .setProtectedHeader({ alg: "RS256", kid: "k1", typ: "at+jwt" })
      .setIssuer((claims.iss as string) ?? ISSUER)
      .setAudience((claims.aud as string) ?? alpha)
      .setSubject("user-1")
      .setIssuedAt(sec)
      .setExpirationTime(sec + 300)
      .sign(key);
  };
  const call = (token: string, url = alpha) =>
    fetch(url, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
  const expectBearerError = async (res: Response, status: number, error: string) => {
    assertEquals(res.status, status);
    assertEquals(res.headers.get("content-type"), "application/json");
    assertStringIncludes(res.headers.get("www-authenticate") ?? "", `error="${error}"`);
    assertEquals((await res.json()).error, error);
  };

  try {
    await t.step("a valid token of the issuer passes; the backend never sees it", async () => {
      const res = await call(await sign());
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals((await res.json()).result, { tools: [] });
      const seen = backend.requests.at(-1)!;
      assertEquals(seen.headers.authorization, undefined);
    });

    await t.step("the log line carries the external client and kind", () => {
      const line = gw.deps.logs.findLast((r) => r.route === "mcp_backend");
      assert(line);
      assertEquals(line.status, 200);
      assertEquals(line.client_id, "idp-client-7");
      assertEquals(line.auth, "external_jwt");
      assertEquals(line.backend, "alpha");
    });

    await t.step("scope is checked as for our tokens: 403 insufficient_scope", async () => {
      const res = await call(await sign({ scope: "mcp:beta" }));
      await expectBearerError(res, 403, "insufficient_scope");
    });

    await t.step("a token for /mcp covers every backend (RFC 8707 audience)", async () => {
      const res = await call(
        await sign({ scope: "mcp", aud: `${gw.url}/mcp` }),
        `${gw.url}/mcp/beta`,
      );
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals((await res.json()).result, { tools: [] });
    });

    await t.step("another resource's audience is 401 invalid_token", async () => {
      const res = await call(await sign({ aud: `${gw.url}/mcp/beta` }));
      await expectBearerError(res, 401, "invalid_token");
    });

    await t.step("a token signed by another key is 401 invalid_token", async () => {
      const other = await generateKeyPair("RS256");
      await expectBearerError(await call(await sign({}, other.privateKey)), 401, "invalid_token");
    });

    await t.step("an unconfigured issuer is 401 without any JWKS fetch", async () => {
      const before = jwksHits;
      const res = await call(await sign({ iss: "https://stranger.example/" }));
      await expectBearerError(res, 401, "invalid_token");
      assertEquals(jwksHits, before);
    });

    await t.step("an expired token is 401 (the injected clock decides)", async () => {
      const token = await sign();
      gw.deps.clock.advance(10 * 60_000);
      await expectBearerError(await call(token), 401, "invalid_token");
    });

    await t.step("a JWKS outage is 503 temporarily_unavailable with Retry-After", async () => {
      const res = await call(await sign({ iss: DOWN_ISSUER }));
      assertEquals(res.status, 503);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals(res.headers.get("retry-after"), "30");
      const body = await res.json();
      assertEquals(body.error, "temporarily_unavailable");
    });
  } finally {
    await gw.deps.mcpRateLimiter.settled();
    await gw.close();
    await backend.close();
    await idp.shutdown();
  }
});
