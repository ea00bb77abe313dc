/**
 * Backend health from the audit trail: for each backend, over the last hour, the calls that
 * reached it, their latency p50/p95 and the error rate. Computed from the audit records (event
 * `mcp`), so it reflects every isolate of the deployment; refused calls (`denied`) never reached
 * a backend and are left out.
 */
import type { AdminDeps } from "./admin_deps.ts";
import { queryAudit } from "./audit_query.ts";

/** One backend's figures. */
export interface BackendStats {
  backend: string;
  /** Calls that reached the backend in the window. */
  calls: number;
  /** Calls that failed: a JSON-RPC error, `timeout`, `unavailable`, an HTTP error status… */
  errors: number;
  /** `errors / calls`, `null` without calls. */
  errorRate: number | null;
  /** Tool results with `isError: true` (the tool's own answer; not counted as errors). */
  toolErrors: number;
  p50Ms: number | null;
  p95Ms: number | null;
}

/** The result of {@linkcode backendStats}. */
export interface BackendStatsReport {
  since: string;
  until: string;
  backends: BackendStats[];
  /** More than `maxRecords` records in the window: the figures cover the newest `maxRecords`. */
  sampled: boolean;
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/**
 * Figures of the last `windowMs` (default one hour) for every configured backend (and any other
 * the records name), reading at most `maxRecords` records (newest first).
 */
export async function backendStats(
  deps: Pick<AdminDeps, "kv" | "now" | "config">,
  options: { windowMs?: number; maxRecords?: number } = {},
): Promise<BackendStatsReport> {
  const now = deps.now();
  const since = now - (options.windowMs ?? 3_600_000);
  const maxRecords = options.maxRecords ?? 100_000;
  const acc = new Map<string, { latencies: number[]; errors: number; toolErrors: number }>();
  for (const b of deps.config?.backends ?? []) {
    acc.set(b.name, { latencies: [], errors: 0, toolErrors: 0 });
  }
  let read = 0;
  let sampled = false;
  for await (const r of queryAudit(deps, { event: "mcp", since, until: now })) {
    if (++read > maxRecords) {
      sampled = true;
      break;
    }
    if (r.backend === null || r.outcome === "denied") continue;
    let a = acc.get(r.backend);
    if (!a) acc.set(r.backend, a = { latencies: [], errors: 0, toolErrors: 0 });
    a.latencies.push(r.latencyMs ?? 0);
    if (r.outcome === "tool_error") a.toolErrors++;
    else if (r.outcome !== "ok") a.errors++;
  }
  const backends = [...acc].map(([backend, a]) => {
    const sorted = a.latencies.sort((x, y) => x - y);
    return {
      backend,
      calls: sorted.length,
      errors: a.errors,
      errorRate: sorted.length ? a.errors / sorted.length : null,
      toolErrors: a.toolErrors,
      p50Ms: percentile(sorted, 50),
      p95Ms: percentile(sorted, 95),
    };
  });
  return {
    since: new Date(since).toISOString(),
    until: new Date(now).toISOString(),
    backends,
    sampled,
  };
}
