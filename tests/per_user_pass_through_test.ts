/**
 * Per-user backends through the pass-through `/mcp/{backend}` (issue 9): every request carries
 * the caller's own credential; until the user connects, each JSON-RPC request gets the connect
 * answer in-band; a 401 drops the credential; callers acting for no user (API keys) get a clear
 * error on both endpoints.
 */
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1Transport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import {
  connectBackend,
  signedInBrowser,
  startCredentialsSetup,
  userRef,
  userToken,
} from "./_credentials.ts";

const API_KEY = "per-user-test-api-key-0123456789";
const MODERN = "2026-07-28";

/** A raw 2026-07-28 `tools/call` POST (MCP 2026-07-28 Transports: headers mirror the body). */
function modernCall(url: string, token: string, name: string, capabilities = {}): Request {
  return new Request(url, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": MODERN,
      "mcp-method": "tools/call",
      "mcp-name": name,
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 7,
      method: "tools/call",
      params: {
        name,
        arguments: {},
        _meta: {
          "io.modelcontextprotocol/protocolVersion": MODERN,
          "io.modelcontextprotocol/clientCapabilities": capabilities,
        },
      },
    }),
  });
}

const textOf = (result: any) => String(result?.content?.[0]?.text ?? "");

Deno.test("/mcp/{backend} with a per-user OAuth backend", async (t) => {
  const s = await startCredentialsSetup({ env: { GATEWAY_API_KEY: API_KEY } });
  const passThrough = `${s.gw.url}/mcp/notes`;
  const connectUrl = `${s.gw.url}/connect/notes`;
  const closers: (() => Promise<void>)[] = [];
  try {
    const ana = await userToken(s.gw.deps, userRef("ana"), {
      resource: passThrough,
      scope: "mcp:notes",
    });

    await t.step(
      "never connected: a tools/call gets HTTP 200 with an isError result giving the connect URL",
      async () => {
        const res = await fetch(modernCall(passThrough, ana, "whoami"));
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type"), "application/json");
        const body = await res.json();
        assertEquals(body.id, 7);
        assertEquals(body.result.isError, true);
        assertStringIncludes(body.result.content[0].text, connectUrl);
        assertEquals(s.notes.calls.length, 0);
      },
    );

    await t.step(
      "never connected: a 2025 initialize declaring URL elicitation gets -32042 (MCP 2025-11-25)",
      async () => {
        const client = new V1Client({ name: "legacy", version: "1.0.0" }, {
          capabilities: { elicitation: { url: {} } },
        });
        let error: any;
        try {
          await client.connect(
            new V1Transport(new URL(passThrough), {
              requestInit: { headers: { authorization: `Bearer ${ana}` } },
            }),
          );
        } catch (e) {
          error = e;
        }
        assertEquals(error?.code, -32042);
        assertEquals(error.data.elicitations[0].url, connectUrl);
        assertEquals(error.data.elicitations[0].mode, "url");
        await client.close();
      },
    );

    await t.step(
      "never connected: other requests get -32600 naming the URL; notifications 202; GET 403",
      async () => {
        const res = await fetch(passThrough, {
          method: "POST",
          headers: {
            authorization: `Bearer ${ana}`,
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
          },
          body: JSON.stringify([
            { jsonrpc: "2.0", id: 1, method: "tools/list" },
            { jsonrpc: "2.0", method: "notifications/initialized" },
          ]),
        });
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type"), "application/json");
        const [answer] = await res.json();
        assertEquals(answer.id, 1);
        assertEquals(answer.error.code, -32600);
        assertStringIncludes(answer.error.message, connectUrl);
        const note = await fetch(passThrough, {
          method: "POST",
          headers: { authorization: `Bearer ${ana}`, "content-type": "application/json" },
          body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }),
        });
        assertEquals(note.status, 202);
        await note.body?.cancel();
        const get = await fetch(passThrough, {
          headers: { authorization: `Bearer ${ana}`, accept: "text/event-stream" },
        });
        assertEquals(get.status, 403);
        assertEquals(get.headers.get("content-type"), "application/json");
        assertStringIncludes((await get.json()).error.message, connectUrl);
        assertEquals(s.notes.calls.length, 0);
      },
    );

    const browser = await signedInBrowser(s.gw.url, "ana");
    await connectBackend(browser, s.gw.url, "notes", "ana-at-notes");

    await t.step(
      "connected: the 2025-era v1 SDK client works with the user's own account",
      async () => {
        const client = new V1Client({ name: "legacy", version: "1.0.0" });
        await client.connect(
          new V1Transport(new URL(passThrough), {
            requestInit: { headers: { authorization: `Bearer ${ana}` } },
          }),
        );
        closers.push(() => client.close());
        const tools = (await client.listTools()).tools.map((x: { name: string }) => x.name).sort();
        assertEquals(tools, ["note_add", "notes", "whoami"]);
        const result = await client.callTool({ name: "whoami", arguments: {} });
        assertEquals(textOf(result), "account:ana-at-notes");
      },
    );

    await t.step(
      "connected: the 2026-07-28 v2 SDK client works too; the client's token never reaches the backend",
      async () => {
        const client = new Client({ name: "modern", version: "1.0.0" }, {
          versionNegotiation: { mode: "auto" },
        });
        await client.connect(
          new StreamableHTTPClientTransport(new URL(passThrough), {
            requestInit: { headers: { authorization: `Bearer ${ana}` } },
          }),
        );
        closers.push(() => client.close());
        assertEquals(client.getProtocolEra(), "modern");
        assertEquals(
          textOf(await client.callTool({ name: "whoami", arguments: {} })),
          "account:ana-at-notes",
        );
        // The backend only accepts its own authorization server's JWTs: reaching it proves the
        // gateway sent the user's credential, not the gateway token (an opaque gwat_ value).
        assert(s.notes.calls.every((c) => c.sub === "ana-at-notes"));
      },
    );

    await t.step(
      "a backend 401 drops the credential: this request gets the connect answer, the next one too",
      async () => {
        s.notes.revokeAll();
        const res = await fetch(modernCall(passThrough, ana, "whoami"));
        assertEquals(res.status, 200);
        const body = await res.json();
        assertEquals(body.result.isError, true);
        assertStringIncludes(body.result.content[0].text, connectUrl);
        const refused = s.notes.refused;
        const again = await (await fetch(modernCall(passThrough, ana, "whoami"))).json();
        assertEquals(again.result.isError, true);
        assertEquals(s.notes.refused, refused, "not sent to the backend again");
      },
    );

    await t.step(
      "an API key acts for no user: -32600 saying so on /mcp/notes, and /mcp leaves notes out",
      async () => {
        const res = await fetch(modernCall(passThrough, API_KEY, "whoami"));
        assertEquals(res.status, 200);
        const body = await res.json();
        assertEquals(body.error.code, -32600);
        assertMatch(body.error.message, /acts for no user/);
        const client = new Client({ name: "api key", version: "1.0.0" }, {
          versionNegotiation: { mode: "auto" },
        });
        await client.connect(
          new StreamableHTTPClientTransport(new URL(`${s.gw.url}/mcp`), {
            requestInit: { headers: { authorization: `Bearer ${API_KEY}` } },
          }),
        );
        closers.push(() => client.close());
        assertEquals((await client.listTools()).tools, []);
        let error: any;
        try {
          await client.callTool({ name: "notes__whoami", arguments: {} });
        } catch (e) {
          error = e;
        }
        assertEquals(error?.code, -32600);
        assertMatch(error.message, /acts for no user/);
      },
    );
  } finally {
    for (const close of closers) await close().catch(() => {});
    await s.close();
  }
});
