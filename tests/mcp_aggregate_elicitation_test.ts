/**
 * Elicitation through the aggregated `/mcp` is not relayed yet (see the README): a backend that
 * asks for input during a call gets a refusal it reports, and the client gets a clear error
 * promptly — never a hang — in both eras.
 */
import { assert } from "./_assert.ts";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1ClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { inputRequired } from "@modelcontextprotocol/server";
import { z } from "zod";
import { closeAggregate } from "../lib/aggregate/handler.ts";
import { serveGateway } from "./_helpers.ts";
import { legacyBackend, mintAccessToken, modernBackend } from "./_aggregate_backends.ts";

Deno.test("/mcp elicitation is refused clearly, never hangs", async (t) => {
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
    s.registerTool("confirm", {}, () =>
      inputRequired({
        inputRequests: {
          ok: inputRequired.elicit({
            message: "Sure?",
            requestedSchema: z.object({ ok: z.boolean() }),
          }),
        },
      }));
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
  try {
    await t.step("legacy client (declares elicitation)", async () => {
      const client = new V1Client({ name: "t", version: "1" }, {
        capabilities: { elicitation: {} },
      });
      client.setRequestHandler(
        ElicitRequestSchema,
        () => ({ action: "accept", content: { ok: true } }),
      );
      await client.connect(new V1ClientTransport(new URL(`${gw.url}/mcp`), { requestInit }));
      try {
        for (const name of ["alpha__confirm", "beta__confirm"]) {
          const text = await outcome(client.callTool({ name, arguments: {} }));
          assert(!text.startsWith("ok"), text);
          assert(/elicitation/i.test(text), text);
          if (name === "beta__confirm") assert(text.includes("use /mcp/beta"), text);
        }
      } finally {
        await client.close();
      }
    });
    await t.step("modern client (declares elicitation)", async () => {
      const client = new Client({ name: "t", version: "1" }, {
        versionNegotiation: { mode: "auto" },
        capabilities: { elicitation: {} },
      });
      client.setRequestHandler(
        "elicitation/create",
        () => ({ action: "accept", content: { ok: true } }),
      );
      await client.connect(
        new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit }),
      );
      try {
        for (const name of ["alpha__confirm", "beta__confirm"]) {
          const text = await outcome(client.callTool({ name, arguments: {} }));
          assert(!text.startsWith("ok"), text);
          assert(/elicitation/i.test(text), text);
          if (name === "beta__confirm") assert(text.includes("use /mcp/beta"), text);
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
