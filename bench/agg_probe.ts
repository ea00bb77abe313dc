/**
 * A focused probe of the aggregated `/mcp` `tools/call` (issue 14): requests per second of the
 * gateway against the floor (the minimal bare proxy of issue 14, in front of the same backend),
 * for a modern (2026-07-28) client and a 2025-era client on a session, to three minimal
 * backends: 2026-07-28, 2025-era sessionless, 2025-era with sessions (JSON or SSE answers).
 *
 *   deno run -A bench/agg_probe.ts [--rounds 3] [--seconds 4] [--sse] [--only <backend>]
 *     [--client <modern|legacy|pass>] [--profile <dir>]
 *
 * Every server is its own process on 127.0.0.1 (this file in `backend` / `floor` mode, the
 * gateway as `deno run -A main.ts`). Load is `wrk -t1 -c16`, rounds interleaved with the floor;
 * the medians of the ratios are printed. `--profile <dir>` runs the gateway with `--cpu-prof`.
 */
import { parseConfig } from "../lib/config.ts";
import type { Deps } from "../lib/deps.ts";
import { mintTokens, putGrant } from "../lib/oauth/tokens.ts";

const MODERN = "2026-07-28";
const LEGACY = "2025-11-25";
const JSON_TYPE = { "content-type": "application/json" };

// ---- child modes -------------------------------------------------------------------------

/** A minimal backend: `modern`, `sessionless` (2025-era) or `session` (2025-era, sessions). */
function backend(kind: string, sse: boolean): void {
  const sessions = new Set<string>();
  const answer = (body: unknown, headers: Record<string, string> = {}) =>
    sse
      ? new Response(`event: message\ndata: ${JSON.stringify(body)}\n\n`, {
        headers: { "content-type": "text/event-stream", ...headers },
      })
      : new Response(JSON.stringify(body), { headers: { ...JSON_TYPE, ...headers } });
  const info = { name: `probe-${kind}`, version: "1.0.0" };
  const modernExtra = {
    resultType: "complete",
    _meta: { "io.modelcontextprotocol/serverInfo": info },
  };
  serve(async (req) => {
    if (req.method === "GET") return new Response(null, { status: 405 });
    if (req.method === "DELETE") return new Response(null, { status: 204 });
    const msg = await req.json();
    if (msg.id === undefined) return new Response(null, { status: 202 });
    const sid = req.headers.get("mcp-session-id");
    if (kind === "session" && msg.method !== "initialize" && (!sid || !sessions.has(sid))) {
      return new Response("unknown session", { status: 404 });
    }
    const ok = (result: unknown, headers?: Record<string, string>) =>
      answer({ jsonrpc: "2.0", id: msg.id, result }, headers);
    switch (msg.method) {
      case "server/discover":
        if (kind !== "modern") {
          return answer({ jsonrpc: "2.0", id: msg.id, error: { code: -32601, message: "nope" } });
        }
        return ok({
          supportedVersions: [MODERN],
          capabilities: { tools: {} },
          serverInfo: info,
          ...modernExtra,
        });
      case "initialize": {
        if (kind === "modern") {
          return answer({ jsonrpc: "2.0", id: msg.id, error: { code: -32601, message: "nope" } });
        }
        const headers: Record<string, string> = {};
        if (kind === "session") {
          const id = crypto.randomUUID();
          sessions.add(id);
          headers["mcp-session-id"] = id;
        }
        return ok(
          { protocolVersion: LEGACY, capabilities: { tools: {} }, serverInfo: info },
          headers,
        );
      }
      case "tools/list":
        return ok({
          tools: [{ name: "echo", inputSchema: { type: "object" } }],
          ...(kind === "modern" ? modernExtra : {}),
        });
      case "tools/call":
        return ok({
          content: [{ type: "text", text: "ok" }],
          ...(kind === "modern" ? modernExtra : {}),
        });
      default:
        return answer({ jsonrpc: "2.0", id: msg.id, error: { code: -32601, message: "nope" } });
    }
  });
}

/** The floor, exactly as issue 14 gives it. */
function floor(upstream: string): void {
  serve(async (req) => {
    const r = await fetch(upstream, {
      method: req.method,
      headers: {
        "content-type": "application/json",
        accept: req.headers.get("accept") ?? "application/json",
        ...sessionHeaders(req),
      },
      body: req.body,
    });
    return new Response(r.body, {
      status: r.status,
      headers: { "content-type": r.headers.get("content-type") ?? "application/json" },
    });
  });
}

/**
 * The floor in front of a sessionful 2025-era backend must carry its session: the probe's load
 * sends it (the only addition to the code; sessionless backends get none).
 */
function sessionHeaders(req: Request): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of ["mcp-session-id", "mcp-protocol-version"]) {
    const v = req.headers.get(k);
    if (v) out[k] = v;
  }
  return out;
}

function serve(handler: (req: Request) => Promise<Response>): void {
  Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: ({ port }) => console.log(JSON.stringify({ port })),
  }, handler);
}

// ---- the driver --------------------------------------------------------------------------

interface Child {
  port: number;
  proc: Deno.ChildProcess;
}

async function spawn(args: string[], env?: Record<string, string>): Promise<Child> {
  const proc = new Deno.Command(Deno.execPath(), {
    args,
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
    ...(env ? { env } : {}),
  }).spawn();
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  while (!buf.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`child ${args.join(" ")} exited`);
    buf += value;
  }
  const port = JSON.parse(buf.split("\n")[0]!).port as number;
  // Drain the rest (gateway log lines) so the child never blocks.
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })().catch(() => {});
  return { port, proc };
}

async function rpc(
  url: string,
  headers: Record<string, string>,
  body: unknown,
): Promise<{ res: Response; text: string }> {
  const res = await fetch(url, {
    method: "POST",
    headers: { ...JSON_TYPE, accept: "application/json, text/event-stream", ...headers },
    body: JSON.stringify(body),
  });
  return { res, text: await res.text() };
}

const ENVELOPE = {
  "io.modelcontextprotocol/protocolVersion": MODERN,
  "io.modelcontextprotocol/clientCapabilities": {},
  "io.modelcontextprotocol/clientInfo": { name: "probe", version: "1" },
};

interface Case {
  name: string;
  url: string;
  headers: Record<string, string>;
  body: unknown;
}

function luaScript(c: Case): string {
  const lines = [`wrk.method = "POST"`, `wrk.body = ${JSON.stringify(JSON.stringify(c.body))}`];
  const headers = { ...JSON_TYPE, accept: "application/json, text/event-stream", ...c.headers };
  for (const [k, v] of Object.entries(headers)) {
    lines.push(`wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`);
  }
  return lines.join("\n") + "\n";
}

/** CPU time (user + system, ms) a process has used so far (Linux /proc; 0 elsewhere). */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10; // clock ticks of 10 ms
  } catch {
    return 0;
  }
}

interface Run {
  rps: number;
  /** CPU µs per request of the process under test (the floor or the gateway). */
  cpuUs: number;
}

async function wrk(c: Case, seconds: number, pid?: number): Promise<Run> {
  const before = cpuMs(pid);
  const script = await Deno.makeTempFile({ suffix: ".lua" });
  await Deno.writeTextFile(script, luaScript(c));
  try {
    const out = await new Deno.Command("/usr/bin/wrk", {
      args: ["-t1", "-c16", `-d${seconds}s`, "-s", script, c.url],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? "0");
    const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? "0");
    if (non2xx > 0) console.error(`  ${c.name}: ${non2xx} non-2xx answers`);
    const requests = Number(/(\d+) requests in/.exec(text)?.[1] ?? "0");
    const cpuUs = requests > 0 ? (cpuMs(pid) - before) * 1000 / requests : 0;
    return { rps, cpuUs };
  } finally {
    await Deno.remove(script);
  }
}

const kindOf = (name: string) => name.slice(name.indexOf("→") + 1);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function flag(name: string): string | undefined {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}

async function main(): Promise<void> {
  const rounds = Number(flag("--rounds") ?? 3);
  const seconds = Number(flag("--seconds") ?? 4);
  const sse = Deno.args.includes("--sse");
  const only = flag("--only");
  // Only the gateway rows whose name starts with this (e.g. `legacy`: one case to profile).
  const client = flag("--client");
  const profileDir = flag("--profile");
  const self = new URL(import.meta.url).pathname;
  const repo = new URL("..", import.meta.url).pathname;
  const children: Child[] = [];
  const dir = await Deno.makeTempDir({ prefix: "agg-probe-" });
  try {
    const kinds = ["modern", "sessionless", "session"] as const;
    const backends: Record<string, Child> = {};
    const floors: Record<string, Child> = {};
    for (const k of kinds) {
      backends[k] = await spawn(["run", "-A", self, "backend", k, sse ? "sse" : "json"]);
      children.push(backends[k]!);
      const url = `http://127.0.0.1:${backends[k]!.port}/mcp`;
      floors[k] = await spawn(["run", "-A", self, "floor", url]);
      children.push(floors[k]!);
    }
    // The gateway, its KV file and a token minted into it.
    const kvPath = `${dir}/gateway.kv`;
    const configPath = `${dir}/config.json`;
    const raw = {
      serverName: "probe",
      rateLimits: { mcpPerGrantPerMinute: 1_000_000_000 },
      backends: kinds.map((k) => ({ name: k, url: `http://127.0.0.1:${backends[k]!.port}/mcp` })),
    };
    await Deno.writeTextFile(configPath, JSON.stringify(raw));
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const publicUrl = `http://127.0.0.1:${port}`;
    const kv = await Deno.openKv(kvPath);
    const config = parseConfig(raw, () => undefined, configPath);
    const deps = { kv, config, now: Date.now } as unknown as Deps;
    const now = Date.now();
    const grant = {
      grantId: crypto.randomUUID(),
      clientId: "probe",
      scope: "mcp",
      resource: `${publicUrl}/mcp`,
    };
    const op = kv.atomic();
    putGrant(deps, op, { ...grant, createdAt: now, expiresAt: now + 86_400_000 });
    const { accessToken } = await mintTokens(deps, op, grant);
    // A token for the pass-through `/mcp/modern` too (a reference row: the shared pipeline).
    const ptGrant = { ...grant, grantId: crypto.randomUUID(), resource: `${publicUrl}/mcp/modern` };
    putGrant(deps, op, { ...ptGrant, createdAt: now, expiresAt: now + 86_400_000 });
    const { accessToken: ptToken } = await mintTokens(deps, op, ptGrant);
    if (!(await op.commit()).ok) throw new Error("mint failed");
    kv.close();
    const v8 = JSON.parse(await Deno.readTextFile(`${repo}/deno.json`)).tasks.start.split(/\s+/)
      .filter((a: string) => a.startsWith("--v8-flags="));
    const gwProc = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        ...v8,
        // Profiling: the probe's own entry, which exits (and writes the profile) on SIGINT.
        ...(profileDir
          ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`, self, "gateway"]
          : ["main.ts"]),
      ],
      cwd: repo,
      env: {
        PORT: String(port),
        PUBLIC_URL: publicUrl,
        KV_PATH: kvPath,
        GATEWAY_CONFIG: configPath,
        GATEWAY_OWNER_PASSWORD: "probe owner password 1234",
      },
      stdout: "null",
      stderr: "null",
      stdin: "null",
    }).spawn();
    const gwUrl = `${publicUrl}/mcp`;
    for (let i = 0; i < 300; i++) {
      try {
        const r = await fetch(`${publicUrl}/healthz`);
        await r.body?.cancel();
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const auth = { authorization: `Bearer ${accessToken}` };
    // A 2025-era session on the gateway.
    const init = await rpc(gwUrl, auth, {
      jsonrpc: "2.0",
      id: 0,
      method: "initialize",
      params: {
        protocolVersion: LEGACY,
        capabilities: {},
        clientInfo: { name: "p", version: "1" },
      },
    });
    const gwSession = init.res.headers.get("mcp-session-id")!;
    const onSession = { ...auth, "mcp-session-id": gwSession, "mcp-protocol-version": LEGACY };
    await rpc(gwUrl, onSession, { jsonrpc: "2.0", method: "notifications/initialized" });
    // A session on the sessionful backend, for its floor.
    const bInit = await rpc(`http://127.0.0.1:${backends.session!.port}/mcp`, {}, {
      jsonrpc: "2.0",
      id: 0,
      method: "initialize",
      params: {
        protocolVersion: LEGACY,
        capabilities: {},
        clientInfo: { name: "p", version: "1" },
      },
    });
    const backendSession = bInit.res.headers.get("mcp-session-id")!;

    const cases: { floor: Case; gw: Case[] }[] = kinds.map((k) => {
      const floorUrl = `http://127.0.0.1:${floors[k]!.port}/mcp`;
      const floorCase: Case = k === "modern"
        ? {
          name: `floor→${k}`,
          url: floorUrl,
          headers: {
            "mcp-protocol-version": MODERN,
            "mcp-method": "tools/call",
            "mcp-name": "echo",
          },
          body: {
            jsonrpc: "2.0",
            id: 1,
            method: "tools/call",
            params: { name: "echo", arguments: { text: "hi" }, _meta: ENVELOPE },
          },
        }
        : {
          name: `floor→${k}`,
          url: floorUrl,
          headers: k === "session"
            ? { "mcp-session-id": backendSession, "mcp-protocol-version": LEGACY }
            : { "mcp-protocol-version": LEGACY },
          body: {
            jsonrpc: "2.0",
            id: 1,
            method: "tools/call",
            params: { name: "echo", arguments: { text: "hi" } },
          },
        };
      const name = `${k}__echo`;
      const passThrough: Case[] = k === "modern"
        ? [{
          ...floorCase,
          name: "pass-through /mcp/modern (reference)",
          url: `${gwUrl}/modern`,
          headers: { ...floorCase.headers, authorization: `Bearer ${ptToken}` },
        }]
        : [];
      return {
        floor: floorCase,
        gw: [
          ...passThrough,
          {
            name: `modern client→${k}`,
            url: gwUrl,
            headers: {
              ...auth,
              "mcp-protocol-version": MODERN,
              "mcp-method": "tools/call",
              "mcp-name": name,
            },
            body: {
              jsonrpc: "2.0",
              id: 1,
              method: "tools/call",
              params: { name, arguments: { text: "hi" }, _meta: ENVELOPE },
            },
          },
          {
            name: `legacy client→${k}`,
            url: gwUrl,
            headers: onSession,
            body: {
              jsonrpc: "2.0",
              id: 1,
              method: "tools/call",
              params: { name, arguments: { text: "hi" } },
            },
          },
        ],
      };
    }).filter((c) => !only || c.floor.name.includes(only))
      .map((c) => ({ ...c, gw: c.gw.filter((g) => !client || g.name.startsWith(client)) }));

    // Warm up: each case once (connects the pool), then a short wrk.
    for (const c of cases) {
      for (const x of [c.floor, ...c.gw]) {
        const r = await rpc(x.url, x.headers, x.body);
        if (!r.res.ok || !r.text.includes('"ok"')) {
          console.error(`${x.name}: ${r.res.status} ${r.text.slice(0, 300)}`);
        }
      }
    }
    for (const c of cases) for (const x of [c.floor, ...c.gw]) await wrk(x, 1);
    console.log(
      "(req/s medians of interleaved rounds; CPU: the floor's or gateway's process only)",
    );
    for (const c of cases) {
      const floorPid = floors[kindOf(c.floor.name)]?.proc.pid;
      const floorRuns: Run[] = [];
      const ratios: number[][] = c.gw.map(() => []);
      const runs: Run[][] = c.gw.map(() => []);
      for (let r = 0; r < rounds; r++) {
        const f = await wrk(c.floor, seconds, floorPid);
        floorRuns.push(f);
        for (let i = 0; i < c.gw.length; i++) {
          const g = await wrk(c.gw[i]!, seconds, gwProc.pid);
          runs[i]!.push(g);
          ratios[i]!.push(g.rps / f.rps);
        }
      }
      const cpu = (xs: Run[]) => median(xs.map((x) => x.cpuUs)).toFixed(0);
      console.log(
        `${c.floor.name}: ${median(floorRuns.map((x) => x.rps)).toFixed(0)} req/s, ` +
          `${cpu(floorRuns)} µs CPU/request`,
      );
      c.gw.forEach((g, i) => {
        const ratio = median(ratios[i]!);
        console.log(
          `  ${g.name}: ${median(runs[i]!.map((x) => x.rps)).toFixed(0)} req/s = ` +
            `${ratio.toFixed(2)}× floor (${ratio >= 0.7 ? "met" : "NOT met"}), ` +
            `gateway ${cpu(runs[i]!)} µs CPU/request`,
        );
      });
    }
    gwProc.kill("SIGINT");
    await gwProc.status;
  } finally {
    for (const c of children) {
      try {
        c.proc.kill();
        await c.proc.status;
      } catch { /* gone */ }
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  const [mode, arg, extra] = Deno.args;
  if (mode === "backend") backend(arg!, extra === "sse");
  else if (mode === "gateway") {
    const { createHandler } = await import("../main.ts");
    const { loadDeps } = await import("../lib/deps.ts");
    const deps = await loadDeps();
    Deno.addSignalListener("SIGINT", () => Deno.exit(0));
    Deno.serve({ port: deps.settings.port, onListen: () => {} }, createHandler(deps));
  } else if (mode === "floor") floor(arg!);
  else await main();
}
