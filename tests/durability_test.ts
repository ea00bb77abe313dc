/**
 * Durability (issue 5 "The battery"): the gateway runs as a subprocess (`deno run -A main.ts`)
 * on a file Deno KV; clients are registered, code flows run and tokens issued over HTTP; then,
 * while a bounded concurrent load of refreshes and registrations runs, the process is killed
 * with SIGKILL and restarted on the same KV file. What is asserted after the restart:
 *
 * 1. Every client whose registration got a 201 is known: `GET /authorize` shows its consent page.
 * 2. Every access token that came in a 2xx answer authenticates at `/mcp/<backend>` (refreshing
 *    does not revoke the previous access token, and nothing revoked a grant before the kill).
 * 3. For each refresh chain, let R be the newest refresh token that came in a 2xx answer:
 *    - no refresh was in flight at the kill → R refreshes (200) and the new pair works;
 *    - a refresh of R was in flight → the rotation was atomic, so exactly one of: it never
 *      committed (R refreshes, 200), or it committed (R is marked rotated: presenting it is
 *      reuse, 400 `invalid_grant`, and the whole grant is revoked — its access tokens then
 *      get 401). Never a 5xx, never R accepted while its grant's tokens are gone.
 * 4. Reuse detection survives the restart: presenting a refresh token rotated before the kill
 *    is 400 `invalid_grant` and revokes its grant.
 * 5. A full code flow works for a client registered before the kill.
 */
import { assert, assertEquals } from "./_assert.ts";
import { startRawBackend } from "./_backends.ts";
import { authorizeCode, authorizeUrl, pkcePair, registerClient } from "./_oauth_flow.ts";
import { childEnv } from "./_process.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const PASSWORD = "durability test owner password";
const REDIRECT = "http://127.0.0.1:3000/callback";
const START_LIMIT_MS = 30_000;
const LOAD_MS = 600;
const REFRESH_CHAINS = 4;
const REGISTRARS = 2;
const MAX_OPS_PER_WORKER = 400;

interface Pair {
  access_token: string;
  refresh_token: string;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts `main.ts` and waits (bounded) until `/healthz` answers. */
async function startGateway(env: Record<string, string>, base: string): Promise<Deno.ChildProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", "main.ts"],
    cwd: ROOT,
    clearEnv: true,
    env: childEnv(env),
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const deadline = performance.now() + START_LIMIT_MS;
  for (let i = 0; i < 1000 && performance.now() < deadline; i++) {
    try {
      const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) });
      await res.body?.cancel();
      if (res.status === 200) return child;
    } catch {
      // not listening yet
    }
    await delay(50);
  }
  child.kill("SIGKILL");
  await child.status;
  throw new Error(`the gateway did not start within ${START_LIMIT_MS} ms`);
}

Deno.test("durability: SIGKILL under load, restart on the same KV file", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "gateway-durability-" });
  const backend = startRawBackend(() =>
    Response.json({ jsonrpc: "2.0", id: 1, result: { content: [] } })
  );
  const config = {
    backends: [{ name: "raw", url: backend.url, timeoutMs: 2000 }],
    rateLimits: {
      registerPerIpPerHour: 100_000,
      tokenPerIpPerMinute: 100_000,
      tokenPerClientPerMinute: 100_000,
      authorizePerIpPerMinute: 100_000,
    },
  };
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
  const port = freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = {
    PORT: String(port),
    PUBLIC_URL: base,
    KV_PATH: `${dir}/gateway.kv`,
    GATEWAY_CONFIG: `${dir}/config.json`,
    GATEWAY_OWNER_PASSWORD: PASSWORD,
    NO_COLOR: "1",
  };
  const f = (r: Request) => fetch(r, { redirect: "manual" });
  const tokenRequest = (fields: Record<string, string>) =>
    fetch(`${base}/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(fields),
    });
  const mcpStatus = async (accessToken: string) => {
    const res = await fetch(`${base}/mcp/raw`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${accessToken}`,
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    await res.body?.cancel();
    return res.status;
  };
  const codeFlow = async (clientId: string): Promise<Pair> => {
    const pkce = await pkcePair();
    const { code } = await authorizeCode(f, {
      baseUrl: base,
      clientId,
      redirectUri: REDIRECT,
      codeChallenge: pkce.challenge,
      password: PASSWORD,
    });
    const res = await tokenRequest({
      grant_type: "authorization_code",
      code,
      code_verifier: pkce.verifier,
      redirect_uri: REDIRECT,
      client_id: clientId,
    });
    assertEquals(res.status, 200);
    return await res.json();
  };

  let child: Deno.ChildProcess | undefined;
  try {
    child = await startGateway(env, base);

    // Before the load: clients, code flows and tokens over HTTP.
    interface Chain {
      clientId: string;
      /** Every pair that came in a 2xx answer, oldest first. */
      confirmed: Pair[];
      /** The refresh token being presented when the process died, if any. */
      inFlight?: string;
      /** Set when its in-flight rotation committed and reusing it revoked the grant. */
      revoked?: Pair[];
    }
    const chains: Chain[] = [];
    for (let i = 0; i < REFRESH_CHAINS; i++) {
      const client = await registerClient(f, { redirect_uris: [REDIRECT] }, base);
      chains.push({ clientId: client.client_id, confirmed: [await codeFlow(client.client_id)] });
    }
    const registered: string[] = chains.map((c) => c.clientId);
    let registrationsInFlight = 0;

    await t.step("load: refreshes and registrations, then SIGKILL", async () => {
      let killed = false;
      const refresher = async (chain: Chain) => {
        for (let i = 0; i < MAX_OPS_PER_WORKER && !killed; i++) {
          const presented = chain.confirmed.at(-1)!.refresh_token;
          chain.inFlight = presented;
          let res: Response;
          try {
            res = await tokenRequest({
              grant_type: "refresh_token",
              refresh_token: presented,
              client_id: chain.clientId,
            });
          } catch {
            return; // the process died with this request unanswered: it stays in flight
          }
          try {
            const body = await res.json();
            assertEquals(res.status, 200, JSON.stringify(body));
            chain.confirmed.push(body);
            chain.inFlight = undefined;
          } catch (e) {
            if (killed) return; // the answer was cut: still in flight
            throw e;
          }
        }
        chain.inFlight = undefined;
      };
      const registrar = async () => {
        for (let i = 0; i < MAX_OPS_PER_WORKER && !killed; i++) {
          registrationsInFlight++;
          try {
            const client = await registerClient(f, { redirect_uris: [REDIRECT] }, base);
            registered.push(client.client_id);
          } catch (e) {
            if (!killed) throw e;
            return;
          } finally {
            registrationsInFlight--;
          }
        }
      };
      const workers = [
        ...chains.map(refresher),
        ...Array.from({ length: REGISTRARS }, registrar),
      ];
      await delay(LOAD_MS);
      killed = true;
      child!.kill("SIGKILL");
      const status = await child!.status;
      child = undefined;
      assertEquals(status.signal, "SIGKILL");
      const settled = await Promise.allSettled(workers);
      for (const s of settled) assertEquals(s.status, "fulfilled", String((s as any).reason));
      const refreshes = chains.reduce((n, c) => n + c.confirmed.length - 1, 0);
      assert(refreshes > 0, "some refreshes were answered before the kill");
      assert(registered.length > REFRESH_CHAINS, "some registrations were answered");
    });

    child = await startGateway(env, base);

    await t.step("every client registered with a 201 before the kill is known", async () => {
      const { challenge } = await pkcePair();
      for (const clientId of registered) {
        const res = await fetch(authorizeUrl({
          baseUrl: base,
          clientId,
          redirectUri: REDIRECT,
          codeChallenge: challenge,
        }));
        const html = await res.text();
        assertEquals(res.status, 200, `${clientId}: ${html.slice(0, 200)}`);
        assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
        assert(html.includes('name="csrf_token"'), "the consent form is shown");
      }
    });

    await t.step(
      "every access token answered with a 2xx before the kill authenticates",
      async () => {
        for (const chain of chains) {
          for (const pair of chain.confirmed) assertEquals(await mcpStatus(pair.access_token), 200);
        }
      },
    );

    await t.step(
      "each chain's newest refresh token refreshes, or its in-flight rotation committed whole",
      async () => {
        for (const chain of chains) {
          const newest = chain.confirmed.at(-1)!;
          const res = await tokenRequest({
            grant_type: "refresh_token",
            refresh_token: newest.refresh_token,
            client_id: chain.clientId,
          });
          const body = await res.json();
          const wasInFlight = chain.inFlight === newest.refresh_token;
          if (res.status === 200) {
            assertEquals(await mcpStatus(body.access_token), 200);
            chain.confirmed.push(body);
            continue;
          }
          // Only a committed in-flight rotation may make the newest confirmed token "used".
          assert(
            wasInFlight,
            `a refresh token with no refresh in flight was refused: ${JSON.stringify(body)}`,
          );
          assertEquals(res.status, 400);
          assertEquals(body.error, "invalid_grant");
          // Reuse of a rotated token revokes the grant: every access token of the chain is dead.
          for (const pair of chain.confirmed) assertEquals(await mcpStatus(pair.access_token), 401);
          chain.revoked = chain.confirmed;
          chain.confirmed = [];
        }
      },
    );

    await t.step("reuse of a refresh token rotated before the kill revokes its grant", async () => {
      // Prefer a chain that is still alive; under a loaded machine every chain may have been
      // caught with a committed rotation in flight (then its grant is already revoked, and the
      // reuse must still be refused).
      const alive = chains.find((c) => c.confirmed.length >= 2);
      const chain = alive ?? chains.find((c) => (c.revoked?.length ?? 0) >= 2);
      assert(chain, "a chain rotated at least once before the kill");
      const pairs = alive ? chain.confirmed : chain.revoked!;
      const res = await tokenRequest({
        grant_type: "refresh_token",
        refresh_token: pairs[0]!.refresh_token,
        client_id: chain.clientId,
      });
      const body = await res.json();
      assertEquals(res.status, 400);
      assertEquals(body.error, "invalid_grant");
      assertEquals(await mcpStatus(pairs.at(-1)!.access_token), 401);
    });

    await t.step("a client registered before the kill completes a code flow after it", async () => {
      const clientId = registered.at(-1)!;
      const pair = await codeFlow(clientId);
      assertEquals(await mcpStatus(pair.access_token), 200);
    });

    assertEquals(registrationsInFlight, 0);
  } finally {
    if (child) {
      child.kill("SIGKILL");
      await child.status;
    }
    await backend.close();
    await Deno.remove(dir, { recursive: true });
  }
});
