/**
 * Discovery of a backend's authorization server (lib/credentials/backend_oauth_discovery.ts), as
 * an MCP client does it: the backend's 401 → RFC 9728 protected-resource metadata → RFC 8414 /
 * OpenID metadata, or the configured server; every fetch through the SSRF guard. Against the
 * real notes backend and small real servers that answer what a broken or hostile one would.
 */
import type { BackendConfig } from "../lib/config.ts";
import {
  backendOAuthPlan,
  bearerChallengeParams,
  resourceCovers,
  serverMetadataUrls,
} from "../lib/credentials/backend_oauth_discovery.ts";
import { BackendAuthError } from "../lib/credentials/outbound.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "./_assert.ts";
import { ENCRYPTION_KEY } from "./_credentials.ts";
import { makeDeps } from "./_helpers.ts";
import { startNotesBackend } from "./_oauth_backend.ts";

/** A loopback server answering `routes[path]` (else 404); returns its origin. */
function serve(routes: Record<string, (origin: string) => Response>) {
  let origin = "";
  const server: Deno.HttpServer<Deno.NetAddr> = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req): Response => {
      const route = routes[new URL(req.url).pathname];
      return route ? route(origin) : new Response("not found", { status: 404 });
    },
  );
  origin = `http://127.0.0.1:${server.addr.port}`;
  return { origin, close: () => server.shutdown() };
}

/** A backend whose 401 names `metadata`, and its protected-resource metadata `prm`. */
function fakeBackend(prm: (origin: string) => unknown, challenge = true) {
  return serve({
    "/mcp": (origin) =>
      new Response("unauthorized", {
        status: 401,
        headers: challenge
          ? {
            "www-authenticate":
              `Bearer resource_metadata="${origin}/.well-known/oauth-protected-resource/mcp"`,
          }
          : {},
      }),
    "/.well-known/oauth-protected-resource/mcp": (origin) => Response.json(prm(origin)),
  });
}

async function depsFor(backends: Record<string, unknown>[]) {
  return await makeDeps({ config: { backends }, env: { GATEWAY_ENCRYPTION_KEY: ENCRYPTION_KEY } });
}

const backendOf = (deps: { config: { backends: readonly BackendConfig[] } }, name = "b") =>
  deps.config.backends.find((b) => b.name === name)!;

Deno.test("backend OAuth discovery", async (t) => {
  const notes = await startNotesBackend();
  const quiet = await startNotesBackend({ quiet401: true });
  const servers: { close: () => Promise<void> }[] = [];
  try {
    await t.step(
      "401 resource_metadata → RFC 9728 → RFC 8414: endpoints, resource, the challenge's scope",
      async () => {
        const deps = await depsFor([{ name: "b", url: notes.url, auth: { type: "oauth" } }]);
        const plan = await backendOAuthPlan(deps, backendOf(deps));
        assertEquals(plan.resource, notes.url);
        assertEquals(plan.scope, "notes:read notes:write");
        assertEquals(plan.server.issuer, notes.issuer);
        assertEquals(plan.server.authorizationEndpoint, `${notes.issuer}/auth`);
        assertEquals(plan.server.tokenEndpoint, `${notes.issuer}/token`);
        assertEquals(plan.server.registrationEndpoint, `${notes.issuer}/reg`);
        assertEquals(plan.server.revocationEndpoint, `${notes.issuer}/token/revocation`);
        assertEquals(plan.server.issParameterSupported, true);
        assertEquals(plan.server.metadataDocumentSupported, false);
        const seen = notes.seen.length;
        await backendOAuthPlan(deps, backendOf(deps));
        assertEquals(notes.seen.length, seen, "the result is kept per isolate");
        deps.kv.close();
      },
    );

    await t.step(
      "a 401 without resource_metadata: the well-known URI (RFC 9728 §3.1, path form)",
      async () => {
        const deps = await depsFor([{ name: "b", url: quiet.url, auth: { type: "oauth" } }]);
        const plan = await backendOAuthPlan(deps, backendOf(deps));
        assertEquals(plan.server.issuer, quiet.issuer);
        assertEquals(plan.resource, quiet.url);
        deps.kv.close();
      },
    );

    await t.step("auth.authorizationServer skips the backend; auth.scopes win", async () => {
      const deps = await depsFor([{
        name: "b",
        url: "http://127.0.0.1:9/mcp",
        auth: { type: "oauth", authorizationServer: notes.issuer, scopes: ["notes:read"] },
      }]);
      const plan = await backendOAuthPlan(deps, backendOf(deps));
      assertEquals(plan.server.tokenEndpoint, `${notes.issuer}/token`);
      assertEquals(plan.resource, "http://127.0.0.1:9/mcp");
      assertEquals(plan.scope, "notes:read");
      deps.kv.close();
    });

    const refused = async (backend: Record<string, unknown>, pattern: RegExp) => {
      const deps = await depsFor([backend]);
      try {
        const error = await assertRejects(
          () => backendOAuthPlan(deps, backendOf(deps)),
          BackendAuthError,
        );
        assertMatch(error.message, pattern);
      } finally {
        deps.kv.close();
      }
    };

    await t.step(
      "SSRF guard: metadata pointing at link-local, private or plain-http internet addresses is not fetched",
      async () => {
        for (
          const [target, why] of [
            [
              "http://169.254.169.254/latest/meta-data",
              /169\.254\.169\.254 resolves to a link-local address/,
            ],
            ["http://10.0.0.1", /10\.0\.0\.1 resolves to a private address/],
            ["http://8.8.8.8", /must use https/],
          ] as const
        ) {
          const backend = fakeBackend((origin) => ({
            resource: `${origin}/mcp`,
            authorization_servers: [target],
          }));
          servers.push(backend);
          await refused({ name: "b", url: `${backend.origin}/mcp`, auth: { type: "oauth" } }, why);
        }
      },
    );

    await t.step(
      "a backend not on loopback may not send the gateway to loopback (https only)",
      async () => {
        await refused(
          {
            name: "b",
            url: "https://203.0.113.7/mcp",
            auth: { type: "oauth", authorizationServer: notes.issuer },
          },
          /must use https/,
        );
        await refused(
          { name: "b", url: "https://203.0.113.7/mcp", auth: { type: "oauth" } },
          /documentation address/,
        );
      },
    );

    await t.step("metadata for another resource is refused (RFC 9728 §3.3)", async () => {
      const backend = fakeBackend(() => ({
        resource: "https://elsewhere.example/mcp",
        authorization_servers: [notes.issuer],
      }));
      servers.push(backend);
      await refused(
        { name: "b", url: `${backend.origin}/mcp`, auth: { type: "oauth" } },
        /is for another resource/,
      );
    });

    await t.step(
      "server metadata naming another issuer (RFC 8414 §3.3) or without S256 is refused",
      async () => {
        const metadata = (issuer: string, extra: Record<string, unknown>) => ({
          issuer,
          authorization_endpoint: `${issuer}/authorize`,
          token_endpoint: `${issuer}/token`,
          code_challenge_methods_supported: ["S256"],
          ...extra,
        });
        const mixUp = serve({
          "/.well-known/oauth-authorization-server": (o) =>
            Response.json(metadata(o, { issuer: "https://evil.example" })),
        });
        const plain = serve({
          "/.well-known/oauth-authorization-server": (o) =>
            Response.json(metadata(o, { code_challenge_methods_supported: ["plain"] })),
        });
        servers.push(mixUp, plain);
        await refused({
          name: "b",
          url: "http://127.0.0.1:9/mcp",
          auth: { type: "oauth", authorizationServer: mixUp.origin },
        }, /names another issuer/);
        await refused({
          name: "b",
          url: "http://127.0.0.1:9/mcp",
          auth: { type: "oauth", authorizationServer: plain.origin },
        }, /does not support PKCE with S256/);
      },
    );

    await t.step("a server that is down: unreachable (retryable), and not remembered", async () => {
      const deps = await depsFor([{ name: "b", url: notes.url, auth: { type: "oauth" } }]);
      notes.down = true;
      try {
        const error = await assertRejects(
          () => backendOAuthPlan(deps, backendOf(deps)),
          BackendAuthError,
        );
        assert(error.unreachable);
        assertMatch(error.message, /answered HTTP 503/);
      } finally {
        notes.down = false;
      }
      assertEquals((await backendOAuthPlan(deps, backendOf(deps))).server.issuer, notes.issuer);
      deps.kv.close();
    });
  } finally {
    for (const s of servers) await s.close();
    await notes.close();
    await quiet.close();
  }
});

Deno.test("discovery helpers", async (t) => {
  await t.step("WWW-Authenticate: the Bearer challenge's parameters (RFC 9110 §11.6.1)", () => {
    const p = bearerChallengeParams(
      'Basic realm="x", Bearer resource_metadata="https://a.example/.well-known/oauth-protected-resource", scope="read write", error=invalid_token',
    );
    assertEquals(
      p.get("resource_metadata"),
      "https://a.example/.well-known/oauth-protected-resource",
    );
    assertEquals(p.get("scope"), "read write");
    assertEquals(p.get("error"), "invalid_token");
    assertEquals(bearerChallengeParams('Basic realm="x"').size, 0);
  });

  await t.step("RFC 8414 §3.1 path insertion, then OpenID discovery", () => {
    assertEquals(serverMetadataUrls("https://as.example/tenant"), [
      "https://as.example/.well-known/oauth-authorization-server/tenant",
      "https://as.example/.well-known/openid-configuration/tenant",
      "https://as.example/tenant/.well-known/openid-configuration",
    ]);
    assertEquals(serverMetadataUrls("https://as.example"), [
      "https://as.example/.well-known/oauth-authorization-server",
      "https://as.example/.well-known/openid-configuration",
    ]);
  });

  await t.step("a resource covers its own URL and the paths under it, same origin only", () => {
    assert(resourceCovers("https://a.example/mcp", "https://a.example/mcp"));
    assert(resourceCovers("https://a.example/", "https://a.example/mcp"));
    assert(!resourceCovers("https://a.example/mc", "https://a.example/mcp"));
    assert(!resourceCovers("https://b.example/mcp", "https://a.example/mcp"));
  });
});
