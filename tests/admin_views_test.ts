/**
 * The operator's query layer (lib/admin/*_view.ts, audit_query.ts, backend_stats.ts,
 * config_view.ts) on a real KV written as the branches' contracts fix it (tests/_admin_fixtures.ts).
 */
import { assert, assertEquals } from "./_assert.ts";
import { auditRecord } from "../lib/admin/audit.ts";
import { auditJsonLines, parseSince, queryAudit } from "../lib/admin/audit_query.ts";
import { backendStats } from "../lib/admin/backend_stats.ts";
import { listClients } from "../lib/admin/clients_view.ts";
import { redactedConfig } from "../lib/admin/config_view.ts";
import { listGrants, revokeGrantAsAdmin, revokeUserAsAdmin } from "../lib/admin/grants_view.ts";
import { listUsers } from "../lib/admin/users_view.ts";
import { authenticate } from "../lib/oauth/bearer.ts";
import { cimdKey } from "../lib/oauth/client_id_metadata.ts";
import { REDACTED } from "../lib/infra/log.ts";
import { type AuditRecord, clientKey, type ClientRecord, grantUsedKey } from "../lib/store.ts";
import { makeDeps } from "./_helpers.ts";
import { putGrantOf, putUser } from "./_admin_fixtures.ts";

const CONFIG = {
  backends: [
    {
      name: "alpha",
      url: "https://${ALPHA_HOST}/mcp",
      headers: { Authorization: "Bearer ${ALPHA_TOKEN}" },
    },
    {
      name: "beta",
      url: "http://127.0.0.1:9/mcp",
      headers: { "X-Api-Key": "literal-secret-value" },
    },
  ],
  clients: [{
    clientId: "desk",
    clientName: "Desk app",
    clientSecret: "${DESK_SECRET}",
    redirectUris: ["http://127.0.0.1:4000/cb"],
  }],
  registration: { mode: "token", initialAccessTokens: ["${IAT}", "another-initial-token"] },
  rateLimits: { tokenPerClientPerMinute: 7 },
  login: {
    providers: [{ id: "gh", type: "github", clientId: "Iv1.x", clientSecret: "${GH_SECRET}" }],
    access: [{ githubUsers: ["octocat"], scopes: ["mcp"] }],
  },
};
const ENV = {
  ALPHA_HOST: "alpha.example.com",
  ALPHA_TOKEN: "alpha-backend-token-123",
  DESK_SECRET: "desk-secret-0123456789",
  IAT: "initial-access-token-xyz",
  GH_SECRET: "github-client-secret",
};

const GRANT_FIELDS = ["id", "user", "clientId", "clientName", "scopes", "createdAt", "lastUsedAt"];

Deno.test("admin views: grants and users", async (t) => {
  const deps = await makeDeps({ config: CONFIG, env: ENV });
  try {
    await putUser(deps, { sub: "corp:ann", email: "ann@example.com", admin: true });
    deps.clock.advance(1000);
    await putUser(deps, { sub: "github:7", login: "bob" });
    const ann1 = await putGrantOf(deps, "corp:ann", {
      clientId: "desk",
      scope: "mcp offline_access",
    });
    deps.clock.advance(1000);
    const ann2 = await putGrantOf(deps, "corp:ann", { clientId: "dyn-1" });
    const bob = await putGrantOf(deps, "github:7", {
      clientId: "https://app.example.com/cimd.json",
    });
    const legacy = await putGrantOf(deps, undefined, { clientId: "dyn-1" });
    const expired = await putGrantOf(deps, "github:7", { ttlMs: 10 });
    deps.clock.advance(20);
    const registered: ClientRecord = {
      clientId: "dyn-1",
      clientName: "Dynamic one",
      redirectUris: ["http://127.0.0.1:5000/cb"],
      tokenEndpointAuthMethod: "none",
      grantTypes: ["authorization_code"],
      responseTypes: ["code"],
      applicationType: "native",
      clientIdIssuedAt: 1_700_000_000,
    };
    await deps.kv.set(clientKey("dyn-1"), registered);
    await deps.kv.set(cimdKey("https://app.example.com/cimd.json"), {
      client: {
        ...registered,
        clientId: "https://app.example.com/cimd.json",
        clientName: "Cimd App",
      },
      expiresAt: deps.now() + 60_000,
    });

    await t.step(
      "grants list: exactly the issue's fields, newest first, expired ones left out",
      async () => {
        const grants = await listGrants(deps);
        assertEquals(
          grants.map((g) => g.id).sort(),
          [ann1, ann2, bob, legacy].map((g) => g.grant.grantId).sort(),
        );
        assert(
          !grants.some((g) => g.id === expired.grant.grantId),
          "the expired grant is not listed",
        );
        for (const g of grants) assertEquals(Object.keys(g), GRANT_FIELDS);
        const first = grants.find((g) => g.id === ann1.grant.grantId)!;
        assertEquals(first, {
          id: ann1.grant.grantId,
          user: "corp:ann",
          clientId: "desk",
          clientName: "Desk app",
          scopes: ["mcp", "offline_access"],
          createdAt: new Date(ann1.grant.createdAt).toISOString(),
          lastUsedAt: null,
        });
        assertEquals(grants.find((g) => g.id === bob.grant.grantId)!.clientName, "Cimd App");
        assertEquals(grants.find((g) => g.id === legacy.grant.grantId)!.user, "owner");
        assertEquals(grants.find((g) => g.id === ann2.grant.grantId)!.clientName, "Dynamic one");
        assert(grants[0]!.createdAt >= grants.at(-1)!.createdAt, "newest first");
      },
    );

    await t.step('lastUsedAt comes from ["grant_used", id]', async () => {
      const at = deps.now() - 5000;
      await deps.kv.set(grantUsedKey(ann2.grant.grantId), at);
      const g = (await listGrants(deps)).find((g) => g.id === ann2.grant.grantId)!;
      assertEquals(g.lastUsedAt, new Date(at).toISOString());
    });

    await t.step(
      'grants list --user: through ["user_grant", sub, grantId]; owner = grants without user',
      async () => {
        assertEquals(
          (await listGrants(deps, { user: "corp:ann" })).map((g) => g.id).sort(),
          [ann1.grant.grantId, ann2.grant.grantId].sort(),
        );
        assertEquals((await listGrants(deps, { user: "owner" })).map((g) => g.id), [
          legacy.grant.grantId,
        ]);
        assertEquals(await listGrants(deps, { user: "nobody" }), []);
      },
    );

    await t.step("users list: user records with their live grants", async () => {
      const users = await listUsers(deps);
      assertEquals(users.map((u) => [u.sub, u.grants, u.admin]), [
        ["github:7", 1, false],
        ["corp:ann", 2, true],
        ["owner", 1, true],
      ]);
      assertEquals(users[1]!.email, "ann@example.com");
      assertEquals(users[0]!.login, "bob");
    });

    await t.step(
      "grants revoke: the grant, its index entry and its tokens are gone; audited",
      async () => {
        const mcp = `${deps.settings.publicUrl}/mcp`;
        const req = () =>
          new Request(mcp, { headers: { authorization: `Bearer ${ann2.accessToken}` } });
        assert(!((await authenticate(req(), deps, mcp)) instanceof Response), "valid before");
        const revoked = await revokeGrantAsAdmin(deps, ann2.grant.grantId, "corp:admin");
        assertEquals(revoked?.grantId, ann2.grant.grantId);
        assertEquals((await deps.kv.get(["grant", ann2.grant.grantId])).value, null);
        assertEquals(
          (await deps.kv.get(["user_grant", "corp:ann", ann2.grant.grantId])).value,
          null,
        );
        const refused = await authenticate(req(), deps, mcp);
        assert(refused instanceof Response);
        assertEquals(refused.status, 401);
        await deps.audit.flush();
        const [r] = await Array.fromAsync(queryAudit(deps, { event: "revocation" }));
        assertEquals([r?.method, r?.grantId, r?.user, r?.actor], [
          "admin",
          ann2.grant.grantId,
          "corp:ann",
          "corp:admin",
        ]);
        assertEquals(
          await revokeGrantAsAdmin(deps, ann2.grant.grantId, "corp:admin"),
          null,
          "unknown now",
        );
      },
    );

    await t.step(
      "user revoke: every grant and browser session of the user, nobody else's",
      async () => {
        await deps.kv.set(["browser_session", "h1"], {
          user: { sub: "corp:ann" },
          providerId: "corp",
          createdAt: 0,
          expiresAt: deps.now() + 1000,
        });
        await deps.kv.set(["browser_session", "h2"], {
          user: { sub: "github:7" },
          providerId: "gh",
          createdAt: 0,
          expiresAt: deps.now() + 1000,
        });
        const result = await revokeUserAsAdmin(deps, "corp:ann", "corp:admin");
        assertEquals(result, { grants: 1, browserSessions: 1 });
        assertEquals(await listGrants(deps, { user: "corp:ann" }), []);
        assertEquals((await deps.kv.get(["browser_session", "h1"])).value, null);
        assert(
          (await deps.kv.get(["browser_session", "h2"])).value,
          "another user's session stays",
        );
        assertEquals((await listGrants(deps)).length, 2);
        await deps.audit.flush();
        const records = await Array.fromAsync(
          queryAudit(deps, { event: "revocation", user: "corp:ann", order: "asc" }),
        );
        assertEquals(records.slice(-2).map((r) => [r.method, r.actor]), [
          ["admin", "corp:admin"],
          ["admin_user", "corp:admin"],
        ]);
      },
    );

    await t.step("clients list: config, registered, and metadata-document clients", async () => {
      const clients = await listClients(deps);
      assertEquals(clients.map((c) => [c.clientId, c.kind, c.clientName, c.grants]), [
        ["desk", "preregistered", "Desk app", 0],
        ["dyn-1", "registered", "Dynamic one", 1],
        ["https://app.example.com/cimd.json", "metadata_document", "Cimd App", 1],
      ]);
      assertEquals(clients[1]!.createdAt, new Date(1_700_000_000_000).toISOString());
    });
  } finally {
    deps.kv.close();
  }
});

Deno.test("admin views: audit trail queries and backend stats", async (t) => {
  const deps = await makeDeps({ config: CONFIG, env: ENV });
  const t0 = deps.now();
  const mcp = (at: number, fields: Partial<AuditRecord>) =>
    auditRecord(at, "mcp", {
      user: "corp:ann",
      backend: "alpha",
      method: "tools/call",
      tool: "alpha__echo",
      outcome: "ok",
      latencyMs: 10,
      ...fields,
    });
  try {
    for (let i = 1; i <= 20; i++) deps.audit.record(mcp(t0 - i * 1000, { latencyMs: i * 10 }));
    deps.audit.record(mcp(t0 - 500, { outcome: "-32603", latencyMs: 900 }));
    deps.audit.record(mcp(t0 - 400, { outcome: "tool_error", tool: "alpha__fail" }));
    deps.audit.record(mcp(t0 - 300, { outcome: "denied", latencyMs: 1 }));
    deps.audit.record(
      mcp(t0 - 200, {
        backend: "beta",
        tool: "beta__x",
        user: "github:7",
        outcome: "timeout",
        latencyMs: 300,
      }),
    );
    deps.audit.record(mcp(t0 - 2 * 3_600_000, { backend: "beta", latencyMs: 5 }));
    deps.audit.record(
      auditRecord(t0 - 100, "token", { user: "github:7", clientId: "dyn-1", outcome: "ok" }),
    );
    await deps.audit.flush();
    const all = (filter: Parameters<typeof queryAudit>[1]) =>
      Array.fromAsync(queryAudit(deps, filter));

    await t.step("newest first by default; oldest first on request; limit", async () => {
      const newest = await all({ limit: 2 });
      assertEquals(newest.map((r) => r.event), ["token", "mcp"]);
      assertEquals(newest[1]!.backend, "beta");
      const oldest = await all({ order: "asc", limit: 1 });
      assertEquals(oldest[0]!.time, new Date(t0 - 2 * 3_600_000).toISOString());
    });

    await t.step(
      "filters: user, backend, tool (glob), outcome (error = neither ok nor denied), event",
      async () => {
        assertEquals((await all({ user: "github:7" })).length, 2);
        assertEquals((await all({ backend: "beta" })).length, 2);
        assertEquals((await all({ tool: "alpha__f*" })).map((r) => r.outcome), ["tool_error"]);
        assertEquals((await all({ outcome: "error" })).map((r) => r.outcome), [
          "timeout",
          "tool_error",
          "-32603",
        ]);
        assertEquals((await all({ outcome: "denied" })).length, 1);
        assertEquals((await all({ event: "token" })).length, 1);
      },
    );

    await t.step("time range: since and until are inclusive bounds", async () => {
      const r = await all({ since: t0 - 3000, until: t0 - 1000 });
      assertEquals(
        r.map((x) => x.time),
        [t0 - 1000, t0 - 2000, t0 - 3000].map((x) => new Date(x).toISOString()),
      );
    });

    await t.step("records past their retention are skipped, even while KV keeps them", async () => {
      deps.clock.advance(30 * 86_400_000 - 2 * 3_600_000 + 1);
      assert(!(await all({})).some((r) => r.time === new Date(t0 - 2 * 3_600_000).toISOString()));
      deps.clock.advance(-(30 * 86_400_000 - 2 * 3_600_000 + 1));
    });

    await t.step("JSON Lines export: one record per line, every field present", async () => {
      const text = await new Response(auditJsonLines(deps, { backend: "alpha" })).text();
      const lines = text.trimEnd().split("\n");
      assertEquals(lines.length, 23);
      const first = JSON.parse(lines[0]!);
      assertEquals(Object.keys(first), [
        "time",
        "event",
        "user",
        "clientId",
        "grantId",
        "backend",
        "method",
        "tool",
        "outcome",
        "latencyMs",
        "requestId",
      ]);
      assert(text.endsWith("\n"));
    });

    await t.step(
      "backend stats of the last hour: p50/p95, error rate; denied and tool errors apart",
      async () => {
        const report = await backendStats(deps);
        const alpha = report.backends.find((b) => b.backend === "alpha")!;
        assertEquals(
          alpha.calls,
          22,
          "20 ok + 1 error + 1 tool error; the denied call never reached it",
        );
        assertEquals(alpha.errors, 1);
        assertEquals(alpha.toolErrors, 1);
        assertEquals(alpha.errorRate, 1 / 22);
        assertEquals(alpha.p50Ms, 100);
        assertEquals(alpha.p95Ms, 200);
        const beta = report.backends.find((b) => b.backend === "beta")!;
        assertEquals(
          [beta.calls, beta.errors, beta.p50Ms],
          [1, 1, 300],
          "the 2-hour-old call is outside",
        );
        assertEquals(report.sampled, false);
      },
    );

    await t.step("parseSince: 1h, 30m, 45s, 7d, an ISO date; anything else is null", () => {
      assertEquals(parseSince("1h", 10_000_000), 10_000_000 - 3_600_000);
      assertEquals(parseSince("30m", 10_000_000), 10_000_000 - 1_800_000);
      assertEquals(parseSince("45s", 10_000_000), 10_000_000 - 45_000);
      assertEquals(parseSince("7d", 1e12), 1e12 - 7 * 86_400_000);
      assertEquals(parseSince("2026-07-01T00:00:00Z", 0), Date.UTC(2026, 6, 1));
      assertEquals(parseSince("yesterday", 0), null);
      assertEquals(parseSince("1w", 0), null);
    });
  } finally {
    deps.kv.close();
  }
});

Deno.test("admin views: the running configuration without secrets", async (t) => {
  const deps = await makeDeps({ config: CONFIG, env: ENV });
  try {
    const view = redactedConfig(deps.config) as any;
    const text = JSON.stringify(view);

    await t.step("no secret value appears anywhere", () => {
      for (
        const secret of [
          ...Object.values(ENV).filter((v) => v !== "alpha.example.com"),
          "literal-secret-value",
          "another-initial-token",
        ]
      ) {
        assert(!text.includes(secret), `${secret} leaked`);
      }
    });

    await t.step(
      "headers, client secrets, initial access tokens, providers' secrets are [redacted]",
      () => {
        assertEquals(view.backends[0].headers, { Authorization: REDACTED });
        assertEquals(view.backends[1].headers, { "X-Api-Key": REDACTED });
        assertEquals(view.clients[0].clientSecret, REDACTED);
        assertEquals(view.registration.initialAccessTokens, [REDACTED, REDACTED]);
        assertEquals(view.login.providers[0].clientSecret, REDACTED);
      },
    );

    await t.step(
      "other ${VAR} values show as written; the rest as running (defaults filled)",
      () => {
        assertEquals(view.backends[0].url, "https://${ALPHA_HOST}/mcp");
        assertEquals(view.backends[1].url, "http://127.0.0.1:9/mcp");
        assertEquals(view.rateLimits.tokenPerClientPerMinute, 7);
        assertEquals(view.audit, { enabled: true, retentionDays: 30, arguments: "none" });
        assertEquals(view.clients[0].clientName, "Desk app");
      },
    );
  } finally {
    deps.kv.close();
  }
});
