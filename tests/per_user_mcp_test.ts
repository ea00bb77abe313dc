/**
 * Per-user backends through `/mcp` with the official SDK clients, both protocol eras (issue 9
 * "On first use"): the real OAuth-protected notes backend (tests/_oauth_backend.ts) behind the
 * gateway, users signed in through Corp SSO who connect it in a browser.
 */
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Client as V1Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as V1Transport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema as V1ElicitRequest } from "@modelcontextprotocol/sdk/types.js";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { field } from "./_http_browser.ts";
import {
  connectBackend,
  signedInBrowser,
  startCredentialsSetup,
  userRef,
  userToken,
} from "./_credentials.ts";

type AnyClient = {
  listTools(): Promise<{ tools: { name: string }[] }>;
  callTool(p: { name: string; arguments?: Record<string, unknown> }): Promise<any>;
  close(): Promise<void>;
};

/** A modern (2026-07-28) v2 SDK client of `url` with `token`. */
async function modernClient(
  url: string,
  token: string,
  options: { urlElicitation?: (url: string) => Promise<void> } = {},
): Promise<Client> {
  const client = new Client({ name: "per-user test (modern)", version: "1.0.0" }, {
    versionNegotiation: { mode: "auto" },
    capabilities: options.urlElicitation ? { elicitation: { url: {} } } : {},
  });
  if (options.urlElicitation) {
    client.setRequestHandler("elicitation/create", async (req) => {
      const params = req.params as { mode?: string; url?: string };
      assertEquals(params.mode, "url");
      await options.urlElicitation!(params.url!);
      return { action: "accept" };
    });
  }
  await client.connect(
    new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  assertEquals(client.getProtocolEra(), "modern");
  return client;
}

/** A 2025-era v1 SDK client (`initialize`, sessions) of `url` with `token`. */
async function legacyClient(
  url: string,
  token: string,
  options: { urlElicitation?: boolean } = {},
): Promise<V1Client> {
  const client = new V1Client({ name: "per-user test (legacy)", version: "1.0.0" }, {
    capabilities: options.urlElicitation ? { elicitation: { url: {} } } : {},
  });
  if (options.urlElicitation) {
    client.setRequestHandler(V1ElicitRequest, () => ({ action: "decline" }));
  }
  await client.connect(
    new V1Transport(new URL(url), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  return client;
}

const textOf = (result: any) => String(result?.content?.[0]?.text ?? "");

/** Calls a tool and returns the JSON-RPC error it failed with (fails when it did not). */
async function rpcError(
  call: () => Promise<unknown>,
): Promise<{ code: number; message: string; data?: any }> {
  try {
    await call();
  } catch (e) {
    const err = e as { code?: number; message: string; data?: unknown };
    assert(typeof err.code === "number", `not a JSON-RPC error: ${err.message}`);
    return err as { code: number; message: string; data?: any };
  }
  throw new Error("the call succeeded");
}

Deno.test("/mcp with a per-user OAuth backend", async (t) => {
  const s = await startCredentialsSetup();
  const mcp = `${s.gw.url}/mcp`;
  const connectUrl = `${s.gw.url}/connect/notes`;
  const clients: AnyClient[] = [];
  const track = <C extends AnyClient>(c: C) => (clients.push(c), c);
  try {
    const ana = await userToken(s.gw.deps, userRef("ana"));
    const bob = await userToken(s.gw.deps, userRef("bob"));

    await t.step(
      "never connected, modern client: tools/list shows only notes__connect",
      async () => {
        const client = track(await modernClient(mcp, ana));
        const names = (await client.listTools()).tools.map((tool) => tool.name);
        assertEquals(names, ["notes__connect"]);
        const connect = (await client.listTools()).tools[0]!;
        assertStringIncludes(String(connect.description), connectUrl);
      },
    );

    await t.step(
      "never connected, no URL elicitation: an isError tool result giving the connect URL",
      async () => {
        const client = track(await modernClient(mcp, ana));
        const result = await client.callTool({ name: "notes__whoami", arguments: {} });
        assertEquals(result.isError, true);
        assertStringIncludes(textOf(result), connectUrl);
        const asked = await client.callTool({ name: "notes__connect", arguments: {} });
        assertEquals(asked.isError, false);
        assertStringIncludes(textOf(asked), connectUrl);
        assertEquals(s.notes.calls.length, 0, "the backend was never called");
      },
    );

    await t.step(
      "never connected, 2025 era with URL elicitation: JSON-RPC -32042 with the connect URL (MCP 2025-11-25)",
      async () => {
        const client = track(await legacyClient(mcp, ana, { urlElicitation: true }));
        assertEquals((await client.listTools()).tools.map((x: { name: string }) => x.name), [
          "notes__connect",
        ]);
        const error = await rpcError(() =>
          client.callTool({ name: "notes__whoami", arguments: {} })
        );
        assertEquals(error.code, -32042);
        const elicitation = error.data.elicitations[0];
        assertEquals(elicitation.mode, "url");
        assertEquals(elicitation.url, connectUrl);
        assertMatch(elicitation.elicitationId, /^[A-Za-z0-9_-]{16,}$/);
      },
    );

    await t.step(
      "never connected, 2025 era without URL elicitation: an isError tool result",
      async () => {
        const client = track(await legacyClient(mcp, ana));
        const result = await client.callTool({ name: "notes__whoami", arguments: {} });
        assertEquals(result.isError, true);
        assertStringIncludes(textOf(result), connectUrl);
      },
    );

    const anaBrowser = await signedInBrowser(s.gw.url, "ana");

    await t.step(
      "2026-07-28 with URL elicitation: input_required; the user connects; the retried call succeeds",
      async () => {
        const opened: string[] = [];
        const client = track(
          await modernClient(mcp, ana, {
            urlElicitation: async (url) => {
              opened.push(url);
              const page = await connectBackend(anaBrowser, s.gw.url, "notes", "ana-at-notes");
              assertStringIncludes(page.html, "notes is connected.");
            },
          }),
        );
        const result = await client.callTool({ name: "notes__whoami", arguments: {} });
        assertEquals(opened, [connectUrl]);
        assertEquals(result.isError, undefined);
        assertEquals(textOf(result), "account:ana-at-notes");
      },
    );

    await t.step("once connected, tools/list shows the backend's own tools", async () => {
      const client = track(await modernClient(mcp, ana));
      const names = (await client.listTools()).tools.map((tool) => tool.name).sort();
      assertEquals(names, ["notes__note_add", "notes__notes", "notes__whoami"]);
    });

    await t.step(
      "two users connect the same backend; each sees only their own account's data",
      async () => {
        const bobBrowser = await signedInBrowser(s.gw.url, "bob");
        const page = await connectBackend(bobBrowser, s.gw.url, "notes", "bob-at-notes");
        assertStringIncludes(page.html, "notes is connected.");
        const a = track(await modernClient(mcp, ana));
        const b = track(await legacyClient(mcp, bob));
        await a.callTool({ name: "notes__note_add", arguments: { text: "ana's secret plan" } });
        await b.callTool({ name: "notes__note_add", arguments: { text: "bob's shopping list" } });
        assertEquals(
          textOf(await a.callTool({ name: "notes__notes", arguments: {} })),
          "ana's secret plan",
        );
        assertEquals(
          textOf(await b.callTool({ name: "notes__notes", arguments: {} })),
          "bob's shopping list",
        );
        assertEquals(
          textOf(await b.callTool({ name: "notes__whoami", arguments: {} })),
          "account:bob-at-notes",
        );
        const read = await b.readResource({ uri: "mcpgw-notes+notes://mine" });
        assertEquals(
          (read.contents[0] as { text: string }).text,
          "bob-at-notes: bob's shopping list",
        );
      },
    );

    await t.step(
      "the access token is refreshed after its expiry (RFC 6749 §6), rotation honoured",
      async () => {
        const client = track(await modernClient(mcp, ana));
        const before = s.notes.calls.filter((c) => c.sub === "ana-at-notes").at(-1)!.jti;
        const grants = () => s.notes.seen.filter((l) => l === "grant refresh_token").length;
        s.gw.deps.clock.advance(301_000); // past the 300 s access token
        assertEquals(
          textOf(await client.callTool({ name: "notes__whoami", arguments: {} })),
          "account:ana-at-notes",
        );
        assertEquals(grants(), 1);
        const after = s.notes.calls.at(-1)!.jti;
        assert(after !== before, "the backend saw a new access token");
        // A second expiry uses the rotated refresh token (reusing the first would be invalid_grant).
        s.gw.deps.clock.advance(301_000);
        assertEquals(
          textOf(await client.callTool({ name: "notes__whoami", arguments: {} })),
          "account:ana-at-notes",
        );
        assertEquals(grants(), 2);
        assertEquals(s.notes.seen.filter((l) => l.includes("error")), []);
      },
    );

    await t.step(
      "the backend's authorization server down when a refresh is due: a clear error, the connection kept",
      async () => {
        const client = track(await legacyClient(mcp, ana));
        s.gw.deps.clock.advance(301_000);
        s.notes.down = true;
        try {
          const error = await rpcError(() =>
            client.callTool({ name: "notes__whoami", arguments: {} })
          );
          assertEquals(error.code, -32603);
          assertMatch(
            error.message,
            /Backend notes: the token endpoint of backend notes answered HTTP 503/,
          );
        } finally {
          s.notes.down = false;
        }
        assertEquals(
          textOf(await client.callTool({ name: "notes__whoami", arguments: {} })),
          "account:ana-at-notes",
        );
      },
    );

    await t.step(
      "the backend answering 401 (revoked at its side): dropped, asked again, never a loop",
      async () => {
        const client = track(await modernClient(mcp, ana));
        s.notes.revokeAll();
        const refused = s.notes.refused;
        const result = await client.callTool({ name: "notes__whoami", arguments: {} });
        assertEquals(result.isError, true);
        assertStringIncludes(textOf(result), connectUrl);
        assertEquals(s.notes.refused, refused + 1, "one refused request, nothing retried");
        const again = await client.callTool({ name: "notes__whoami", arguments: {} });
        assertEquals(again.isError, true);
        assertEquals(
          s.notes.refused,
          refused + 1,
          "the next call asks again without calling the backend",
        );
        assert(
          s.gw.deps.logs.some((l) =>
            l.event === "backend_connection_dropped" && l.reason === "backend_401" &&
            l.user === "corp:ana"
          ),
        );
        assertEquals((await client.listTools()).tools.map((x: { name: string }) => x.name), [
          "notes__connect",
        ]);
      },
    );

    await t.step(
      "disconnect on /connections revokes at the backend's authorization server (RFC 7009); the next call asks again",
      async () => {
        await connectBackend(anaBrowser, s.gw.url, "notes", "ana-at-notes");
        const client = track(await modernClient(mcp, ana));
        assertEquals(
          textOf(await client.callTool({ name: "notes__whoami", arguments: {} })),
          "account:ana-at-notes",
        );
        const page = await anaBrowser.navigate(`${s.gw.url}/connections`);
        const revocations = s.notes.seen.filter((l) => l === "POST /token/revocation").length;
        const done = await anaBrowser.submit(`${s.gw.url}/connections/notes/disconnect`, {
          csrf_token: field(page.html, "csrf_token"),
        });
        assertEquals(done.status, 200);
        assertEquals(done.url.pathname, "/connections");
        assertStringIncludes(done.html, "notes is disconnected.");
        assertEquals(
          s.notes.seen.filter((l) => l === "POST /token/revocation").length,
          revocations + 2,
        );
        const result = await client.callTool({ name: "notes__whoami", arguments: {} });
        assertEquals(result.isError, true);
        assertStringIncludes(textOf(result), connectUrl);
      },
    );

    await t.step(
      "prompts/get and resources/read of a backend not connected: -32600 with the connect URL",
      async () => {
        const client = track(await legacyClient(mcp, ana));
        const prompt = await rpcError(() => client.getPrompt({ name: "notes__recap" }));
        assertEquals(prompt.code, -32600);
        assertStringIncludes(prompt.message, connectUrl);
        const read = await rpcError(() => client.readResource({ uri: "mcpgw-notes+notes://mine" }));
        assertEquals(read.code, -32600);
        assertStringIncludes(read.message, connectUrl);
      },
    );
  } finally {
    for (const c of clients) await c.close().catch(() => {});
    await s.close();
  }
});
