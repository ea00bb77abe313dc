/**
 * The gateway as a real process (`deno run main.ts`, the repository's deno.json) on a temp
 * config and a Deno KV file the test can open too, and the admin CLI as a real process
 * (`admin.ts`); both through tests/_process.ts (explicit environment, loopback, bounded waits).
 */
import { freePort, spawnDeno, waitFor200 } from "./_process.ts";

/** A gateway process. */
export interface GatewayProcess {
  url: string;
  kvPath: string;
  dir: string;
  /** Its stdout so far, parsed: the structured log lines. */
  logLines: () => Record<string, unknown>[];
  stderr: () => string;
  /** Sends `signal` (default SIGTERM) and waits (≤ 10 s, then SIGKILL) for the exit. */
  stop: (signal?: Deno.Signal) => Promise<Deno.CommandStatus>;
}

/**
 * Starts the gateway with `config` (written to a temp file) and a fresh KV file in a temp dir;
 * `env` adds variables (e.g. OpenTelemetry's). Waits until `/healthz` answers.
 */
export async function startGatewayProcess(
  config: Record<string, unknown>,
  env: Record<string, string> = {},
): Promise<GatewayProcess> {
  const dir = await Deno.makeTempDir({ prefix: "gateway-proc-" });
  const kvPath = `${dir}/gateway.kv`;
  await Deno.writeTextFile(`${dir}/gateway.config.json`, JSON.stringify(config));
  const port = freePort();
  const url = `http://127.0.0.1:${port}`;
  const run = spawnDeno(["run", "--allow-all", "main.ts"], {
    env: {
      PORT: String(port),
      PUBLIC_URL: url,
      KV_PATH: kvPath,
      GATEWAY_CONFIG: `${dir}/gateway.config.json`,
      GATEWAY_OWNER_PASSWORD: "process test owner password",
      ...env,
    },
  });
  let signalled = false;
  const stop = async (signal: Deno.Signal = "SIGTERM") => {
    if (!signalled) {
      signalled = true;
      try {
        run.child.kill(signal);
      } catch {
        // already gone
      }
    }
    const timer = setTimeout(() => {
      try {
        run.child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, 10_000);
    try {
      return await run.status;
    } finally {
      clearTimeout(timer);
    }
  };
  try {
    await (await waitFor200(`${url}/healthz`, 30_000)).body?.cancel();
  } catch (e) {
    await stop("SIGKILL");
    await Deno.remove(dir, { recursive: true });
    throw new Error(`${(e as Error).message}\n${run.stderr().slice(-3000)}`);
  }
  return {
    url,
    kvPath,
    dir,
    logLines: () =>
      run.stdout().split("\n").filter((l) => l.startsWith("{")).map((l) =>
        JSON.parse(l) as Record<string, unknown>
      ),
    stderr: run.stderr,
    stop,
  };
}

/** What a CLI run gave. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `admin.ts` with `args` and `env` (its only variables besides the toolchain's). */
export async function runAdmin(args: string[], env: Record<string, string>): Promise<CliRun> {
  const run = spawnDeno([
    "run",
    "--allow-net",
    "--allow-env",
    "--allow-read",
    "--allow-write",
    "admin.ts",
    ...args,
  ], { env });
  const status = await run.status;
  return { code: status.code, stdout: run.stdout(), stderr: run.stderr() };
}
