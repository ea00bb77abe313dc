import {
  allRedirectUrisLoopback,
  cacheLifetimeSeconds,
  CIMD_MAX_BYTES,
  CIMD_UNCONFIRMED_TTL_SECONDS,
  cimdKey,
  type ClientIdMetadataDeps,
  confirmClientIdMetadata,
  isClientIdMetadataUrl,
  resolveClientIdMetadata,
  validateClientIdUrl,
} from "../lib/oauth/client_id_metadata.ts";
import { OAuthError } from "../lib/oauth/oauth_error.ts";
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "./_assert.ts";

/** A real document server on 127.0.0.1:<free port>; `hits` counts requests per path. */
function serveDocuments() {
  const hits: Record<string, number> = {};
  const releases: (() => void)[] = [];
  let base = "";
  const doc = (path: string, extra: Record<string, unknown> = {}) => ({
    client_id: `${base}${path}`,
    client_name: "Example MCP Client",
    redirect_uris: ["http://127.0.0.1:3000/callback", "https://app.example.com/cb"],
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    token_endpoint_auth_method: "none",
    ...extra,
  });
  const json = (body: unknown, headers: Record<string, string> = {}) =>
    new Response(JSON.stringify(body), {
      headers: { "content-type": "application/json", ...headers },
    });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    hits[path] = (hits[path] ?? 0) + 1;
    switch (path) {
      case "/valid":
        return json(doc(path), { "cache-control": "public, max-age=120" });
      case "/default-ttl":
        return json(doc(path));
      case "/native":
        return json(doc(path, { redirect_uris: ["http://127.0.0.1:3000/callback"] }));
      case "/native-declared-web":
        return json(
          doc(path, { redirect_uris: ["http://127.0.0.1:3000/cb"], application_type: "web" }),
        );
      case "/long-ttl":
        return json(doc(path), { "cache-control": "max-age=9999999" });
      case "/no-store":
        return json(doc(path), { "cache-control": "no-store" });
      case "/mismatch":
        return json(doc(path, { client_id: `${base}/other` }));
      case "/no-redirect-uris": {
        const d: Record<string, unknown> = doc(path);
        delete d.redirect_uris;
        return json(d);
      }
      case "/no-name": {
        const d: Record<string, unknown> = doc(path);
        delete d.client_name;
        return json(d);
      }
      case "/secret":
        return json(doc(path, { client_secret: "s3cret", client_secret_expires_at: 0 }));
      case "/basic-auth":
        return json(doc(path, { token_endpoint_auth_method: "client_secret_basic" }));
      case "/bad-redirect":
        return json(doc(path, { redirect_uris: ["javascript:alert(1)"] }));
      case "/fragment-redirect":
        return json(doc(path, { redirect_uris: ["https://app.example.com/cb#x"] }));
      case "/implicit":
        return json(doc(path, { grant_types: ["implicit"], response_types: ["token"] }));
      case "/redirect":
        return new Response(null, { status: 302, headers: { location: `${base}/valid` } });
      case "/big":
        return json(doc(path, { padding: "x".repeat(CIMD_MAX_BYTES) }));
      case "/big-stream": {
        const chunk = new TextEncoder().encode(" ".repeat(1024));
        let sent = 0;
        const body = new ReadableStream<Uint8Array>({
          pull(c) {
            if (sent++ < 64) c.enqueue(chunk);
            else c.close();
          },
        });
        return new Response(body, { headers: { "content-type": "application/json" } });
      }
      case "/slow":
        await new Promise<void>((r) => releases.push(r));
        return json(doc(path));
      case "/html":
        return new Response("<html></html>", { headers: { "content-type": "text/html" } });
      case "/not-json":
        return new Response("{not json", { headers: { "content-type": "application/json" } });
      case "/flaky":
        return hits[path] === 1 ? new Response("oops", { status: 500 }) : json(doc(path));
      default:
        return new Response("not found", { status: 404 });
    }
  });
  base = `http://127.0.0.1:${server.addr.port}`;
  return {
    base,
    hits,
    close: async () => {
      releases.forEach((r) => r());
      await server.shutdown();
    },
  };
}

async function testDeps(): Promise<ClientIdMetadataDeps & { advance: (ms: number) => void }> {
  let t = Date.now();
  return {
    kv: await Deno.openKv(":memory:"),
    now: () => t,
    advance: (ms) => void (t += ms),
  };
}

const dev = { allowLoopback: true };

Deno.test("client ID metadata URL form (draft §3)", async (t) => {
  await t.step("URL-shaped ids are routed to the metadata path", () => {
    assert(isClientIdMetadataUrl("https://app.example.com/client.json"));
    assert(isClientIdMetadataUrl("HTTP://127.0.0.1/c"));
    assert(!isClientIdMetadataUrl("pP3x9_abc-Def"));
  });
  await t.step("accepts https with a path, a port and a query", () => {
    validateClientIdUrl("https://app.example.com/oauth/client.json");
    validateClientIdUrl("https://app.example.com:8443/c?v=1");
  });
  await t.step("refuses what the draft forbids", () => {
    const cases: [string, RegExp][] = [
      ["http://app.example.com/c", /https/],
      ["https://app.example.com", /path/],
      ["https://app.example.com/", /path/],
      ["https://app.example.com/c#frag", /fragment/],
      ["https://user:pw@app.example.com/c", /username or password/],
      ["https://app.example.com/a/../c", /path segments/],
      ["https://app.example.com/./c", /path segments/],
      ["https://app.example.com/a/%2E%2e/c", /path segments/],
      ["https://APP.example.com/c", /normalized/],
      ["https://app.example.com:443/c", /normalized/],
      [`https://app.example.com/${"a".repeat(1000)}`, /at most/],
      ["not a url://", /not a URL/],
    ];
    for (const [id, re] of cases) {
      const e = assertThrows(() => validateClientIdUrl(id), OAuthError);
      assertEquals(e.code, "invalid_client");
      assertMatch(e.message, re, id);
    }
  });
  await t.step("http is allowed only on loopback, only in development", () => {
    validateClientIdUrl("http://127.0.0.1:8080/c", true);
    assertThrows(() => validateClientIdUrl("http://127.0.0.1:8080/c"), OAuthError);
    assertThrows(() => validateClientIdUrl("http://10.0.0.1/c", true), OAuthError);
  });
});

Deno.test("cacheLifetimeSeconds (RFC 9111 §5.2.2), clamped to [60 s, 24 h]", () => {
  assertEquals(cacheLifetimeSeconds(null), 300);
  assertEquals(cacheLifetimeSeconds("public, max-age=120"), 120);
  assertEquals(cacheLifetimeSeconds("max-age=0"), 60);
  assertEquals(cacheLifetimeSeconds("max-age=9999999"), 86_400);
  assertEquals(cacheLifetimeSeconds("no-store"), null);
  assertEquals(cacheLifetimeSeconds("max-age=600, no-cache"), null);
});

Deno.test("resolveClientIdMetadata", async (t) => {
  const server = serveDocuments();
  const deps = await testDeps();
  const resolve = (path: string, options = {}) =>
    resolveClientIdMetadata(deps, `${server.base}${path}`, { ...dev, ...options });
  const refused = async (path: string, re: RegExp, options = {}) => {
    const e = await assertRejects(() => resolve(path, options), OAuthError);
    assertEquals(e.code, "invalid_client");
    assertEquals(e.status, 401);
    assertMatch(e.message, re);
    return e;
  };

  try {
    await t.step("a valid document becomes a public client marked with its host", async () => {
      const client = await resolve("/valid");
      assertEquals(client.clientId, `${server.base}/valid`);
      assertEquals(client.clientName, "Example MCP Client");
      assertEquals(client.tokenEndpointAuthMethod, "none");
      assertEquals(client.redirectUris, [
        "http://127.0.0.1:3000/callback",
        "https://app.example.com/cb",
      ]);
      assertEquals(client.grantTypes, ["authorization_code", "refresh_token"]);
      assertEquals(client.metadataDocumentHost, new URL(server.base).host);
      assertEquals(client.clientSecretHash, undefined);
      assertEquals(allRedirectUrisLoopback(client), false);
      assertEquals(allRedirectUrisLoopback({ redirectUris: ["http://localhost:1/cb"] }), true);
    });

    await t.step("application_type absent: native only when every redirect URI is", async () => {
      assertEquals((await resolve("/valid")).applicationType, "web");
      assertEquals((await resolve("/native")).applicationType, "native");
      assertEquals((await resolve("/native-declared-web")).applicationType, "web");
    });

    await t.step("client_id must equal the URL exactly (draft §4.1)", async () => {
      await refused("/mismatch", /does not equal the document URL/);
    });
    await t.step("redirect_uris is required (MCP 2025-11-25)", async () => {
      await refused("/no-redirect-uris", /"redirect_uris"/);
    });
    await t.step("client_name is required (MCP 2025-11-25)", async () => {
      await refused("/no-name", /"client_name"/);
    });
    await t.step("no shared secret (draft §4.1)", async () => {
      await refused("/secret", /"client_secret" must not be present/);
      await refused("/basic-auth", /"token_endpoint_auth_method" must be "none"/);
    });
    await t.step("redirect URIs obey the registration rules", async () => {
      await refused("/bad-redirect", /javascript/);
      await refused("/fragment-redirect", /fragment/);
    });
    await t.step("implicit grant is refused", async () => {
      await refused("/implicit", /grant type "implicit"/);
    });
    await t.step("a redirect is not followed", async () => {
      await refused("/redirect", /redirect \(HTTP 302\)/);
      assertEquals(server.hits["/valid"], 1);
    });
    await t.step(`more than ${CIMD_MAX_BYTES} bytes is refused`, async () => {
      await refused("/big", /larger than 5120 bytes/);
      await refused("/big-stream", /larger than 5120 bytes/);
    });
    await t.step("a slow server times out", async () => {
      await refused("/slow", /took longer than 100 ms/, { timeoutMs: 100 });
    });
    await t.step("non-JSON is refused", async () => {
      await refused("/html", /not served as JSON/);
      await refused("/not-json", /not valid JSON/);
      await refused("/missing", /HTTP 404/);
    });

    await t.step(
      "a fetched document stays in memory for 60 s, never in KV, until used",
      async () => {
        assertEquals(server.hits["/valid"], 1);
        await resolve("/valid");
        assertEquals(server.hits["/valid"], 1);
        assertEquals((await deps.kv.get(cimdKey(`${server.base}/valid`))).value, null);
        deps.advance(CIMD_UNCONFIRMED_TTL_SECONDS * 1000 - 1000);
        await resolve("/valid");
        assertEquals(server.hits["/valid"], 1);
        deps.advance(2_000);
        await resolve("/valid");
        assertEquals(server.hits["/valid"], 2, "fetched again after the short memory TTL");
        assertEquals((await deps.kv.get(cimdKey(`${server.base}/valid`))).value, null);
      },
    );
    await t.step(
      "once a code was issued to it, KV keeps it for max-age, by the clock",
      async () => {
        await confirmClientIdMetadata(deps, `${server.base}/valid`, dev);
        const stored = await deps.kv.get<{ expiresAt: number }>(cimdKey(`${server.base}/valid`));
        assertEquals(stored.value?.expiresAt, deps.now() + 120_000);
        deps.advance(119_000);
        await resolve("/valid");
        assertEquals(server.hits["/valid"], 2);
        deps.advance(2_000);
        await resolve("/valid");
        assertEquals(server.hits["/valid"], 3);
      },
    );
    await t.step("lifetime defaults to 5 min and is capped at 24 h", async () => {
      for (const path of ["/default-ttl", "/long-ttl"]) {
        await resolve(path);
        await confirmClientIdMetadata(deps, `${server.base}${path}`, dev);
      }
      const a = await deps.kv.get<{ expiresAt: number }>(cimdKey(`${server.base}/default-ttl`));
      const b = await deps.kv.get<{ expiresAt: number }>(cimdKey(`${server.base}/long-ttl`));
      assertEquals(a.value?.expiresAt, deps.now() + 300_000);
      assertEquals(b.value?.expiresAt, deps.now() + 86_400_000);
    });
    await t.step("no-store is not cached, not even once used", async () => {
      await resolve("/no-store");
      await resolve("/no-store");
      assertEquals(server.hits["/no-store"], 2);
      await confirmClientIdMetadata(deps, `${server.base}/no-store`, dev);
      assertEquals(server.hits["/no-store"], 3, "confirming an uncached document fetches it");
      assertEquals((await deps.kv.get(cimdKey(`${server.base}/no-store`))).value, null);
    });
    await t.step("errors and invalid documents are never cached (draft §4.3)", async () => {
      await refused("/flaky", /HTTP 500/);
      const client = await resolve("/flaky");
      assertEquals(client.clientId, `${server.base}/flaky`);
      assertEquals(server.hits["/flaky"], 2);
      const before = server.hits["/mismatch"];
      await refused("/mismatch", /does not equal/);
      assertEquals(server.hits["/mismatch"], before! + 1);
    });
    await t.step("without allowLoopback, http on loopback is refused before fetching", async () => {
      const before = server.hits["/default-ttl"];
      const e = await assertRejects(
        () => resolveClientIdMetadata(deps, `${server.base}/default-ttl`),
        OAuthError,
      );
      assertMatch(e.message, /https/);
      assertEquals(server.hits["/default-ttl"], before);
    });
  } finally {
    deps.kv.close();
    await server.close();
  }
});

Deno.test("resolveClientIdMetadata refuses special-purpose addresses before any connection", async () => {
  const kv = await Deno.openKv(":memory:");
  const deps: ClientIdMetadataDeps = { kv, now: Date.now };
  const noDns = () => Promise.reject(new Error("must not resolve"));
  try {
    for (
      const id of [
        "https://127.0.0.1/client.json",
        "https://10.0.0.1/client.json",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/client.json",
        "https://[::ffff:7f00:1]/client.json", // ::ffff:127.0.0.1 as URL normalizes it
        "https://localhost/client.json",
      ]
    ) {
      const e = await assertRejects(
        () => resolveClientIdMetadata(deps, id, { resolveDns: noDns }),
        OAuthError,
      );
      assertEquals(e.code, "invalid_client");
      assertMatch(e.message, /may not be fetched: host .* resolves to a/, id);
    }
    // The dotted form is refused too (URL normalization), still without a connection.
    await assertRejects(
      () => resolveClientIdMetadata(deps, "https://[::ffff:127.0.0.1]/c", { resolveDns: noDns }),
      OAuthError,
    );
  } finally {
    kv.close();
  }
});
