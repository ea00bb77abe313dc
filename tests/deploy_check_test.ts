/**
 * `deno task deploy:check`: the config must parse with the production variables (Deploy rules
 * on), backends must be reachable from Deploy (not loopback), main.ts must type-check, and
 * nothing may write files at runtime (static scan + a run without write permission, each shown
 * to catch a write). Real `deno task` subprocesses with a clean environment.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { childEnv, spawnDeno } from "./_process.ts";
import { checkConfig, restrictedRun, scanForFileWrites } from "../scripts/deploy_check.ts";
import { refusedOnDeploy } from "../lib/startup/deno_deploy.ts";
import { deployPlan, deployVariables, showCommand } from "../scripts/deploy.ts";

async function deployCheck(env: Record<string, string>): Promise<{ code: number; err: string }> {
  const run = spawnDeno(["task", "deploy:check"], { env });
  const status = await run.status;
  return { code: status.code, err: run.stderr() };
}

Deno.test("deno task deploy:check", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "gateway-deploy-check-" });
  const production = `${dir}/production.json`;
  await Deno.writeTextFile(
    production,
    JSON.stringify({
      backends: [{
        name: "docs",
        url: "https://docs.invalid/mcp", // RFC 2606: never resolves, no traffic leaves
        headers: { Authorization: "Bearer ${DOCS_TOKEN}" },
      }],
    }),
  );
  try {
    await t.step("a deployable config passes and lists the variables to set", async () => {
      const { code, err } = await deployCheck({ GATEWAY_CONFIG: production });
      assertEquals(code, 0, err);
      assertStringIncludes(err, "ok     the config and the settings parse");
      assertMatch(err, /PUBLIC_URL {2}required on Deno Deploy/);
      assertMatch(err, /GATEWAY_OWNER_PASSWORD --secret/);
      assertMatch(err, /DOCS_TOKEN --secret {2}backends\[0\]\.headers\.Authorization/);
      assertStringIncludes(err, "ok     main.ts and its imports type-check");
      assertMatch(err, /ok {5}static scan: \d+ local modules, no filesystem write API/);
      assertMatch(err, /ok {5}without write permission, main\.ts answered \d+ requests/);
      assertMatch(err, /deploy:check passed\n$/);
    });

    await t.step("the shipped demo config fails: its backend is loopback", async () => {
      const { code, err } = await deployCheck({});
      assertEquals(code, 1);
      assertMatch(
        err,
        /error: \.\/gateway\.config\.json: backends\[0\]\.url: http:\/\/127\.0\.0\.1:\d+\/mcp is a loopback address/,
      );
      assertMatch(err, /deploy:check failed\n$/);
    });

    await t.step("an exported PUBLIC_URL that is not https fails", async () => {
      const { code, err } = await deployCheck({
        GATEWAY_CONFIG: production,
        PUBLIC_URL: "http://gw.example",
      });
      assertEquals(code, 1);
      assertStringIncludes(err, "error: PUBLIC_URL: http://gw.example is not https");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deploy:check: variable names Deno Deploy refuses to store", async (t) => {
  await t.step("a ${VAR} the platform reserves is an error naming the field", async () => {
    const raw = {
      backends: [{
        name: "docs",
        url: "https://docs.invalid/mcp",
        headers: { Authorization: "Bearer ${DENO_DOCS_TOKEN}", "X-Trace": "${OTEL_KEY}" },
      }],
    };
    const { errors, variables } = await checkConfig(raw, "prod.json", () => undefined);
    assertEquals(errors, [
      "prod.json: backends[0].headers.Authorization: ${DENO_DOCS_TOKEN} cannot be set on " +
      "Deno Deploy (names starting with DENO_ are reserved to the platform); rename the variable",
      "prod.json: backends[0].headers.X-Trace: ${OTEL_KEY} cannot be set on Deno Deploy " +
      "(names starting with OTEL_ are reserved); rename the variable",
    ]);
    assert(variables.some((v) => v.name === "DENO_DOCS_TOKEN"), "still listed");
  });

  await t.step("Deploy's rules: DENO_ but five, LD_, OTEL_, Cloud Connections, 128 bytes", () => {
    assertEquals(refusedOnDeploy("DOCS_TOKEN"), undefined);
    assertEquals(refusedOnDeploy("DENO_AUTH_TOKENS"), undefined);
    assertEquals(refusedOnDeploy("DENO_DEPLOY_TOKEN"), undefined);
    assertMatch(refusedOnDeploy("DENO_KV_ACCESS_TOKEN")!, /DENO_ are reserved/);
    assertMatch(refusedOnDeploy("LD_PRELOAD")!, /LD_ are reserved/);
    assertMatch(refusedOnDeploy("AWS_ROLE_ARN")!, /Cloud Connections/);
    assertEquals(refusedOnDeploy("A".repeat(128)), undefined);
    assertMatch(refusedOnDeploy("A".repeat(129))!, /128 bytes/);
  });
});

Deno.test("deploy:check's write detection", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "gateway-write-scan-" });
  try {
    await t.step("the static scan finds write APIs, not their mention in comments", async () => {
      await Deno.writeTextFile(
        `${dir}/writes.ts`,
        [
          "// Deno.writeTextFile(path) is never called here",
          "/** Deno.mkdir(x) neither */",
          'export const save = () => Deno.writeTextFile("/tmp/x", "y");',
          'import { writeFileSync } from "node:fs";',
        ].join("\n"),
      );
      await Deno.writeTextFile(`${dir}/clean.ts`, "export const kv = () => Deno.openKv();\n");
      const findings = await scanForFileWrites([`${dir}/writes.ts`, `${dir}/clean.ts`]);
      assertEquals(findings.map((f) => [f.file.split("/").at(-1), f.line]), [
        ["writes.ts", 3],
        ["writes.ts", 4],
      ]);
    });

    await t.step("the run without write permission catches a write on a request", async () => {
      await Deno.writeTextFile(
        `${dir}/entry.ts`,
        `Deno.serve({ hostname: "127.0.0.1", port: Number(Deno.env.get("PORT")) }, async (req) => {
  if (new URL(req.url).pathname !== "/healthz") await Deno.writeTextFile("written.txt", "x");
  return new Response("ok");
});\n`,
      );
      const problems = await restrictedRun(`${dir}/entry.ts`, dir, childEnv());
      assert(problems.some((p) => /answered 500/.test(p)), problems.join("\n"));
      assert(problems.some((p) => /a file write was attempted/.test(p)), problems.join("\n"));
      const written = await Deno.stat(`${dir}/written.txt`).then(() => true, () => false);
      assertEquals(written, false);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task deploy (the deno deploy commands)", async (t) => {
  const raw = {
    backends: [{
      name: "docs",
      url: "https://docs.invalid/mcp",
      headers: { Authorization: "Bearer ${DOCS_TOKEN}" },
    }],
  };
  const local = (vars: Record<string, string>) => (name: string) => vars[name];

  await t.step("variables come from the shell; a missing one is named", () => {
    const { values, missing } = deployVariables(
      raw,
      local({ GATEWAY_OWNER_PASSWORD: "pw" }),
      "https://gw.acme.deno.net",
    );
    assertEquals(missing, ["DOCS_TOKEN"]);
    assertEquals(values, [
      { name: "PUBLIC_URL", value: "https://gw.acme.deno.net", secret: false },
      { name: "GATEWAY_OWNER_PASSWORD", value: "pw", secret: true },
    ]);
  });

  await t.step("create, KV, variables, then deploy --prod, in that order", () => {
    const plan = deployPlan({ org: "acme", app: "gw" }, [
      { name: "PUBLIC_URL", value: "https://gw.acme.deno.net", secret: false },
      { name: "DOCS_TOKEN", value: "t0k", secret: true },
    ]);
    assertEquals(plan.map((s) => s.args.slice(0, 3).join(" ")), [
      "task deploy:check",
      "deploy create --org",
      "deploy database provision",
      "deploy database assign",
      "deploy env add",
      "deploy env add",
      "deploy --org acme",
    ]);
    assertEquals(plan[2]!.args, [
      "deploy",
      "database",
      "provision",
      "gw-kv",
      "--kind",
      "denokv",
      "--org",
      "acme",
    ]);
    assertEquals(plan.at(-1)!.args, ["deploy", "--org", "acme", "--app", "gw", "--prod"]);
    const token = plan[5]!;
    assertEquals(token.fallback, [
      "deploy",
      "env",
      "update-value",
      "DOCS_TOKEN",
      "t0k",
      "--org",
      "acme",
      "--app",
      "gw",
    ]);
    assertEquals(
      showCommand(token.args, token.secretAt),
      "deno deploy env add DOCS_TOKEN ******** --secret --org acme --app gw",
    );
    const skipped = deployPlan({ org: "a", app: "b", skipCreate: true, skipKv: true }, []);
    assertEquals(skipped.map((s) => s.title), ["offline checks", "deploy to production"]);
  });

  await t.step("--dry-run prints the commands and never a secret value", async () => {
    const dir = await Deno.makeTempDir({ prefix: "gateway-deploy-dry-" });
    try {
      await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(raw));
      const run = spawnDeno(["task", "deploy", "--org", "acme", "--app", "gw", "--dry-run"], {
        env: {
          GATEWAY_CONFIG: `${dir}/config.json`,
          GATEWAY_OWNER_PASSWORD: "owner-password-value",
          DOCS_TOKEN: "docs-token-value",
        },
      });
      assertEquals((await run.status).code, 0, run.stderr());
      const err = run.stderr();
      assertStringIncludes(err, "deno deploy env add PUBLIC_URL https://gw.acme.deno.net");
      assertStringIncludes(err, "deno deploy --org acme --app gw --prod");
      assert(!err.includes("owner-password-value") && !err.includes("docs-token-value"));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});
