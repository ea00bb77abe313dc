/**
 * Refresh of a user's backend token (lib/credentials/refresh.ts) against the real authorization
 * server of the notes backend: single-flight across isolates (two gateway instances sharing one
 * Deno KV file), `invalid_grant` drops the connection, an unreachable server keeps a token that
 * is still valid.
 */
import { clientOfConnection } from "../lib/credentials/backend_client_identity.ts";
import { backendCredential } from "../lib/credentials/credential.ts";
import { loadConnection, type OAuthSecrets } from "../lib/credentials/connections.ts";
import { revokeToken } from "../lib/credentials/token_client.ts";
import { assert, assertEquals } from "./_assert.ts";
import {
  connectBackend,
  ENCRYPTION_KEY,
  signedInBrowser,
  startCredentialsSetup,
  userRef,
} from "./_credentials.ts";
import { makeDeps } from "./_helpers.ts";

Deno.test("backend token refresh", async (t) => {
  const dir = await Deno.makeTempDir();
  const kvPath = `${dir}/gateway.kv`;
  const s = await startCredentialsSetup({ kvPath });
  const ana = userRef("ana");
  try {
    const browser = await signedInBrowser(s.gw.url, "ana");
    await connectBackend(browser, s.gw.url, "notes", "ana-at-notes");
    const notes = s.gw.deps.config.backends.find((b) => b.name === "notes")!;
    const refreshes = () => s.notes.seen.filter((l) => l === "grant refresh_token").length;

    await t.step(
      "single flight across isolates: 20 calls on two instances after expiry, one refresh (KV lease)",
      async () => {
        const twin = await makeDeps({
          kvPath,
          config: s.config,
          env: { PUBLIC_URL: s.gw.url, GATEWAY_ENCRYPTION_KEY: ENCRYPTION_KEY },
        });
        try {
          s.gw.deps.clock.advance(301_000);
          twin.clock.advance(s.gw.deps.now() - twin.now());
          const before = refreshes();
          const credentials = await Promise.all([
            ...Array.from({ length: 10 }, () => backendCredential(s.gw.deps, ana, notes)),
            ...Array.from({ length: 10 }, () => backendCredential(twin, ana, notes)),
          ]);
          assertEquals(refreshes(), before + 1);
          const values = new Set(credentials.map((c) => c?.value));
          assertEquals(values.size, 1, "every caller got the one new token");
          assert([...values][0]!.startsWith("Bearer ey"));
        } finally {
          twin.kv.close();
        }
      },
    );

    await t.step(
      "the server unreachable while the token is still valid: the current token is used",
      async () => {
        const current = await backendCredential(s.gw.deps, ana, notes);
        s.gw.deps.clock.advance(250_000); // inside the 60 s refresh window, not expired
        s.notes.down = true;
        try {
          const during = await backendCredential(s.gw.deps, ana, notes);
          assertEquals(during?.value, current?.value);
          assert(s.gw.deps.logs.some((l) => l.event === "backend_refresh_failed"));
        } finally {
          s.notes.down = false;
        }
      },
    );

    await t.step(
      "invalid_grant (the refresh token revoked at the server, RFC 6749 §5.2) drops the connection",
      async () => {
        const loaded = (await loadConnection(s.gw.deps, ana.sub, "notes"))!;
        const info = loaded.entry.value.oauth!;
        const client = await clientOfConnection(s.gw.deps, notes, info);
        const revoked = await revokeToken(
          notes,
          info.revocationEndpoint!,
          client,
          (loaded.secrets as OAuthSecrets).refreshToken!,
          "refresh_token",
        );
        assert(revoked);
        s.gw.deps.clock.advance(301_000);
        assertEquals(await backendCredential(s.gw.deps, ana, notes), null);
        assertEquals(await loadConnection(s.gw.deps, ana.sub, "notes"), null);
        assert(s.notes.seen.some((l) => l === "grant refresh_token error invalid_grant"));
        assert(
          s.gw.deps.logs.some((l) =>
            l.event === "backend_connection_dropped" && l.reason === "invalid_grant"
          ),
        );
      },
    );
  } finally {
    await s.close();
    await Deno.remove(dir, { recursive: true });
  }
});
