/**
 * The audit trail's writer (lib/admin/audit.ts) on a real Deno KV: records wait in the isolate's
 * buffer and reach KV in batches, under time-ordered keys with their retention, and as log lines;
 * a grant's last use is written at most once a minute; arguments are kept only redacted.
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import {
  AUDIT_BATCH,
  auditRecord,
  AuditWriter,
  type AuditWriterOptions,
  MAX_ARGUMENTS_CHARS,
  outcomeOfMessage,
  redactArguments,
} from "../lib/admin/audit.ts";
import { memoryLogger, REDACTED } from "../lib/infra/log.ts";
import { grantUsedKey, type StoredAuditRecord } from "../lib/store.ts";
import { testClock } from "./_helpers.ts";

const DAY = 86_400_000;

async function writer(options: Partial<AuditWriterOptions> = {}) {
  const kv = await Deno.openKv(":memory:");
  const log = memoryLogger();
  const clock = testClock(Date.UTC(2026, 6, 1, 12));
  const w = new AuditWriter({
    kv,
    log,
    now: clock.now,
    enabled: true,
    retentionMs: 30 * DAY,
    grantUsedTtlMs: 30 * DAY,
    flushIntervalMs: 0,
    ...options,
  });
  return { kv, log, clock, w };
}

async function stored(kv: Deno.Kv): Promise<Deno.KvEntry<StoredAuditRecord>[]> {
  return await Array.fromAsync(kv.list<StoredAuditRecord>({ prefix: ["audit"] }));
}

const call = (time: number, tool = "alpha__echo") =>
  auditRecord(time, "mcp", {
    user: "corp:1",
    clientId: "c1",
    grantId: "g1",
    backend: "alpha",
    method: "tools/call",
    tool,
    outcome: "ok",
    latencyMs: 1.5,
  }, "req-1");

Deno.test("audit writer", async (t) => {
  await t.step("a record waits in the isolate's buffer until a flush writes it", async () => {
    const { kv, w, clock } = await writer();
    w.record(call(clock.now()));
    assertEquals(w.pending, 1);
    assertEquals((await stored(kv)).length, 0, "nothing is written on the request path");
    await w.flush();
    assertEquals(w.pending, 0);
    const [entry] = await stored(kv);
    assert(entry, "the record is in KV");
    assertEquals(entry.key[0], "audit");
    assertEquals(entry.key[1], clock.now());
    assertEquals(entry.value.tool, "alpha__echo");
    assertEquals(entry.value.expiresAt, clock.now() + 30 * DAY);
    kv.close();
  });

  await t.step("keys are time-ordered: a listing returns records in time order", async () => {
    const { kv, w, clock } = await writer();
    const t0 = clock.now();
    w.record(call(t0 + 2000, "alpha__late"));
    w.record(call(t0, "alpha__early"));
    w.record(call(t0 + 1000, "alpha__middle"));
    await w.flush();
    assertEquals(
      (await stored(kv)).map((e) => e.value.tool),
      ["alpha__early", "alpha__middle", "alpha__late"],
    );
    kv.close();
  });

  await t.step("every record is also a structured log line (event audit.<event>)", async () => {
    const { kv, w, log, clock } = await writer();
    w.record(call(clock.now()));
    await w.flush();
    const line = log.records.find((r) => r.event === "audit.mcp");
    assert(line, "an audit.mcp log line");
    assertEquals(line.user, "corp:1");
    assertEquals(line.requestId, "req-1");
    assertEquals(line.outcome, "ok");
    assertEquals("expiresAt" in line, false);
    kv.close();
  });

  await t.step(`${AUDIT_BATCH} pending records are written at once, without a timer`, async () => {
    const { kv, w, clock } = await writer({ flushIntervalMs: 3_600_000 });
    for (let i = 0; i < AUDIT_BATCH; i++) w.record(call(clock.now() + i));
    for (let i = 0; i < 100 && (await stored(kv)).length < AUDIT_BATCH; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assertEquals((await stored(kv)).length, AUDIT_BATCH);
    await w.close();
    kv.close();
  });

  await t.step("a lone record is written by the flush interval", async () => {
    const { kv, w, clock } = await writer({ flushIntervalMs: 20 });
    w.record(call(clock.now()));
    for (let i = 0; i < 200 && (await stored(kv)).length === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assertEquals((await stored(kv)).length, 1);
    await w.close();
    kv.close();
  });

  await t.step("close() writes what is pending and refuses later records", async () => {
    const { kv, w, clock } = await writer({ flushIntervalMs: 3_600_000 });
    w.record(call(clock.now()));
    await w.close();
    assertEquals((await stored(kv)).length, 1);
    w.record(call(clock.now()));
    assertEquals(w.pending, 0);
    kv.close();
  });

  await t.step("a failed write keeps the records and logs a warning", async () => {
    const dir = await Deno.makeTempDir();
    const kv = await Deno.openKv(`${dir}/a.kv`);
    const log = memoryLogger();
    const w = new AuditWriter({
      kv,
      log,
      now: Date.now,
      enabled: true,
      retentionMs: DAY,
      grantUsedTtlMs: DAY,
      flushIntervalMs: 0,
    });
    w.record(call(Date.now()));
    kv.close();
    await w.flush();
    assertEquals(w.pending, 1, "the record waits for the next flush");
    assert(log.records.some((r) => r.event === "audit_flush_failed" && r.level === "warn"));
    assertEquals(log.records.filter((r) => r.event === "audit.mcp").length, 1);
    await w.flush();
    assertEquals(
      log.records.filter((r) => r.event === "audit.mcp").length,
      1,
      "a retried record is not logged twice",
    );
    await Deno.remove(dir, { recursive: true });
  });

  await t.step("audit.enabled false: nothing is recorded", async () => {
    const { kv, w, clock } = await writer({ enabled: false });
    w.record(call(clock.now()));
    await w.flush();
    assertEquals((await stored(kv)).length, 0);
    kv.close();
  });

  await t.step("a grant's last use is written at most once a minute per isolate", async () => {
    const { kv, w, clock } = await writer();
    const t0 = clock.now();
    w.grantUsed("g1");
    clock.advance(30_000);
    w.grantUsed("g1");
    await w.flush();
    assertEquals((await kv.get(grantUsedKey("g1"))).value, t0, "the second use was not queued");
    clock.advance(30_000);
    w.grantUsed("g1");
    await w.flush();
    assertEquals((await kv.get(grantUsedKey("g1"))).value, t0 + 60_000);
    kv.close();
  });
});

Deno.test('audit arguments ("arguments": "redacted")', async (t) => {
  await t.step("values of secret-looking keys are masked, at any depth", () => {
    const out = redactArguments({
      query: "weather",
      apiKey: "k-123",
      nested: { password: "hunter2", githubToken: "t", privateKey: "p", keep: 1 },
      headers: { Authorization: "Basic abc" },
    })!;
    assertEquals(out.query, "weather");
    assertEquals(out.apiKey, REDACTED);
    const nested = out.nested as Record<string, unknown>;
    assertEquals(nested.password, REDACTED);
    assertEquals(nested.githubToken, REDACTED);
    assertEquals(nested.privateKey, REDACTED);
    assertEquals(nested.keep, 1);
    assertEquals((out.headers as Record<string, unknown>).Authorization, REDACTED);
  });

  await t.step("credentials inside string values are masked", () => {
    const out = redactArguments({ note: "use Bearer abc.def-ghi please", t: "gwat_abcdefghijkl" })!;
    assertEquals(out.note, `use ${REDACTED} please`);
    assertEquals(out.t, REDACTED);
  });

  await t.step("long strings are cut and large objects truncated to 2 KiB", () => {
    const cut = redactArguments({ text: "x".repeat(1000) })!;
    assertMatch(cut.text as string, /^x{256}…$/);
    const many = Object.fromEntries(
      Array.from({ length: 40 }, (_, i) => [`k${i}`, "y".repeat(200)]),
    );
    const big = redactArguments(many)!;
    assertEquals(Object.keys(big), ["[truncated]"]);
    assertEquals((big["[truncated]"] as string).length, MAX_ARGUMENTS_CHARS);
  });

  await t.step("no arguments, or not an object: nothing recorded", () => {
    assertEquals(redactArguments(undefined), undefined);
    assertEquals(redactArguments(["a"]), undefined);
  });
});

Deno.test("outcomeOfMessage (MCP semantic conventions error.type)", async (t) => {
  await t.step("a JSON-RPC error is its code", () => {
    assertEquals(
      outcomeOfMessage({ jsonrpc: "2.0", id: 1, error: { code: -32602, message: "x" } }),
      "-32602",
    );
  });
  await t.step("a tool result with isError: true is tool_error", () => {
    assertEquals(outcomeOfMessage({ id: 1, result: { content: [], isError: true } }), "tool_error");
  });
  await t.step("any other result is ok", () => {
    assertEquals(outcomeOfMessage({ id: 1, result: { content: [] } }), "ok");
  });
});
