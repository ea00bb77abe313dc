import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { makeDeps } from "./_helpers.ts";
import { sha256Hex } from "../lib/infra/crypto.ts";
import { clientKey, type ClientRecord } from "../lib/store.ts";
import { createHandler } from "../main.ts";

const BASE = "http://localhost:8000";

function register(body: unknown, headers: HeadersInit = { "content-type": "application/json" }) {
  return new Request(`${BASE}/register`, {
    method: "POST",
    headers,
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function expectError(res: Response, status: number, error: string): Promise<string> {
  assertEquals(res.status, status);
  assertEquals(res.headers.get("content-type"), "application/json");
  assertEquals(res.headers.get("cache-control"), "no-store");
  const body = await res.json();
  assertEquals(body.error, error);
  assertEquals(typeof body.error_description, "string");
  return body.error_description;
}

Deno.test("POST /register", async (t) => {
  // Many registrations from one address: the per-IP limit has its own test
  // (tests/registration_policy_test.ts).
  const deps = await makeDeps({
    config: {
      backends: [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }],
      rateLimits: { registerPerIpPerHour: 1000 },
    },
  });
  const handle = createHandler(deps);
  const ok = { redirect_uris: ["https://app.example.com/cb"] };

  await t.step("registers a public client: 201 with the RFC 7591 §3.2.1 body", async () => {
    const res = await handle(register({
      redirect_uris: ["http://127.0.0.1:3000/callback", "cursor://anysphere.cursor/cb"],
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      application_type: "native",
      client_name: "Cursor <b>",
      client_uri: "https://cursor.example",
      logo_uri: "https://cursor.example/logo.png",
      scope: "mcp",
      software_id: "cursor",
      software_version: "1.2.3",
      unknown_field: "ignored (RFC 7591 §2)",
    }));
    assertEquals(res.status, 201);
    assertEquals(res.headers.get("content-type"), "application/json");
    assertEquals(res.headers.get("cache-control"), "no-store");
    const body = await res.json();
    assertMatch(body.client_id, /^[A-Za-z0-9_-]{22}$/);
    assertEquals(body.client_id_issued_at, Math.floor(deps.now() / 1000));
    assertEquals(body.client_secret, undefined);
    assertEquals(body.client_secret_expires_at, undefined);
    assertEquals(body.unknown_field, undefined);
    const { client_id: _, client_id_issued_at: __, ...meta } = body;
    assertEquals(meta, {
      redirect_uris: ["http://127.0.0.1:3000/callback", "cursor://anysphere.cursor/cb"],
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      application_type: "native",
      client_name: "Cursor <b>",
      client_uri: "https://cursor.example",
      logo_uri: "https://cursor.example/logo.png",
      scope: "mcp",
      software_id: "cursor",
      software_version: "1.2.3",
    });
    const stored = (await deps.kv.get<ClientRecord>(clientKey(body.client_id))).value!;
    assertEquals(stored.clientName, "Cursor <b>");
    assertEquals(stored.tokenEndpointAuthMethod, "none");
    assertEquals(stored.clientSecretHash, undefined);
  });

  await t.step(
    "defaults: client_secret_basic, authorization_code, code, web (RFC 7591 §2)",
    async () => {
      const res = await handle(register(ok));
      assertEquals(res.status, 201);
      assertEquals(res.headers.get("content-type"), "application/json");
      const body = await res.json();
      assertEquals(body.token_endpoint_auth_method, "client_secret_basic");
      assertEquals(body.grant_types, ["authorization_code"]);
      assertEquals(body.response_types, ["code"]);
      assertEquals(body.application_type, "web");
    },
  );

  await t.step(
    "application_type absent: native for loopback/private-use URIs only (RFC 8252 §7)",
    async () => {
      const cases: [string[], string][] = [
        [["http://127.0.0.1:33418/callback"], "native"],
        [["http://localhost/cb", "http://[::1]:9000/cb"], "native"],
        [["cursor://anysphere.cursor-retrieval/oauth/callback"], "native"],
        [["com.example.app:/oauth2redirect", "http://127.0.0.1/cb"], "native"],
        [["https://app.example.com/cb"], "web"],
        [["http://127.0.0.1:3000/cb", "https://app.example.com/cb"], "web"],
      ];
      for (const [redirect_uris, expected] of cases) {
        const res = await handle(register({ redirect_uris, token_endpoint_auth_method: "none" }));
        assertEquals(res.status, 201);
        assertEquals(res.headers.get("content-type"), "application/json");
        const body = await res.json();
        assertEquals(body.application_type, expected, redirect_uris.join(" "));
        const stored = (await deps.kv.get<ClientRecord>(clientKey(body.client_id))).value!;
        assertEquals(stored.applicationType, expected);
      }
    },
  );

  await t.step("an explicit valid application_type is kept", async () => {
    for (
      const [redirect_uris, application_type] of [
        [["http://127.0.0.1:3000/cb"], "web"],
        [["https://app.example.com/cb"], "native"],
      ] as const
    ) {
      const res = await handle(register({ redirect_uris, application_type }));
      assertEquals(res.status, 201);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals((await res.json()).application_type, application_type);
    }
  });

  await t.step("confidential client: secret returned once, stored only as SHA-256", async () => {
    for (const method of ["client_secret_basic", "client_secret_post"]) {
      const res = await handle(register({ ...ok, token_endpoint_auth_method: method }));
      assertEquals(res.status, 201);
      assertEquals(res.headers.get("content-type"), "application/json");
      const body = await res.json();
      assertMatch(body.client_secret, /^[A-Za-z0-9_-]{43}$/);
      assertEquals(body.client_secret_expires_at, 0);
      const entry = await deps.kv.get<ClientRecord>(clientKey(body.client_id));
      assertEquals(entry.value!.clientSecretHash, await sha256Hex(body.client_secret));
      assert(!JSON.stringify(entry.value).includes(body.client_secret));
    }
  });

  await t.step("each registration gets a new client_id", async () => {
    const a = await (await handle(register(ok))).json();
    const b = await (await handle(register(ok))).json();
    assert(a.client_id !== b.client_id);
  });

  await t.step("non-JSON content type → 400 invalid_client_metadata", async () => {
    await expectError(
      await handle(register(ok, { "content-type": "application/x-www-form-urlencoded" })),
      400,
      "invalid_client_metadata",
    );
    await expectError(await handle(register(ok, {})), 400, "invalid_client_metadata");
  });

  await t.step("malformed JSON or a non-object → 400 invalid_client_metadata", async () => {
    await expectError(await handle(register("{nope")), 400, "invalid_client_metadata");
    await expectError(await handle(register("[1,2]")), 400, "invalid_client_metadata");
    await expectError(await handle(register("null")), 400, "invalid_client_metadata");
  });

  await t.step("body over 16 KiB → 413", async () => {
    const res = await handle(register({ ...ok, client_name: "x".repeat(17 * 1024) }));
    assertEquals(res.status, 413);
    assertEquals(res.headers.get("content-type"), "application/json");
    assertEquals((await res.json()).error, "invalid_request");
  });

  await t.step("redirect_uris missing, empty or not strings → invalid_redirect_uri", async () => {
    for (
      const body of [{}, { redirect_uris: [] }, { redirect_uris: "https://a.example/cb" }, {
        redirect_uris: [42],
      }]
    ) {
      const d = await expectError(await handle(register(body)), 400, "invalid_redirect_uri");
      assertMatch(d, /redirect_uris/);
    }
  });

  await t.step("bad redirect URIs → invalid_redirect_uri (RFC 7591 §3.2.2)", async () => {
    for (
      const uri of [
        "http://example.com/cb",
        "javascript:alert(1)",
        "data:text/html,x",
        "vbscript:x",
        "file:///etc/passwd",
        "https://a.example/cb#f",
        "https://*.example.com/cb",
        "https://u:p@a.example/cb",
        "not a uri",
      ]
    ) {
      const res = await handle(register({ redirect_uris: ["https://ok.example/cb", uri] }));
      const d = await expectError(res, 400, "invalid_redirect_uri");
      assertMatch(d, /redirect URI/);
    }
  });

  await t.step(
    "private-use schemes: dangerous ones refused, others need a period or the config's " +
      "allowedPrivateUseSchemes (RFC 8252 §7.1)",
    async () => {
      for (
        const uri of [
          "microsoft-edge:https://evil.example/cb",
          "ms-msdt:/id%20PCWDiagnostic",
          "search-ms:query=x",
          "myapp://callback",
        ]
      ) {
        const res = await handle(register({ redirect_uris: [uri] }));
        assertMatch(await expectError(res, 400, "invalid_redirect_uri"), /redirect URI/);
      }
      const allowing = await makeDeps({
        config: {
          backends: [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }],
          allowedPrivateUseSchemes: ["myapp"],
        },
      });
      const res = await createHandler(allowing)(register({ redirect_uris: ["myapp://callback"] }));
      assertEquals(res.status, 201);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals((await res.json()).redirect_uris, ["myapp://callback"]);
      allowing.kv.close();
    },
  );

  await t.step(
    "unsupported metadata values → invalid_client_metadata naming the field",
    async () => {
      const cases: [Record<string, unknown>, string][] = [
        [{ token_endpoint_auth_method: "private_key_jwt" }, "token_endpoint_auth_method"],
        [{ grant_types: ["client_credentials"] }, "grant_types"],
        [{ grant_types: ["refresh_token"] }, "grant_types"],
        [{ response_types: ["token"] }, "response_types"],
        [{ application_type: "desktop" }, "application_type"],
        [{ client_name: 42 }, "client_name"],
        [{ client_uri: "javascript:alert(1)" }, "client_uri"],
        [{ logo_uri: "ftp://x" }, "logo_uri"],
      ];
      for (const [extra, field] of cases) {
        const d = await expectError(
          await handle(register({ ...ok, ...extra })),
          400,
          "invalid_client_metadata",
        );
        assertMatch(d, new RegExp(field));
      }
    },
  );

  await t.step("answers CORS for browser clients", async () => {
    const req = register(ok);
    req.headers.set("origin", "https://inspector.example");
    const res = await handle(req);
    assertEquals(res.status, 201);
    assertEquals(res.headers.get("access-control-allow-origin"), "https://inspector.example");
    await res.body?.cancel();
  });

  deps.kv.close();
});
