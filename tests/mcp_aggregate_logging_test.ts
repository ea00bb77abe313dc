/**
 * Backend log messages through the aggregated `/mcp` (MCP 2025-11-25 Server/Utilities/Logging;
 * 2026-07-28 `_meta["io.modelcontextprotocol/logLevel"]`): `logging/setLevel` fanned out to the
 * backends of the session's scope, a call's messages relayed on its stream at or above the
 * client's level with the backend named in `logger`, session-wide messages only to sessions that
 * set a level and whose scope covers the backend.
 */
import { assert, assertEquals } from "./_assert.ts";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { LoggingMessageNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { serveGateway } from "./_helpers.ts";
import { legacyBackend, mintAccessToken, modernBackend } from "./_aggregate_backends.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 3000): Promise<boolean> {
  for (let waited = 0; waited < ms && !cond(); waited += 10) await sleep(10);
  return cond();
}

const LEVELS = ["debug", "info", "error"] as const;

interface Heard {
  level: string;
  logger?: string;
  data: unknown;
}

/** The part of the v1 SDK's `RequestHandlerExtra` the tools use. */
interface V1Extra {
  sessionId?: string;
  sendNotification: (n: unknown) => Promise<void>;
}

/** A v1 client that records the log messages it hears. */
async function legacyLogClient(url: string, token: string) {
  const client = new V1Client({ name: "t", version: "1" });
  const heard: Heard[] = [];
  client.setNotificationHandler(
    LoggingMessageNotificationSchema,
    (n: { params: Heard }) => void heard.push(n.params),
  );
  await client.connect(
    new V1ClientTransport(new URL(`${url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  await sleep(100); // the client opens its GET stream after initialize
  return { client, heard };
}

Deno.test("/mcp relays backend log messages", async (t) => {
  const alpha = legacyBackend("alpha", (s) => {
    s.registerTool("work", { inputSchema: {} }, async (_args: unknown, extra: V1Extra) => {
      for (const level of LEVELS) {
        await extra.sendNotification({
          method: "notifications/message",
          params: { level, logger: "worker", data: `alpha ${level}` },
        });
      }
      return { content: [{ type: "text", text: "worked" }] };
    });
    s.registerTool("broadcast", { inputSchema: {} }, async (_args: unknown, extra: V1Extra) => {
      // Session-wide: no related request, so it travels on the backend's GET stream.
      await s.server.sendLoggingMessage({ level: "warning", data: "alpha wide" }, extra.sessionId);
      await s.server.sendLoggingMessage({ level: "debug", data: "alpha quiet" }, extra.sessionId);
      return { content: [{ type: "text", text: "broadcast" }] };
    });
  }, { capabilities: { logging: {} } });
  const beta = modernBackend("beta", (s) => {
    s.server.registerCapabilities({ logging: {} });
    s.registerTool("work", {}, async (ctx) => {
      for (const level of LEVELS) await ctx.mcpReq.log(level, `beta ${level}`, "worker");
      return { content: [{ type: "text", text: "worked" }] };
    });
  });
  const gw = await serveGateway({
    config: { backends: [{ name: "alpha", url: alpha.url }, { name: "beta", url: beta.url }] },
  });
  const token = await mintAccessToken(gw.deps);
  const setLevels = () =>
    alpha.seen.filter((r) => r.rpc?.method === "logging/setLevel").map((r) => r.rpc.params.level);
  try {
    await t.step("logging is advertised when a backend sends log messages", async () => {
      const { client } = await legacyLogClient(gw.url, token);
      try {
        assertEquals(client.getServerCapabilities()?.logging, {});
      } finally {
        await client.close();
      }
    });

    await t.step("logging/setLevel is fanned out to the 2025 backends of the scope", async () => {
      const { client } = await legacyLogClient(gw.url, token);
      try {
        assertEquals(await client.setLoggingLevel("info"), {});
        assertEquals(setLevels(), ["info"]);
      } finally {
        await client.close();
      }
    });

    await t.step(
      "a call's messages at or above the session's level, on its stream, backend named",
      async () => {
        const { client, heard } = await legacyLogClient(gw.url, token);
        try {
          await client.setLoggingLevel("info");
          for (const backend of ["alpha", "beta", "beta"]) {
            // beta twice: the first call connects through the SDK, the next takes the fast path
            heard.length = 0;
            const result = await client.callTool({ name: `${backend}__work`, arguments: {} });
            assertEquals(result.content, [{ type: "text", text: "worked" }]);
            assertEquals(heard, [
              { level: "info", logger: `${backend}/worker`, data: `${backend} info` },
              { level: "error", logger: `${backend}/worker`, data: `${backend} error` },
            ]);
          }
          assert(
            gw.deps.logs.some((l) => l.tool === "beta__work" && l.fast_path === true),
            "the fast path relayed log messages too",
          );
        } finally {
          await client.close();
        }
      },
    );

    await t.step("a session that set no level hears no log messages", async () => {
      const { client, heard } = await legacyLogClient(gw.url, token);
      try {
        await client.callTool({ name: "alpha__work", arguments: {} });
        await client.callTool({ name: "beta__work", arguments: {} });
        await client.callTool({ name: "alpha__broadcast", arguments: {} });
        await sleep(100);
        assertEquals(heard, []);
      } finally {
        await client.close();
      }
    });

    await t.step(
      "session-wide messages reach the sessions that set a level and cover the backend",
      async () => {
        const a = await legacyLogClient(gw.url, token);
        const betaOnly = await mintAccessToken(gw.deps, { scope: "mcp:beta" });
        const b = await legacyLogClient(gw.url, betaOnly);
        try {
          await a.client.setLoggingLevel("warning");
          await b.client.setLoggingLevel("debug");
          await a.client.callTool({ name: "alpha__broadcast", arguments: {} });
          assert(await until(() => a.heard.length > 0), "the session-wide message arrived");
          await sleep(100);
          assertEquals(a.heard, [{ level: "warning", logger: "alpha", data: "alpha wide" }]);
          assertEquals(b.heard, [], "a session whose scope does not cover alpha hears nothing");
          assert(!setLevels().includes("debug"), "setLevel fans out to the session's scope only");
        } finally {
          await a.client.close();
          await b.client.close();
        }
      },
    );

    await t.step(
      "2026-07-28 client: the request's _meta logLevel sets what its stream carries",
      async () => {
        const client = new Client({ name: "t", version: "1" }, {
          versionNegotiation: { mode: "auto" },
        });
        const heard: Heard[] = [];
        client.setNotificationHandler("notifications/message", (n) => {
          heard.push(n.params as Heard);
        });
        await client.connect(
          new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), {
            requestInit: { headers: { authorization: `Bearer ${token}` } },
          }),
        );
        try {
          for (const backend of ["alpha", "beta"]) {
            heard.length = 0;
            await client.callTool({
              name: `${backend}__work`,
              arguments: {},
              _meta: { "io.modelcontextprotocol/logLevel": "error" },
            });
            assertEquals(heard, [
              { level: "error", logger: `${backend}/worker`, data: `${backend} error` },
            ]);
            heard.length = 0;
            await client.callTool({ name: `${backend}__work`, arguments: {} });
            assertEquals(heard, [], "no logLevel, no log messages");
          }
        } finally {
          await client.close();
        }
      },
    );
  } finally {
    await closeAggregate(gw.deps);
    await gw.close();
    await alpha.close();
    await beta.close();
  }
});
