/**
 * The suite runs with a clean, explicit environment: a caller who exported the gateway's
 * variables (PUBLIC_URL, KV_PATH, GATEWAY_CONFIG, GATEWAY_API_KEY, PORT, DENO_DEPLOYMENT_ID …)
 * gets the same results, and nothing is written where KV_PATH points. Runs the suites that start
 * real gateways as a `deno test` subprocess with those variables set to poisonous values.
 */
import { assert, assertEquals } from "./_assert.ts";
import { spawnDeno } from "./_process.ts";

Deno.test("an exported environment does not leak into the tests", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "gateway-env-leak-" });
  const leakedKv = `${dir}/leaked.kv`;
  try {
    const run = spawnDeno(
      [
        "test",
        "--allow-all",
        "tests/tasks_test.ts",
        "tests/startup_errors_test.ts",
        "tests/metadata_test.ts",
      ],
      {
        env: {
          PUBLIC_URL: "https://leaked.example",
          KV_PATH: leakedKv,
          GATEWAY_CONFIG: `${dir}/no-such-config.json`,
          GATEWAY_API_KEY: "short",
          GATEWAY_OWNER_PASSWORD: "leaked password",
          PORT: "1",
          DENO_DEPLOYMENT_ID: "leaked-deployment",
          DENO_KV_ACCESS_TOKEN: "leaked-token",
        },
      },
    );
    const timer = setTimeout(() => run.child.kill("SIGKILL"), 240_000);
    const status = await run.status;
    clearTimeout(timer);

    await t.step("the suites pass with PUBLIC_URL, KV_PATH … exported", () => {
      assertEquals(status.code, 0, `${run.stdout().slice(-3000)}\n${run.stderr().slice(-2000)}`);
      assert(/ok \| \d+ passed/.test(run.stdout()), run.stdout().slice(-1000));
    });

    await t.step("nothing was written at the exported KV_PATH", async () => {
      const exists = await Deno.stat(leakedKv).then(() => true, () => false);
      assertEquals(exists, false);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
