import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { makeDeps } from "./_helpers.ts";
import { createHandler } from "../main.ts";

const config = {
  backends: [
    { name: "alpha", url: "http://127.0.0.1:9/mcp" },
    { name: "beta", url: "http://127.0.0.1:9/mcp" },
  ],
};

Deno.test("discovery metadata", async (t) => {
  const deps = await makeDeps({ config, env: { PUBLIC_URL: "https://gw.example" } });
  const handle = createHandler(deps);
  const get = (path: string, headers: HeadersInit = {}) =>
    handle(new Request(`https://gw.example${path}`, { headers }));

  for (const path of ["/.well-known/oauth-authorization-server"]) {
    await t.step(`${path}: RFC 8414 §2 fields, issuer = PUBLIC_URL exactly`, async () => {
      const res = await get(path);
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "application/json");
      const body = await res.json();
      assertEquals(body.issuer, "https://gw.example");
      assertEquals(body.authorization_endpoint, "https://gw.example/authorize");
      assertEquals(body.token_endpoint, "https://gw.example/token");
      assertEquals(body.registration_endpoint, "https://gw.example/register");
      assertEquals(body.revocation_endpoint, "https://gw.example/revoke");
      assertEquals(body.response_types_supported, ["code"]);
      assertEquals(body.grant_types_supported, ["authorization_code", "refresh_token"]);
      assertEquals(body.code_challenge_methods_supported, ["S256"]);
      assertEquals(body.token_endpoint_auth_methods_supported, [
        "none",
        "client_secret_basic",
        "client_secret_post",
      ]);
      assertEquals(body.scopes_supported, ["mcp", "mcp:alpha", "mcp:beta", "offline_access"]);
      // MCP 2025-11-25 Authorization §Client ID Metadata Documents (enabled by default).
      assertEquals(body.client_id_metadata_document_supported, true);
      assertEquals(body.authorization_response_iss_parameter_supported, true);
    });
  }

  await t.step(
    "/.well-known/openid-configuration: 404, no OpenID Provider (no ID tokens, no jwks_uri)",
    async () => {
      const res = await get("/.well-known/openid-configuration", {
        origin: "http://localhost:6274",
      });
      assertEquals(res.status, 404);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals(res.headers.get("access-control-allow-origin"), "http://localhost:6274");
      const body = await res.json();
      assertEquals(body.error, "not_found");
      assertStringIncludes(
        body.error_description,
        "https://gw.example/.well-known/oauth-authorization-server",
      );
    },
  );

  await t.step(
    "protected resource metadata: resource is the URL it describes (RFC 9728 §3.3)",
    async () => {
      for (
        const [path, resource] of [
          ["/.well-known/oauth-protected-resource", "https://gw.example"],
          ["/.well-known/oauth-protected-resource/mcp", "https://gw.example/mcp"],
        ]
      ) {
        const res = await get(path!);
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type"), "application/json");
        const body = await res.json();
        assertEquals(body.resource, resource);
        assertEquals(body.authorization_servers, ["https://gw.example"]);
        assertEquals(body.scopes_supported, ["mcp", "mcp:alpha", "mcp:beta"]);
        assertEquals(body.bearer_methods_supported, ["header"]);
      }
    },
  );

  await t.step("protected resource metadata of one backend", async () => {
    const res = await get("/.well-known/oauth-protected-resource/mcp/beta");
    assertEquals(res.status, 200);
    assertEquals(res.headers.get("content-type"), "application/json");
    const body = await res.json();
    assertEquals(body.resource, "https://gw.example/mcp/beta");
    assertEquals(body.scopes_supported, ["mcp", "mcp:beta"]);
  });

  await t.step("unknown backend's metadata → 404", async () => {
    const res = await get("/.well-known/oauth-protected-resource/mcp/gamma");
    assertEquals(res.status, 404);
    assertEquals(res.headers.get("content-type"), "application/json");
    assertEquals((await res.json()).error, "not_found");
  });

  await t.step("CORS-readable by browser clients, preflight answered", async () => {
    const res = await get("/.well-known/oauth-protected-resource/mcp", {
      origin: "http://localhost:6274",
    });
    assertEquals(res.status, 200);
    assertEquals(res.headers.get("access-control-allow-origin"), "http://localhost:6274");
    await res.body?.cancel();
    const pre = await handle(
      new Request("https://gw.example/.well-known/oauth-authorization-server", {
        method: "OPTIONS",
        headers: { origin: "http://localhost:6274", "access-control-request-method": "GET" },
      }),
    );
    assertEquals(pre.status, 204);
    assert(pre.headers.get("access-control-allow-methods")?.includes("GET"));
  });

  await t.step("wrong method → 405 with Allow; unknown path → 404", async () => {
    const res = await handle(
      new Request("https://gw.example/.well-known/oauth-authorization-server", { method: "POST" }),
    );
    assertEquals(res.status, 405);
    assertEquals(res.headers.get("allow"), "GET, HEAD");
    await res.body?.cancel();
    const nf = await get("/nope");
    assertEquals(nf.status, 404);
    assertEquals(nf.headers.get("content-type"), "application/json");
    await nf.body?.cancel();
  });

  await t.step("GET /healthz: unauthenticated liveness without details", async () => {
    const res = await get("/healthz");
    assertEquals(res.status, 200);
    assertEquals(res.headers.get("content-type"), "application/json");
    assertEquals(await res.json(), { status: "ok" });
  });

  deps.kv.close();
});

Deno.test("discovery metadata follows the client policy of the config", async (t) => {
  const deps = await makeDeps({
    config: {
      ...config,
      registration: { mode: "off" },
      clientIdMetadataDocuments: { enabled: false },
      externalIssuers: [
        { issuer: "https://idp.example/", jwksUrl: "https://idp.example/.well-known/jwks.json" },
      ],
    },
    env: { PUBLIC_URL: "https://gw.example" },
  });
  const handle = createHandler(deps);
  const get = (path: string) => handle(new Request(`https://gw.example${path}`));

  await t.step("CIMD disabled → client_id_metadata_document_supported false", async () => {
    const res = await get("/.well-known/oauth-authorization-server");
    assertEquals(res.status, 200);
    assertEquals(res.headers.get("content-type"), "application/json");
    const body = await res.json();
    assertEquals(body.client_id_metadata_document_supported, false);
    // RFC 8414 §2: registration_endpoint is OPTIONAL; not advertised when registration is off.
    assertEquals(body.registration_endpoint, undefined);
  });

  await t.step("authorization_servers lists the external issuers after this one", async () => {
    for (
      const path of [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource/mcp/beta",
      ]
    ) {
      const res = await get(path);
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "application/json");
      const body = await res.json();
      assertEquals(body.authorization_servers, ["https://gw.example", "https://idp.example/"]);
    }
  });

  deps.kv.close();
});
