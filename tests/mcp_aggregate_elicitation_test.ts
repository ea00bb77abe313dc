/**
 * Elicitation through the aggregated `/mcp` (MCP 2026-07-28 Basic/Patterns/Multi Round-Trip
 * Requests; 2025-11-25 Client/Elicitation):
 * - modern backend → modern client: relayed as `input_required` with the gateway's sealed
 *   `requestState` (bound to principal, backend, method, name and an expiry);
 * - every other combination fails clearly and promptly (never a hang): see the README.
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { inputRequired } from "@modelcontextprotocol/server";
import { z } from "zod";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { REQUEST_STATE_TTL_MS } from "../lib/mcp/aggregate/request_state.ts";
import { type ServedGateway, serveGateway } from "./_helpers.ts";
import { legacyBackend, mintAccessToken, modernBackend } from "./_aggregate_backends.ts";

const ENVELOPE = {
  "io.modelcontextprotocol/protocolVersion": "2026-07-28",
  "io.modelcontextprotocol/clientCapabilities": { elicitation: { form: {} } },
};

/** A raw modern `tools/call` (retry fields optional). */
function rawCall(
  gw: ServedGateway,
  token: string,
  name: string,
  retry: Record<string, unknown> = {},
): Promise<Response> {
  return fetch(`${gw.url}/mcp`, {
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

Deno.test("/mcp elicitation relay", async (t) => {
  const alpha = legacyBackend("alpha", (s) => {
    s.registerTool("confirm", {}, async () => {
      const answer = await s.server.elicitInput({
        message: "Sure?",
        requestedSchema: { type: "object", properties: { ok: { type: "boolean" } } },
      });
      return { content: [{ type: "text", text: `answer ${answer.action}` }] };
    });
  });
  const beta = modernBackend("beta", (s) => {
    s.registerTool("confirm", { inputSchema: z.object({}) }, (_args, ctx): any => {
      const answer = ctx.mcpReq.inputResponses?.ok as
        | { action?: string; content?: { ok?: boolean } }
        | undefined;
      if (answer) {
        const state = ctx.mcpReq.requestState<string>();
        return {
          content: [{
            type: "text",
            text: `beta ${answer.action} ${answer.content?.ok} state=${state}`,
          }],
        };
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
  const gw = await serveGateway({
    config: { backends: [{ name: "alpha", url: alpha.url }, { name: "beta", url: beta.url }] },
  });
  const token = await mintAccessToken(gw.deps);
  const requestInit = { headers: { authorization: `Bearer ${token}` } };
  const outcome = async (call: Promise<unknown>): Promise<string> => {
    const started = performance.now();
    const text = await call.then(
      (r) => {
        const res = r as { isError?: boolean; content?: { text?: string }[] };
        return `${res.isError ? "isError" : "ok"}: ${res.content?.[0]?.text ?? ""}`;
      },
      (e) => `error ${(e as { code?: number }).code}: ${(e as Error).message}`,
    );
    assert(performance.now() - started < 5000, "the call hung");
    return text;
  };
  const modernClient = async (elicitation: boolean) => {
    const client = new Client({ name: "t", version: "1" }, {
      versionNegotiation: { mode: "auto" },
      capabilities: elicitation ? { elicitation: { form: {} } } : {},
    });
    const asked: string[] = [];
    if (elicitation) {
      client.setRequestHandler("elicitation/create", (req) => {
        asked.push((req.params as { message: string }).message);
        return { action: "accept", content: { ok: true } };
      });
    }
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit }),
    );
    return { client, asked };
  };
  try {
    await t.step("modern backend → modern client: relayed as input_required", async () => {
      const { client, asked } = await modernClient(true);
      try {
        const text = await outcome(client.callTool({ name: "beta__confirm", arguments: {} }));
        assertEquals(text, "ok: beta accept true state=beta-round-1");
        assertEquals(asked, ["Sure?"]);
      } finally {
        await client.close();
      }
    });

    await t.step("the gateway's requestState is sealed, not the backend's", async () => {
      const res = await rawCall(gw, token, "beta__confirm");
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
        const first = await rpcMessage(await rawCall(gw, token, "beta__confirm"));
        const state = first.result.requestState as string;
        const answer = { inputResponses: { ok: { action: "accept", content: { ok: true } } } };
        const good = await rpcMessage(
          await rawCall(gw, token, "beta__confirm", { ...answer, requestState: state }),
        );
        assertEquals(good.result.content[0].text, "beta accept true state=beta-round-1");

        const tampered = state.slice(0, -2) + (state.endsWith("AA") ? "BB" : "AA");
        const other = await mintAccessToken(gw.deps);
        for (
          const [who, name, rs] of [
            [token, "beta__confirm", tampered],
            [other, "beta__confirm", state],
            [token, "beta__other", state],
          ] as const
        ) {
          const res = await rawCall(gw, who, name, { ...answer, requestState: rs });
          const msg = await rpcMessage(res);
          assertEquals(msg.error?.code, -32602, `${name} ${rs === state ? "state" : "tampered"}`);
          assertMatch(msg.error.message, /Invalid or expired requestState/);
        }
        gw.deps.clock.advance(REQUEST_STATE_TTL_MS + 1);
        const expired = await rpcMessage(
          await rawCall(gw, token, "beta__confirm", { ...answer, requestState: state }),
        );
        assertEquals(expired.error?.code, -32602);
      },
    );

    await t.step("modern client without elicitation: -32021, no hang", async () => {
      const { client } = await modernClient(false);
      try {
        const text = await outcome(client.callTool({ name: "beta__confirm", arguments: {} }));
        assertMatch(text, /^error -32021/);
      } finally {
        await client.close();
      }
    });

    await t.step("2025-era backend → any client: a clear isError result", async () => {
      const { client } = await modernClient(true);
      try {
        const text = await outcome(client.callTool({ name: "alpha__confirm", arguments: {} }));
        assertMatch(text, /^isError: /);
        assertMatch(text, /cannot relay elicitation/);
        assertMatch(text, /\/mcp\/alpha/);
      } finally {
        await client.close();
      }
    });

    await t.step("2025-era client: a clear isError result for both backends", async () => {
      const client = new V1Client({ name: "t", version: "1" }, {
        capabilities: { elicitation: {} },
      });
      client.setRequestHandler(
        ElicitRequestSchema,
        () => ({ action: "accept", content: { ok: true } }),
      );
      await client.connect(new V1ClientTransport(new URL(`${gw.url}/mcp`), { requestInit }));
      try {
        const a = await outcome(client.callTool({ name: "alpha__confirm", arguments: {} }));
        assertMatch(a, /^isError: .*cannot relay elicitation/);
        const b = await outcome(client.callTool({ name: "beta__confirm", arguments: {} }));
        assertMatch(b, /^isError: .*elicitation/);
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
