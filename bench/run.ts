/**
 * `deno task bench`: starts backends (a 2026-07-28 one and two 2025-era ones, sessionless and
 * with sessions), the issue-14 floor proxy in front of each, a header-copying reference proxy and
 * the gateway (each its own process, on 127.0.0.1), measures side by side with interleaved
 * rounds, prints a table with every target as met / not met and writes docs/BENCHMARKS.md and
 * docs/BENCHMARKS.json. Bounded: every load round has a fixed duration, every loop a maximum
 * count; the whole run takes about 6–8 minutes (two 60 s mixed-load periods included).
 *
 * `deno task bench --quick` (≤ 60 s): sections 1, 2, 5, 8 and 9 only, 1 s rounds, 5 s memory
 * periods, one cold start per route; prints the table and writes nothing.
 *
 * Environment knobs (optional): BENCH_ROUND_S (default 3; 1 with --quick), BENCH_ROUNDS (3),
 * BENCH_CONNECTIONS (16), BENCH_RSS_S (60; 5 with --quick), BENCH_LOAD_TOOL=deno (skip wrk),
 * BENCH_SCALE_TOKENS (100000), BENCH_PROFILE_S (4; 0 skips the CPU profile of the pass-through).
 */
import { measureAuditCost } from "./audit.ts";
import { type AuthLatency, authLatency } from "./auth_scale.ts";
import { type BenchGateway, countAccessTokens, launchGateway, mint } from "./gateway.ts";
import {
  findLoadTool,
  type LoadResult,
  type LoadSpec,
  median,
  type RoundsResult,
  runInterleaved,
  runLoad,
} from "./load.ts";
import {
  legacyRequest,
  type McpRequest,
  modernRequest,
  openLegacySession,
  probe,
  readRpc,
} from "./mcp.ts";
import { closedLoopRounds, codeFlow, type OpsResult, refresh, register } from "./oauth.ts";
import { type Proc, procCpuMs, startBenchServer } from "./procs.ts";
import { coldStartMs } from "./cold_start.ts";
import { type HotPathKv, hotPathKv, startCountedGateway } from "./kv_ops.ts";
import { profilePassThrough } from "./profile.ts";
import {
  machineInfo,
  printReport,
  type Report,
  type Row,
  type Target,
  writeReport,
} from "./report.ts";

const REPO_ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** `deno task bench --quick`: the issue-14 rows only, short rounds, nothing written (≤ 60 s). */
const QUICK = Deno.args.includes("--quick");
const ROUND_S = Number(Deno.env.get("BENCH_ROUND_S") ?? (QUICK ? "1" : "3"));
const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? "3");
/** 16 connections, as in the measurements of issue 14 (`wrk -t1 -c16`). */
const CONNECTIONS = Number(Deno.env.get("BENCH_CONNECTIONS") ?? "16");
/** Seconds of each of the two mixed-load periods of section 5 (issue 14: 60). */
const RSS_S = Number(Deno.env.get("BENCH_RSS_S") ?? (QUICK ? "5" : "60"));
/** Fresh processes per route in section 8. */
const COLD_STARTS = QUICK ? 1 : 3;
/** Warm calls counted per route in section 9. */
const KV_CALLS = QUICK ? 50 : 200;
const SCALE_TOKENS = Number(Deno.env.get("BENCH_SCALE_TOKENS") ?? "100000");
const WARMUP_S = QUICK ? 0 : 1;
/** Latency differences of a few % need more rounds than throughput. */
const AUTH_ROUNDS = Math.max(ROUNDS, 5);
const PROFILE_S = Number(Deno.env.get("BENCH_PROFILE_S") ?? "4");
let profileLines: string[] = [];
const FANOUT_DELAY_MS = 20;
/** Config that turns the gateway's backend list cache off (`catalog.cacheTtlSeconds: 0`). */
const NO_LIST_CACHE = { catalog: { cacheTtlSeconds: 0 } };
/** Section 7: backends, tools per backend, restarts for the cold-isolate rows. */
const CACHE_BACKENDS = 5;
const CACHE_TOOLS = 40;
const CACHE_RESTARTS = Number(Deno.env.get("BENCH_CACHE_RESTARTS") ?? "5");

const rows: Row[] = [];
const targets: Target[] = [];
const notes: string[] = [];
const raw: Record<string, unknown> = {};
const started = performance.now();

function log(msg: string): void {
  const t = ((performance.now() - started) / 1000).toFixed(0).padStart(3);
  console.error(`[bench ${t}s] ${msg}`);
}

function unavailable(section: string, config: string, why: string): void {
  const text = `not available yet: ${why}`.replaceAll("|", "/").replaceAll("\n", " ").slice(0, 240);
  log(`${section} / ${config}: ${text}`);
  rows.push({ section, config, unavailable: text });
}

const ratio = (a: number, b: number) => (b > 0 ? a / b : NaN);
const x = (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)}×` : "–");

function errorNote(r: { errors: number; non2xx: number; requests: number }): string {
  return r.errors || r.non2xx ? ` ⚠ ${r.errors} socket errors, ${r.non2xx} HTTP ≥ 400` : "";
}

function loadSpec(url: string, req: McpRequest, connections = CONNECTIONS): LoadSpec {
  return { url, headers: req.headers, body: req.body, connections, durationS: ROUND_S };
}

/** Why a 501/404 means "not there yet" rather than a failure. */
function reasonOf(problem: string, route: string): string {
  if (/HTTP 501/.test(problem)) return `${route} answers 501 (not implemented yet)`;
  return `${route}: ${problem}`;
}

/** Latencies (ms, sorted) of `n` sequential requests. */
async function sequential(url: string, req: McpRequest, n: number): Promise<number[]> {
  const t: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const res = await fetch(url, { method: "POST", headers: req.headers, body: req.body });
    const msg = await readRpc(res);
    t.push(performance.now() - t0);
    if (!msg || !("result" in msg)) throw new Error(`no result: ${JSON.stringify(msg)}`);
  }
  return t.sort((p, q) => p - q);
}

/**
 * (7) `tools/list` on `/mcp` over 5 backends of 20 ms with 40 tools each: the steady state with
 * the list cache off (every list fans out) and warm (per isolate), and the first list of a fresh
 * process (a cold isolate) with the cache in KV and without. A fresh process first answers one
 * modern `ping` (it loads the /mcp module and checks the token, and touches no backend), so the
 * cold rows measure the list alone.
 */
async function listCacheSection(slowUrl: string): Promise<void> {
  const S7 = "7 tools/list cache";
  const backends = Array.from({ length: CACHE_BACKENDS }, (_, i) => ({
    name: `c${i + 1}`,
    url: `${slowUrl}/c${i + 1}/t${CACHE_TOOLS}`,
  }));
  const what = `${CACHE_BACKENDS} × ${FANOUT_DELAY_MS} ms backends, ${
    CACHE_BACKENDS * CACHE_TOOLS
  } tools`;
  const started: BenchGateway[] = [];
  try {
    const cached = await launchGateway("listcache", REPO_ROOT, backends);
    started.push(cached);
    gateways.push(cached);
    const uncached = await launchGateway(
      "nolistcache",
      REPO_ROOT,
      backends,
      undefined,
      NO_LIST_CACHE,
    );
    started.push(uncached);
    gateways.push(uncached);
    const request = async (gw: BenchGateway) => {
      const tk = (await mint(gw, 1, { resource: `${gw.publicUrl}/mcp` })).accessTokens[0]!;
      return {
        url: `${gw.publicUrl}/mcp`,
        list: modernRequest("tools/list", {}, `Bearer ${tk}`),
        ping: modernRequest("ping", {}, `Bearer ${tk}`),
      };
    };
    const warm = await request(cached);
    const off = await request(uncached);
    const steady: Record<string, number[]> = { off: [], warm: [] };
    const p99s: Record<string, number[]> = { off: [], warm: [] };
    log(`${S7}: steady state, ${what} (${ROUNDS} rounds × 15 lists, cache off and warm)`);
    await sequential(off.url, off.list, 3);
    await sequential(warm.url, warm.list, 3);
    for (let r = 0; r < ROUNDS; r++) {
      for (const [k, x] of [["off", off], ["warm", warm]] as const) {
        const t = await sequential(x.url, x.list, 15);
        steady[k]!.push(median(t));
        p99s[k]!.push(t[t.length - 1]!);
      }
    }
    const cold: Record<string, number[]> = { kv: [], none: [] };
    log(`${S7}: first list of a fresh process × ${CACHE_RESTARTS} (KV warm / no cache)`);
    for (let i = 0; i < CACHE_RESTARTS; i++) {
      for (const [k, gw, x] of [["kv", cached, warm], ["none", uncached, off]] as const) {
        await gw.restart();
        const res = await fetch(x.url, {
          method: "POST",
          headers: x.ping.headers,
          body: x.ping.body,
        });
        await res.body?.cancel();
        cold[k]!.push((await sequential(x.url, x.list, 1))[0]!);
      }
    }
    const sorted = (xs: number[]) => [...xs].sort((p, q) => p - q);
    const rowsOf: [string, number, number, string][] = [
      ["cache off: every list fans out (connected)", median(steady.off!), median(p99s.off!), ""],
      ["warm: per-isolate cache", median(steady.warm!), median(p99s.warm!), ""],
      [
        "cold isolate, list in KV (fresh process)",
        median(cold.kv!),
        sorted(cold.kv!).at(-1)!,
        `${CACHE_RESTARTS} restarts; no backend is contacted`,
      ],
      [
        "cold isolate, cache off (fresh process)",
        median(cold.none!),
        sorted(cold.none!).at(-1)!,
        `${CACHE_RESTARTS} restarts; connects ${CACHE_BACKENDS} backends, then lists`,
      ],
    ];
    for (const [config, p50, p99, note] of rowsOf) {
      rows.push({ section: S7, config: `${config}, ${what}`, p50Ms: p50, p99Ms: p99, note });
    }
    raw.listCache = { steadyP50Ms: steady, steadyMaxMs: p99s, coldFirstListMs: cold };
    notes.push(
      "Section 7: p99 of the steady rows is the median over rounds of each round's slowest of " +
        "15 lists; the cold rows show the median and the slowest first list after a restart. " +
        "Both cold rows also pay the first run of the list code in a fresh process; their " +
        "difference is what the list in KV saves (connecting and listing every backend).",
    );
  } catch (e) {
    unavailable(S7, what, reasonOf((e as Error).message, "/mcp tools/list"));
  } finally {
    for (const gw of started) {
      await gw.stop();
      gateways.splice(gateways.indexOf(gw), 1);
    }
  }
}

// ---------------------------------------------------------------------------------------------

const tool = await findLoadTool(log);
const machine = machineInfo(tool.note);
log(`load generator: ${tool.note}; ${machine.cpu}, ${machine.cores} cores`);

const procs: Proc[] = [];
const gateways: BenchGateway[] = [];
let mainGw: BenchGateway | null = null;
let bareResult: RoundsResult | null = null;
let peakRss: number | null = null;

try {
  const fast = await startBenchServer("backend", ["backend", "0"]);
  procs.push(fast);
  const slow = QUICK
    ? null
    : await startBenchServer("backend-20ms", ["backend", String(FANOUT_DELAY_MS)]);
  if (slow) procs.push(slow);
  const b25 = await startBenchServer("backend-2025", ["backend2025"]);
  procs.push(b25);
  const b25s = await startBenchServer("backend-2025-sessions", ["backend2025", "sessions"]);
  procs.push(b25s);
  /** The three backends of section 2, each with the floor in front of it. */
  const kinds = [
    { name: "alpha", label: "2026-07-28 backend", url: `${fast.url}/mcp` },
    { name: "s25", label: "2025-era backend, sessionless", url: `${b25.url}/mcp` },
    { name: "ss25", label: "2025-era backend with sessions", url: `${b25s.url}/mcp` },
  ];
  const floors: Proc[] = [];
  for (const k of kinds) floors.push(await startBenchServer(`floor-${k.name}`, ["floor", k.url]));
  procs.push(...floors);
  const floor = floors[0]!;
  const bare = await startBenchServer("bare", ["bare", `${fast.url}/mcp`]);
  procs.push(bare);
  const call = modernRequest("tools/call", { name: "echo", arguments: { text: "hi" } });

  // (1) pass-through ----------------------------------------------------------------------
  // Direct, floor, bare and gateway rounds are interleaved so that the machine's noise hits all.
  const S1 = "1 pass-through tools/call";
  let token: string | null = null;
  try {
    mainGw = await launchGateway(
      "main",
      REPO_ROOT,
      kinds.map((k) => ({ name: k.name, url: k.url })),
    );
    gateways.push(mainGw);
    notes.push(
      mainGw.rateLimitsRaised
        ? "The bench config sets every `rateLimits.*` to 10⁹ so that limits do not cap the " +
          "throughput figures; whatever the limiter costs per request is still paid."
        : "This config schema has no `rateLimits`; the gateway ran with its built-in limits.",
    );
    const minted = await mint(mainGw, 1, { resource: `${mainGw.publicUrl}/mcp` });
    token = minted.accessTokens[0]!;
    raw.gatewayRssAfterStartMb = mainGw.proc.rssMb();
  } catch (e) {
    unavailable(S1, "gateway /mcp/{backend}", `gateway did not start: ${(e as Error).message}`);
  }
  const FLOOR = "floor: the issue-14 minimal proxy (no auth)";
  const s1: { config: string; spec: LoadSpec }[] = [
    ...(QUICK ? [] : [{ config: "backend direct", spec: loadSpec(`${fast.url}/mcp`, call) }]),
    { config: FLOOR, spec: loadSpec(`${floor.url}/mcp/alpha`, call) },
    {
      config: "reference: header-copying proxy with abort signal (no auth)",
      spec: loadSpec(`${bare.url}/mcp/alpha`, call),
    },
  ];
  if (mainGw && token) {
    const gwCall = modernRequest(
      "tools/call",
      { name: "echo", arguments: { text: "hi" } },
      `Bearer ${token}`,
    );
    const url = `${mainGw.publicUrl}/mcp/alpha`;
    const problem = await probe(url, gwCall);
    if (problem) {
      unavailable(S1, "gateway /mcp/{backend} + token", reasonOf(problem, "/mcp/alpha"));
    } else s1.push({ config: "gateway /mcp/{backend} + token", spec: loadSpec(url, gwCall) });
    // A 2025-era client's call: its method is only in the body, which the audit trail reads.
    const legacyConfig = "gateway /mcp/{backend} + token, 2025-era client (one session)";
    try {
      const session = await openLegacySession(url, `Bearer ${token}`);
      const legacy = legacyRequest(
        "tools/call",
        { name: "echo", arguments: { text: "hi" } },
        { ...session, authorization: `Bearer ${token}` },
      );
      const p = await probe(url, legacy);
      if (p) throw new Error(p);
      s1.push({ config: legacyConfig, spec: loadSpec(url, legacy) });
    } catch (e) {
      unavailable(S1, legacyConfig, reasonOf((e as Error).message, "/mcp/alpha"));
    }
  }
  log(`${S1}: ${s1.map((c) => c.config).join(", ")} interleaved (${ROUNDS} × ${ROUND_S} s each)`);
  // CPU per request of the floor and the gateway: less sensitive to a noisy machine than req/s
  // (each process only works during its own rounds; warm-up requests are not counted).
  const cpuPids: [string, number | undefined][] = [
    ["floor", floor.pid],
    ["gateway", mainGw?.proc.pid],
  ];
  if (WARMUP_S > 0) {
    for (const c of s1) await runLoad(tool, { ...c.spec, durationS: WARMUP_S });
  }
  const cpuBefore = cpuPids.map(([, pid]) => (pid ? procCpuMs(pid) : null));
  const r1 = await runInterleaved(tool, s1.map((c) => c.spec), { warmupS: 0, rounds: ROUNDS });
  const cpuAfter = cpuPids.map(([, pid]) => (pid ? procCpuMs(pid) : null));
  const s1Rows = rows.length;
  for (const [i, c] of s1.entries()) {
    const r = r1[i]!;
    rows.push({
      section: S1,
      config: c.config,
      rps: r.rps,
      p50Ms: r.p50Ms,
      p99Ms: r.p99Ms,
      note: errorNote(r),
    });
    raw[`${S1}: ${c.config}`] = r;
  }
  bareResult = r1[s1.findIndex((c) => c.config === FLOOR)]!;
  const gwIndex = s1.findIndex((c) => c.config === "gateway /mcp/{backend} + token");
  for (const [i, r] of r1.entries()) {
    if (s1[i]!.config === FLOOR) continue;
    const perRound = r.rounds.map((q, k) => ratio(q.rps, bareResult!.rounds[k]!.rps));
    const p99 = r.rounds.map((q, k) => ratio(q.p99Ms, bareResult!.rounds[k]!.p99Ms));
    rows[s1Rows + i]!.note += ` ${x(median(perRound))} floor req/s, p99 ${x(median(p99))} floor`;
  }
  {
    // Both gateway rows ran on the gateway process: its CPU is split over their requests.
    const served = (pred: (c: string) => boolean) =>
      s1.reduce(
        (n, c, i) => n + (pred(c.config) ? r1[i]!.rounds.reduce((a, q) => a + q.requests, 0) : 0),
        0,
      );
    const perReq = cpuPids.map(([name], i) => {
      const used = cpuBefore[i] != null && cpuAfter[i] != null
        ? cpuAfter[i]! - cpuBefore[i]!
        : null;
      const n = name === "floor"
        ? served((c) => c === FLOOR)
        : served((c) => c.startsWith("gateway /mcp/{backend}"));
      return used !== null && n > 0 ? (used * 1000) / n : null;
    });
    raw.cpuUsPerRequest = Object.fromEntries(cpuPids.map(([name], i) => [name, perReq[i]]));
    if (perReq[0] != null && perReq[1] != null) {
      rows.push({
        section: S1,
        config: "CPU per request (process time / requests served in the rounds)",
        note: `floor ${perReq[0].toFixed(0)} µs, gateway ${perReq[1].toFixed(0)} µs (both ` +
          `gateway rows): the gateway needs ${x(perReq[0] / perReq[1])} floor req/s per CPU`,
      });
    }
  }
  if (gwIndex >= 0 && mainGw) {
    const g = r1[gwIndex]!;
    // Paired rounds: the ratio of each round, then their median.
    const perRound = g.rounds.map((q, k) => ratio(q.rps, bareResult!.rounds[k]!.rps));
    const rr = median(perRound);
    const pr = median(g.rounds.map((q, k) => ratio(q.p99Ms, bareResult!.rounds[k]!.p99Ms)));
    targets.push({
      name: "pass-through /mcp/{backend} req/s",
      goal: "≥ 0.85 × floor (never < 0.7×)",
      measured: `${x(rr)} (median of per-round ratios ${
        perRound.map((v) => v.toFixed(2)).join(", ")
      })${rr < 0.7 ? "; below 0.7×" : ""}`,
      met: rr >= 0.85,
    }, {
      name: "pass-through /mcp/{backend} p99",
      goal: "≤ 1.5 × floor",
      measured: `${x(pr)} (median p99 ${g.p99Ms.toFixed(2)} vs ${bareResult.p99Ms.toFixed(2)} ms)`,
      met: pr <= 1.5,
    });
  } else {
    targets.push({
      name: "pass-through /mcp/{backend} req/s",
      goal: "≥ 0.85 × floor",
      measured: "–",
      met: null,
    });
  }

  // (2) aggregated /mcp -----------------------------------------------------------------------
  const S2 = "2 aggregated /mcp tools/call";
  // For each backend kind: the floor in front of it, a modern and a legacy client's tools/call
  // through /mcp. All rounds interleaved; each ratio is the median of per-round ratios against
  // the floor of the same backend in the same round.
  if (mainGw && token) {
    const url = `${mainGw.publicUrl}/mcp`;
    const s2: { config: string; kind: number; floor: boolean; spec: LoadSpec }[] = [];
    for (const [i, k] of kinds.entries()) {
      const args = { name: `${k.name}__echo`, arguments: { text: "hi" } };
      s2.push({
        config: `floor in front of the ${k.label}`,
        kind: i,
        floor: true,
        spec: loadSpec(floors[i]!.url, modernRequest("tools/call", { name: "echo" })),
      });
      const modern = modernRequest("tools/call", args, `Bearer ${token}`);
      const problem = await probe(url, modern);
      const mConfig = `modern client (2026-07-28) → ${k.label}`;
      if (problem) unavailable(S2, mConfig, reasonOf(problem, "/mcp"));
      else s2.push({ config: mConfig, kind: i, floor: false, spec: loadSpec(url, modern) });
      const lConfig = `legacy client (2025-11-25, one session) → ${k.label}`;
      try {
        const session = await openLegacySession(url, `Bearer ${token}`);
        const legacy = legacyRequest("tools/call", args, {
          ...session,
          authorization: `Bearer ${token}`,
        });
        const p2 = await probe(url, legacy);
        if (p2) throw new Error(p2);
        s2.push({ config: lConfig, kind: i, floor: false, spec: loadSpec(url, legacy) });
      } catch (e) {
        unavailable(S2, lConfig, reasonOf((e as Error).message, "/mcp"));
      }
    }
    log(`${S2}: ${s2.length} configurations interleaved (${ROUNDS} × ${ROUND_S} s each)`);
    const r2 = await runInterleaved(tool, s2.map((c) => c.spec), {
      warmupS: WARMUP_S,
      rounds: ROUNDS,
    });
    const perKind = kinds.map(() => [] as string[]);
    const metKind = kinds.map(() => true as boolean | null);
    for (const [j, c] of s2.entries()) {
      const r = r2[j]!;
      const f = r2[s2.findIndex((d) => d.floor && d.kind === c.kind)]!;
      const ratios = r.rounds.map((q, n) => ratio(q.rps, f.rounds[n]!.rps));
      rows.push({
        section: S2,
        config: c.config,
        rps: r.rps,
        p50Ms: r.p50Ms,
        p99Ms: r.p99Ms,
        note: errorNote(r) + (c.floor ? "" : ` ${x(median(ratios))} floor req/s`),
      });
      raw[`${S2}: ${c.config}`] = r;
      if (!c.floor) {
        perKind[c.kind]!.push(`${c.config.split(" ")[0]} ${x(median(ratios))}`);
        if (median(ratios) < 0.7) metKind[c.kind] = false;
      }
    }
    for (const [i, k] of kinds.entries()) {
      targets.push({
        name: `/mcp tools/call req/s, ${k.label}`,
        goal: "≥ 0.7 × floor in front of it, modern and legacy clients",
        measured: perKind[i]!.length ? perKind[i]!.join(", ") : "–",
        met: perKind[i]!.length === 2 ? metKind[i]! : null,
      });
    }
  } else unavailable(S2, "modern and legacy clients", "no gateway or token (see (1))");

  // (5) memory: 60 s of mixed load on /mcp and /mcp/{backend}, then a second period ----------
  const S5 = "5 memory";
  peakRss = mainGw?.proc.peakRssMb() ?? null;
  if (peakRss !== null) {
    rows.push({
      section: S5,
      config: "main gateway peak RSS (VmHWM) after (1) and (2)",
      note: `${peakRss.toFixed(1)} MB (after start: ${raw.gatewayRssAfterStartMb ?? "?"} MB; ` +
        `floor proxy under the load of (1): ${floor.peakRssMb() ?? "?"} MB)`,
    });
  }
  let memGw: BenchGateway | null = null;
  try {
    memGw = await launchGateway("mem", REPO_ROOT, kinds.map((k) => ({ name: k.name, url: k.url })));
    gateways.push(memGw);
    const tk = (await mint(memGw, 1, { resource: `${memGw.publicUrl}/mcp` })).accessTokens[0]!;
    const passReq = modernRequest("tools/call", { name: "echo", arguments: {} }, `Bearer ${tk}`);
    const aggReq = modernRequest("tools/call", { name: "alpha__echo" }, `Bearer ${tk}`);
    const passUrl = `${memGw.publicUrl}/mcp/alpha`;
    const aggUrl = `${memGw.publicUrl}/mcp`;
    for (const [u, q] of [[passUrl, passReq], [aggUrl, aggReq]] as const) {
      const problem = await probe(u, q);
      if (problem) throw new Error(problem);
    }
    const half = Math.max(1, Math.floor(CONNECTIONS / 2));
    const mixed = (durationS: number) =>
      Promise.all([
        runLoad(tool, { ...loadSpec(passUrl, passReq, half), durationS }),
        runLoad(tool, { ...loadSpec(aggUrl, aggReq, half), durationS }),
      ]);
    log(`${S5}: ${RSS_S} s of mixed load (/mcp/{backend} + /mcp), then ${RSS_S} s more`);
    const first = await mixed(RSS_S);
    const hwm1 = memGw.proc.peakRssMb();
    const rss1 = memGw.proc.rssMb();
    const second = await mixed(RSS_S);
    const hwm2 = memGw.proc.peakRssMb();
    const rss2 = memGw.proc.rssMb();
    raw.memory = { first, second, hwm1, rss1, hwm2, rss2, seconds: RSS_S };
    const reqs = (rs: LoadResult[]) => rs.map((r) => r.rps.toFixed(0)).join(" + ");
    rows.push({
      section: S5,
      config: `fresh gateway, peak RSS after ${RSS_S} s of mixed load`,
      note: `${hwm1?.toFixed(1)} MB (RSS now ${rss1?.toFixed(1)} MB; ${
        reqs(first)
      } req/s on /mcp/{backend} + /mcp)${errorNote(first[0]!)}${errorNote(first[1]!)}`,
    }, {
      section: S5,
      config: `same gateway, after ${RSS_S} s more`,
      note: `peak ${hwm2?.toFixed(1)} MB, RSS now ${rss2?.toFixed(1)} MB (${reqs(second)} req/s)`,
    });
    if (hwm1 !== null && hwm2 !== null && rss1 !== null && rss2 !== null) {
      const growth = hwm2 - hwm1;
      targets.push({
        name: `peak RSS after ${RSS_S} s of mixed load`,
        goal: "≤ 150 MB",
        measured: `${hwm1.toFixed(1)} MB`,
        met: hwm1 <= 150,
      }, {
        name: `RSS flat over the next ${RSS_S} s`,
        goal: "no growth (peak + ≤ 5 %)",
        measured: `peak ${hwm1.toFixed(1)} → ${hwm2.toFixed(1)} MB (${growth >= 0 ? "+" : ""}${
          growth.toFixed(1)
        } MB), RSS ${rss1.toFixed(1)} → ${rss2.toFixed(1)} MB`,
        met: hwm2 <= hwm1 * 1.05,
      });
    }
  } catch (e) {
    unavailable(S5, "mixed load", (e as Error).message);
    targets.push({ name: "peak RSS under mixed load", goal: "≤ 150 MB", measured: "–", met: null });
  }

  // (8) cold start: process start → first 200 -------------------------------------------------
  const S8 = "8 cold start";
  if (memGw) {
    try {
      const tk = (await mint(memGw, 1, { resource: `${memGw.publicUrl}/mcp` })).accessTokens[0]!;
      const cases = [
        {
          what: "/mcp/{backend}",
          url: `${memGw.publicUrl}/mcp/alpha`,
          req: modernRequest("tools/call", { name: "echo", arguments: {} }, `Bearer ${tk}`),
          goal: 300,
        },
        {
          what: "/mcp",
          url: `${memGw.publicUrl}/mcp`,
          req: modernRequest("tools/call", { name: "alpha__echo" }, `Bearer ${tk}`),
          goal: 1000,
        },
      ];
      const times = cases.map(() => [] as number[]);
      log(`${S8}: ${COLD_STARTS} fresh processes per route`);
      for (let n = 0; n < COLD_STARTS; n++) {
        for (const [i, c] of cases.entries()) {
          times[i]!.push(await coldStartMs(memGw, REPO_ROOT, c.url, c.req));
        }
      }
      raw.coldStartMs = Object.fromEntries(cases.map((c, i) => [c.what, times[i]]));
      for (const [i, c] of cases.entries()) {
        const t = median(times[i]!);
        rows.push({
          section: S8,
          config: `process start → first 200 on ${c.what} (tools/call)`,
          p50Ms: t,
          note: `${COLD_STARTS} fresh processes: ${
            times[i]!.map((v) => v.toFixed(0)).join(", ")
          } ms`,
        });
        targets.push({
          name: `cold start → first 200 on ${c.what}`,
          goal: `≤ ${c.goal} ms`,
          measured: `${t.toFixed(0)} ms (median of ${COLD_STARTS})`,
          met: t <= c.goal,
        });
      }
    } catch (e) {
      unavailable(S8, "cold start", (e as Error).message);
    }
  } else unavailable(S8, "cold start", "no gateway (see (5))");
  if (memGw) {
    await memGw.stop();
    gateways.splice(gateways.indexOf(memGw), 1);
  }

  // (9) KV operations on the hot path ---------------------------------------------------------
  const S9 = "9 KV operations per warm call";
  try {
    const counted = await startCountedGateway([{ name: "alpha", url: `${fast.url}/mcp` }]);
    try {
      const bearer = `Bearer ${counted.token}`;
      const cases = [
        {
          what: "/mcp/{backend} tools/call (modern)",
          url: `${counted.url}/mcp/alpha`,
          req: modernRequest("tools/call", { name: "echo", arguments: {} }, bearer),
        },
        {
          what: "/mcp tools/call (modern)",
          url: `${counted.url}/mcp`,
          req: modernRequest("tools/call", { name: "alpha__echo", arguments: {} }, bearer),
        },
      ];
      const found: HotPathKv[] = [];
      for (const c of cases) {
        const r = await hotPathKv(counted, c.url, c.req, KV_CALLS);
        found.push(r);
        rows.push({
          section: S9,
          config: c.what,
          note: `${r.calls} warm calls: ${r.writes} writes, ${r.reads} reads in all; at most ` +
            `${r.maxWritesPerCall} writes and ${r.maxReadsPerCall} reads in one call`,
        });
      }
      raw.hotPathKv = Object.fromEntries(cases.map((c, i) => [c.what, found[i]]));
      targets.push({
        name: "KV operations on the hot path (warm isolate)",
        goal: "0 writes, ≤ 1 read per call",
        measured: cases.map((c, i) =>
          `${c.what.split(" ")[0]}: ${found[i]!.maxWritesPerCall} writes, ≤ ${
            found[i]!.maxReadsPerCall
          } read`
        ).join("; "),
        met: found.every((r) => r.writes === 0 && r.maxReadsPerCall <= 1),
      });
    } finally {
      await counted.close();
    }
  } catch (e) {
    unavailable(S9, "counted KV", (e as Error).message);
  }

  // The sections below run in the full bench only.
  if (!QUICK) {
    // (6) audit trail overhead ---------------------------------------------------------------------
    // In process: the hooks' cost per routed call and a batch flush. Over HTTP: the same gateway
    // with `audit.enabled: false`, interleaved with the main one (audit on) on /mcp tools/call.
    const S6 = "6 audit trail overhead";
    try {
      const cost = await measureAuditCost();
      rows.push({
        section: S6,
        config: "in process: audit hooks of one routed call",
        note: `${cost.usPerCall.toFixed(2)} µs on the request path (operation, backend call, ` +
          "record appended to the isolate's buffer)",
      });
      rows.push({
        section: S6,
        config: "in process: one flush of 100 records",
        note: `${
          cost.msPerBatch.toFixed(2)
        } ms, off the request path (one atomic commit to a KV file)`,
      });
      raw[`${S6}: in process`] = cost;
    } catch (e) {
      unavailable(S6, "in process", (e as Error).message);
    }
    if (mainGw && token) {
      let quiet: BenchGateway | null = null;
      try {
        quiet = await launchGateway(
          "noaudit",
          REPO_ROOT,
          [{ name: "alpha", url: `${fast.url}/mcp` }],
          undefined,
          { audit: { enabled: false } },
        );
        gateways.push(quiet);
        const quietToken = (await mint(quiet, 1, { resource: `${quiet.publicUrl}/mcp` }))
          .accessTokens[0]!;
        const args = { name: "alpha__echo", arguments: { text: "hi" } };
        const specs = [
          { config: "/mcp tools/call, audit on", gw: mainGw, bearer: token },
          { config: "/mcp tools/call, audit.enabled false", gw: quiet, bearer: quietToken },
        ].map((c) => {
          const req = modernRequest("tools/call", args, `Bearer ${c.bearer}`);
          return { config: c.config, url: `${c.gw.publicUrl}/mcp`, req };
        });
        for (const c of specs) {
          const problem = await probe(c.url, c.req);
          if (problem) throw new Error(reasonOf(problem, "/mcp"));
        }
        log(`${S6}: audit on and off interleaved (${ROUNDS} × ${ROUND_S} s each)`);
        const [on, off] = await runInterleaved(tool, specs.map((c) => loadSpec(c.url, c.req)), {
          warmupS: WARMUP_S,
          rounds: ROUNDS,
        });
        const ratios = on!.rounds.map((q, k) => ratio(q.rps, off!.rounds[k]!.rps));
        for (const [i, r] of [on!, off!].entries()) {
          rows.push({
            section: S6,
            config: specs[i]!.config,
            rps: r.rps,
            p50Ms: r.p50Ms,
            p99Ms: r.p99Ms,
            note: errorNote(r) + (i === 0 ? ` ${x(median(ratios))} of audit off req/s` : ""),
          });
          raw[`${S6}: ${specs[i]!.config}`] = r;
        }
      } catch (e) {
        unavailable(S6, "audit on vs off over HTTP", (e as Error).message);
      } finally {
        if (quiet) {
          await quiet.stop();
          gateways.splice(gateways.indexOf(quiet), 1);
        }
      }
    }

    // (4a) auth latency with 1k and 100k live tokens ------------------------------------------
    // Two gateways side by side, one with 1k and one with 100k live tokens; rounds alternate
    // between them so that the machine's noise falls on both alike.
    const S4 = "4 scale: auth";
    const big = `${SCALE_TOKENS / 1000}k`;
    if (mainGw && token) {
      let largeGw: BenchGateway | null = null;
      try {
        largeGw = await launchGateway("scale", REPO_ROOT, [{
          name: "alpha",
          url: `${fast.url}/mcp`,
        }]);
        gateways.push(largeGw);
        const t0 = performance.now();
        const small = await mint(mainGw, 999, { resource: `${mainGw.publicUrl}/mcp` });
        log(`${S4}: minting ${SCALE_TOKENS} token pairs into a second gateway's KV …`);
        const large = await mint(largeGw, SCALE_TOKENS, {
          resource: `${largeGw.publicUrl}/mcp`,
          keep: 1000,
        });
        notes.push(
          `Minting ${SCALE_TOKENS} token pairs (mintTokens + putGrant, 180 pairs per atomic ` +
            `commit, 4 commits in flight) took ${((performance.now() - t0) / 1000).toFixed(1)} s.`,
        );
        const phases = [
          { name: "1k", gw: mainGw, tokens: [token, ...small.accessTokens] },
          { name: big, gw: largeGw, tokens: large.accessTokens },
        ];
        const acc = phases.map(() => ({
          hot: [] as LoadResult[],
          spread: [] as LoadResult[],
          cold: [] as AuthLatency[],
          warm: [] as AuthLatency[],
        }));
        const specs = phases.map((ph) => {
          const url = `${ph.gw.publicUrl}/mcp/alpha`;
          const auths = ph.tokens.map((t) => `Bearer ${t}`);
          const hot = modernRequest("tools/call", { name: "echo", arguments: {} }, auths[0]);
          const spread = modernRequest("tools/call", { name: "echo", arguments: {} });
          return {
            url,
            hot: loadSpec(url, hot, 1),
            spread: { ...loadSpec(url, spread, 1), authorizations: auths },
          };
        });
        for (const [i, ph] of phases.entries()) {
          const problem = await probe(specs[i]!.url, {
            headers: specs[i]!.hot.headers,
            body: specs[i]!.hot.body ?? "",
          });
          if (problem) throw new Error(`${ph.name}: ${problem}`);
          await runLoad(tool, { ...specs[i]!.hot, durationS: WARMUP_S });
          await authLatency(ph.gw.deps, specs[i]!.url, "alpha", ph.tokens, "cold", 1);
        }
        const dur = Math.max(1, ROUND_S - 1);
        log(
          `${S4}: ${AUTH_ROUNDS} alternating rounds × (2 × ${dur} s HTTP at c=1 + in-process) per KV size`,
        );
        for (let r = 0; r < AUTH_ROUNDS; r++) {
          for (const [i, ph] of phases.entries()) {
            const sp = specs[i]!;
            acc[i]!.hot.push(await runLoad(tool, { ...sp.hot, durationS: dur }));
            acc[i]!.spread.push(await runLoad(tool, { ...sp.spread, durationS: dur }));
            acc[i]!.cold.push(await authLatency(ph.gw.deps, sp.url, "alpha", ph.tokens, "cold", 1));
            acc[i]!.warm.push(await authLatency(ph.gw.deps, sp.url, "alpha", ph.tokens, "warm", 1));
          }
        }
        const summary: Record<string, Record<string, number>> = {};
        for (const [i, ph] of phases.entries()) {
          const a = acc[i]!;
          const med = (xs: LoadResult[], k: "rps" | "p50Ms" | "p99Ms") =>
            median(xs.map((v) => v[k]));
          const live = await countAccessTokens(ph.gw.kv, SCALE_TOKENS * 2);
          rows.push({
            section: S4,
            config: `${ph.name} live tokens: one token, HTTP, c=1`,
            rps: med(a.hot, "rps"),
            p50Ms: med(a.hot, "p50Ms"),
            p99Ms: med(a.hot, "p99Ms"),
            note: `${live} live access tokens`,
          }, {
            section: S4,
            config: `${ph.name}: 1000 distinct tokens cycled, HTTP, c=1`,
            rps: med(a.spread, "rps"),
            p50Ms: med(a.spread, "p50Ms"),
            p99Ms: med(a.spread, "p99Ms"),
          });
          const cold = median(a.cold.map((c) => c.p50Us));
          const warm = median(a.warm.map((c) => c.p50Us));
          rows.push({
            section: S4,
            config: `${ph.name}: authenticate() in-process, uncached`,
            p50Ms: cold / 1000,
            p99Ms: median(a.cold.map((c) => c.p99Us)) / 1000,
            note: `SHA-256 + KV get: p50 ${cold.toFixed(0)} µs; cached: p50 ${warm.toFixed(1)} µs`,
          });
          summary[ph.name] = {
            liveTokens: live,
            httpOneTokenP50Ms: med(a.hot, "p50Ms"),
            httpDistinctP50Ms: med(a.spread, "p50Ms"),
            inProcessUncachedP50Us: cold,
            inProcessCachedP50Us: warm,
          };
        }
        raw.authScale = { summary, rounds: acc };
        const [A, B] = [summary["1k"]!, summary[big]!];
        const rHot = ratio(B.httpOneTokenP50Ms!, A.httpOneTokenP50Ms!);
        const rHttp = ratio(B.httpDistinctP50Ms!, A.httpDistinctP50Ms!);
        const rCold = ratio(B.inProcessUncachedP50Us!, A.inProcessUncachedP50Us!);
        targets.push({
          name: `auth latency 1k → ${big} tokens`,
          goal: "flat within 20 %",
          measured: `p50 ratio of the request latency: one token ${x(rHot)}, 1000 tokens ` +
            `cycled ${x(rHttp)} (in-process uncached lookup alone: ${x(rCold)}, for information)`,
          met: Math.max(rHot, rHttp) <= 1.2,
        });
      } catch (e) {
        unavailable(S4, `auth latency 1k / ${big}`, (e as Error).message);
        targets.push({ name: "auth latency flat", goal: "within 20 %", measured: "–", met: null });
      } finally {
        if (largeGw) {
          raw.scaleGatewayPeakRssMb = largeGw.proc.peakRssMb();
          await largeGw.stop();
          gateways.splice(gateways.indexOf(largeGw), 1);
        }
      }
    } else {
      unavailable(S4, "auth latency 1k / 100k", "no gateway or token");
      targets.push({ name: "auth latency flat", goal: "within 20 %", measured: "–", met: null });
    }

    // (3) authorization throughput --------------------------------------------------------------
    const S3 = "3 authorization";
    if (mainGw) {
      const base = mainGw.publicUrl;
      const password = "bench owner password 1234";
      const opsRow = (config: string, r: OpsResult) => {
        rows.push({
          section: S3,
          config,
          rps: r.opsPerS,
          p50Ms: r.p50Ms,
          p99Ms: r.p99Ms,
          note: r.failures ? `⚠ ${r.failures} failed: ${r.firstError}` : "",
        });
        raw[`${S3}: ${config}`] = r;
      };
      const conc = 4;
      const dur = Math.max(1, ROUND_S - 1);
      let clientIds: string[] = [];
      try {
        clientIds = await Promise.all(Array.from({ length: conc }, () => register(base)));
        log(`${S3}: registrations (${ROUNDS} × ${dur} s, ${conc} workers)`);
        opsRow(
          "registrations/s (POST /register)",
          await closedLoopRounds(ROUNDS, dur, conc, async () => {
            await register(base);
          }),
        );
      } catch (e) {
        unavailable(S3, "registrations/s", reasonOf((e as Error).message, "/register"));
      }
      let refreshTokens: string[] = [];
      let refreshClients: string[] = [];
      if (clientIds.length) {
        try {
          const first = await Promise.all(clientIds.map((c) => codeFlow(base, c, password)));
          refreshTokens = first.map((t) => t.refresh_token);
          refreshClients = clientIds;
          log(`${S3}: code flows (${ROUNDS} × ${dur} s, ${conc} workers)`);
          opsRow(
            "code flows/s (consent page + approval + token)",
            await closedLoopRounds(ROUNDS, dur, conc, async (w) => {
              await codeFlow(base, clientIds[w]!, password);
            }),
          );
        } catch (e) {
          unavailable(S3, "code flows/s", reasonOf((e as Error).message, "/authorize + /token"));
        }
      } else unavailable(S3, "code flows/s", "needs a registered client");
      if (!refreshTokens.length) {
        // Fall back to refresh tokens minted into KV for the bench's own stored client.
        const m = await mint(mainGw, conc, { resource: `${base}/mcp`, perGrant: 1 });
        refreshTokens = m.refreshTokens;
        refreshClients = refreshTokens.map(() => "bench-client");
      }
      try {
        log(`${S3}: refreshes (${ROUNDS} × ${dur} s, ${conc} workers)`);
        opsRow(
          "refreshes/s (rotation)",
          await closedLoopRounds(ROUNDS, dur, conc, async (w) => {
            refreshTokens[w] = await refresh(base, refreshClients[w]!, refreshTokens[w]!);
          }),
        );
      } catch (e) {
        unavailable(S3, "refreshes/s", reasonOf((e as Error).message, "/token"));
      }
    } else unavailable(S3, "registrations, code flows, refreshes", "the gateway did not start");

    if (mainGw) {
      const hwm = mainGw.proc.peakRssMb();
      if (hwm !== null) raw.gatewayPeakRssWholeRunMb = hwm;
      await mainGw.stop();
      gateways.splice(gateways.indexOf(mainGw), 1);
      mainGw = null;
    }

    // (4b) fan-out: aggregated tools/list over 1, 5, 20 backends of 20 ms ----------------------
    const S4b = "4 scale: fan-out tools/list";
    const fanout: Record<number, number> = {};
    const direct = modernRequest("tools/list");
    {
      const t: number[] = [];
      for (let i = 0; i < 3 + 15 * ROUNDS; i++) {
        const t0 = performance.now();
        const res = await fetch(`${slow!.url}/b1`, {
          method: "POST",
          headers: direct.headers,
          body: direct.body,
        });
        await res.arrayBuffer();
        if (i >= 3) t.push(performance.now() - t0);
      }
      t.sort((p, q) => p - q);
      rows.push({
        section: S4b,
        config: `one ${FANOUT_DELAY_MS} ms backend, direct`,
        p50Ms: median(t),
        p99Ms: t[Math.floor(t.length * 0.99)],
      });
    }
    for (const n of [1, 5, 20]) {
      const config = `${n} × ${FANOUT_DELAY_MS} ms backends via /mcp`;
      let gw: BenchGateway | null = null;
      try {
        const backends = Array.from({ length: n }, (_, i) => ({
          name: `b${i + 1}`,
          url: `${slow!.url}/b${i + 1}`,
        }));
        // The list cache off: this section measures the fan-out itself (section 7 the cache).
        gw = await launchGateway(`fanout${n}`, REPO_ROOT, backends, undefined, NO_LIST_CACHE);
        gateways.push(gw);
        const tk = (await mint(gw, 1, { resource: `${gw.publicUrl}/mcp` })).accessTokens[0]!;
        const url = `${gw.publicUrl}/mcp`;
        let req = modernRequest("tools/list", {}, `Bearer ${tk}`);
        let era = "modern";
        if (await probe(url, req)) {
          const session = await openLegacySession(url, `Bearer ${tk}`);
          req = {
            headers: {
              "Content-Type": "application/json",
              "Accept": "application/json, text/event-stream",
              "MCP-Protocol-Version": "2025-11-25",
              "Authorization": `Bearer ${tk}`,
              ...(session.id ? { "Mcp-Session-Id": session.id } : {}),
            },
            body: JSON.stringify({ jsonrpc: "2.0", id: 3, method: "tools/list", params: {} }),
          };
          era = "legacy";
          const p = await probe(url, req);
          if (p) throw new Error(p);
        }
        log(`${S4b}: ${config} (${era})`);
        const perRound: number[] = [];
        const p99s: number[] = [];
        let tools = 0;
        for (let i = 0; i < 3; i++) {
          const res = await fetch(url, { method: "POST", headers: req.headers, body: req.body });
          await res.arrayBuffer();
        }
        for (let r = 0; r < ROUNDS; r++) {
          const t: number[] = [];
          for (let i = 0; i < 15; i++) {
            const t0 = performance.now();
            const res = await fetch(url, { method: "POST", headers: req.headers, body: req.body });
            const msg = await readRpc(res);
            t.push(performance.now() - t0);
            const result = msg?.result as { tools?: unknown[] } | undefined;
            tools = result?.tools?.length ?? 0;
          }
          t.sort((p, q) => p - q);
          perRound.push(median(t));
          p99s.push(t[t.length - 1]!);
        }
        fanout[n] = median(perRound);
        rows.push({
          section: S4b,
          config,
          p50Ms: fanout[n],
          p99Ms: median(p99s),
          note: `${tools} tools listed (${era} client)` +
            (fanout[n]! < FANOUT_DELAY_MS ? "; faster than one backend: lists are cached" : ""),
        });
      } catch (e) {
        unavailable(S4b, config, reasonOf((e as Error).message, "/mcp tools/list"));
      } finally {
        if (gw) {
          await gw.stop();
          gateways.splice(gateways.indexOf(gw), 1);
        }
      }
    }
    raw.fanoutP50Ms = fanout;
    if (fanout[1] && fanout[20]) {
      const r = ratio(fanout[20], fanout[1]);
      targets.push({
        name: `fan-out 20 × ${FANOUT_DELAY_MS} ms tools/list`,
        goal: "≤ 1.3 × one backend",
        measured: `${x(r)} (${fanout[20].toFixed(1)} vs ${fanout[1].toFixed(1)} ms)`,
        met: r <= 1.3,
      });
    } else {
      targets.push({
        name: "fan-out 20 × 20 ms",
        goal: "≤ 1.3 × one backend",
        measured: "–",
        met: null,
      });
    }

    // (7) tools/list with the backend list cache warm and cold -----------------------------------
    await listCacheSection(slow!.url);

    // (6) where the gateway's time goes in the pass-through -------------------------------------
    if (PROFILE_S > 0) {
      try {
        log(`6 profile: ${PROFILE_S} s of pass-through load on a gateway with --inspect`);
        const { rps, lines } = await profilePassThrough(tool, `${fast.url}/mcp`, PROFILE_S);
        profileLines = [`pass-through load while profiling: ${rps.toFixed(0)} req/s`, ...lines];
      } catch (e) {
        profileLines = [`not available yet: ${(e as Error).message}`];
      }
    }
  }
} finally {
  for (const gw of gateways) await gw.stop().catch(() => {});
  for (const p of procs) await p.stop().catch(() => {});
}

notes.push(
  "Pass-through and aggregated loads send a 2026-07-28 (modern) `tools/call`: `_meta` envelope " +
    "plus `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`; the minimal backend answers at once. " +
    "The legacy load opens one session with `initialize` and sends every call on it.",
  "Section 1 includes the audit trail of the pass-through (lib/admin/pass_through_audit.ts): " +
    "the 2026-07-28 call's body is not read (its method and tool come from `Mcp-Method` and " +
    "`Mcp-Name`), its JSON answer is read whole to end the call at its JSON-RPC response; the " +
    "2025-era call's POST is read and parsed too (its method is only in the body). Each writes " +
    "one audit record.",
  "The gateway runs as `deno run -A main.ts` with the runtime contract's environment (PORT, " +
    "PUBLIC_URL, KV_PATH = a temp file, GATEWAY_CONFIG = a temp config); its per-request JSON " +
    "log lines go to /dev/null. Tokens are minted into its KV file from the bench process with " +
    "lib/oauth/tokens.ts (mintTokens + putGrant).",
  "Auth scale: the gateway keeps validated tokens in a per-isolate cache for at most 1 s " +
    "(lib/oauth/token_cache.ts), so a client reusing its token pays one SHA-256 and a Map lookup, " +
    "whatever the number of stored tokens. The uncached row shows the cost the cache hides: " +
    "SHA-256 + one KV point read, which stays flat because the lookup is a B-tree read by key.",
  "Authorization throughput runs closed loops of 4 workers in the bench process against the " +
    "gateway subprocess.",
);

const notMet = (prefix: string) =>
  targets.some((t) => t.name.startsWith(prefix) && t.met === false);
if (notMet("pass-through")) {
  notes.push(
    "What holds the pass-through back (profile below; issue 14 measurements on a shared 2-core " +
      "machine): the floor does one fetch and streams the answer; the gateway does the same fetch " +
      "plus, per call, the audit trail (the JSON answer read and parsed to end the call at its " +
      "JSON-RPC response, an audit record, its log line and a batched KV write: about 10 % of the " +
      "gateway's CPU for the answer, 10 % for record and flush), the bearer check (SHA-256 of the " +
      "token + cache, ~7 %), the request's log line (~5 %), the header allow-list, deadline and " +
      "client-abort bookkeeping and the route dispatch. In process, with a real backend, turning " +
      "the audit trail and the log line off moved the ratio from ~0.4× to ~0.55–0.6×; with a " +
      "fake upstream the gateway's own JS is ~30–40 µs per call against ~65 µs for a whole floor " +
      "round trip.",
  );
}
if (notMet("peak RSS") || notMet("RSS flat")) {
  notes.push(
    "Memory (issue 14 measurements): the floor proxy alone peaks near 125 MB under this load. " +
      "The gateway's live JS heap after a forced GC is ~18 MB on the pass-through and ~31 MB once " +
      "/mcp has loaded the MCP SDK, so no request state is kept; RSS is V8 heap growth under " +
      "allocation pressure (heap total 55–86 MB under /mcp load) plus native buffers. Measured " +
      "levers: `--max-old-space-size=64` holds RSS near 130 MB but halves /mcp throughput and " +
      "risks an out-of-memory crash on large bodies; `--optimize-for-size` holds ~105 MB but " +
      "drops the pass-through from ~0.40× to ~0.26× the floor; `MALLOC_ARENA_MAX=2` changes " +
      "nothing. Less allocation per /mcp call is the lever left.",
  );
}
if (notMet("/mcp tools/call")) {
  notes.push(
    "Aggregated /mcp: each call goes through the SDK server on the gateway's side and the " +
      "SDK client towards the backend (schema validation both ways, JSON re-encoding, and for " +
      "legacy clients the session check), on top of everything the pass-through pays.",
  );
}
const regRow = rows.find((r) => r.config.startsWith("registrations/s"));
if (regRow?.note?.includes("429")) {
  notes.push(
    "Registrations: with every limit raised, some registrations got 429s; `hit()` " +
      "(lib/infra/rate_limit.ts) counts exactly under contention, so a limit, not contention, " +
      "refused them: check the config's `rateLimits`.",
  );
}

const report: Report = {
  date: new Date().toISOString(),
  command: QUICK ? "deno task bench --quick" : "deno task bench",
  durationS: (performance.now() - started) / 1000,
  machine,
  rows,
  targets,
  notes,
  profile: profileLines,
  raw,
};
printReport(report);
if (QUICK) {
  log(
    `--quick: nothing written (${report.durationS.toFixed(0)} s); run the full bench for the docs`,
  );
} else {
  await writeReport(REPO_ROOT, report);
  log(`wrote docs/BENCHMARKS.md and docs/BENCHMARKS.json (${report.durationS.toFixed(0)} s)`);
}
Deno.exit(0);
