/**
 * The audit trail's cost on the request path, in process: what a routed MCP call pays for its
 * audit record (lib/admin/mcp_operation.ts: the operation, its backend call, the record appended
 * to the per-isolate buffer), and what a batch flush costs off the path (100 records in one
 * atomic commit to a KV file). Bounded loops; a temp KV file.
 */
import { AuditWriter } from "../lib/admin/audit.ts";
import { McpOperation } from "../lib/admin/mcp_operation.ts";
import { noTelemetry } from "../lib/admin/telemetry.ts";
import { parseConfig } from "../lib/config.ts";
import type { Principal } from "../lib/oauth/bearer.ts";

/** Per-call and per-batch costs. */
export interface AuditCost {
  /** µs per routed call: operation + backend call + record appended (median of rounds). */
  usPerCall: number;
  /** ms per flush of 100 records to a KV file (median). */
  msPerBatch: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Measures {@linkcode AuditCost} over `rounds` rounds of 5 000 calls. */
export async function measureAuditCost(rounds = 20): Promise<AuditCost> {
  const dir = await Deno.makeTempDir({ prefix: "bench-audit-" });
  const kv = await Deno.openKv(`${dir}/audit.kv`);
  try {
    const config = parseConfig(
      { backends: [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }] },
      () => undefined,
    );
    const audit = new AuditWriter({
      kv,
      log: () => {},
      now: Date.now,
      enabled: true,
      retentionMs: 86_400_000,
      grantUsedTtlMs: 86_400_000,
      flushIntervalMs: 0,
    });
    const deps = { audit, telemetry: noTelemetry(), now: Date.now, config };
    const principal: Principal = {
      id: "g1",
      kind: "token",
      clientId: "bench",
      grantId: "g1",
      scope: "mcp",
      audience: "http://127.0.0.1/mcp",
      user: { sub: "corp:bench" },
    };
    const message = {
      jsonrpc: "2.0",
      id: 1,
      method: "tools/call",
      params: { name: "alpha__echo", arguments: { text: "hi" } },
    };
    const headers = new Headers({ "mcp-protocol-version": "2026-07-28" });
    const perCall: number[] = [];
    const perBatch: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const t0 = performance.now();
      for (let i = 0; i < 5000; i++) {
        const op = new McpOperation(deps, principal, { requestId: "r" });
        op.describe(message, headers);
        op.backendCall("alpha", "tools/call", "echo").end("ok");
      }
      perCall.push(((performance.now() - t0) * 1000) / 5000);
      const t1 = performance.now();
      await audit.flush();
      perBatch.push((performance.now() - t1) / 50);
    }
    return { usPerCall: median(perCall), msPerBatch: median(perBatch) };
  } finally {
    kv.close();
    await Deno.remove(dir, { recursive: true });
  }
}
