/**
 * The official MCP conformance suite (`@modelcontextprotocol/conformance`, server scenarios,
 * 2025-era clients) against the aggregated `/mcp` and the pass-through `/mcp/ev`, with
 * `@modelcontextprotocol/server-everything` behind both. The suite's client cannot send a token,
 * so a loopback front adds the gateway's API key.
 *
 * The suite calls fixed names (`test_simple_text`, `test://watched-resource`): on `/mcp` every
 * name carries its backend's prefix (`ev__…`, `mcpgw-ev+…`), so a scenario that passes on
 * `/mcp/ev` may fail on `/mcp` only because of such a name (-32602 unknown tool or resource).
 * Anything else is a gap of the aggregated endpoint.
 */
import { assert, assertEquals } from "./_assert.ts";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { serveGateway } from "./_helpers.ts";
import { everythingBackend } from "./_aggregate_backends.ts";

/** The pinned suite (also in deno.json imports). */
const CONFORMANCE = "npm:@modelcontextprotocol/conformance@0.1.16";
const API_KEY = "conformance-api-key-0123456789";

interface Check {
  id: string;
  status: string;
  errorMessage?: string;
}

/** Runs every server scenario against `url`; returns each scenario's checks. */
async function runSuite(url: string): Promise<Map<string, Check[]>> {
  const out = await Deno.makeTempDir({ prefix: "conformance-" });
  try {
    const { code } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--quiet", CONFORMANCE, "server", "--url", url, "-o", out],
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    assert(code === 0 || code === 1, `the suite ran (exit ${code})`);
    const results = new Map<string, Check[]>();
    for await (const dir of Deno.readDir(out)) {
      const scenario = dir.name.replace(/^server-/, "").replace(/-\d{4}-\d\d-\d\dT.*$/, "");
      const checks = JSON.parse(await Deno.readTextFile(`${out}/${dir.name}/checks.json`));
      results.set(scenario, checks);
    }
    return results;
  } finally {
    await Deno.remove(out, { recursive: true });
  }
}

const passed = (checks: Check[] | undefined) =>
  !!checks && checks.length > 0 && checks.every((c) => c.status !== "FAILURE");

Deno.test("MCP conformance suite on /mcp and /mcp/ev (server-everything)", async (t) => {
  const ev = await everythingBackend();
  const gw = await serveGateway({
    config: { backends: [{ name: "ev", url: ev.url, timeoutMs: 20_000 }] },
    env: { GATEWAY_API_KEY: API_KEY },
  });
  const front = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const headers = new Headers(req.headers);
    headers.set("authorization", `Bearer ${API_KEY}`);
    headers.delete("host");
    const url = new URL(req.url);
    return fetch(`${gw.url}${url.pathname}${url.search}`, {
      method: req.method,
      headers,
      body: req.body,
      signal: req.signal,
      redirect: "manual",
    });
  });
  const base = `http://127.0.0.1:${front.addr.port}`;
  try {
    const aggregated = await runSuite(`${base}/mcp`);
    const passThrough = await runSuite(`${base}/mcp/ev`);

    await t.step("the suite ran every scenario on both endpoints", () => {
      assert(aggregated.size >= 30, `${aggregated.size} scenarios`);
      assertEquals([...aggregated.keys()].sort(), [...passThrough.keys()].sort());
    });

    await t.step(
      "/mcp passes initialize, ping, lists and logging/setLevel (MCP 2025-11-25)",
      () => {
        for (
          const scenario of [
            "server-initialize",
            "ping",
            "logging-set-level",
            "tools-list",
            "resources-list",
            "prompts-list",
          ]
        ) {
          assert(
            passed(aggregated.get(scenario)),
            `${scenario}: ${JSON.stringify(aggregated.get(scenario))}`,
          );
        }
      },
    );

    await t.step(
      "/mcp passes what /mcp/ev passes, but for the suite's unprefixed names (-32602)",
      () => {
        const differ: string[] = [];
        for (const [scenario, checks] of passThrough) {
          if (!passed(checks) || passed(aggregated.get(scenario))) continue;
          differ.push(scenario);
          for (const check of aggregated.get(scenario)!.filter((c) => c.status === "FAILURE")) {
            assert(
              /-32602: (Unknown tool|Resource not found): (test_|test:\/\/)/.test(
                check.errorMessage ?? "",
              ),
              `${scenario}/${check.id}: ${check.errorMessage}`,
            );
          }
        }
        // Subscriptions were -32601 before /mcp routed them; now only the suite's URI fails them.
        assert(differ.includes("resources-subscribe"), differ.join());
      },
    );
  } finally {
    await closeAggregate(gw.deps);
    await front.shutdown();
    await gw.close();
    await ev.close();
  }
});
