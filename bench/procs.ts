/**
 * Subprocess helpers: start a server, learn its port, read its peak RSS, stop it.
 */

/** A server running in a child process. */
export interface Proc {
  name: string;
  pid: number;
  port: number;
  url: string;
  /** Last lines of the child's stderr (for error messages). */
  stderrTail: () => string;
  /** Peak resident set size so far in MB (`VmHWM`), or null when unreadable. */
  peakRssMb: () => number | null;
  /** Current resident set size in MB (`VmRSS`), or null when unreadable. */
  rssMb: () => number | null;
  stop: () => Promise<void>;
}

const decoder = new TextDecoder();

function drainTail(stream: ReadableStream<Uint8Array>, keep = 4000): () => string {
  let tail = "";
  (async () => {
    try {
      for await (const chunk of stream) tail = (tail + decoder.decode(chunk)).slice(-keep);
    } catch {
      // child gone
    }
  })();
  return () => tail;
}

/** CPU time (user + system) a process has used so far, in ms (`/proc/<pid>/stat`), or null. */
export function procCpuMs(pid: number): number | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime (fields 14 and 15 of stat(5)) in clock ticks of 10 ms.
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return null;
  }
}

/** Reads a `/proc/<pid>/status` field in MB. */
export function procStatusMb(pid: number, field: "VmHWM" | "VmRSS"): number | null {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
    return m ? Math.round(Number(m[1]) / 102.4) / 10 : null;
  } catch {
    return null;
  }
}

function wrap(
  name: string,
  child: Deno.ChildProcess,
  port: number,
  tail: () => string,
): Proc {
  let stopped = false;
  return {
    name,
    pid: child.pid,
    port,
    url: `http://127.0.0.1:${port}`,
    stderrTail: tail,
    peakRssMb: () => procStatusMb(child.pid, "VmHWM"),
    rssMb: () => procStatusMb(child.pid, "VmRSS"),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      try {
        child.kill("SIGTERM");
      } catch {
        // already exited
      }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // already exited
        }
      }, 3000);
      await child.status;
      clearTimeout(timer);
    },
  };
}

/** Starts `deno run -A bench/servers.ts <args>` and waits for its `{"port"}` line. */
export async function startBenchServer(name: string, args: string[]): Promise<Proc> {
  const script = new URL("./servers.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const tail = drainTail(child.stderr);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const deadline = Date.now() + 30_000;
  while (!buf.includes("\n")) {
    const timeout = new Promise<{ done: true; value: undefined }>((r) =>
      setTimeout(() => r({ done: true, value: undefined }), Math.max(1, deadline - Date.now()))
    );
    const { done, value } = await Promise.race([reader.read(), timeout]);
    if (done) {
      child.kill("SIGKILL");
      throw new Error(`${name} did not start: ${tail()}`);
    }
    buf += value;
  }
  const port = JSON.parse(buf.split("\n")[0]!).port as number;
  // Keep draining stdout so the child never blocks on a full pipe.
  (async () => {
    try {
      while (!(await reader.read()).done) { /* discard */ }
    } catch { /* child gone */ }
  })();
  return wrap(name, child, port, tail);
}

/** A free loopback port (closed again at once; a small race is acceptable here). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * Starts the gateway as `deno run -A main.ts` with the given environment and waits for
 * `GET /healthz` to answer. Its per-request log lines go to /dev/null.
 */
export async function startGateway(
  name: string,
  repoRoot: string,
  env: Record<string, string>,
  port: number,
  denoFlags: string[] = [],
): Promise<Proc> {
  const { proc, exited: ended } = spawnGateway(name, repoRoot, env, port, denoFlags);
  const deadline = Date.now() + 30_000;
  let exited = false;
  ended.then(() => exited = true);
  while (Date.now() < deadline && !exited) {
    try {
      const res = await fetch(`${proc.url}/healthz`);
      await res.body?.cancel();
      if (res.status < 500) return proc;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await proc.stop();
  throw new Error(`gateway did not start: ${proc.stderrTail().slice(-1500)}`);
}

/**
 * Spawns `deno run -A <flags> main.ts` without waiting for it (cold-start timing starts here);
 * `exited` resolves when the process ends.
 */
export function spawnGateway(
  name: string,
  repoRoot: string,
  env: Record<string, string>,
  port: number,
  denoFlags: string[] = [],
): { proc: Proc; exited: Promise<unknown> } {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...denoFlags, "main.ts"],
    cwd: repoRoot,
    env: { ...env, PORT: String(port) },
    stdout: "null",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const tail = drainTail(child.stderr);
  return { proc: wrap(name, child, port, tail), exited: child.status };
}
