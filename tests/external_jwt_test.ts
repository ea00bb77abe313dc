import { base64url, exportJWK, generateKeyPair, type JWTPayload, SignJWT } from "jose";
import {
  createExternalJwtVerifier,
  type ExternalJwtDeps,
  looksLikeJwt,
  mapScopes,
} from "../lib/oauth/external_jwt.ts";
import { OAuthError } from "../lib/oauth/oauth_error.ts";
import { assertEquals, assertMatch, assertRejects, assertThrows } from "./_assert.ts";

const PUBLIC_URL = "http://localhost:8000";
const MCP = `${PUBLIC_URL}/mcp`;
const ALPHA = `${PUBLIC_URL}/mcp/alpha`;
const BETA = `${PUBLIC_URL}/mcp/beta`;
const ISSUER = "https://idp.example.com/";
const SCOPES = ["mcp", "mcp:alpha", "mcp:beta"];

/** A real JWKS server on 127.0.0.1:<free port> with one RS256 and one ES256 key. */
async function serveIssuer() {
  const rsa = await generateKeyPair("RS256");
  const ec = await generateKeyPair("ES256");
  const keys = [
    { ...(await exportJWK(rsa.publicKey)), kid: "rsa-1", alg: "RS256", use: "sig" },
    { ...(await exportJWK(ec.publicKey)), kid: "ec-1", alg: "ES256", use: "sig" },
  ];
  let hits = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    hits++;
    return Response.json({ keys });
  });
  return {
    jwksUrl: `http://127.0.0.1:${server.addr.port}/jwks.json`,
    rsa,
    ec,
    hits: () => hits,
    close: () => server.shutdown(),
  };
}

Deno.test("external JWT access tokens", async (t) => {
  const idp = await serveIssuer();
  let now = Date.now();
  const deps: ExternalJwtDeps = { now: () => now, fetch: globalThis.fetch.bind(globalThis) };
  const verifier = createExternalJwtVerifier({ issuer: ISSUER, jwksUrl: idp.jwksUrl }, deps);
  const sec = () => Math.floor(now / 1000);
  const sign = (
    claims: JWTPayload = {},
    header: { alg: string; kid?: string } = { alg: "RS256", kid: "rsa-1" },
    key: CryptoKey | Uint8Array = idp.rsa.privateKey,
  ) =>
    new SignJWT({ scope: "mcp:alpha", ...claims })
      .setProtectedHeader({ typ: "at+jwt", ...header })
      .setIssuer((claims.iss as string) ?? ISSUER)
      .setAudience((claims.aud as string | string[]) ?? ALPHA)
      .setSubject("user-42")
      .setIssuedAt(sec())
      .setExpirationTime((claims.exp as number) ?? sec() + 600)
      .sign(key);
  const at = (resource: string) => ({ resource, publicUrl: PUBLIC_URL, knownScopes: SCOPES });

  try {
    await t.step("a valid RS256 token gives a principal (RFC 9068 §4)", async () => {
      const p = await verifier.verify(await sign({ azp: "cli-1" }), at(ALPHA));
      assertEquals(p, {
        id: `jwt:${ISSUER}:user-42`,
        kind: "external_jwt",
        clientId: "cli-1",
        scope: "mcp:alpha",
        audience: ALPHA,
      });
    });

    await t.step("a valid ES256 token with an scp array", async () => {
      const token = await sign(
        { scope: undefined, scp: ["mcp", "openid", "mcp"] },
        { alg: "ES256", kid: "ec-1" },
        idp.ec.privateKey,
      );
      const p = await verifier.verify(token, at(ALPHA));
      assertEquals(p?.scope, "mcp");
    });

    await t.step("a token for /mcp covers /mcp/<backend> (RFC 8707 §2)", async () => {
      const p = await verifier.verify(await sign({ aud: MCP }), at(BETA));
      assertEquals(p?.audience, MCP);
    });

    await t.step("a token for PUBLIC_URL (root metadata's resource) counts as /mcp", async () => {
      for (const target of [ALPHA, MCP]) {
        const p = await verifier.verify(await sign({ aud: PUBLIC_URL }), at(target));
        assertEquals(p?.audience, MCP);
      }
    });

    await t.step("wrong audience is refused", async () => {
      assertEquals(await verifier.verify(await sign({ aud: BETA }), at(ALPHA)), null);
      assertEquals(await verifier.verify(await sign({ aud: ALPHA }), at(MCP)), null);
      assertEquals(
        await verifier.verify(await sign({ aud: "https://other.example/mcp" }), at(ALPHA)),
        null,
      );
    });

    await t.step("wrong issuer is refused", async () => {
      assertEquals(
        await verifier.verify(await sign({ iss: "https://evil.example/" }), at(ALPHA)),
        null,
      );
    });

    await t.step("expired beyond the 30 s leeway is refused, within it accepted", async () => {
      assertEquals(await verifier.verify(await sign({ exp: sec() - 31 }), at(ALPHA)), null);
      const p = await verifier.verify(await sign({ exp: sec() - 10 }), at(ALPHA));
      assertEquals(p?.id, `jwt:${ISSUER}:user-42`);
    });

    await t.step("not yet valid (nbf) is refused", async () => {
      assertEquals(await verifier.verify(await sign({ nbf: sec() + 120 }), at(ALPHA)), null);
    });

    await t.step("the injected clock decides expiry", async () => {
      const token = await sign({ exp: sec() + 60 });
      assertEquals((await verifier.verify(token, at(ALPHA)))?.scope, "mcp:alpha");
      now += 91_000;
      assertEquals(await verifier.verify(token, at(ALPHA)), null);
      now -= 91_000;
    });

    await t.step('alg "none" is refused (RFC 8725 §3.2)', async () => {
      const enc = (o: unknown) => base64url.encode(JSON.stringify(o));
      const body = { iss: ISSUER, aud: ALPHA, sub: "user-42", exp: sec() + 600, scope: "mcp" };
      const unsigned = `${enc({ alg: "none" })}.${enc(body)}.`;
      assertEquals(await verifier.verify(unsigned, at(ALPHA)), null);
      assertEquals(await verifier.verify(`${unsigned}AAAA`, at(ALPHA)), null);
    });

    await t.step(
      "HS256 is refused, even with the public key as secret (RFC 8725 §2.1)",
      async () => {
        const secret = new TextEncoder().encode(JSON.stringify(await exportJWK(idp.rsa.publicKey)));
        const token = await sign({}, { alg: "HS256", kid: "rsa-1" }, secret);
        assertEquals(await verifier.verify(token, at(ALPHA)), null);
      },
    );

    await t.step("an unknown kid is refused", async () => {
      const other = await generateKeyPair("RS256");
      const token = await sign({}, { alg: "RS256", kid: "rogue" }, other.privateKey);
      assertEquals(await verifier.verify(token, at(ALPHA)), null);
      const sameKid = await sign({}, { alg: "RS256", kid: "rsa-1" }, other.privateKey);
      assertEquals(await verifier.verify(sameKid, at(ALPHA)), null);
    });

    await t.step("a tampered payload fails the signature", async () => {
      const [h, , s] = (await sign()).split(".");
      const payload = base64url.encode(JSON.stringify({
        iss: ISSUER,
        aud: ALPHA,
        sub: "admin",
        exp: sec() + 600,
        scope: "mcp",
      }));
      assertEquals(await verifier.verify(`${h}.${payload}.${s}`, at(ALPHA)), null);
    });

    await t.step("a token without sub is refused", async () => {
      const token = await new SignJWT({ scope: "mcp" })
        .setProtectedHeader({ alg: "RS256", kid: "rsa-1" })
        .setIssuer(ISSUER).setAudience(ALPHA).setExpirationTime(sec() + 600)
        .sign(idp.rsa.privateKey);
      assertEquals(await verifier.verify(token, at(ALPHA)), null);
    });

    await t.step("opaque tokens are not tried (no JWKS fetch)", async () => {
      const before = idp.hits();
      assertEquals(looksLikeJwt("pP3x9_abc-Def"), false);
      assertEquals(await verifier.verify("pP3x9_abc-Def", at(ALPHA)), null);
      assertEquals(await verifier.verify("a.b", at(ALPHA)), null);
      assertEquals(idp.hits(), before);
    });

    await t.step("the JWKS is fetched once and cached (unknown kid within the cooldown)", () => {
      assertEquals(idp.hits(), 1);
    });
  } finally {
    await idp.close();
  }
});

Deno.test("external JWT: configured audience counts as /mcp", async () => {
  const idp = await serveIssuer();
  try {
    const verifier = createExternalJwtVerifier(
      { issuer: ISSUER, jwksUrl: idp.jwksUrl, audience: "api://gateway" },
      { now: Date.now, fetch: globalThis.fetch.bind(globalThis) },
    );
    const token = await new SignJWT({ scp: "mcp mcp:beta" })
      .setProtectedHeader({ alg: "RS256", kid: "rsa-1" })
      .setIssuer(ISSUER).setAudience("api://gateway").setSubject("u").setExpirationTime("5m")
      .sign(idp.rsa.privateKey);
    const p = await verifier.verify(token, { resource: BETA, publicUrl: PUBLIC_URL });
    assertEquals(p?.audience, MCP);
    assertEquals(p?.scope, "mcp mcp:beta");
  } finally {
    await idp.close();
  }
});

Deno.test("external JWT: an unreachable JWKS is 503 temporarily_unavailable", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  const { privateKey } = await generateKeyPair("RS256");
  const verifier = createExternalJwtVerifier(
    { issuer: ISSUER, jwksUrl: `http://127.0.0.1:${port}/jwks.json` },
    { now: Date.now, fetch: globalThis.fetch.bind(globalThis) },
  );
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: "RS256", kid: "k" })
    .setIssuer(ISSUER).setAudience(MCP).setSubject("u").setExpirationTime("5m")
    .sign(privateKey);
  const e = await assertRejects(
    () => verifier.verify(token, { resource: MCP, publicUrl: PUBLIC_URL }),
    OAuthError,
  );
  assertEquals(e.code, "temporarily_unavailable");
  assertEquals(e.status, 503);
  assertEquals(e.headers.get("retry-after"), "30");
});

Deno.test("external JWT configuration and scope mapping", async (t) => {
  await t.step("none and symmetric algorithms cannot be configured", () => {
    for (const alg of ["none", "HS256"]) {
      const e = assertThrows(
        () =>
          createExternalJwtVerifier(
            { issuer: ISSUER, jwksUrl: "https://idp.example.com/jwks", algorithms: [alg] },
            { now: Date.now, fetch },
          ),
        Error,
      );
      assertMatch(e.message, /is not allowed/);
    }
  });
  await t.step("scope string, scp array or string; unknown scopes dropped", () => {
    assertEquals(mapScopes({ scope: "mcp:alpha  openid mcp" }, SCOPES), "mcp:alpha mcp");
    assertEquals(mapScopes({ scp: ["mcp:beta", 7, "x"] }, SCOPES), "mcp:beta");
    assertEquals(mapScopes({ scp: "mcp mcp" }), "mcp");
    assertEquals(mapScopes({}), "");
  });
});
