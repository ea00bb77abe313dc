/**
 * The console's audit trail: the records of lib/admin/audit_query.ts, newest first, filtered by
 * user, backend, tool (a glob), outcome, event and time range — GET parameters validated here —
 * paged with a cursor that stays exact while new records arrive, and exported as JSON Lines with
 * the same filters (`/admin/audit.jsonl`).
 *
 * The cursor is the time (ms) of the page's last record and how many records of that very
 * millisecond were already shown: the next page reads up to that time and skips them.
 */
import { z } from "zod";
import type { AuditEvent, AuditRecord } from "../../store.ts";
import type { AdminDeps } from "../admin_deps.ts";
import { type AuditFilter, parseSince, queryAudit } from "../audit_query.ts";
import { consoleUrl, type Html, html, trustedHtml, when } from "./html.ts";
import { type Column, consolePage, SECTIONS, table, type Viewer } from "./layout.ts";

/** Records per page of the audit trail. */
export const AUDIT_PAGE_SIZE = 50;

const EVENTS = [
  "mcp",
  "sign_in",
  "consent",
  "token",
  "refresh",
  "reuse_detected",
  "revocation",
  "rate_limited",
] as const satisfies readonly AuditEvent[];

const TIME_HINT = "a duration before now (15m, 1h, 7d) or a UTC date (2026-07-01T12:00)";

/** A time bound: `1h`-style, or ISO 8601 (a date-time without a zone is UTC). */
const timeParam = z.string().max(40).refine(
  (t) => parseSince(zoned(t), 0) !== null,
  `must be ${TIME_HINT}`,
);

/** The filters, shared by the page and the export. */
const filterShape = {
  user: z.string().max(256).optional(),
  backend: z.string().max(100).optional(),
  tool: z.string().max(256).optional(),
  outcome: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, "must be ok, denied, error or a code")
    .optional(),
  event: z.enum(EVENTS).optional(),
  since: timeParam.optional(),
  until: timeParam.optional(),
};

/** The export's query parameters. */
export const auditExportQuery = z.strictObject(filterShape);

/** The page's query parameters: the filters and the cursor. */
export const auditQuery = z.strictObject({
  ...filterShape,
  before: z.coerce.number().int().min(0).max(8_640_000_000_000_000).optional(),
  skip: z.coerce.number().int().min(0).max(1_000_000).optional(),
});

/** What the audit page or export was asked for. */
export type AuditQuery = z.infer<typeof auditQuery>;

function zoned(t: string): string {
  return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(t.trim()) ? `${t.trim()}Z` : t;
}

/** The query's filter for lib/admin/audit_query.ts, or the message of a reversed range. */
export function auditFilter(q: AuditQuery, now: number): AuditFilter | string {
  const since = q.since === undefined ? undefined : parseSince(zoned(q.since), now)!;
  const until = q.until === undefined ? undefined : parseSince(zoned(q.until), now)!;
  if (since !== undefined && until !== undefined && since > until) {
    return `"since" is after "until"`;
  }
  const filter: AuditFilter = {};
  if (q.user !== undefined) filter.user = q.user;
  if (q.backend !== undefined) filter.backend = q.backend;
  if (q.tool !== undefined) filter.tool = q.tool;
  if (q.outcome !== undefined) filter.outcome = q.outcome;
  if (q.event !== undefined) filter.event = q.event;
  if (since !== undefined) filter.since = since;
  if (until !== undefined) filter.until = until;
  return filter;
}

/** One page of records, and the cursor of the next (older) one. */
export interface AuditPage {
  records: AuditRecord[];
  next?: { before: number; skip: number };
}

/** The page of `filter` at the cursor (`before`, `skip`), newest first. */
export async function auditPage(
  deps: Pick<AdminDeps, "kv" | "now">,
  filter: AuditFilter,
  cursor: { before?: number; skip?: number },
  size = AUDIT_PAGE_SIZE,
): Promise<AuditPage> {
  const until = cursor.before === undefined
    ? filter.until
    : Math.min(cursor.before, filter.until ?? Infinity);
  let skip = cursor.before === undefined ? 0 : cursor.skip ?? 0;
  const records: AuditRecord[] = [];
  let more = false;
  for await (const r of queryAudit(deps, { ...filter, until, order: "desc" })) {
    if (skip > 0 && Date.parse(r.time) === cursor.before) {
      skip--;
      continue;
    }
    if (records.length === size) {
      more = true;
      break;
    }
    records.push(r);
  }
  if (!more) return { records };
  const last = Date.parse(records.at(-1)!.time);
  const sameMs = records.filter((r) => Date.parse(r.time) === last).length;
  const carried = last === cursor.before ? cursor.skip ?? 0 : 0;
  return { records, next: { before: last, skip: carried + sameMs } };
}

const OUTCOME_LIST = trustedHtml(' list="outcomes"');
const SELECTED = trustedHtml(" selected");

function input(name: string, label: string, value: string | undefined, placeholder = ""): Html {
  const list = name === "outcome" ? OUTCOME_LIST : "";
  return html`<label>${label}<input name="${name}" value="${
    value ?? ""
  }" placeholder="${placeholder}"${list}></label>`;
}

function filterForm(viewer: Viewer, values: Record<string, string>, backends: string[]): Html {
  const select = (name: string, label: string, options: readonly string[]) => {
    const value = values[name];
    const all = value === undefined || options.includes(value) ? options : [...options, value];
    return html`<label>${label}<select name="${name}"><option value="">any</option>${
      all.map((o) => html`<option${o === value ? SELECTED : ""}>${o}</option>`)
    }</select></label>`;
  };
  return html`<form method="get" action="${viewer.publicUrl}${SECTIONS.audit.path}" class="filters">
${input("user", "User", values.user, "corp:248289761001")}
${select("backend", "Backend", backends)}
${input("tool", "Tool", values.tool, "github__*")}
${input("outcome", "Outcome", values.outcome, "ok, denied, error")}
<datalist id="outcomes"><option value="ok"><option value="denied"><option value="error"></datalist>
${select("event", "Event", EVENTS)}
${input("since", "Since", values.since, "1h")}
${input("until", "Until", values.until, "2026-07-01T12:00")}
<button type="submit">Filter</button>
<a href="${viewer.publicUrl}${SECTIONS.audit.path}">clear</a></form>`;
}

/** The filter values of a page's parameters, without the cursor (for the form and links). */
export function filterValues(params: Iterable<[string, string | number | undefined]>) {
  const out: Record<string, string> = {};
  for (const [k, v] of params) {
    if (k in filterShape && v !== undefined && v !== "") out[k] = String(v);
  }
  return out;
}

/** What the audit page shows. */
export interface AuditView {
  /** The filters (as typed: also when they did not validate, to correct them). */
  values: Record<string, string>;
  page: AuditPage;
  /** Whether this is an older page (a cursor was given). */
  paged: boolean;
  /** The configured backends' names. */
  backends: string[];
  /** A bad filter (the page is then a 400). */
  error?: string;
}

function outcomeBadge(outcome: string): Html {
  const kind = outcome === "ok" ? "ok" : outcome === "denied" ? "warn" : "bad";
  return html`<span class="badge ${kind}">${outcome}</span>`;
}

/** The audit trail page. */
export function auditTrailPage(viewer: Viewer, v: AuditView): Response {
  const audit = (params: Record<string, string | number | undefined>) =>
    consoleUrl(viewer.publicUrl, SECTIONS.audit.path, params);
  const mono = (text: string | null) => text && html`<span class="mono">${text}</span>`;
  const columns: Column<AuditRecord>[] = [
    { label: "Time", cell: (r) => when(r.time), nowrap: true },
    { label: "Event", cell: (r) => r.event },
    {
      label: "User",
      cell: (r) => r.user && html`<a href="${audit({ ...v.values, user: r.user })}">${r.user}</a>`,
    },
    { label: "Client", cell: (r) => mono(r.clientId) },
    { label: "Backend", cell: (r) => r.backend },
    { label: "Method", cell: (r) => r.method },
    { label: "Tool", cell: (r) => mono(r.tool) },
    { label: "Outcome", cell: (r) => outcomeBadge(r.outcome) },
    {
      label: "Latency",
      cell: (r) => (r.latencyMs === null ? null : `${Math.round(r.latencyMs)} ms`),
      numeric: true,
    },
    { label: "By", cell: (r) => r.actor ?? null },
    { label: "Request", cell: (r) => mono(r.requestId?.slice(0, 8) ?? null) },
  ];
  const next = v.page.next;
  const older = next
    ? html`<a href="${audit({ ...v.values, ...next })}" rel="next">Older →</a>`
    : "";
  const newest = v.paged ? html`<a href="${audit(v.values)}">← Newest</a>` : "";
  const exportUrl = consoleUrl(viewer.publicUrl, "/admin/audit.jsonl", v.values);
  const error = v.error ? html`<p class="error" role="alert">${v.error}</p>` : "";
  const body = html`<h1>Audit trail</h1>
<p class="sub">Every MCP call that reached a backend and every sign-in and OAuth event, newest
first. Times are UTC. <a href="${exportUrl}">Export these records (JSON Lines)</a></p>
${error}${filterForm(viewer, v.values, v.backends)}
${table(columns, v.page.records, v.error ? "Correct the filter above." : "No record matches.")}
<div class="pager"><span>${newest}</span><span>${older}</span></div>`;
  const status = v.error ? 400 : 200;
  return consolePage({ title: "Audit trail", section: "audit", viewer, body, status });
}
