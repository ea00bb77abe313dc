/**
 * Load generation: `wrk` when it is on PATH (installed with apt-get when missing and root),
 * else the bounded Deno load generator of `load_worker.ts` in its own subprocess. The same
 * tool serves every configuration of a run, so that ratios compare like with like.
 */

/** One load configuration: a fixed request, fixed concurrency, fixed duration. */
export interface LoadSpec {
  url: string;
  method?: string;
  headers: Record<string, string>;
  body?: string;
  connections: number;
  durationS: number;
  /** When set, each request carries the next of these as its `Authorization` value. */
  authorizations?: string[];
}

/** What one load round measured. */
export interface LoadResult {
  requests: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Socket errors and timeouts. */
  errors: number;
  /** Responses with status ≥ 400. */
  non2xx: number;
}

/** Median of several rounds, with the rounds themselves. */
export interface RoundsResult extends LoadResult {
  rounds: LoadResult[];
}

/** Which load generator this run uses. */
export type LoadTool = { kind: "wrk"; path: string; note: string } | { kind: "deno"; note: string };

async function which(cmd: string): Promise<string | null> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      const p = `${dir}/${cmd}`;
      const st = await Deno.stat(p);
      if (st.isFile) return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** Finds `wrk`, tries `apt-get install -y wrk` as root, else falls back to the Deno generator. */
export async function findLoadTool(log: (s: string) => void): Promise<LoadTool> {
  if (Deno.env.get("BENCH_LOAD_TOOL") === "deno") {
    return { kind: "deno", note: "Deno load generator (BENCH_LOAD_TOOL=deno)" };
  }
  let path = await which("wrk");
  if (path) return { kind: "wrk", path, note: "wrk (found on PATH)" };
  const isRoot = Deno.uid?.() === 0;
  if (isRoot && (await which("apt-get"))) {
    log("wrk is not on PATH; trying `apt-get install -y wrk` (running as root) …");
    try {
      const out = await new Deno.Command("apt-get", {
        args: ["install", "-y", "-q", "wrk"],
        stdout: "null",
        stderr: "null",
        env: { DEBIAN_FRONTEND: "noninteractive" },
      }).output();
      if (out.success) path = await which("wrk");
    } catch {
      // no apt
    }
    if (path) return { kind: "wrk", path, note: "wrk (installed by the bench with apt-get)" };
  }
  log("wrk is missing (install the Debian package `wrk`); using the built-in Deno load generator");
  return { kind: "deno", note: "built-in Deno load generator (wrk missing)" };
}

function luaString(s: string): string {
  return JSON.stringify(s); // a JSON string literal is a valid Lua string literal for ASCII
}

function wrkScript(spec: LoadSpec, tokenFile: string | null): string {
  const lines = [
    `wrk.method = ${luaString(spec.method ?? "POST")}`,
    `wrk.body = ${luaString(spec.body ?? "")}`,
    ...Object.entries(spec.headers).map(([k, v]) =>
      `wrk.headers[${luaString(k)}] = ${luaString(v)}`
    ),
  ];
  if (tokenFile) {
    lines.push(
      `local auths = {}`,
      `for line in io.lines(${luaString(tokenFile)}) do auths[#auths + 1] = line end`,
      `local i = math.random(#auths)`,
      `request = function()`,
      `  i = i % #auths + 1`,
      `  wrk.headers["Authorization"] = auths[i]`,
      `  return wrk.format()`,
      `end`,
    );
  }
  lines.push(
    `done = function(summary, latency, requests)`,
    `  local e = summary.errors`,
    `  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,` +
      `"p99_us":%d,"errors":%d,"non2xx":%d}\\n', summary.requests, summary.duration,` +
      ` latency:percentile(50), latency:percentile(99), e.connect + e.read + e.write + e.timeout,` +
      ` e.status))`,
    `end`,
  );
  return lines.join("\n") + "\n";
}

async function runWrk(path: string, spec: LoadSpec): Promise<LoadResult> {
  const dir = await Deno.makeTempDir({ prefix: "bench-wrk-" });
  try {
    let tokenFile: string | null = null;
    if (spec.authorizations?.length) {
      tokenFile = `${dir}/auth.txt`;
      await Deno.writeTextFile(tokenFile, spec.authorizations.join("\n") + "\n");
    }
    const script = `${dir}/req.lua`;
    await Deno.writeTextFile(script, wrkScript(spec, tokenFile));
    const out = await new Deno.Command(path, {
      args: [
        "-t1",
        `-c${spec.connections}`,
        `-d${spec.durationS}s`,
        "--timeout",
        "5s",
        "-s",
        script,
        spec.url,
      ],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout((spec.durationS + 20) * 1000),
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    const m = /WRKJSON (\{.*\})/.exec(text);
    if (!m) throw new Error(`wrk failed: ${text} ${new TextDecoder().decode(out.stderr)}`);
    const r = JSON.parse(m[1]!);
    return {
      requests: r.requests,
      rps: r.requests / (r.duration_us / 1e6),
      p50Ms: r.p50_us / 1000,
      p99Ms: r.p99_us / 1000,
      errors: r.errors,
      non2xx: r.non2xx,
    };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function runDeno(spec: LoadSpec): Promise<LoadResult> {
  const script = new URL("./load_worker.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, JSON.stringify(spec)],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout((spec.durationS + 30) * 1000),
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const m = /LOADJSON (\{.*\})/.exec(text);
  if (!m) {
    throw new Error(`load worker failed: ${new TextDecoder().decode(out.stderr).slice(-500)}`);
  }
  return JSON.parse(m[1]!) as LoadResult;
}

/** Runs one round of load with the chosen tool. */
export function runLoad(tool: LoadTool, spec: LoadSpec): Promise<LoadResult> {
  return tool.kind === "wrk" ? runWrk(tool.path, spec) : runDeno(spec);
}

/** Median of a list of numbers (0 for an empty list). */
export function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * A warm-up, then `rounds` rounds of each configuration, interleaved (A B C, A B C, …) so
 * that the shared machine's noise falls on all of them alike; each figure is the median over
 * the rounds.
 */
export async function runInterleaved(
  tool: LoadTool,
  specs: LoadSpec[],
  opts: { warmupS: number; rounds: number },
): Promise<RoundsResult[]> {
  if (opts.warmupS > 0) {
    for (const spec of specs) await runLoad(tool, { ...spec, durationS: opts.warmupS });
  }
  const all: LoadResult[][] = specs.map(() => []);
  for (let i = 0; i < opts.rounds; i++) {
    for (const [j, spec] of specs.entries()) all[j]!.push(await runLoad(tool, spec));
  }
  return all.map((rounds) => ({
    requests: median(rounds.map((r) => r.requests)),
    rps: median(rounds.map((r) => r.rps)),
    p50Ms: median(rounds.map((r) => r.p50Ms)),
    p99Ms: median(rounds.map((r) => r.p99Ms)),
    errors: rounds.reduce((a, r) => a + r.errors, 0),
    non2xx: rounds.reduce((a, r) => a + r.non2xx, 0),
    rounds,
  }));
}
