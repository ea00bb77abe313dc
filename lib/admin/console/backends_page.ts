/**
 * The console's backends page: for each configured backend its health (the probe of the home
 * page, lib/home/backend_status.ts, cached 30 s), its calls over the last hour from the audit
 * trail (p50/p95 latency, error rate: lib/admin/backend_stats.ts, as `deno task admin backends
 * stats`), and how many tools it shows on `/mcp` (from the list cache, or listed now through the
 * aggregated endpoint's own backend connections).
 */
import type { BackendConfig } from "../../config.ts";
import type { Deps } from "../../deps.ts";
import { type BackendStatus, backendStatuses } from "../../home/backend_status.ts";
import { type BackendStats, backendStats, type BackendStatsReport } from "../backend_stats.ts";
import { type Html, html, when } from "./html.ts";
import { type Column, consolePage, filterLink, table, type Viewer } from "./layout.ts";

/** How long the page waits for a first probe or a tool listing before showing it as pending. */
export const BACKENDS_WAIT_MS = 2500;

/** A backend's tool count: a number, not known yet (still listing), or not listable. */
export type ToolCount = number | "pending" | "unavailable";

/** Everything the page shows about one backend. */
export interface BackendRow {
  backend: BackendConfig;
  status: BackendStatus;
  stats: BackendStats | undefined;
  tools: ToolCount;
}

/** What the page shows. */
export interface BackendsOverview {
  rows: BackendRow[];
  report: BackendStatsReport;
  now: number;
}

/** Resolves `work` or, after `ms`, gives up waiting (the work goes on). */
async function within(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([work, new Promise((resolve) => timer = setTimeout(resolve, ms))]);
  clearTimeout(timer);
}

/** Tool counts of every backend, as far as they are known within `waitMs`. */
async function toolCounts(deps: Deps, waitMs: number): Promise<Map<string, ToolCount>> {
  // The aggregated endpoint's module (and the MCP SDK) loads only when this page is asked for.
  const { backendToolCount } = await import("../../mcp/aggregate/handler.ts");
  const counts = new Map<string, ToolCount>();
  const all = deps.config.backends.map((b) =>
    backendToolCount(deps, b).then(
      (n) => void counts.set(b.name, n),
      () => void counts.set(b.name, "unavailable"),
    )
  );
  await within(Promise.all(all), waitMs);
  return new Map(counts);
}

/** Gathers the page's figures (probes, tool listings and the audit trail, in parallel). */
export async function backendsOverview(
  deps: Deps,
  waitMs = BACKENDS_WAIT_MS,
): Promise<BackendsOverview> {
  const [statuses, report, tools] = await Promise.all([
    backendStatuses(deps, waitMs),
    backendStats(deps),
    toolCounts(deps, waitMs),
  ]);
  const rows = statuses.map((status) => ({
    backend: status.backend,
    status,
    stats: report.backends.find((s) => s.backend === status.backend.name),
    tools: tools.get(status.backend.name) ?? "pending",
  }));
  return { rows, report, now: deps.now() };
}

const ms = (
  v: number | null | undefined,
) => (v === null || v === undefined ? null : `${Math.round(v)} ms`);

function health(row: BackendRow, now: number): Html {
  const h = row.status.health;
  if (!h) return html`<span class="badge unknown">checking…</span>`;
  const age = row.status.checkedAt === undefined ? "" : html`
    <span class="muted">checked ${Math.max(
      0,
      Math.round((now - row.status.checkedAt) / 1000),
    )} s ago</span>
  `;
  const why = h.status === "up" ? "" : html`
    <span class="muted">${h.error ?? `HTTP ${h.httpStatus}`}</span>
  `;
  return html`<span class="badge ${
    h.status === "up" ? "ok" : "bad"
  }">${h.status}</span>${why}${age}`;
}

function errorRate(s: BackendStats | undefined): Html | string | null {
  if (!s || s.errorRate === null) return null;
  const pct = `${(s.errorRate * 100).toFixed(s.errorRate < 0.1 ? 1 : 0)} %`;
  return s.errors > 0 ? html`<span class="badge warn">${pct}</span>` : pct;
}

function tools(count: ToolCount): Html | string {
  if (count === "pending") return html`<span class="muted">listing…</span>`;
  if (count === "unavailable") return html`<span class="muted">unavailable</span>`;
  return String(count);
}

/** The backends page. */
export function backendsPage(viewer: Viewer, o: BackendsOverview): Response {
  const columns: Column<BackendRow>[] = [
    {
      label: "Backend",
      cell: (r) => filterLink(viewer, "audit", { backend: r.backend.name }, r.backend.name),
    },
    { label: "Health", cell: (r) => health(r, o.now) },
    { label: "Probe", cell: (r) => ms(r.status.health?.latencyMs), numeric: true },
    { label: "Calls (1 h)", cell: (r) => r.stats?.calls ?? 0, numeric: true },
    { label: "p50", cell: (r) => ms(r.stats?.p50Ms), numeric: true },
    { label: "p95", cell: (r) => ms(r.stats?.p95Ms), numeric: true },
    { label: "Error rate", cell: (r) => errorRate(r.stats), numeric: true },
    { label: "Tool errors", cell: (r) => r.stats?.toolErrors ?? 0, numeric: true },
    { label: "Tools", cell: (r) => tools(r.tools), numeric: true },
  ];
  const up = o.rows.filter((r) => r.status.health?.status === "up").length;
  const sampled = o.report.sampled
    ? html`<p class="muted">Busy hour: the figures cover the newest 100 000 calls.</p>`
    : "";
  const body = html`<h1>Backends</h1>
<p class="sub">${up} of ${o.rows.length} up. Calls, latency (p50/p95 of the backend calls as the
gateway saw them) and error rate from the audit trail, ${when(o.report.since)} to ${
    when(o.report.until)
  };
tool errors (results with <code>isError</code>) are counted apart. Tools: what <code>/mcp</code> shows of each.</p>
${table(columns, o.rows, "No backend is configured.")}${sampled}`;
  return consolePage({ title: "Backends", section: "backends", viewer, body });
}
