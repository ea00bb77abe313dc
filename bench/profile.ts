/**
 * Where the gateway's time goes in the pass-through: `deno run -A bench/profile.ts [seconds]`.
 * Starts the minimal backend and the gateway with `--inspect` on loopback, loads
 * `/mcp/{backend}` `tools/call` with a valid token, samples the gateway's CPU through the
 * V8 inspector (Chrome DevTools Protocol `Profiler` domain) and prints the functions and
 * modules with the most self time. Not part of `deno task bench` (it slows the gateway).
 */
import { launchGateway, mint } from "./gateway.ts";
import { findLoadTool, type LoadTool, runLoad } from "./load.ts";
import { modernRequest, probe } from "./mcp.ts";
import { freePort, startBenchServer } from "./procs.ts";

const REPO_ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** A minimal CDP client over the inspector's WebSocket. */
async function cdp(wsUrl: string) {
  const ws = new WebSocket(wsUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let next = 1;
  const waiting = new Map<number, (v: unknown) => void>();
  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.id && waiting.has(msg.id)) {
      waiting.get(msg.id)!(msg.result);
      waiting.delete(msg.id);
    }
  };
  return {
    send: (method: string, params: Record<string, unknown> = {}) =>
      new Promise<any>((resolve) => {
        const id = next++;
        waiting.set(id, resolve);
        ws.send(JSON.stringify({ id, method, params }));
      }),
    close: () => ws.close(),
  };
}

function shortUrl(url: string): string {
  if (!url) return "(native)";
  const root = `file://${REPO_ROOT}/`;
  if (url.startsWith(root)) return url.slice(root.length);
  const npm = url.indexOf("registry.npmjs.org/");
  if (npm >= 0) return "npm:" + url.slice(npm + "registry.npmjs.org/".length).split("/")[0];
  return url.replace(/^ext:/, "ext:").slice(0, 60);
}

/** Self time per function and per module, in % of samples. */
export function summarize(profile: Profile, top = 25): string[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  // Frames that only exist because a profiler is attached (Deno reports network events to
  // the inspector), and idle time, are left out of the percentages.
  const ignored = (n: ProfileNode) =>
    n.callFrame.functionName === "(idle)" ||
    n.callFrame.functionName === "op_inspector_emit_protocol_event" ||
    n.callFrame.url.includes("inspector_network_bridge");
  const selfCount = new Map<number, number>();
  let total = 0;
  for (const s of profile.samples) {
    if (ignored(byId.get(s)!)) continue;
    selfCount.set(s, (selfCount.get(s) ?? 0) + 1);
    total++;
  }
  total ||= 1;
  const fn = new Map<string, number>();
  const mod = new Map<string, number>();
  for (const [id, count] of selfCount) {
    const f = byId.get(id)!.callFrame;
    const key = `${f.functionName || "(anonymous)"} ${shortUrl(f.url)}:${f.lineNumber + 1}`;
    fn.set(key, (fn.get(key) ?? 0) + count);
    const m = f.url ? shortUrl(f.url) : f.functionName || "(native)";
    mod.set(m, (mod.get(m) ?? 0) + count);
  }
  const pct = (n: number) => `${((100 * n) / total).toFixed(1).padStart(5)} %`;
  const lines = [
    `${total} busy samples (of ${profile.samples.length}; idle and inspector frames left out)`,
    "",
    "self time by function:",
  ];
  for (const [k, v] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    lines.push(`  ${pct(v)}  ${k}`);
  }
  // Inclusive time of the gateway's own functions (a sample counts once per function on its
  // stack): what each step of the request path costs with everything it calls.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map<string, number>();
  for (const [id, count] of selfCount) {
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const f = byId.get(at)!.callFrame;
      if (!f.url.startsWith(`file://${REPO_ROOT}/`)) continue;
      const key = `${f.functionName || "(anonymous)"} ${shortUrl(f.url)}:${f.lineNumber + 1}`;
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + count);
    }
  }
  lines.push("", "total (inclusive) time of the gateway's functions:");
  for (const [k, v] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    lines.push(`  ${pct(v)}  ${k}`);
  }
  lines.push("", "self time by module (or native frame):");
  for (const [k, v] of [...mod].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    lines.push(`  ${pct(v)}  ${k}`);
  }
  return lines;
}

/**
 * Profiles the gateway's pass-through under load: a gateway with `--inspect` in front of
 * `backendUrl`, `seconds` of `tools/call` load, CPU samples through the inspector.
 */
export async function profilePassThrough(
  tool: LoadTool,
  backendUrl: string,
  seconds: number,
): Promise<{ rps: number; lines: string[] }> {
  const inspectPort = freePort();
  const gw = await launchGateway("profile", REPO_ROOT, [{ name: "alpha", url: backendUrl }], [
    `--inspect=127.0.0.1:${inspectPort}`,
  ]);
  try {
    const token = (await mint(gw, 1, { resource: `${gw.publicUrl}/mcp` })).accessTokens[0]!;
    const req = modernRequest("tools/call", { name: "echo", arguments: {} }, `Bearer ${token}`);
    const url = `${gw.publicUrl}/mcp/alpha`;
    const problem = await probe(url, req);
    if (problem) throw new Error(`pass-through not working: ${problem}`);
    const spec = { url, headers: req.headers, body: req.body, connections: 16, durationS: 2 };
    await runLoad(tool, spec); // warm-up (JIT)
    const targets = await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json();
    const session = await cdp(targets[0].webSocketDebuggerUrl);
    await session.send("Profiler.enable");
    await session.send("Profiler.setSamplingInterval", { interval: 200 });
    await session.send("Profiler.start");
    const r = await runLoad(tool, { ...spec, durationS: seconds });
    const { profile } = await session.send("Profiler.stop");
    session.close();
    return { rps: r.rps, lines: summarize(profile, 20) };
  } finally {
    await gw.stop();
  }
}

if (import.meta.main) {
  const seconds = Number(Deno.args[0] ?? "5");
  const tool = await findLoadTool(console.error);
  const backend = await startBenchServer("backend", ["backend", "0"]);
  try {
    const { rps, lines } = await profilePassThrough(tool, `${backend.url}/mcp`, seconds);
    console.log(`load while profiling: ${rps.toFixed(0)} req/s`);
    for (const line of lines) console.log(line);
  } finally {
    await backend.stop();
  }
  Deno.exit(0);
}
