/**
 * list_changed relayed through the aggregated `/mcp`, debounced: legacy clients hear it on their
 * GET stream, modern clients on `subscriptions/listen` (MCP 2025-11-25 Server/Tools §List
 * Changed Notification; 2026-07-28 Basic/Subscriptions).
 */
import { assert, assertEquals } from "./_assert.ts";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { McpServer as V1McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { DEBOUNCE_MS } from "../lib/mcp/aggregate/changes.ts";
import { serveGateway } from "./_helpers.ts";
import { legacyBackend, mintAccessToken, modernBackend } from "./_aggregate_backends.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 3000): Promise<boolean> {
  for (let waited = 0; waited < ms && !cond(); waited += 10) await sleep(10);
  return cond();
}

Deno.test("/mcp relays list_changed", async (t) => {
  const alphaServers: V1McpServer[] = [];
  let alphaExtra = 0;
  const alpha = legacyBackend("alpha", (s) => {
    alphaServers.push(s);
    s.registerTool("base", {}, () => ({ content: [{ type: "text", text: "base" }] }));
  });
  const betaTools = ["base"];
  const beta = modernBackend("beta", (s) => {
    for (const name of betaTools) {
      s.registerTool(name, {}, () => ({ content: [{ type: "text", text: name }] }));
    }
  });
  const addAlphaTool = () => {
    const name = `extra${++alphaExtra}`;
    for (const s of alphaServers) {
      s.registerTool(name, {}, () => ({ content: [{ type: "text", text: name }] }));
    }
  };
  const gw = await serveGateway({
    config: { backends: [{ name: "alpha", url: alpha.url }, { name: "beta", url: beta.url }] },
  });
  const token = await mintAccessToken(gw.deps);
  const requestInit = { headers: { authorization: `Bearer ${token}` } };
  try {
    await t.step(
      "legacy client: listChanged advertised, changes arrive on GET, debounced",
      async () => {
        const client = new V1Client({ name: "t", version: "1" });
        let heard = 0;
        client.setNotificationHandler(ToolListChangedNotificationSchema, () => void heard++);
        await client.connect(new V1ClientTransport(new URL(`${gw.url}/mcp`), { requestInit }));
        try {
          assertEquals(client.getServerCapabilities()?.tools?.listChanged, true);
          await sleep(100); // the client opens its GET stream after initialize
          addAlphaTool();
          addAlphaTool();
          addAlphaTool();
          assert(await until(() => heard > 0), "no list_changed reached the legacy client");
          await sleep(DEBOUNCE_MS * 2);
          assertEquals(heard, 1);
          const tools = await client.listTools();
          assertEquals(tools.tools.map((x: { name: string }) => x.name), [
            "alpha__base",
            "alpha__extra1",
            "alpha__extra2",
            "alpha__extra3",
            "beta__base",
          ]);
        } finally {
          await client.close();
        }
      },
    );

    await t.step("modern client: changes arrive on subscriptions/listen", async () => {
      const client = new Client({ name: "t", version: "1" }, {
        versionNegotiation: { mode: "auto" },
      });
      let heard = 0;
      client.setNotificationHandler("notifications/tools/list_changed", () => void heard++);
      await client.connect(
        new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit }),
      );
      try {
        assertEquals(client.getServerCapabilities()?.tools?.listChanged, true);
        const sub = await client.listen({ toolsListChanged: true });
        try {
          assertEquals(sub.honoredFilter.toolsListChanged, true);
          betaTools.push("fresh");
          (beta as { handler: { notify: { toolsChanged(): void } } }).handler.notify
            .toolsChanged();
          assert(await until(() => heard > 0), "no list_changed reached the modern client");
          const tools = await client.listTools();
          assert(tools.tools.some((x) => x.name === "beta__fresh"));
        } finally {
          await sub.close();
        }
      } finally {
        await client.close();
      }
    });
  } finally {
    await closeAggregate(gw.deps);
    await alpha.close();
    await beta.close();
    await gw.close();
  }
});

Deno.test("/mcp announces only the list changes of backends in the session's scope", async (t) => {
  const alphaServers: V1McpServer[] = [];
  let alphaExtra = 0;
  const alpha = legacyBackend("alpha", (s) => {
    alphaServers.push(s);
    s.registerTool("base", {}, () => ({ content: [{ type: "text", text: "base" }] }));
  });
  const beta = modernBackend("beta", (s) => {
    s.registerTool("base", {}, () => ({ content: [{ type: "text", text: "base" }] }));
  });
  const changeAlpha = () => {
    const name = `extra${++alphaExtra}`;
    for (const s of alphaServers) {
      s.registerTool(name, {}, () => ({ content: [{ type: "text", text: name }] }));
    }
  };
  const changeBeta = () =>
    (beta as { handler: { notify: { toolsChanged(): void } } }).handler.notify.toolsChanged();
  const gw = await serveGateway({
    config: { backends: [{ name: "alpha", url: alpha.url }, { name: "beta", url: beta.url }] },
  });
  const init = async (scope: string) => ({
    headers: { authorization: `Bearer ${await mintAccessToken(gw.deps, { scope })}` },
  });
  /** Changes beta until the unscoped control stream hears of it (its backend link is async). */
  const betaChangeHeardBy = async (heard: () => number) => {
    for (let i = 0; i < 20 && heard() === 0; i++) {
      changeBeta();
      await until(() => heard() > 0, DEBOUNCE_MS * 3);
    }
    assert(heard() > 0, "the unscoped control stream heard beta's change");
    await sleep(DEBOUNCE_MS * 2);
  };
  try {
    await t.step(
      "legacy GET stream of an mcp:alpha session: beta's changes are not announced",
      async () => {
        const scoped = new V1Client({ name: "scoped", version: "1" });
        const control = new V1Client({ name: "control", version: "1" });
        let scopedHeard = 0;
        let controlHeard = 0;
        scoped.setNotificationHandler(ToolListChangedNotificationSchema, () => void scopedHeard++);
        control.setNotificationHandler(
          ToolListChangedNotificationSchema,
          () => void controlHeard++,
        );
        const url = new URL(`${gw.url}/mcp`);
        await scoped.connect(new V1ClientTransport(url, { requestInit: await init("mcp:alpha") }));
        await control.connect(new V1ClientTransport(url, { requestInit: await init("mcp") }));
        try {
          await sleep(100); // the clients open their GET streams after initialize
          await betaChangeHeardBy(() => controlHeard);
          assertEquals(scopedHeard, 0, "a change outside the scope is not announced");
          changeAlpha();
          assert(await until(() => scopedHeard > 0), "a change inside the scope is announced");
        } finally {
          await scoped.close();
          await control.close();
        }
      },
    );

    await t.step("modern subscriptions/listen of an mcp:alpha token: the same", async () => {
      const client = (name: string) =>
        new Client({ name, version: "1" }, { versionNegotiation: { mode: "auto" } });
      const scoped = client("scoped");
      const control = client("control");
      let scopedHeard = 0;
      let controlHeard = 0;
      scoped.setNotificationHandler("notifications/tools/list_changed", () => void scopedHeard++);
      control.setNotificationHandler("notifications/tools/list_changed", () => void controlHeard++);
      const url = new URL(`${gw.url}/mcp`);
      await scoped.connect(
        new StreamableHTTPClientTransport(url, { requestInit: await init("mcp:alpha") }),
      );
      await control.connect(
        new StreamableHTTPClientTransport(url, { requestInit: await init("mcp") }),
      );
      const scopedSub = await scoped.listen({ toolsListChanged: true });
      const controlSub = await control.listen({ toolsListChanged: true });
      try {
        await betaChangeHeardBy(() => controlHeard);
        assertEquals(scopedHeard, 0, "a change outside the scope is not announced");
        changeAlpha();
        assert(await until(() => scopedHeard > 0), "a change inside the scope is announced");
      } finally {
        await scopedSub.close();
        await controlSub.close();
        await scoped.close();
        await control.close();
      }
    });
  } finally {
    await closeAggregate(gw.deps);
    await alpha.close();
    await beta.close();
    await gw.close();
  }
});
