/**
 * Resource subscriptions through the aggregated `/mcp` (MCP 2025-11-25 Server/Resources
 * §Subscriptions; 2026-07-28 `subscriptions/listen` `resourceSubscriptions`): routed to the
 * owning backend with its own URI, updates relayed with the gateway's URI to the subscribing
 * session only, across instances, within the token's scope.
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { McpServer as V1McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import {
  ResourceUpdatedNotificationSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { serveGateway } from "./_helpers.ts";
import { serveInstancePair } from "./_instances.ts";
import { legacyBackend, mintAccessToken, modernBackend } from "./_aggregate_backends.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 3000): Promise<boolean> {
  for (let waited = 0; waited < ms && !cond(); waited += 10) await sleep(10);
  return cond();
}

/** A 2025-era backend supporting subscriptions; `touch(uri)` notifies its subscribers. */
function subscribableLegacyBackend(name: string) {
  const subscribers = new Map<V1McpServer, Set<string>>();
  const requests: string[] = [];
  const backend = legacyBackend(name, (s) => {
    s.server.registerCapabilities({ resources: { subscribe: true } });
    s.registerResource("watched", "file:///watched.txt", {}, (uri: URL) => ({
      contents: [{ uri: uri.href, text: "watched" }],
    }));
    subscribers.set(s, new Set());
    s.server.setRequestHandler(SubscribeRequestSchema, (req: { params: { uri: string } }) => {
      requests.push(`subscribe ${req.params.uri}`);
      if (req.params.uri === "file:///missing.txt") throw new Error("no such resource");
      subscribers.get(s)!.add(req.params.uri);
      return {};
    });
    s.server.setRequestHandler(UnsubscribeRequestSchema, (req: { params: { uri: string } }) => {
      requests.push(`unsubscribe ${req.params.uri}`);
      subscribers.get(s)!.delete(req.params.uri);
      return {};
    });
  });
  const touch = async (uri: string) => {
    for (const [s, uris] of subscribers) {
      if (uris.has(uri)) await s.server.sendResourceUpdated({ uri }).catch(() => {});
    }
  };
  return { ...backend, requests, touch };
}

/**
 * `backend` served again on its own port, counting the `subscriptions/listen` streams open at it
 * per resource URI of their filter (a stream counts until its body ends or its reader cancels).
 */
function countingListens(backend: { handler: { fetch(req: Request): Promise<Response> } }) {
  const open = new Map<string, number>();
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const body = req.method === "POST" ? await req.clone().json().catch(() => null) : null;
    const uris: string[] = body?.method === "subscriptions/listen"
      ? body.params?.notifications?.resourceSubscriptions ?? []
      : [];
    const res = await backend.handler.fetch(req);
    if (uris.length === 0 || !res.body) return res;
    for (const u of uris) open.set(u, (open.get(u) ?? 0) + 1);
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      for (const u of uris) open.set(u, open.get(u)! - 1);
    };
    const upstream = res.body.getReader();
    const counted = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const chunk = await upstream.read();
        if (chunk.done) {
          end();
          controller.close();
        } else controller.enqueue(chunk.value);
      },
      cancel(reason) {
        end();
        return upstream.cancel(reason);
      },
    });
    return new Response(counted, { status: res.status, headers: res.headers });
  });
  return {
    url: `http://127.0.0.1:${http.addr.port}/mcp`,
    listens: (uri: string) => open.get(uri) ?? 0,
    close: () => http.shutdown(),
  };
}

/** A v1 client that records the resource updates it hears. */
async function legacyListener(url: string, token: string) {
  const client = new V1Client({ name: "t", version: "1" });
  const heard: string[] = [];
  client.setNotificationHandler(
    ResourceUpdatedNotificationSchema,
    (n: { params: { uri: string } }) => void heard.push(n.params.uri),
  );
  await client.connect(
    new V1ClientTransport(new URL(`${url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  await sleep(100); // the client opens its GET stream after initialize
  return { client, heard };
}

Deno.test("/mcp resource subscriptions", async (t) => {
  const alpha = subscribableLegacyBackend("alpha");
  const beta = modernBackend("beta", (s) => {
    s.server.registerCapabilities({ resources: { subscribe: true } });
    s.registerResource("b", "file:///b.txt", {}, (uri) => ({
      contents: [{ uri: uri.href, text: "b" }],
    }));
  });
  const plain = legacyBackend("plain", (s) => {
    s.registerResource("p", "file:///p.txt", {}, (uri: URL) => ({
      contents: [{ uri: uri.href, text: "p" }],
    }));
  });
  const betaListens = countingListens(beta);
  const gw = await serveGateway({
    config: {
      backends: [
        { name: "alpha", url: alpha.url },
        { name: "beta", url: betaListens.url },
        { name: "plain", url: plain.url },
      ],
    },
  });
  const token = await mintAccessToken(gw.deps);
  try {
    await t.step("resources.subscribe is advertised when a backend supports it", async () => {
      const { client } = await legacyListener(gw.url, token);
      try {
        assertEquals(client.getServerCapabilities()?.resources?.subscribe, true);
      } finally {
        await client.close();
      }
      const plainOnly = await mintAccessToken(gw.deps, { scope: "mcp:plain" });
      const { client: other } = await legacyListener(gw.url, plainOnly);
      try {
        assertEquals(other.getServerCapabilities()?.resources?.subscribe, undefined);
      } finally {
        await other.close();
      }
    });

    await t.step(
      "2025 client: routed to the owning backend, updates come with the gateway's URI",
      async () => {
        const a = await legacyListener(gw.url, token);
        const b = await legacyListener(gw.url, token);
        try {
          assertEquals(
            await a.client.subscribeResource({ uri: "mcpgw-alpha+file:///watched.txt" }),
            {},
          );
          assert(alpha.requests.includes("subscribe file:///watched.txt"), alpha.requests.join());
          await a.client.subscribeResource({ uri: "mcpgw-beta+file:///b.txt" });
          await alpha.touch("file:///watched.txt");
          beta.handler.notify.resourceUpdated("file:///b.txt");
          assert(
            await until(() => a.heard.length >= 2),
            `heard ${a.heard.join()}`,
          );
          assertEquals(a.heard.sort(), [
            "mcpgw-alpha+file:///watched.txt",
            "mcpgw-beta+file:///b.txt",
          ]);
          await sleep(100);
          assertEquals(b.heard, [], "another session hears nothing");
        } finally {
          await a.client.close();
          await b.client.close();
        }
        // The last holder gone, the gateway's listen stream at beta closes (a stream left open
        // there would deliver each later update of file:///b.txt a second time).
        assert(
          await until(() => betaListens.listens("file:///b.txt") === 0),
          `open listens at beta: ${betaListens.listens("file:///b.txt")}`,
        );
      },
    );

    await t.step(
      "unsubscribe stops the updates; the last holder unsubscribes the backend",
      async () => {
        const a = await legacyListener(gw.url, token);
        try {
          const uri = "mcpgw-alpha+file:///watched.txt";
          await a.client.subscribeResource({ uri });
          await alpha.touch("file:///watched.txt");
          assert(await until(() => a.heard.length === 1));
          alpha.requests.length = 0;
          assertEquals(await a.client.unsubscribeResource({ uri }), {});
          assert(await until(() => alpha.requests.includes("unsubscribe file:///watched.txt")));
          await alpha.touch("file:///watched.txt");
          await sleep(100);
          assertEquals(a.heard.length, 1);
        } finally {
          await a.client.close();
        }
      },
    );

    await t.step("errors: not a gateway URI, no subscriptions, backend's own error", async () => {
      const a = await legacyListener(gw.url, token);
      try {
        const error = (uri: string) =>
          a.client.subscribeResource({ uri }).then(
            () => "ok",
            (e: { code?: number; message: string }) => `${e.code} ${e.message}`,
          );
        assertMatch(await error("file:///watched.txt"), /^-32602 .*Resource not found/);
        assertMatch(
          await error("mcpgw-plain+file:///p.txt"),
          /^-32602 .*plain does not support resource subscriptions/,
        );
        assertMatch(await error("mcpgw-alpha+file:///missing.txt"), /no such resource/);
      } finally {
        await a.client.close();
      }
    });

    await t.step(
      "another backend's URI outside the token's scope: 403 step-up (RFC 6750 §3.1)",
      async () => {
        const alphaOnly = await mintAccessToken(gw.deps, { scope: "mcp:alpha" });
        const post = (method: string, params: unknown) =>
          fetch(`${gw.url}/mcp`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${alphaOnly}`,
              "content-type": "application/json",
              accept: "application/json, text/event-stream",
            },
            body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
          });
        for (
          const res of [
            await post("resources/subscribe", { uri: "mcpgw-beta+file:///b.txt" }),
            await post("subscriptions/listen", {
              notifications: { resourceSubscriptions: ["mcpgw-beta+file:///b.txt"] },
            }),
          ]
        ) {
          assertEquals(res.status, 403);
          assertEquals(res.headers.get("content-type"), "application/json");
          assertMatch(res.headers.get("www-authenticate") ?? "", /scope="mcp:beta"/);
          assertEquals((await res.json()).error, "insufficient_scope");
        }
      },
    );

    await t.step(
      "2026-07-28 client: subscriptions/listen resourceSubscriptions gets the updates",
      async () => {
        const client = new Client({ name: "t", version: "1" }, {
          versionNegotiation: { mode: "auto" },
        });
        const heard: string[] = [];
        client.setNotificationHandler("notifications/resources/updated", (n) => {
          heard.push(n.params.uri);
        });
        await client.connect(
          new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), {
            requestInit: { headers: { authorization: `Bearer ${token}` } },
          }),
        );
        try {
          assertEquals(client.getServerCapabilities()?.resources?.subscribe, true);
          const sub = await client.listen({
            resourceSubscriptions: ["mcpgw-alpha+file:///watched.txt", "mcpgw-beta+file:///b.txt"],
          });
          try {
            assertEquals(sub.honoredFilter.resourceSubscriptions?.length, 2);
            assert(await until(() => alpha.requests.includes("subscribe file:///watched.txt")));
            // The gateway's listen stream for file:///b.txt is open at beta, and only that one.
            assert(
              await until(() => betaListens.listens("file:///b.txt") === 1),
              `open listens at beta: ${betaListens.listens("file:///b.txt")}`,
            );
            await alpha.touch("file:///watched.txt");
            beta.handler.notify.resourceUpdated("file:///b.txt");
            beta.handler.notify.resourceUpdated("file:///other.txt");
            assert(await until(() => heard.length >= 2), `heard ${heard.join()}`);
            assertEquals(heard.sort(), [
              "mcpgw-alpha+file:///watched.txt",
              "mcpgw-beta+file:///b.txt",
            ]);
          } finally {
            alpha.requests.length = 0;
            await sub.close();
          }
          assert(
            await until(() => alpha.requests.includes("unsubscribe file:///watched.txt")),
            "closing the listen stream unsubscribes the backend",
          );
          assert(
            await until(() => betaListens.listens("file:///b.txt") === 0),
            "closing the listen stream closes the backend's",
          );
        } finally {
          await client.close();
        }
      },
    );
  } finally {
    await closeAggregate(gw.deps);
    await gw.close();
    await alpha.close();
    await beta.close(); // (ends the backend's open streams, which the shutdown waits for)
    await betaListens.close();
    await plain.close();
  }
});

Deno.test("/mcp resource subscriptions across instances", async (t) => {
  const alpha = subscribableLegacyBackend("alpha");
  // The GET stream at instance 0, every POST at instance 1.
  const pair = await serveInstancePair(
    { backends: [{ name: "alpha", url: alpha.url }] },
    (req) => req.method === "GET" ? 0 : 1,
  );
  try {
    const token = await mintAccessToken(pair.deps[0]);
    await t.step("the instance holding the session's stream relays its updates", async () => {
      const a = await legacyListener(pair.url, token);
      try {
        await a.client.subscribeResource({ uri: "mcpgw-alpha+file:///watched.txt" });
        assert(
          await until(() => alpha.requests.filter((r) => r.startsWith("subscribe")).length >= 2),
        );
        await alpha.touch("file:///watched.txt");
        assert(await until(() => a.heard.length > 0), "the update reached the stream");
        await sleep(100);
        assertEquals(a.heard, ["mcpgw-alpha+file:///watched.txt"]);
        assertEquals(pair.served[0], ["GET -"]);
      } finally {
        alpha.requests.length = 0;
        await a.client.close(); // v1 client: closes without DELETE
      }
    });
    await t.step("a session's stream closing drops its backend subscriptions", async () => {
      assert(
        await until(() => alpha.requests.includes("unsubscribe file:///watched.txt")),
        alpha.requests.join(),
      );
    });
  } finally {
    await pair.close();
    await alpha.close();
  }
});
