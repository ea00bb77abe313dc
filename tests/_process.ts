/**
 * Subprocesses of the test suites (the gateway, `deno task …`, scripts): started with a clean,
 * explicit environment (`clearEnv`), so that a caller's exported `PUBLIC_URL`, `KV_PATH`,
 * `GATEWAY_*` … never reach them, and with their output collected for assertions.
 */

/**
 * Toolchain variables a child `deno` needs to find its cache, the npm registry and proxies. None
 * of them configures the gateway.
 */
const TOOLCHAIN = [
  "PATH",
  "HOME",
  "USERPROFILE",
  "TMPDIR",
  "DENO_DIR",
  "XDG_CACHE_HOME",
  "DENO_CERT",
  "DENO_TLS_CA_STORE",
  "SSL_CERT_FILE",
  "NPM_CONFIG_REGISTRY",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
];

/** The environment of a child process: the toolchain variables, `NO_COLOR`, then `vars`. */
export function childEnv(vars: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of TOOLCHAIN) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return { ...env, NO_COLOR: "1", ...vars };
}

/** A free loopback port (closed again at once: a tiny race, fine for tests). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** The repository root (tests run from anywhere). */
export const ROOT = new URL("..", import.meta.url).pathname;

/** A running child process whose stdout and stderr are collected. */
export interface Spawned {
  child: Deno.ChildProcess;
  /** Everything written to stderr so far. */
  stderr: () => string;
  /** Everything written to stdout so far. */
  stdout: () => string;
  /** Waits (at most `timeoutMs`) until stderr matches `pattern`; throws with the output if not. */
  waitForStderr: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>;
  /** Exit status (after the process ended by itself). */
  status: Promise<Deno.CommandStatus>;
  /** SIGTERM, then waits for the exit and the end of its output. */
  stop: () => Promise<void>;
}

async function collect(stream: ReadableStream<Uint8Array>, sink: (s: string) => void) {
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) sink(chunk);
}

/** Runs `deno <args>` in `cwd` (the repository root by default) with `childEnv(env)`. */
export function spawnDeno(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Spawned {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: options.cwd ?? ROOT,
    clearEnv: true,
    env: childEnv(options.env),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let err = "";
  let out = "";
  const drained = Promise.all([
    collect(child.stderr, (s) => err += s),
    collect(child.stdout, (s) => out += s),
  ]);
  const status = child.status.then(async (s) => {
    await drained;
    return s;
  });
  let ended = false;
  status.then(() => ended = true);
  return {
    child,
    stderr: () => err,
    stdout: () => out,
    status,
    waitForStderr: async (pattern, timeoutMs = 60_000) => {
      const deadline = performance.now() + timeoutMs;
      for (let i = 0; performance.now() < deadline && i < 10_000; i++) {
        const m = err.match(pattern);
        if (m) return m;
        if (ended) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      const m = err.match(pattern);
      if (m) return m;
      throw new Error(`stderr never matched ${pattern}:\n${err.slice(-3000)}`);
    },
    stop: async () => {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await status;
    },
  };
}

/** Polls `url` (bounded) until it answers 200; returns the response. */
export async function waitFor200(url: string, timeoutMs = 60_000): Promise<Response> {
  const deadline = performance.now() + timeoutMs;
  let last = "";
  for (let i = 0; performance.now() < deadline && i < 10_000; i++) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      if (res.status === 200) return res;
      last = `HTTP ${res.status}`;
      await res.body?.cancel();
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms (last: ${last})`);
}

/** What a copy of the project needs to run its tasks (no tests, docs or benchmarks). */
const PROJECT_FILES = [
  "deno.json",
  "deno.lock",
  "main.ts",
  "gateway.config.json",
  "gateway.config.schema.json",
  "lib",
  "routes",
  "scripts",
  "examples",
];

async function copyTree(from: string, to: string): Promise<void> {
  const info = await Deno.stat(from);
  if (!info.isDirectory) return await Deno.copyFile(from, to);
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    await copyTree(`${from}/${entry.name}`, `${to}/${entry.name}`);
  }
}

/**
 * Copies the project's runnable files into `dest`, so that a task that writes next to itself
 * (`deno task dev` keeps KV in `./.data/`) never touches the checkout.
 */
export async function copyProject(dest: string): Promise<void> {
  for (const name of PROJECT_FILES) {
    const from = `${ROOT}${name}`;
    const exists = await Deno.stat(from).then(() => true, () => false);
    if (exists) await copyTree(from, `${dest}/${name}`);
  }
}
