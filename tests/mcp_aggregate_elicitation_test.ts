/**
 * Elicitation and sampling through the aggregated `/mcp`, in every era combination (MCP
 * 2025-11-25 Client/Elicitation, Client/Sampling, Transports §Sending Messages to the Server;
 * 2026-07-28 Basic/Patterns/Multi Round-Trip Requests):
 * - modern backend → modern client: `input_required` with the gateway's sealed `requestState`;
 * - 2025 backend → modern client: the call is parked, the client answers `input_required`;
 * - any backend → 2025 client: a request on the call's SSE stream, answered in a POST of its own;
 * - a client that did not declare the capability is never asked, and nothing hangs;
 * - across instances: the answer or the retry may reach another instance than the waiting call.
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  CreateMessageResultSchema,
  ElicitRequestSchema,
  ElicitResultSchema,
} from "@modelcontextprotocol/sdk/types.js";
import type { McpServer as V1McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { inputRequired } from "@modelcontextprotocol/server";
import { z } from "zod";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { PARK_ACK_MS } from "../lib/mcp/aggregate/input_relay.ts";
import { REQUEST_STATE_TTL_MS } from "../lib/mcp/aggregate/request_state.ts";
import { type ServedGateway, serveGateway } from "./_helpers.ts";
import { isAnswer, serveInstancePair } from "./_instances.ts";
import { legacyBackend, mintAccessToken, modernBackend } from "./_aggregate_backends.ts";

const ENVELOPE = {
  "io.modelcontextprotocol/protocolVersion": "2026-07-28",
  "io.modelcontextprotocol/clientCapabilities": { elicitation: { form: {} } },
};

/** A raw modern `tools/call` (retry fields optional). */
function rawCall(
  url: string,
  token: string,
  name: string,
  retry: Record<string, unknown> = {},
): Promise<Response> {
  return fetch(`${url}/mcp`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": "2026-07-28",
      "mcp-method": "tools/call",
      "mcp-name": name,
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 7,
      method: "tools/call",
      params: { name, arguments: {}, _meta: ENVELOPE, ...retry },
    }),
  });
}

/** The JSON-RPC message of a response (JSON, or the last `data:` of an SSE stream). */
async function rpcMessage(res: Response): Promise<any> {
  const type = res.headers.get("content-type") ?? "";
  const text = await res.text();
  if (type.startsWith("application/json")) return JSON.parse(text);
  assertMatch(type, /^text\/event-stream/);
  const data = text.split("\n").filter((l) => l.startsWith("data: ") && l.length > 6);
  return JSON.parse(data.at(-1)!.slice(6));
}

const text = (t: string) => ({ content: [{ type: "text" as const, text: t }] });

/** The part of the v1 SDK's `RequestHandlerExtra` the tools use. */
interface V1Extra {
  sendRequest: (request: unknown, schema: unknown) => Promise<any>;
}

/**
 * A 2025-era backend (v1 SDK) whose tools ask for input: on the call's stream (`extra.sendRequest`,
 * the related request id) or outside it (`server.elicitInput`, no related id).
 */
function askingLegacyBackend(name: string) {
  let inFlight = 0;
  let bothIn: () => void = () => {};
  const twoInFlight = new Promise<void>((r) => bothIn = r);
  const elicit = (q: string) => ({
    method: "elicitation/create",
    params: {
      message: q,
      requestedSchema: { type: "object", properties: { reply: { type: "string" } } },
    },
  });
  const setup = (s: V1McpServer) => {
    s.registerTool(
      "ask",
      { inputSchema: { q: z.string() } },
      async ({ q }: { q: string }, extra: V1Extra) => {
        const answer = await extra.sendRequest(elicit(q), ElicitResultSchema);
        return text(`${answer.action} ${answer.content?.reply ?? "-"}`);
      },
    );
    s.registerTool(
      "ask_outside",
      { inputSchema: { q: z.string() } },
      async ({ q }: { q: string }) => {
        const answer = await s.server.elicitInput(elicit(q).params as any);
        return text(`${answer.action} ${answer.content?.reply ?? "-"}`);
      },
    );
    s.registerTool("ask_twice", { inputSchema: {} }, async (_args: unknown, extra: V1Extra) => {
      const first = await extra.sendRequest(elicit("first"), ElicitResultSchema);
      const second = await extra.sendRequest(elicit("second"), ElicitResultSchema);
      return text(`${first.content?.reply} then ${second.content?.reply}`);
    });
    s.registerTool("sample", { inputSchema: {} }, async (_args: unknown, extra: V1Extra) => {
      const result = await extra.sendRequest({
        method: "sampling/createMessage",
        params: {
          messages: [{ role: "user", content: { type: "text", text: "hi" } }],
          maxTokens: 5,
        },
      }, CreateMessageResultSchema);
      return text(`sampled ${result.content.text}`);
    });
    s.registerTool(
      "ask_when_two",
      { inputSchema: { q: z.string() } },
      async ({ q }: { q: string }) => {
        if (++inFlight >= 2) bothIn();
        await twoInFlight;
        try {
          const answer = await s.server.elicitInput(elicit(q).params as any);
          return text(`${answer.action} ${answer.content?.reply ?? "-"}`);
        } catch (error) {
          return { ...text(`refused: ${(error as Error).message}`), isError: true };
        }
      },
    );
  };
  return legacyBackend(name, setup);
}

/** A modern backend whose `confirm` returns `input_required` until it gets an answer. */
function askingModernBackend(name: string) {
  return modernBackend(name, (s) => {
    s.registerTool("confirm", { inputSchema: z.object({}) }, (_args, ctx): any => {
      const answer = ctx.mcpReq.inputResponses?.ok as
        | { action?: string; content?: { reply?: string; ok?: boolean } }
        | undefined;
      if (answer) {
        const state = ctx.mcpReq.requestState<string>();
        const reply = answer.content?.reply ?? answer.content?.ok;
        return text(`beta ${answer.action} ${reply} state=${state}`);
      }
      return inputRequired({
        inputRequests: {
          ok: inputRequired.elicit({
            message: "Sure?",
            requestedSchema: z.object({ ok: z.boolean() }),
          }),
        },
        requestState: "beta-round-1",
      });
    });
  });
}

/** What a call ended with, as one line; fails the test if it took 5 s or more (a hang). */
async function outcome(call: Promise<unknown>): Promise<string> {
  const started = performance.now();
  const line = await call.then(
    (r) => {
      const res = r as { isError?: boolean; content?: { text?: string }[] };
      return `${res.isError ? "isError" : "ok"}: ${res.content?.[0]?.text ?? ""}`;
    },
    (e) => `error ${(e as { code?: number }).code}: ${(e as Error).message}`,
  );
  assert(performance.now() - started < 5000, "the call hung");
  return line;
}

/** A modern (v2) client; with `capable` it answers elicitation and sampling. */
async function modernClient(url: string, token: string, capable: boolean) {
  const client = new Client({ name: "t", version: "1" }, {
    versionNegotiation: { mode: "auto" },
    capabilities: capable ? { elicitation: { form: {} }, sampling: {} } : {},
  });
  const asked: string[] = [];
  if (capable) {
    client.setRequestHandler("elicitation/create", (req) => {
      const message = (req.params as { message: string }).message;
      asked.push(message);
      return { action: "accept", content: { ok: true, reply: message.toUpperCase() } };
    });
    client.setRequestHandler("sampling/createMessage", () => ({
      role: "assistant",
      content: { type: "text", text: "modern says hi" },
      model: "test-model",
    }));
  }
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  return { client, asked };
}

/** A 2025-era (v1 SDK) client; with `capable` it answers elicitation and sampling. */
async function legacyClient(url: string, token: string, capable: boolean) {
  const client = new V1Client({ name: "t", version: "1" }, {
    capabilities: capable ? { elicitation: {}, sampling: {} } : {},
  });
  const asked: string[] = [];
  if (capable) {
    client.setRequestHandler(ElicitRequestSchema, (req: { params: { message: string } }) => {
      asked.push(req.params.message);
      return {
        action: "accept",
        content: { ok: true, reply: req.params.message.toUpperCase() },
      };
    });
    client.setRequestHandler(CreateMessageRequestSchema, () => ({
      role: "assistant",
      content: { type: "text", text: "legacy says hi" },
      model: "test-model",
    }));
  }
  await client.connect(
    new V1ClientTransport(new URL(`${url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  return { client, asked };
}

Deno.test("/mcp relays elicitation and sampling", async (t) => {
  const alpha = askingLegacyBackend("alpha");
  const beta = askingModernBackend("beta");
  let gw: ServedGateway | undefined;
  try {
    gw = await serveGateway({
      config: {
        backends: [{ name: "alpha", url: alpha.url }, { name: "beta", url: beta.url }],
      },
    });
    const url = gw.url;
    const token = await mintAccessToken(gw.deps);

    await t.step("modern backend → modern client: input_required relayed (MRTR)", async () => {
      const { client, asked } = await modernClient(url, token, true);
      try {
        const line = await outcome(client.callTool({ name: "beta__confirm", arguments: {} }));
        assertEquals(line, "ok: beta accept SURE? state=beta-round-1");
        assertEquals(asked, ["Sure?"]);
      } finally {
        await client.close();
      }
    });

    await t.step("the gateway's requestState is sealed, not the backend's", async () => {
      const res = await rawCall(url, token, "beta__confirm");
      assertEquals(res.status, 200);
      const msg = await rpcMessage(res);
      assertEquals(msg.result.resultType, "input_required");
      assertEquals(Object.keys(msg.result.inputRequests), ["ok"]);
      assertEquals(msg.result.inputRequests.ok.method, "elicitation/create");
      assert(typeof msg.result.requestState === "string");
      assert(!msg.result.requestState.includes("beta-round-1"), "backend state is not readable");
    });

    await t.step(
      "a requestState is refused for another tool, principal, or after expiry (-32602)",
      async () => {
        const first = await rpcMessage(await rawCall(url, token, "beta__confirm"));
        const state = first.result.requestState as string;
        const answer = { inputResponses: { ok: { action: "accept", content: { ok: true } } } };
        const good = await rpcMessage(
          await rawCall(url, token, "beta__confirm", { ...answer, requestState: state }),
        );
        assertEquals(good.result.content[0].text, "beta accept true state=beta-round-1");

        const tampered = state.slice(0, -2) + (state.endsWith("AA") ? "BB" : "AA");
        const other = await mintAccessToken(gw!.deps);
        for (
          const [who, name, rs] of [
            [token, "beta__confirm", tampered],
            [other, "beta__confirm", state],
            [token, "beta__other", state],
          ] as const
        ) {
          const res = await rawCall(url, who, name, { ...answer, requestState: rs });
          const msg = await rpcMessage(res);
          assertEquals(msg.error?.code, -32602, `${name} ${rs === state ? "state" : "tampered"}`);
          assertMatch(msg.error.message, /Invalid or expired requestState/);
        }
        gw!.deps.clock.advance(REQUEST_STATE_TTL_MS + 1);
        const expired = await rpcMessage(
          await rawCall(url, token, "beta__confirm", { ...answer, requestState: state }),
        );
        assertEquals(expired.error?.code, -32602);
      },
    );

    await t.step("modern client without elicitation: -32021, no hang", async () => {
      const { client } = await modernClient(url, token, false);
      try {
        assertMatch(
          await outcome(client.callTool({ name: "beta__confirm", arguments: {} })),
          /^error -32021/,
        );
      } finally {
        await client.close();
      }
    });

    await t.step(
      "2025 backend → modern client: the call is parked and resumed by the retry (MRTR)",
      async () => {
        const { client, asked } = await modernClient(url, token, true);
        try {
          const call = (name: string, args: Record<string, unknown> = {}) =>
            outcome(client.callTool({ name, arguments: args }));
          assertEquals(
            await call("alpha__ask", { q: "on the stream" }),
            "ok: accept ON THE STREAM",
          );
          assertEquals(await call("alpha__ask_outside", { q: "outside" }), "ok: accept OUTSIDE");
          assertEquals(await call("alpha__ask_twice"), "ok: FIRST then SECOND");
          assertEquals(await call("alpha__sample"), "ok: sampled modern says hi");
          assertEquals(asked, ["on the stream", "outside", "first", "second"]);
        } finally {
          await client.close();
        }
      },
    );

    await t.step("2025 backend → modern client: the parked round is input_required", async () => {
      const first = await rpcMessage(await rawCall(url, token, "alpha__ask_twice"));
      assertEquals(first.result.resultType, "input_required");
      const [key] = Object.keys(first.result.inputRequests);
      assertEquals(first.result.inputRequests[key!].method, "elicitation/create");
      assertEquals(first.result.inputRequests[key!].params.message, "first");
      const reply = (state: string, k: string, r: string) =>
        rawCall(url, token, "alpha__ask_twice", {
          inputResponses: { [k]: { action: "accept", content: { reply: r } } },
          requestState: state,
        }).then(rpcMessage);
      const second = await reply(first.result.requestState, key!, "one");
      assertEquals(second.result.resultType, "input_required");
      const [key2] = Object.keys(second.result.inputRequests);
      // A replayed round is refused: each round's state resumes the call once.
      const replay = await reply(first.result.requestState, key!, "again");
      assertEquals(replay.error?.code, -32602);
      const done = await reply(second.result.requestState, key2!, "two");
      assertEquals(done.result.content[0].text, "one then two");
      // The call is over: its state is gone.
      const late = await reply(second.result.requestState, key2!, "late");
      assertEquals(late.error?.code, -32602);
    });

    await t.step(
      "2025 backend → client without the capability: the backend is refused, no hang",
      async () => {
        const modern = await modernClient(url, token, false);
        const legacy = await legacyClient(url, token, false);
        try {
          for (const client of [modern.client, legacy.client]) {
            const line = await outcome(
              client.callTool({ name: "alpha__ask", arguments: { q: "x" } }) as Promise<unknown>,
            );
            assertMatch(line, /^isError: .*did not declare the elicitation capability/);
          }
        } finally {
          await modern.client.close();
          await legacy.client.close();
        }
      },
    );

    await t.step(
      "2025 backend → 2025 client: asked on the call's SSE stream, answered by POST",
      async () => {
        const { client, asked } = await legacyClient(url, token, true);
        try {
          const call = (name: string, args: Record<string, unknown> = {}) =>
            outcome(client.callTool({ name, arguments: args }));
          assertEquals(await call("alpha__ask", { q: "hello" }), "ok: accept HELLO");
          assertEquals(await call("alpha__ask_outside", { q: "out" }), "ok: accept OUT");
          assertEquals(await call("alpha__ask_twice"), "ok: FIRST then SECOND");
          assertEquals(await call("alpha__sample"), "ok: sampled legacy says hi");
          assertEquals(asked, ["hello", "out", "first", "second"]);
        } finally {
          await client.close();
        }
      },
    );

    await t.step("a 2025 client's error answer reaches the backend, no hang", async () => {
      const client = new V1Client({ name: "t", version: "1" }, {
        capabilities: { elicitation: {} },
      });
      client.setRequestHandler(ElicitRequestSchema, () => {
        throw new Error("the user closed the dialog");
      });
      await client.connect(
        new V1ClientTransport(new URL(`${url}/mcp`), {
          requestInit: { headers: { authorization: `Bearer ${token}` } },
        }),
      );
      try {
        assertMatch(
          await outcome(client.callTool({ name: "alpha__ask", arguments: { q: "x" } })),
          /^isError: .*the user closed the dialog/,
        );
      } finally {
        await client.close();
      }
    });

    await t.step("modern backend → 2025 client: asked on the stream, backend retried", async () => {
      const { client, asked } = await legacyClient(url, token, true);
      try {
        assertEquals(
          await outcome(client.callTool({ name: "beta__confirm", arguments: {} })),
          "ok: beta accept SURE? state=beta-round-1",
        );
        assertEquals(asked, ["Sure?"]);
      } finally {
        await client.close();
      }
    });

    await t.step(
      "modern backend → 2025 client without the capability: the backend, told so, refuses",
      async () => {
        const { client } = await legacyClient(url, token, false);
        try {
          // The gateway declares to the backend only what this client can answer (issue 15 #2).
          assertMatch(
            await outcome(client.callTool({ name: "beta__confirm", arguments: {} })),
            /^error -32021: .*Cannot request input 'ok' \(elicitation\/create\).*do not declare/,
          );
        } finally {
          await client.close();
        }
      },
    );

    await t.step("concurrent calls each get their own answer (related requests)", async () => {
      const { client } = await legacyClient(url, token, true);
      const modern = await modernClient(url, token, true);
      try {
        const lines = await Promise.all([
          outcome(client.callTool({ name: "alpha__ask", arguments: { q: "one" } })),
          outcome(client.callTool({ name: "alpha__ask", arguments: { q: "two" } })),
          outcome(modern.client.callTool({ name: "alpha__ask", arguments: { q: "three" } })),
        ]);
        assertEquals(lines, ["ok: accept ONE", "ok: accept TWO", "ok: accept THREE"]);
      } finally {
        await client.close();
        await modern.client.close();
      }
    });

    await t.step(
      "a request outside the call's stream with two calls in flight is refused, not guessed",
      async () => {
        const { client } = await legacyClient(url, token, true);
        try {
          const lines = await Promise.all([
            outcome(client.callTool({ name: "alpha__ask_when_two", arguments: { q: "a" } })),
            outcome(client.callTool({ name: "alpha__ask_when_two", arguments: { q: "b" } })),
          ]);
          for (const line of lines) assertMatch(line, /^isError: refused: .*outside a call/);
        } finally {
          await client.close();
        }
      },
    );
  } finally {
    if (gw) {
      await closeAggregate(gw.deps);
      await gw.close();
    }
    await alpha.close();
    await beta.close();
  }
});

Deno.test("/mcp relays input across instances", async (t) => {
  const alpha = askingLegacyBackend("alpha");
  const beta = askingModernBackend("beta");
  const config = {
    backends: [{ name: "alpha", url: alpha.url }, { name: "beta", url: beta.url }],
  };
  // Calls at instance 0; a 2025 client's answers and a modern client's retries at instance 1.
  const pair = await serveInstancePair(
    config,
    (_req, body: any) => isAnswer(body) || body?.params?.requestState !== undefined ? 1 : 0,
  );
  try {
    const token = await mintAccessToken(pair.deps[0]);

    await t.step(
      "a 2025 client's answer reaches the call waiting at another instance",
      async () => {
        const { client } = await legacyClient(pair.url, token, true);
        try {
          assertEquals(
            await outcome(client.callTool({ name: "alpha__ask", arguments: { q: "far" } })),
            "ok: accept FAR",
          );
          assertEquals(
            await outcome(client.callTool({ name: "beta__confirm", arguments: {} })),
            "ok: beta accept SURE? state=beta-round-1",
          );
          assertEquals(pair.served[1].filter((s) => s === "POST -").length, 2);
        } finally {
          await client.close();
        }
      },
    );

    await t.step(
      "a modern client's retry resumes the call parked at another instance",
      async () => {
        const { client } = await modernClient(pair.url, token, true);
        try {
          assertEquals(
            await outcome(client.callTool({ name: "alpha__ask_twice", arguments: {} })),
            "ok: FIRST then SECOND",
          );
          assert(pair.served[1].filter((s) => s === "POST tools/call").length >= 2);
        } finally {
          await client.close();
        }
      },
    );

    await t.step(
      `a retry whose parked call is gone: -32602 once no instance acknowledges (${PARK_ACK_MS} ms)`,
      async () => {
        const first = await rpcMessage(await rawCall(pair.url, token, "alpha__ask_twice"));
        assertEquals(first.result.resultType, "input_required");
        await closeAggregate(pair.deps[0]); // the instance holding the call goes away
        const [key] = Object.keys(first.result.inputRequests);
        const res = await rawCall(pair.url, token, "alpha__ask_twice", {
          inputResponses: { [key!]: { action: "accept", content: { reply: "x" } } },
          requestState: first.result.requestState,
        });
        const msg = await rpcMessage(res);
        assertEquals(msg.error?.code, -32602);
        assertMatch(msg.error.message, /no longer running/);
      },
    );
  } finally {
    await pair.close();
    await alpha.close();
    await beta.close();
  }
});
