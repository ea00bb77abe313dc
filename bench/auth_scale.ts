/**
 * Per-request authentication cost, measured in-process with the gateway's own code
 * (`lib/oauth/bearer.ts` `authenticate`) against the gateway's KV file: "warm" through the per-isolate
 * token cache (the hot path of a client that reuses its token), "cold" with the cache off and a
 * different token on every call (SHA-256 + one KV point read: the cost the cache hides).
 */
import { authenticate } from "../lib/oauth/bearer.ts";
import type { Deps } from "../lib/deps.ts";
import { TokenCache } from "../lib/oauth/token_cache.ts";
import { median } from "./load.ts";

/** Latency figures of one in-process measurement. */
export interface AuthLatency {
  calls: number;
  p50Us: number;
  p99Us: number;
}

/**
 * Times `authenticate()` for each of `tokens` (cold: cache disabled) or for the first token
 * again and again (warm: cache on), `rounds` times; reports the median of the rounds.
 */
export async function authLatency(
  deps: Deps,
  resource: string,
  backend: string,
  tokens: string[],
  mode: "warm" | "cold",
  rounds = 3,
): Promise<AuthLatency> {
  const cache = new TokenCache({ ttlMs: mode === "warm" ? 1000 : 0 });
  const d: Deps = { ...deps, tokenCache: cache };
  const p50s: number[] = [];
  const p99s: number[] = [];
  let calls = 0;
  try {
    for (let r = 0; r < rounds; r++) {
      const times: number[] = [];
      // 3 passes over the tokens: with the cache off, every call is a lookup all the same.
      for (let i = 0; i < tokens.length * 3; i++) {
        const token = mode === "warm" ? tokens[0]! : tokens[(i * 7919 + r) % tokens.length]!;
        const req = new Request(resource, { headers: { authorization: `Bearer ${token}` } });
        const t0 = performance.now();
        const principal = await authenticate(req, d, resource, backend);
        times.push((performance.now() - t0) * 1000);
        if (principal instanceof Response) {
          throw new Error(`authenticate refused a minted token: ${principal.status}`);
        }
      }
      times.sort((a, b) => a - b);
      p50s.push(times[Math.floor(times.length / 2)]!);
      p99s.push(times[Math.floor(times.length * 0.99)]!);
      calls += times.length;
    }
  } finally {
    cache.close();
  }
  return { calls, p50Us: median(p50s), p99Us: median(p99s) };
}
