/**
 * Cold start (issue 14): from spawning `deno run … main.ts` to the first 200 answer with a
 * JSON-RPC result on a given MCP URL, the gateway's KV file, config and tokens already in place.
 * Polls every 5 ms (connection refused until it listens), bounded by a 30 s deadline.
 */
import type { BenchGateway } from "./gateway.ts";
import type { McpRequest } from "./mcp.ts";
import { spawnGateway } from "./procs.ts";

/**
 * Restarts `gw` and returns the milliseconds from spawn to the first 200 with a `result` on
 * `url` for `req`. The new process replaces `gw.proc`.
 */
export async function coldStartMs(
  gw: BenchGateway,
  repoRoot: string,
  url: string,
  req: McpRequest,
): Promise<number> {
  const port = gw.proc.port;
  await gw.proc.stop();
  const t0 = performance.now();
  const { proc, exited } = spawnGateway(gw.proc.name, repoRoot, gw.env, port, gw.denoFlags);
  gw.proc = proc;
  let ended = false;
  exited.then(() => ended = true);
  const deadline = t0 + 30_000;
  while (performance.now() < deadline && !ended) {
    try {
      const res = await fetch(url, { method: "POST", headers: req.headers, body: req.body });
      const text = await res.text();
      if (res.status === 200 && text.includes('"result"')) return performance.now() - t0;
      if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`);
    } catch (e) {
      if (e instanceof Error && e.message.startsWith("HTTP ")) throw e;
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`no 200 on ${url} within 30 s: ${proc.stderrTail().slice(-500)}`);
}
