/**
 * OpenTelemetry (issue 12): the gateway runs as a process with Deno's built-in OpenTelemetry
 * (`OTEL_DENO=true`, OTLP over HTTP/JSON) exporting to a receiver in this test. Checked: the MCP
 * SERVER span per request (`{mcp.method.name} {target}` and the MCP semantic conventions'
 * attributes, plus the gateway's own), the backend call as a CLIENT span in the same trace, the
 * trace context reaching the backend in `traceparent` and `params._meta.traceparent`, on `/mcp`
 * (SDK path and fast path) and `/mcp/{backend}` (both eras, outcomes read from the JSON-RPC
 * response inside a 200); the backend's own tool name on the client span for renamed and
 * shortened tools; the duration histograms and the authentication-failure counter.
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { z } from "zod";
import { makeDeps } from "./_helpers.ts";
import { putGrantOf } from "./_admin_fixtures.ts";
import { startGatewayProcess } from "./_gateway_process.ts";
import { legacyBackend, modernBackend } from "./_aggregate_backends.ts";
import { exposedName } from "../lib/mcp/aggregate/naming.ts";

type Attr = { key: string; value: Record<string, unknown> };
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Attr[];
  status?: { code?: number; message?: string };
  links?: { traceId: string; spanId: string }[];
}
interface OtlpPoint {
  attributes: Attr[];
  count?: string | number;
  asInt?: string | number;
  asDouble?: number;
}

const SPAN_KIND_SERVER = 2;
const SPAN_KIND_CLIENT = 3;
const STATUS_ERROR = 2;

/** An OTLP/HTTP JSON receiver (`/v1/traces`, `/v1/metrics`) on a loopback port. */
function otlpReceiver() {
  const spans: OtlpSpan[] = [];
  const metrics = new Map<string, OtlpPoint[]>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    const body = await req.json().catch(() => ({}));
    if (path === "/v1/traces") {
      for (const rs of body.resourceSpans ?? []) {
        for (const ss of rs.scopeSpans ?? []) spans.push(...(ss.spans ?? []));
      }
    } else if (path === "/v1/metrics") {
      for (const rm of body.resourceMetrics ?? []) {
        for (const sm of rm.scopeMetrics ?? []) {
          for (const m of sm.metrics ?? []) {
            const points = m.histogram?.dataPoints ?? m.sum?.dataPoints ?? [];
            metrics.set(m.name, points); // cumulative: the latest export holds everything
          }
        }
      }
    }
    return new Response("{}", { headers: { "content-type": "application/json" } });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    spans,
    metrics,
    close: () => server.shutdown(),
  };
}

const attr = (s: { attributes: Attr[] }, key: string): unknown => {
  const v = s.attributes.find((a) => a.key === key)?.value;
  return v === undefined ? undefined : v.stringValue ?? v.intValue ?? v.boolValue ?? v.doubleValue;
};

async function until<T>(what: string, get: () => T | undefined, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    assert(Date.now() < end, `waited ${ms} ms for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const ENVELOPE = {
  "io.modelcontextprotocol/protocolVersion": "2026-07-28",
  "io.modelcontextprotocol/clientCapabilities": {},
};

/** A 2026-07-28 `tools/call` POST with the client's own `traceparent` header. */
function toolCall(url: string, token: string, name: string, id: number, traceparent: string) {
  return fetch(url, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": "2026-07-28",
      "mcp-method": "tools/call",
      "mcp-name": name,
      traceparent,
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id,
      method: "tools/call",
      params: { name, arguments: { text: "hi" }, _meta: ENVELOPE },
    }),
  });
}

const traceparentOf = (traceId: string) => `00-${traceId}-${"1".repeat(16)}-01`;

Deno.test("OpenTelemetry: spans and metrics reach an OTLP/HTTP receiver", async (t) => {
  const receiver = otlpReceiver();
  /** What the backend received of each tools/call: HTTP traceparent and params._meta.traceparent. */
  const seen: { header: string | null; meta: string | undefined; name: string }[] = [];
  const backend = modernBackend("alpha", (s) => {
    s.registerTool(
      "echo",
      { inputSchema: z.object({ text: z.string() }) },
      ({ text }) => ({ content: [{ type: "text", text }] }),
    );
    // Not a valid exposed name: shown on /mcp shortened (naming.ts).
    s.registerTool("do.echo", {}, () => ({ content: [{ type: "text", text: "done" }] }));
  });
  const legacy = legacyBackend("legacy", (s) => {
    s.registerTool("fail", {}, () => ({ content: [{ type: "text", text: "no" }], isError: true }));
  }, { jsonResponse: true });
  const spy = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    if (req.method === "POST") {
      const msg = await req.clone().json().catch(() => ({}));
      if (msg.method === "tools/call") {
        seen.push({
          header: req.headers.get("traceparent"),
          meta: msg.params?._meta?.traceparent,
          name: msg.params?.name,
        });
      }
    }
    return await backend.handler.fetch(req);
  });
  const backendUrl = `http://127.0.0.1:${spy.addr.port}/mcp`;
  const gw = await startGatewayProcess({
    backends: [
      { name: "alpha", url: backendUrl },
      { name: "renamed", url: backendUrl, tools: { rename: { echo: "say" } } },
      { name: "legacy", url: legacy.url },
    ],
  }, {
    OTEL_DENO: "true",
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_SERVICE_NAME: "gateway-under-test",
    OTEL_BSP_SCHEDULE_DELAY: "100",
    OTEL_METRIC_EXPORT_INTERVAL: "250",
  });
  const deps = await makeDeps({ kvPath: gw.kvPath, env: { PUBLIC_URL: gw.url } });
  const serverSpan = (traceId: string) =>
    receiver.spans.find((s) =>
      s.traceId === traceId && s.kind === SPAN_KIND_SERVER && attr(s, "mcp.method.name")
    );
  const childOf = (parent: OtlpSpan, kind: number) =>
    receiver.spans.find((s) => s.parentSpanId === parent.spanId && s.kind === kind);
  try {
    const { accessToken, grant } = await putGrantOf(deps, "corp:ann", { clientId: "otel-client" });

    const checkCall = async (traceId: string, path: string, name: string, target: string) => {
      const server = await until(`the server span of ${path}`, () => serverSpan(traceId));
      assertEquals(server.name, `tools/call ${name}`);
      assertEquals(attr(server, "mcp.method.name"), "tools/call");
      assertEquals(attr(server, "gen_ai.tool.name"), name);
      assertEquals(attr(server, "gen_ai.operation.name"), "execute_tool");
      assertEquals(attr(server, "mcp.protocol.version"), "2026-07-28");
      assertEquals(attr(server, "mcp.gateway.client.id"), "otel-client");
      assertMatch(String(attr(server, "mcp.gateway.user.hash")), /^[0-9a-f]{16}$/);
      assert(!JSON.stringify(server).includes("corp:ann"), "the user id is hashed");
      assert(!JSON.stringify(server).includes(accessToken), "no token in spans");
      const http = receiver.spans.find((s) => s.spanId === server.parentSpanId);
      assertEquals(http?.kind, SPAN_KIND_SERVER, "a child of Deno's HTTP server span");
      const client = await until(
        `the client span of ${path}`,
        () => childOf(server, SPAN_KIND_CLIENT),
      );
      assertEquals(client.name, `tools/call ${target}`);
      assertEquals(client.traceId, traceId);
      assertEquals(attr(client, "mcp.gateway.backend"), "alpha");
      assertEquals(attr(client, "gen_ai.tool.name"), target);
      assertEquals(attr(client, "server.address"), "127.0.0.1");
      assertEquals(Number(attr(client, "server.port")), spy.addr.port);
      return { server, client };
    };

    await t.step(
      "/mcp through the SDK path: server span, client span, context at the backend",
      async () => {
        const traceId = "a".repeat(32);
        const res = await toolCall(
          `${gw.url}/mcp`,
          accessToken,
          "alpha__echo",
          1,
          traceparentOf(traceId),
        );
        assertEquals(res.status, 200);
        await res.body?.cancel();
        const { client } = await checkCall(traceId, "/mcp (SDK path)", "alpha__echo", "echo");
        assertEquals(attr(client, "mcp.method.name"), "tools/call");
        const got = seen.at(-1)!;
        assertEquals(got.header?.split("-")[1], traceId, "HTTP traceparent in the same trace");
        assertEquals(
          got.meta,
          `00-${traceId}-${client.spanId}-01`,
          "params._meta.traceparent: the client span",
        );
      },
    );

    await t.step("/mcp through the fast path: the same spans and context", async () => {
      const traceId = "b".repeat(32);
      const res = await toolCall(
        `${gw.url}/mcp`,
        accessToken,
        "alpha__echo",
        2,
        traceparentOf(traceId),
      );
      assertEquals(res.status, 200);
      await res.body?.cancel();
      const { client } = await checkCall(traceId, "/mcp (fast path)", "alpha__echo", "echo");
      const got = seen.at(-1)!;
      assertEquals(got.header?.split("-")[1], traceId);
      assertEquals(got.meta, `00-${traceId}-${client.spanId}-01`);
    });

    await t.step(
      "/mcp/{backend}: server span with mcp.gateway.backend, traceparent to the backend",
      async () => {
        const traceId = "c".repeat(32);
        const res = await toolCall(
          `${gw.url}/mcp/alpha`,
          accessToken,
          "echo",
          3,
          traceparentOf(traceId),
        );
        assertEquals(res.status, 200);
        await res.body?.cancel();
        const { server } = await checkCall(traceId, "/mcp/alpha", "echo", "echo");
        assertEquals(attr(server, "mcp.gateway.backend"), "alpha");
        assertEquals(seen.at(-1)!.header?.split("-")[1], traceId, "the HTTP request carries it");
      },
    );

    await t.step("a failed call: error.type is the JSON-RPC code, status ERROR", async () => {
      const traceId = "d".repeat(32);
      const res = await toolCall(
        `${gw.url}/mcp`,
        accessToken,
        "alpha__nope",
        4,
        traceparentOf(traceId),
      );
      assertEquals(res.status, 200);
      await res.body?.cancel();
      const server = await until("the failed call's span", () => serverSpan(traceId));
      const client = await until("its client span", () => childOf(server, SPAN_KIND_CLIENT));
      for (const s of [server, client]) {
        assertEquals(attr(s, "error.type"), "-32602");
        assertEquals(attr(s, "rpc.response.status_code"), "-32602");
        assertEquals(s.status?.code, STATUS_ERROR);
      }
    });

    await t.step("metrics: operation durations and authentication failures", async () => {
      const res = await fetch(`${gw.url}/mcp`, {
        method: "POST",
        headers: { authorization: "Bearer wrong-token", "content-type": "application/json" },
        body: "{}",
      });
      assertEquals(res.status, 401);
      await res.body?.cancel();
      /** The tools/call points of a histogram once `enough` holds (exports are cumulative). */
      const toolCalls = (name: string, enough: (points: OtlpPoint[]) => boolean) =>
        until(name, () => {
          const points = receiver.metrics.get(name)?.filter((p) =>
            attr(p, "mcp.method.name") === "tools/call"
          );
          return points && enough(points) ? points : undefined;
        });
      const count = (points: OtlpPoint[]) => points.reduce((n, p) => n + Number(p.count), 0);
      const server = await toolCalls("mcp.server.operation.duration", (p) => count(p) >= 4);
      assert(server.some((p) => attr(p, "error.type") === "-32602"), "failures carry error.type");
      const client = await toolCalls("mcp.client.operation.duration", (p) => count(p) >= 4);
      assert(
        client.every((p) => attr(p, "mcp.gateway.backend") === "alpha"),
        JSON.stringify(client),
      );
      assert(client.some((p) => attr(p, "error.type") === "-32602"), JSON.stringify(client));
      const failures = await until("mcp.gateway.auth.failures", () => {
        const points = receiver.metrics.get("mcp.gateway.auth.failures");
        return points?.some((p) => attr(p, "error.type") === "invalid_token") ? points : undefined;
      });
      const point = failures.find((p) => attr(p, "error.type") === "invalid_token")!;
      assertEquals(attr(point, "mcp.gateway.route"), "mcp");
      assertEquals(Number(attr(point, "http.response.status_code")), 401);
      assert(Number(point.asInt ?? point.asDouble) >= 1, JSON.stringify(point));
      assert(grant.grantId);
    });

    await t.step(
      "/mcp, renamed and shortened tools: the client span names the backend's own tool",
      async () => {
        for (
          const [n, exposed, upstream] of [
            [6, "renamed__say", "echo"],
            [7, exposedName("alpha", "do.echo"), "do.echo"],
          ] as const
        ) {
          const traceId = String(n).repeat(32);
          const res = await toolCall(
            `${gw.url}/mcp`,
            accessToken,
            exposed,
            n,
            traceparentOf(traceId),
          );
          assertEquals(res.status, 200);
          await res.body?.cancel();
          const server = await until(`the server span of ${exposed}`, () => serverSpan(traceId));
          assertEquals(server.name, `tools/call ${exposed}`);
          assertEquals(attr(server, "gen_ai.tool.name"), exposed, "the name the client used");
          const client = await until("its client span", () => childOf(server, SPAN_KIND_CLIENT));
          assertEquals(client.name, `tools/call ${upstream}`);
          assertEquals(attr(client, "gen_ai.tool.name"), upstream, "the name sent to the backend");
          assertEquals(seen.at(-1)!.name, upstream);
        }
      },
    );

    await t.step(
      "/mcp/{backend}: a JSON-RPC error inside the 200 is error.type on both spans",
      async () => {
        const traceId = "e".repeat(32);
        const res = await toolCall(
          `${gw.url}/mcp/alpha`,
          accessToken,
          "nope",
          8,
          traceparentOf(traceId),
        );
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type")?.split(";")[0], "application/json");
        assertEquals((await res.json()).error.code, -32602);
        const server = await until("the server span", () => serverSpan(traceId));
        const client = await until("its client span", () => childOf(server, SPAN_KIND_CLIENT));
        for (const s of [server, client]) {
          assertEquals(attr(s, "error.type"), "-32602");
          assertEquals(s.status?.code, STATUS_ERROR);
        }
      },
    );

    await t.step(
      "/mcp/{backend}, a 2025-era client: server span from the body, isError is tool_error",
      async () => {
        const headers = {
          authorization: `Bearer ${accessToken}`,
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
        };
        const init = await fetch(`${gw.url}/mcp/legacy`, {
          method: "POST",
          headers,
          body: JSON.stringify({
            jsonrpc: "2.0",
            id: 0,
            method: "initialize",
            params: {
              protocolVersion: "2025-11-25",
              capabilities: {},
              clientInfo: { name: "otel-legacy", version: "1" },
            },
          }),
        });
        assertEquals(init.status, 200);
        await init.body?.cancel();
        const session = init.headers.get("mcp-session-id")!;
        const traceId = "f".repeat(32);
        const res = await fetch(`${gw.url}/mcp/legacy`, {
          method: "POST",
          headers: {
            ...headers,
            "mcp-session-id": session,
            "mcp-protocol-version": "2025-11-25",
            traceparent: traceparentOf(traceId),
          },
          body: JSON.stringify({
            jsonrpc: "2.0",
            id: 9,
            method: "tools/call",
            params: { name: "fail", arguments: {} },
          }),
        });
        assertEquals(res.status, 200);
        assertEquals((await res.json()).result.isError, true);
        const server = await until("the server span", () => serverSpan(traceId));
        assertEquals(server.name, "tools/call fail");
        assertEquals(attr(server, "mcp.gateway.backend"), "legacy");
        assertEquals(attr(server, "jsonrpc.request.id"), "9");
        assertEquals(attr(server, "mcp.protocol.version"), "2025-11-25");
        assertMatch(String(attr(server, "mcp.session.id")), /^[0-9a-f]{32}$/);
        const client = await until("its client span", () => childOf(server, SPAN_KIND_CLIENT));
        assertEquals(attr(client, "gen_ai.tool.name"), "fail");
        for (const s of [server, client]) {
          assertEquals(attr(s, "error.type"), "tool_error");
          assertEquals(s.status?.code, STATUS_ERROR);
        }
      },
    );
  } finally {
    deps.kv.close();
    await gw.stop();
    await spy.shutdown();
    await backend.close();
    await legacy.close();
    await receiver.close();
    await Deno.remove(gw.dir, { recursive: true });
  }
});
