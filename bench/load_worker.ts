/**
 * The fallback load generator (used when `wrk` is unavailable), run as its own subprocess:
 * `connections` concurrent loops send the same request for `durationS` seconds (and at most
 * `MAX_REQUESTS` in all), recording every latency. Prints `LOADJSON {…}` on stdout.
 */
import type { LoadResult, LoadSpec } from "./load.ts";

const MAX_REQUESTS = 2_000_000;

/** Runs the load described by `spec` and returns its figures. */
export async function generate(spec: LoadSpec): Promise<LoadResult> {
  const latencies = new Float64Array(MAX_REQUESTS);
  let count = 0;
  let errors = 0;
  let non2xx = 0;
  let next = 0;
  const auths = spec.authorizations ?? [];
  const started = performance.now();
  const until = started + spec.durationS * 1000;
  const client = Deno.createHttpClient({ poolMaxIdlePerHost: spec.connections });
  const loop = async () => {
    while (performance.now() < until && count < MAX_REQUESTS) {
      const headers: Record<string, string> = { ...spec.headers };
      if (auths.length) headers["Authorization"] = auths[next++ % auths.length]!;
      const t0 = performance.now();
      try {
        const res = await fetch(spec.url, {
          method: spec.method ?? "POST",
          headers,
          body: spec.body,
          client,
          signal: AbortSignal.timeout(5000),
        });
        await res.arrayBuffer();
        if (res.status >= 400) non2xx++;
      } catch {
        errors++;
        continue;
      }
      if (count < MAX_REQUESTS) latencies[count++] = performance.now() - t0;
    }
  };
  await Promise.all(Array.from({ length: spec.connections }, loop));
  const elapsed = (performance.now() - started) / 1000;
  client.close();
  const sorted = latencies.subarray(0, count).sort();
  const pct = (p: number) => sorted[Math.min(count - 1, Math.floor((p / 100) * count))] ?? 0;
  return { requests: count, rps: count / elapsed, p50Ms: pct(50), p99Ms: pct(99), errors, non2xx };
}

if (import.meta.main) {
  const spec = JSON.parse(Deno.args[0]!) as LoadSpec;
  console.log(`LOADJSON ${JSON.stringify(await generate(spec))}`);
}
