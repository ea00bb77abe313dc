/**
 * Registration policy (lib/oauth/registration_policy.ts: RFC 7591 §3 initial access tokens, mode off,
 * per-IP limit) and the abuse limits of `/authorize` (per-IP requests, consent passwords).
 */
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { makeDeps } from "./_helpers.ts";
import { expectOAuthError } from "./_kv_fixtures.ts";
import {
  authorizeUrl,
  DEFAULT_PASSWORD,
  DEFAULT_REDIRECT_URI,
  type FetchLike,
  pkcePair,
  postDecision,
  readConsentForm,
  registerClient,
} from "./_oauth_flow.ts";
import { createHandler } from "../main.ts";

const BACKENDS = [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }];
const INITIAL_TOKEN = "initial-access-token-0123456789";

function register(headers: Record<string, string> = {}): Request {
  return new Request("http://localhost:8000/register", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({
      redirect_uris: [DEFAULT_REDIRECT_URI],
      token_endpoint_auth_method: "none",
    }),
  });
}

/** Handler info with a given peer address (the client IP of rate limits). */
function from(hostname: string): Deno.ServeHandlerInfo {
  return { remoteAddr: { transport: "tcp", hostname, port: 1 } } as Deno.ServeHandlerInfo;
}

async function setup(extra: Record<string, unknown>, env: Record<string, string> = {}) {
  const deps = await makeDeps({ config: { backends: BACKENDS, ...extra }, env });
  return { deps, handle: createHandler(deps) };
}

Deno.test("POST /register: registration policy", async (t) => {
  await t.step("mode off → 403 access_denied, nothing stored", async () => {
    const { deps, handle } = await setup({ registration: { mode: "off" } });
    try {
      await expectOAuthError(
        await handle(register()),
        403,
        "access_denied",
        "dynamic client registration is disabled",
      );
      assertEquals((await Array.fromAsync(deps.kv.list({ prefix: ["client"] }))).length, 0);
    } finally {
      deps.kv.close();
    }
  });

  await t.step("mode token (RFC 7591 §3): missing, wrong, right initial access token", async () => {
    const { deps, handle } = await setup(
      { registration: { mode: "token", initialAccessTokens: ["${IAT}"] } },
      { IAT: INITIAL_TOKEN },
    );
    try {
      const missing = await handle(register());
      assertStringIncludes(missing.headers.get("www-authenticate")!, "Bearer");
      await expectOAuthError(missing, 401, "invalid_token", "initial access token is required");
      for (
        const authorization of [
          "Bearer wrong-token-0123456789abcdef",
          `Bearer ${INITIAL_TOKEN}x`,
          `Basic ${btoa(`a:${INITIAL_TOKEN}`)}`,
          INITIAL_TOKEN,
        ]
      ) {
        const wrong = await handle(register({ authorization }));
        assertStringIncludes(wrong.headers.get("www-authenticate")!, 'error="invalid_token"');
        await expectOAuthError(wrong, 401, "invalid_token", "not valid");
      }
      assertEquals((await Array.fromAsync(deps.kv.list({ prefix: ["client"] }))).length, 0);
      const ok = await handle(register({ authorization: `Bearer ${INITIAL_TOKEN}` }));
      assertEquals(ok.status, 201);
      assertEquals(ok.headers.get("content-type"), "application/json");
      const body = await ok.json();
      assert(typeof body.client_id === "string");
      assert(!JSON.stringify(deps.logs).includes(INITIAL_TOKEN), "never logged");
    } finally {
      deps.kv.close();
    }
  });

  await t.step("per-IP limit → 429 temporarily_unavailable with Retry-After", async () => {
    const { deps, handle } = await setup({ rateLimits: { registerPerIpPerHour: 3 } });
    try {
      for (let i = 0; i < 3; i++) {
        const res = await handle(register(), from("10.0.0.1"));
        assertEquals(res.status, 201);
        await res.body?.cancel();
      }
      const limited = await handle(register(), from("10.0.0.1"));
      const retry = Number(limited.headers.get("retry-after"));
      assert(retry >= 1 && retry <= 3600, `retry-after ${retry}`);
      await expectOAuthError(limited, 429, "temporarily_unavailable", "too many");
      const other = await handle(register(), from("10.0.0.2"));
      assertEquals(other.status, 201, "another address is not limited");
      await other.body?.cancel();
      deps.clock.advance(3_600_000);
      const later = await handle(register(), from("10.0.0.1"));
      assertEquals(later.status, 201, "the window passes");
      await later.body?.cancel();
    } finally {
      deps.kv.close();
    }
  });
});

Deno.test("GET /authorize and consent: abuse limits", async (t) => {
  const { deps, handle } = await setup({
    rateLimits: { authorizePerIpPerMinute: 3, passwordFailuresPer15Minutes: 2 },
  });
  try {
    const client = await registerClient((r) => handle(r));
    const url = async () =>
      authorizeUrl({
        clientId: client.client_id,
        redirectUri: DEFAULT_REDIRECT_URI,
        codeChallenge: (await pkcePair()).challenge,
      });

    await t.step("per-IP limit → 429 error page with Retry-After, no redirect", async () => {
      for (let i = 0; i < 3; i++) {
        const res = await handle(new Request(await url()), from("10.0.0.1"));
        assertEquals(res.status, 200);
        await res.body?.cancel();
      }
      const limited = await handle(new Request(await url()), from("10.0.0.1"));
      assertEquals(limited.status, 429);
      assertEquals(limited.headers.get("content-type"), "text/html; charset=utf-8");
      assertEquals(limited.headers.get("location"), null);
      const retry = Number(limited.headers.get("retry-after"));
      assert(retry >= 1 && retry <= 60, `retry-after ${retry}`);
      assertStringIncludes(await limited.text(), "Too many requests");
      const other = await handle(new Request(await url()), from("10.0.0.2"));
      assertEquals(other.status, 200);
      await other.body?.cancel();
      deps.clock.advance(60_000);
      const later = await handle(new Request(await url()), from("10.0.0.1"));
      assertEquals(later.status, 200);
      await later.body?.cancel();
    });

    await t.step("rateLimits.passwordFailuresPer15Minutes wrong passwords, then 429", async () => {
      const fromC: FetchLike = (r) => handle(r, from("10.0.0.3"));
      const page = await fromC(new Request(await url()));
      let form = readConsentForm(await page.text(), page);
      for (let i = 0; i < 2; i++) {
        const res = await postDecision(fromC, form, "approve", `wrong-${i}`);
        assertEquals(res.status, 401);
        assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
        form = readConsentForm(await res.text(), res);
      }
      const blocked = await postDecision(fromC, form, "approve", DEFAULT_PASSWORD);
      assertEquals(blocked.status, 429);
      assertEquals(blocked.headers.get("content-type"), "text/html; charset=utf-8");
      assert(Number(blocked.headers.get("retry-after")) >= 1);
      assertStringIncludes(await blocked.text(), "Too many");
    });
  } finally {
    deps.kv.close();
  }
});
