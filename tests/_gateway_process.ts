/**
 * The gateway as a real process (`deno run main.ts`, the repository's deno.json) on a temp
 * config and a Deno KV file the test can open too, and the admin CLI as a real process
 * (`admin.ts`). Environments are explicit (`clearEnv`), loopback only, every wait bounded.
 */
import { assert } from "./_assert.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** The variables a child needs to find Deno's cache, plus `extra`. */
function childEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1", ...extra };
  for (const k of ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME"]) {
    const v = Deno.env.get(k);
    if (v !== undefined && env[k] === undefined) env[k] = v;
  }
  return env;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A gateway process. */
export interface GatewayProcess {
  url: string;
  kvPath: string;
  dir: string;
  /** Its stdout so far: the structured log lines. */
  logLines: () => Record<string, unknown>[];
  stderr: () => string;
  /** Stops it with `signal` (default SIGTERM) and waits for its exit (bounded). */
  stop: (signal?: Deno.Signal) => Promise<Deno.CommandStatus>;
}

/**
 * Starts the gateway with `config` (written to a temp file) and a fresh KV file in a temp dir;
 * `env` adds variables (e.g. OpenTelemetry's). Waits (≤ 30 s) until `/healthz` answers.
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
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "main.ts"],
    cwd: ROOT,
    clearEnv: true,
    env: childEnv({
      PORT: String(port),
      PUBLIC_URL: url,
      KV_PATH: kvPath,
      GATEWAY_CONFIG: `${dir}/gateway.config.json`,
      GATEWAY_OWNER_PASSWORD: "process test owner password",
      ...env,
    }),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  let err = "";
  const decoder = new TextDecoder();
  const drain = async (stream: ReadableStream<Uint8Array>, add: (s: string) => void) => {
    for await (const chunk of stream) add(decoder.decode(chunk, { stream: true }));
  };
  const drained = Promise.all([
    drain(child.stdout, (s) => void (out += s)),
    drain(child.stderr, (s) => void (err = (err + s).slice(-8000))),
  ]);
  let up = false;
  for (let i = 0; i < 300 && !up; i++) {
    try {
      const res = await fetch(`${url}/healthz`);
      await res.body?.cancel();
      up = res.status === 200;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  let exit: Promise<Deno.CommandStatus> | undefined;
  const stop = async (signal: Deno.Signal = "SIGTERM") => {
    if (!exit) {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // already gone
        }
      }, 10_000);
      exit = child.status.finally(() => clearTimeout(timer));
    }
    const status = await exit;
    await drained;
    return status;
  };
  if (!up) {
    await stop("SIGKILL");
    await Deno.remove(dir, { recursive: true });
    assert(false, `the gateway did not answer /healthz within 30 s:\n${err}`);
  }
  return {
    url,
    kvPath,
    dir,
    logLines: () =>
      out.split("\n").filter((l) => l.startsWith("{")).map((l) =>
        JSON.parse(l) as Record<string, unknown>
      ),
    stderr: () => err,
    stop,
  };
}

/** What a CLI run gave. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `admin.ts` with `args` against `kvPath` (`env` may add or override variables). */
export async function runAdmin(
  args: string[],
  env: Record<string, string>,
): Promise<CliRun> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      "--allow-write",
      "admin.ts",
      ...args,
    ],
    cwd: ROOT,
    clearEnv: true,
    env: childEnv(env),
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}
