/**
 * The admin CLI (`deno task admin`, admin.ts → lib/admin/cli.ts) as a real process against a KV
 * file, and the revocation bound of the README: a grant revoked by the CLI is refused by a
 * running gateway process (which caches validated tokens ≤ 1 s and cannot hear the CLI's
 * revocation broadcast) once that second has passed.
 */
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { z } from "zod";
import { auditRecord } from "../lib/admin/audit.ts";
import { makeDeps } from "./_helpers.ts";
import { putGrantOf, putUser } from "./_admin_fixtures.ts";
import { runAdmin, startGatewayProcess } from "./_gateway_process.ts";
import { spawnDeno } from "./_process.ts";
import { modernBackend } from "./_aggregate_backends.ts";

const GRANT_FIELDS = ["id", "user", "clientId", "clientName", "scopes", "createdAt", "lastUsedAt"];
const AUDIT_FIELDS = [
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
];

/** Parses JSON Lines, asserting every line of stdout is one JSON object. */
function jsonLines(stdout: string): Record<string, unknown>[] {
  if (stdout === "") return [];
  assert(stdout.endsWith("\n"), "stdout ends with a newline");
  return stdout.slice(0, -1).split("\n").map((line) => {
    const value = JSON.parse(line);
    assert(value && typeof value === "object" && !Array.isArray(value), `not an object: ${line}`);
    return value;
  });
}

Deno.test("admin CLI", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "admin-cli-" });
  const kvPath = `${dir}/gateway.kv`;
  const deps = await makeDeps({ kvPath });
  const env = { KV_PATH: kvPath, GATEWAY_CONFIG: `${dir}/absent.json` };
  try {
    await putUser(deps, { sub: "corp:ann", email: "ann@example.com", admin: true });
    const ann = await putGrantOf(deps, "corp:ann", { clientId: "app-1" });
    const bob = await putGrantOf(deps, "github:7", { clientId: "app-2", scope: "mcp:alpha" });
    const mcpCall = (at: number, user: string) =>
      auditRecord(at, "mcp", {
        user,
        backend: "alpha",
        method: "tools/call",
        tool: "alpha__echo",
        outcome: "ok",
        latencyMs: 3,
      }, "req-x");
    deps.audit.record(mcpCall(Date.now() - 2 * 3_600_000, "corp:ann"));
    deps.audit.record(mcpCall(Date.now() - 60_000, "corp:ann"));
    deps.audit.record(mcpCall(Date.now() - 30_000, "github:7"));
    deps.audit.record(mcpCall(Date.now() - 10_000, "corp:ann"));
    await deps.audit.flush();

    await t.step("--help lists every command; each command has its own --help", async () => {
      const help = await runAdmin(["--help"], env);
      assertEquals(help.code, 0);
      for (
        const c of [
          "grants list",
          "grants revoke",
          "users list",
          "user revoke",
          "clients list",
          "audit tail",
        ]
      ) {
        assertStringIncludes(help.stdout, c);
        const one = await runAdmin([...c.split(" "), "--help"], env);
        assertEquals(one.code, 0, c);
        assertStringIncludes(one.stdout, `Usage: deno task admin ${c}`);
      }
    });

    await t.step(
      "grants list --json: JSON Lines only on stdout, exactly the issue's fields",
      async () => {
        const run = await runAdmin(["grants", "list", "--json"], env);
        assertEquals(run.code, 0, run.stderr);
        const grants = jsonLines(run.stdout);
        assertEquals(grants.length, 2);
        for (const g of grants) assertEquals(Object.keys(g), GRANT_FIELDS);
        const a = grants.find((g) => g.id === ann.grant.grantId)!;
        assertEquals([a.user, a.clientId, a.scopes, a.lastUsedAt], [
          "corp:ann",
          "app-1",
          ["mcp"],
          null,
        ]);
      },
    );

    await t.step("grants list --user: that user's grants only", async () => {
      const run = await runAdmin(["grants", "list", "--user", "github:7", "--json"], env);
      assertEquals(run.code, 0);
      assertEquals(jsonLines(run.stdout).map((g) => g.id), [bob.grant.grantId]);
    });

    await t.step("users list and clients list --json", async () => {
      const users = jsonLines((await runAdmin(["users", "list", "--json"], env)).stdout);
      assertEquals(users.map((u) => [u.sub, u.email, u.grants]), [[
        "corp:ann",
        "ann@example.com",
        1,
      ]]);
      const clients = jsonLines((await runAdmin(["clients", "list", "--json"], env)).stdout);
      assertEquals(clients, [], "no registered client and no config: none listed");
    });

    await t.step(
      "audit tail --since 1h --user: the user's records of the hour, oldest first",
      async () => {
        const run = await runAdmin(
          ["audit", "tail", "--since", "1h", "--user", "corp:ann", "--json"],
          env,
        );
        assertEquals(run.code, 0, run.stderr);
        const records = jsonLines(run.stdout);
        assertEquals(records.length, 2, "the 2-hour-old record and bob's are left out");
        for (const r of records) assertEquals(Object.keys(r), AUDIT_FIELDS);
        assert((records[0]!.time as string) < (records[1]!.time as string), "oldest first");
        const limited = jsonLines(
          (await runAdmin(["audit", "tail", "--limit", "1", "--json"], env)).stdout,
        );
        assertEquals(limited.length, 1);
        assertEquals(limited[0]!.user, "corp:ann", "the newest one");
      },
    );

    await t.step("without --json: a table with a header line", async () => {
      const run = await runAdmin(["grants", "list"], env);
      assertEquals(run.code, 0);
      const [header, ...rows] = run.stdout.trimEnd().split("\n");
      assert(header!.startsWith("ID"), header);
      assertStringIncludes(header!, "LAST USED");
      assertEquals(rows.length, 2);
    });

    await t.step("grants revoke <id>: gone from KV and recorded in the audit trail", async () => {
      const run = await runAdmin(["grants", "revoke", bob.grant.grantId], env);
      assertEquals(run.code, 0, run.stderr);
      assertStringIncludes(run.stderr, `revoked grant ${bob.grant.grantId}`);
      assertEquals(run.stdout, "");
      assertEquals((await deps.kv.get(["grant", bob.grant.grantId])).value, null);
      const tail = jsonLines(
        (await runAdmin(["audit", "tail", "--user", "github:7", "--json"], env)).stdout,
      );
      assertEquals(tail.at(-1)!.event, "revocation");
      assertEquals(tail.at(-1)!.method, "admin");
      assertEquals(tail.at(-1)!.actor, "cli", "the CLI is named as the revoking actor");
    });

    await t.step("grants revoke of an unknown grant: exit 1 and a clear error", async () => {
      const run = await runAdmin(["grants", "revoke", "no-such-grant"], env);
      assertEquals(run.code, 1);
      assertStringIncludes(run.stderr, "no live grant no-such-grant");
    });

    await t.step("user revoke <sub>: every grant of the user", async () => {
      const run = await runAdmin(["user", "revoke", "corp:ann"], env);
      assertEquals(run.code, 0, run.stderr);
      assertStringIncludes(run.stderr, "revoked 1 grant(s)");
      assertEquals(jsonLines((await runAdmin(["grants", "list", "--json"], env)).stdout), []);
    });

    await t.step("usage errors exit 2 with the command's usage", async () => {
      for (
        const args of [
          [],
          ["grants"],
          ["grants", "revoke"],
          ["grants", "list", "--bogus"],
          ["audit", "tail", "--since", "yesterday"],
          ["audit", "tail", "--limit", "0"],
          ["frobnicate", "now"],
        ]
      ) {
        const run = await runAdmin(args, env);
        assertEquals(run.code, 2, `${args.join(" ")}: ${run.stderr}`);
        assertStringIncludes(run.stderr, "Usage: deno task admin");
        assertEquals(run.stdout, "");
      }
    });

    await t.step("no database at KV_PATH, or a KV Connect URL without token: exit 1", async () => {
      const missing = await runAdmin(["users", "list"], { KV_PATH: `${dir}/nope.kv` });
      assertEquals(missing.code, 1);
      assertStringIncludes(missing.stderr, `KV_PATH: no database at ${dir}/nope.kv`);
      const remote = await runAdmin(["users", "list"], { KV_PATH: "https://127.0.0.1:9/kv" });
      assertEquals(remote.code, 1);
      assertStringIncludes(remote.stderr, "DENO_KV_ACCESS_TOKEN");
    });

    await t.step("deno task admin runs it", async () => {
      const run = spawnDeno(["task", "admin", "users", "list", "--json"], {
        env: { KV_PATH: kvPath, GATEWAY_CONFIG: `${dir}/absent.json` },
      });
      assertEquals((await run.status).code, 0, run.stderr());
      assertEquals(jsonLines(run.stdout()).length, 1);
    });
  } finally {
    deps.kv.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a grant revoked by the CLI is refused by a running gateway within 1 s", async (t) => {
  const backend = modernBackend("alpha", (s) => {
    s.registerTool(
      "echo",
      { inputSchema: z.object({ text: z.string() }) },
      ({ text }) => ({ content: [{ type: "text", text }] }),
    );
  });
  const gw = await startGatewayProcess({ backends: [{ name: "alpha", url: backend.url }] });
  const deps = await makeDeps({ kvPath: gw.kvPath, env: { PUBLIC_URL: gw.url } });
  const call = (token: string) =>
    fetch(`${gw.url}/mcp/alpha`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "echo",
      },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "tools/call",
        params: {
          name: "echo",
          arguments: { text: "hi" },
          _meta: {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
          },
        },
      }),
    });
  try {
    const { grant, accessToken } = await putGrantOf(deps, "corp:ann", { clientId: "app-1" });

    await t.step("before: the token works (and is now in the gateway's token cache)", async () => {
      for (let i = 0; i < 2; i++) {
        const res = await call(accessToken);
        assertEquals(res.status, 200);
        await res.body?.cancel();
      }
    });

    await t.step("after the CLI's revocation and the 1 s bound: 401", async () => {
      const run = await runAdmin(["grants", "revoke", grant.grantId], { KV_PATH: gw.kvPath });
      assertEquals(run.code, 0, run.stderr);
      const revokedAt = performance.now();
      await new Promise((r) => setTimeout(r, 1100 - (performance.now() - revokedAt)));
      const res = await call(accessToken);
      assertEquals(res.status, 401);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals((await res.json()).error, "invalid_token");
    });

    await t.step(
      "on SIGTERM the gateway writes its pending audit records, then ends",
      async () => {
        // A call just before the signal: its record is still in the gateway's buffer (≤ 1 s).
        const other = await putGrantOf(deps, "corp:ann", { clientId: "app-2" });
        const res = await call(other.accessToken);
        assertEquals(res.status, 200);
        await res.body?.cancel();
        const status = await gw.stop("SIGTERM");
        assertEquals(status.signal, "SIGTERM", "it ends as the signal asks, after the flush");
        const run = await runAdmin(["audit", "tail", "--user", "corp:ann", "--json"], {
          KV_PATH: gw.kvPath,
        });
        assertEquals(run.code, 0, run.stderr);
        const records = jsonLines(run.stdout);
        assertEquals(
          records.map((r) => [r.event, r.backend, r.tool, r.outcome]),
          [
            ["mcp", "alpha", "echo", "ok"],
            ["mcp", "alpha", "echo", "ok"],
            ["revocation", null, null, "ok"],
            ["mcp", "alpha", "echo", "ok"],
          ],
        );
        assertEquals(records[3]!.clientId, "app-2", "the last call was written at shutdown");
        const logged = gw.logLines().filter((l) => l.event === "audit.mcp");
        assertEquals(logged.length, 3, "each record is also a log line of the gateway");
        assertEquals(logged[0]!.requestId, records[0]!.requestId);
      },
    );
  } finally {
    deps.kv.close();
    await gw.stop();
    await backend.close();
    await Deno.remove(gw.dir, { recursive: true });
  }
});
