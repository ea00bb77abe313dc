/**
 * DNS rebinding between the SSRF check and the fetch of a metadata document (security review
 * issue 13 §7): the document is fetched from the address the guard checked — the name is never
 * resolved again — over TLS verified against the URL's host name; and the small HTTP/1.1 reader
 * behind it (lib/infra/pinned_fetch.ts) against a raw TCP server that answers byte by byte.
 *
 * tests/fixtures/tls/: a test-only CA (`ca.pem`; its key was discarded) and a certificate and key
 * for `cimd.example.test`, a name no DNS server knows: only the injected resolver maps it to
 * 127.0.0.1, so a fetch that resolved the name again could not reach the document at all.
 */
import { PinnedFetchError, pinnedGet, pinnedRequest } from "../lib/infra/pinned_fetch.ts";
import { resolveClientIdMetadata } from "../lib/oauth/client_id_metadata.ts";
import { OAuthError } from "../lib/oauth/oauth_error.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "./_assert.ts";

const FIXTURES = new URL("./fixtures/tls/", import.meta.url);
const read = (name: string) => Deno.readTextFileSync(new URL(name, FIXTURES));

/** An https document server on 127.0.0.1 with the `cimd.example.test` certificate. */
function tlsDocumentServer() {
  const hosts: string[] = [];
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: read("cimd.example.test.pem"),
    key: read("cimd.example.test.key"),
    onListen: () => {},
  }, (req) => {
    hosts.push(req.headers.get("host") ?? "");
    const url = new URL(req.url);
    const id = `https://${req.headers.get("host")}${url.pathname}`;
    return Response.json({
      client_id: id,
      client_name: "Pinned",
      redirect_uris: ["http://127.0.0.1:3000/callback"],
    });
  });
  return { port: server.addr.port, hosts, close: () => server.shutdown() };
}

Deno.test("metadata documents are fetched from the address the SSRF guard checked", async (t) => {
  const docs = tlsDocumentServer();
  const kv = await Deno.openKv(":memory:");
  const deps = { kv, now: Date.now };
  const ca = [read("ca.pem")];
  try {
    await t.step("the checked address is used, the name is not resolved again", async () => {
      const asked: string[] = [];
      const resolveDns = (host: string, type: "A" | "AAAA") => {
        asked.push(`${type} ${host}`);
        // A rebinding DNS server: the second answer for a name would be a private address.
        const answer = asked.filter((a) => a === `${type} ${host}`).length === 1
          ? (type === "A" ? ["127.0.0.1"] : [])
          : ["10.0.0.1"];
        return Promise.resolve(answer);
      };
      const id = `https://cimd.example.test:${docs.port}/app.json`;
      const client = await resolveClientIdMetadata(deps, id, {
        allowLoopback: true,
        resolveDns,
        caCerts: ca,
      });
      assertEquals(client.clientId, id);
      assertEquals(client.metadataDocumentHost, `cimd.example.test:${docs.port}`);
      assertEquals(asked.sort(), ["A cimd.example.test", "AAAA cimd.example.test"]);
      assertEquals(docs.hosts.at(-1), `cimd.example.test:${docs.port}`, "Host is the URL's");
    });

    await t.step("the certificate must match the URL's host name", async () => {
      const id = `https://other.example.test:${docs.port}/app.json`;
      const e = await assertRejects(
        () =>
          resolveClientIdMetadata(deps, id, {
            allowLoopback: true,
            resolveDns: (_h, type) => Promise.resolve(type === "A" ? ["127.0.0.1"] : []),
            caCerts: ca,
          }),
        OAuthError,
      );
      assertMatch(e.message, /could not be fetched \(TLS with other\.example\.test failed/);
    });

    await t.step("an unknown CA is refused (no private CA in production)", async () => {
      const id = `https://cimd.example.test:${docs.port}/no-ca.json`;
      const e = await assertRejects(
        () =>
          resolveClientIdMetadata(deps, id, {
            allowLoopback: true,
            resolveDns: (_h, type) => Promise.resolve(type === "A" ? ["127.0.0.1"] : []),
          }),
        OAuthError,
      );
      assertMatch(e.message, /TLS with cimd\.example\.test failed/);
    });
  } finally {
    kv.close();
    await docs.close();
  }
});

/** A raw TCP server that writes `answer` (as is) to each connection, after reading the request. */
function rawServer(answer: string | ((request: string) => string)) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const requests: string[] = [];
  const done = (async () => {
    for await (const conn of listener) {
      (async () => {
        const buf = new Uint8Array(4096);
        const n = await conn.read(buf);
        const request = new TextDecoder().decode(buf.subarray(0, n ?? 0));
        requests.push(request);
        const text = typeof answer === "string" ? answer : answer(request);
        try {
          await conn.write(new TextEncoder().encode(text));
        } catch {
          // the client closed early
        }
        conn.close();
      })();
    }
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  return {
    url: new URL(`http://pinned.example.test:${port}/doc`),
    requests,
    close: async () => {
      listener.close();
      await done.catch(() => {});
    },
  };
}

Deno.test("pinnedGet: a narrow HTTP/1.1 GET", async (t) => {
  const get = (url: URL, max = 100) =>
    pinnedGet({ url, addresses: ["127.0.0.1"], maxBodyBytes: max, headers: { accept: "x/y" } });
  const cases: [string, string, number, string | null][] = [
    ["Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, "hello"],
    [
      "chunked (RFC 9112 §7.1), trailers ignored",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nT: 1\r\n\r\n",
      200,
      "hello",
    ],
    ["read until close", "HTTP/1.0 200 OK\r\n\r\nhello", 200, "hello"],
    ["1xx interim answers skipped", "HTTP/1.1 103 Early\r\n\r\nHTTP/1.1 404 No\r\n\r\n", 404, ""],
    [
      "too long → body null",
      `HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n${"x".repeat(200)}`,
      200,
      null,
    ],
    [
      "too long, chunked → body null",
      `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nc8\r\n${"x".repeat(200)}\r\n0\r\n\r\n`,
      200,
      null,
    ],
  ];
  for (const [name, answer, status, body] of cases) {
    await t.step(name, async () => {
      const server = rawServer(answer);
      try {
        const res = await get(server.url);
        assertEquals(res.status, status);
        assertEquals(res.address, "127.0.0.1");
        assertEquals(res.body === null ? null : new TextDecoder().decode(res.body), body);
        assertMatch(
          server.requests[0]!,
          /^GET \/doc HTTP\/1\.1\r\nHost: pinned\.example\.test:\d+\r\n/,
        );
        assert(server.requests[0]!.includes("\r\naccept: x/y\r\nConnection: close\r\n\r\n"));
      } finally {
        await server.close();
      }
    });
  }
  const malformed: [string, string][] = [
    ["not HTTP", "SSH-2.0-OpenSSH\r\n\r\n"],
    [
      "Transfer-Encoding with Content-Length (RFC 9112 §6.3)",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    ],
    ["an unknown transfer coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"],
    ["a malformed Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello"],
    ["a truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort"],
    ["a malformed header", "HTTP/1.1 200 OK\r\nBad Header\r\n\r\n"],
    ["headers over 16 KiB", `HTTP/1.1 200 OK\r\nX: ${"y".repeat(17_000)}\r\n\r\n`],
  ];
  for (const [name, answer] of malformed) {
    await t.step(`refuses ${name}`, async () => {
      const server = rawServer(answer);
      try {
        await assertRejects(() => get(server.url), PinnedFetchError);
      } finally {
        await server.close();
      }
    });
  }
  await t.step(
    "no address accepts → a clear error; only the given addresses are tried",
    async () => {
      const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (closed.addr as Deno.NetAddr).port;
      closed.close();
      const e = await assertRejects(
        () =>
          pinnedGet({
            url: new URL(`http://localhost:${port}/`),
            addresses: ["127.0.0.1"],
            maxBodyBytes: 10,
          }),
        PinnedFetchError,
      );
      assertMatch(e.message, /could not connect/);
    },
  );
  await t.step("an abort closes the connection", async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const held: Deno.Conn[] = [];
    (async () => {
      for await (const conn of listener) held.push(conn);
    })();
    const controller = new AbortController();
    const pending = pinnedGet({
      url: new URL(`http://slow.example.test:${(listener.addr as Deno.NetAddr).port}/`),
      addresses: ["127.0.0.1"],
      maxBodyBytes: 10,
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 20);
    const e = await assertRejects(() => pending, DOMException);
    assertEquals(e.name, "AbortError");
    listener.close();
    for (const c of held) c.close();
  });
});

Deno.test("pinnedRequest: a POST of a small body (backends' authorization servers)", async (t) => {
  const seen: { method: string; type: string | null; length: string | null; body: string }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    seen.push({
      method: req.method,
      type: req.headers.get("content-type"),
      length: req.headers.get("content-length"),
      body: await req.text(),
    });
    return Response.json({ access_token: "t", token_type: "Bearer" });
  });
  const url = new URL(`http://as.example.test:${server.addr.port}/token`);
  try {
    await t.step("the body goes with its Content-Length, to the checked address", async () => {
      const body = "grant_type=refresh_token&refresh_token=r%C3%A9";
      const res = await pinnedRequest({
        url,
        addresses: ["127.0.0.1"],
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body,
        maxBodyBytes: 1000,
      });
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "application/json");
      assertEquals(JSON.parse(new TextDecoder().decode(res.body!)).token_type, "Bearer");
      assertEquals(seen, [{
        method: "POST",
        type: "application/x-www-form-urlencoded",
        length: String(new TextEncoder().encode(body).length),
        body,
      }]);
    });

    await t.step(
      "a header value with CR or LF is refused before connecting (no injection)",
      async () => {
        const e = await assertRejects(
          () =>
            pinnedRequest({
              url,
              addresses: ["127.0.0.1"],
              method: "POST",
              headers: { authorization: "Basic x\r\nX-Injected: 1" },
              body: "",
              maxBodyBytes: 1000,
            }),
          PinnedFetchError,
        );
        assertMatch(e.message, /CR or LF/);
        assertEquals(seen.length, 1);
      },
    );
  } finally {
    await server.shutdown();
  }
});
