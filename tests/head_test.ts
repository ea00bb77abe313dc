/**
 * HEAD (RFC 9110 §9.3.2): every GET route answers HEAD like GET without a body — same status and
 * header fields, `Content-Length` of the GET body — and HEAD changes nothing (`/authorize` stores
 * no pending request). Routes whose GET starts or ends a one-time flow, the MCP routes and
 * routes without GET answer 405 with an `Allow` that lists what they do support (§15.5.6).
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { makeDeps, serveGateway } from "./_helpers.ts";
import { DEFAULT_REDIRECT_URI, pkcePair, registerClient } from "./_oauth_flow.ts";
import { createHandler } from "../main.ts";

const BASE = "http://localhost:8000";
const CONFIG = {
  backends: [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }],
  rateLimits: { registerPerIpPerHour: 1000 },
};

/** Every `["authz", …]` pending authorization request in KV. */
async function pendingRequests(kv: Deno.Kv): Promise<number> {
  let n = 0;
  for await (const _ of kv.list({ prefix: ["authz"] })) n++;
  return n;
}

/** Asserts a HEAD answer: the GET's status and content type, no body, `Content-Length`. */
async function expectHeadLikeGet(
  handle: (r: Request) => Promise<Response>,
  path: string,
  status: number,
  type: RegExp,
): Promise<void> {
  const get = await handle(new Request(`${BASE}${path}`));
  const getBody = new Uint8Array(await get.arrayBuffer());
  const head = await handle(new Request(`${BASE}${path}`, { method: "HEAD" }));
  assertEquals(get.status, status, path);
  assertEquals(head.status, status, path);
  assertMatch(head.headers.get("content-type") ?? "", type, path);
  assertEquals(head.headers.get("content-type"), get.headers.get("content-type"), path);
  assertEquals(head.headers.get("cache-control"), get.headers.get("cache-control"), path);
  assertEquals(head.body, null, `${path}: no body`);
  assertEquals(head.headers.get("content-length"), String(getBody.byteLength), path);
}

Deno.test("HEAD", async (t) => {
  const deps = await makeDeps({ config: CONFIG });
  const handle = createHandler(deps);
  try {
    await t.step(
      "answered like GET on pages, liveness and discovery (RFC 9110 §9.3.2)",
      async () => {
        await expectHeadLikeGet(handle, "/", 200, /^text\/html/);
        await expectHeadLikeGet(handle, "/healthz", 200, /^application\/json$/);
        await expectHeadLikeGet(handle, "/.well-known/oauth-authorization-server", 200, /json/);
        await expectHeadLikeGet(handle, "/.well-known/oauth-protected-resource", 200, /json/);
        await expectHeadLikeGet(handle, "/.well-known/oauth-protected-resource/mcp", 200, /json/);
        await expectHeadLikeGet(
          handle,
          "/.well-known/oauth-protected-resource/mcp/alpha",
          200,
          /json/,
        );
        // No per-user backend: the gateway has no client document, GET and HEAD alike.
        await expectHeadLikeGet(handle, "/oauth/client.json", 404, /json/);
        await expectHeadLikeGet(
          handle,
          "/.well-known/oauth-protected-resource/mcp/zz",
          404,
          /json/,
        );
        await expectHeadLikeGet(handle, "/.well-known/openid-configuration", 404, /json/);
        await expectHeadLikeGet(handle, "/login?return_to=/", 200, /^text\/html/);
        await expectHeadLikeGet(handle, "/nope", 404, /json/);
      },
    );

    await t.step("HEAD /authorize checks the request but stores nothing", async () => {
      const client = await registerClient(handle);
      const { challenge } = await pkcePair();
      const url = new URL(`${BASE}/authorize`);
      for (
        const [k, v] of Object.entries({
          response_type: "code",
          client_id: client.client_id,
          redirect_uri: DEFAULT_REDIRECT_URI,
          code_challenge: challenge,
          code_challenge_method: "S256",
        })
      ) url.searchParams.set(k, v);
      const before = await pendingRequests(deps.kv);
      const head = await handle(new Request(url, { method: "HEAD" }));
      assertEquals(head.status, 200);
      assertEquals(head.headers.get("content-type"), "text/html; charset=utf-8");
      assertEquals(head.headers.get("cache-control"), "no-store");
      assertEquals(head.headers.get("x-frame-options"), "DENY");
      assertEquals(head.headers.get("set-cookie"), null);
      assertEquals(head.body, null);
      assertEquals(await pendingRequests(deps.kv), before, "no pending request stored");
      // GET stores one: the difference is HEAD's, not the counting's.
      const get = await handle(new Request(url));
      assertEquals(get.status, 200);
      await get.body?.cancel();
      assertEquals(await pendingRequests(deps.kv), before + 1);

      const unknown = new URL(url);
      unknown.searchParams.set("client_id", "nobody");
      await expectHeadLikeGet(handle, unknown.pathname + unknown.search, 400, /^text\/html/);
      assertEquals(await pendingRequests(deps.kv), before + 1);
    });

    await t.step(
      "405 with Allow where HEAD is not served (RFC 9110 §15.5.6), no body",
      async () => {
        const cases: [string, string, string][] = [
          ["HEAD", "/login/corp", "GET"],
          ["HEAD", "/login/corp/callback", "GET"],
          ["HEAD", "/connect/alpha", "GET, POST"],
          ["HEAD", "/connect/alpha/callback", "GET"],
          ["HEAD", "/register", "POST"],
          ["HEAD", "/token", "POST"],
          ["HEAD", "/mcp", "GET, POST, DELETE"],
          ["HEAD", "/mcp/alpha", "GET, POST, DELETE"],
          ["POST", "/healthz", "GET, HEAD"],
          ["DELETE", "/.well-known/oauth-authorization-server", "GET, HEAD"],
          ["PUT", "/authorize", "GET, HEAD, POST"],
          ["GET", "/register", "POST"],
        ];
        for (const [method, path, allow] of cases) {
          const res = await handle(new Request(`${BASE}${path}`, { method }));
          assertEquals(res.status, 405, `${method} ${path}`);
          assertEquals(res.headers.get("allow"), allow, `${method} ${path}`);
          assertEquals(res.headers.get("content-type"), "application/json", `${method} ${path}`);
          if (method === "HEAD") assertEquals(res.body, null, `${method} ${path}`);
          else await res.body?.cancel();
        }
      },
    );
  } finally {
    deps.kv.close();
  }
});

Deno.test("HEAD over HTTP: Content-Length of the GET, no body on the wire", async () => {
  const gw = await serveGateway({ config: CONFIG });
  try {
    const get = await fetch(`${gw.url}/.well-known/oauth-authorization-server`);
    const text = await get.text();
    const head = await fetch(`${gw.url}/.well-known/oauth-authorization-server`, {
      method: "HEAD",
    });
    assertEquals(head.status, 200);
    assertEquals(head.headers.get("content-type"), "application/json");
    assertEquals(head.headers.get("content-length"), String(new TextEncoder().encode(text).length));
    assertEquals(await head.text(), "");
    assert(text.length > 0);
  } finally {
    await gw.close();
  }
});
