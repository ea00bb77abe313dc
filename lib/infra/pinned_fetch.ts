/**
 * A small HTTP/1.1 GET that connects to addresses the caller already checked, instead of letting
 * `fetch` resolve the host name again: the SSRF guard's answer is the address actually used, so
 * a DNS server that answers a public address to the check and a private one to the fetch (DNS
 * rebinding, TTL 0) gains nothing. Deno's `fetch` cannot be pinned: `Deno.createHttpClient`'s
 * `proxy: { transport: "tcp" }` does pin the connection but then speaks plain HTTP even to
 * `https` URLs (checked on Deno 2.9.6). So the connection is opened with `Deno.connect` to a
 * checked address and, for `https`, upgraded with `Deno.startTls` verifying the certificate
 * against the URL's host name (SNI and name check as `fetch` would do).
 *
 * Deliberately narrow: one `GET` (or a `POST` of a small body, {@linkcode pinnedRequest}),
 * `Connection: close`, no redirects, no compression, no HTTP/2; the response head is capped at {@linkcode MAX_HEAD_BYTES} and the body at the caller's
 * `maxBodyBytes` (a longer body is reported as `body: null`, and the connection closed);
 * `Content-Length` or chunked framing (RFC 9112 §6), else read until close. Used for Client ID
 * Metadata Documents (lib/oauth/client_id_metadata.ts) and for the gateway's requests to the
 * authorization servers of per-user backends (lib/credentials/outbound.ts).
 * @module
 */

/** Largest response head (status line and headers) read. */
export const MAX_HEAD_BYTES = 16 * 1024;

/** A GET to send over a pinned connection. */
export interface PinnedGet {
  url: URL;
  /** Addresses the host was checked to resolve to, tried in order; never re-resolved. */
  addresses: readonly string[];
  headers?: Record<string, string>;
  maxBodyBytes: number;
  /** Aborts the exchange (closes the connection). */
  signal?: AbortSignal;
  /** Extra root certificates (PEM), for tests with a private CA. */
  caCerts?: string[];
}

/** A request to send over a pinned connection: a GET, or a POST with a (small) body. */
export interface PinnedRequest extends PinnedGet {
  method?: "GET" | "POST";
  /** The POST body (sent with its `Content-Length`). */
  body?: string;
}

/** What came back. `body` is `null` when it was longer than `maxBodyBytes`. */
export interface PinnedResponse {
  status: number;
  headers: Headers;
  body: Uint8Array | null;
  /** The address the connection went to. */
  address: string;
}

/** A malformed answer or a failed connection; the message is safe to show. */
export class PinnedFetchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PinnedFetchError";
  }
}

type Conn = Deno.Conn | Deno.TlsConn;

/** Buffered reads from a connection. */
class Reader {
  #buf = new Uint8Array(0);
  #eof = false;
  constructor(readonly conn: Conn) {}

  /** Reads more bytes into the buffer; false at end of stream. */
  async fill(): Promise<boolean> {
    if (this.#eof) return false;
    const chunk = new Uint8Array(16 * 1024);
    const n = await this.conn.read(chunk);
    if (n === null) {
      this.#eof = true;
      return false;
    }
    const next = new Uint8Array(this.#buf.length + n);
    next.set(this.#buf);
    next.set(chunk.subarray(0, n), this.#buf.length);
    this.#buf = next;
    return true;
  }

  get buffered(): Uint8Array {
    return this.#buf;
  }

  take(n: number): Uint8Array {
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return out;
  }

  /** One CRLF-terminated line (without the CRLF), at most `max` bytes. */
  async line(max: number): Promise<string> {
    for (;;) {
      const end = this.#buf.findIndex((b, i) => b === 10 && this.#buf[i - 1] === 13);
      if (end >= 0) return new TextDecoder().decode(this.take(end + 1).subarray(0, end - 1));
      if (this.#buf.length > max) throw new PinnedFetchError("answered a line that is too long");
      if (!await this.fill()) throw new PinnedFetchError("closed the connection mid-answer");
    }
  }
}

async function connect(request: PinnedGet): Promise<{ conn: Conn; address: string }> {
  const url = request.url;
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  let lastError: unknown;
  for (const address of request.addresses) {
    if (request.signal?.aborted) break;
    let tcp: Deno.TcpConn;
    try {
      tcp = await Deno.connect({ hostname: address, port });
    } catch (error) {
      lastError = error;
      continue;
    }
    if (url.protocol !== "https:") return { conn: tcp, address };
    try {
      const hostname = url.hostname.replace(/^\[|\]$/g, "");
      const tls = await Deno.startTls(tcp, { hostname, caCerts: request.caCerts });
      try {
        await tls.handshake(); // certificate and name checked here, not at the first write
      } catch (error) {
        tls.close();
        throw error;
      }
      return { conn: tls, address };
    } catch (error) {
      try {
        tcp.close();
      } catch {
        // startTls consumed it
      }
      throw new PinnedFetchError(
        `TLS with ${url.hostname} failed (${error instanceof Error ? error.message : "error"})`,
      );
    }
  }
  throw new PinnedFetchError(
    `could not connect (${lastError instanceof Error ? lastError.message : "no address"})`,
  );
}

/** Reads a response head: the status and the headers (RFC 9112 §4, §5). */
async function readHead(reader: Reader): Promise<{ status: number; headers: Headers }> {
  let used = 0;
  const line = async () => {
    const text = await reader.line(MAX_HEAD_BYTES - used);
    used += text.length + 2;
    if (used > MAX_HEAD_BYTES) throw new PinnedFetchError("answered headers that are too long");
    return text;
  };
  const statusLine = /^HTTP\/1\.[01] ([1-9][0-9]{2})(?: .*)?$/.exec(await line());
  if (!statusLine) throw new PinnedFetchError("did not answer HTTP/1.1");
  const headers = new Headers();
  for (;;) {
    const text = await line();
    if (text === "") break;
    const header = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/.exec(text);
    if (!header) throw new PinnedFetchError("answered a malformed header");
    try {
      headers.append(header[1]!, header[2]!);
    } catch {
      throw new PinnedFetchError("answered a malformed header");
    }
  }
  return { status: Number(statusLine[1]), headers };
}

/** Reads exactly `length` bytes, or `null` past `max`. */
async function readLength(reader: Reader, length: number, max: number): Promise<Uint8Array | null> {
  if (length > max) return null;
  while (reader.buffered.length < length) {
    if (!await reader.fill()) throw new PinnedFetchError("answered a truncated body");
  }
  return reader.take(length);
}

/** Reads a chunked body (RFC 9112 §7.1), or `null` past `max`. */
async function readChunked(reader: Reader, max: number): Promise<Uint8Array | null> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const sizeLine = /^([0-9a-fA-F]{1,8})(?:[ \t]*;.*)?$/.exec(await reader.line(1024));
    if (!sizeLine) throw new PinnedFetchError("answered a malformed chunk");
    const size = parseInt(sizeLine[1]!, 16);
    if (size === 0) break;
    total += size;
    if (total > max) return null;
    const data = await readLength(reader, size, max);
    if (!data) return null;
    parts.push(data);
    if (await reader.line(2) !== "") throw new PinnedFetchError("answered a malformed chunk");
  }
  while (await reader.line(MAX_HEAD_BYTES) !== "") {
    // trailer fields are ignored
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Reads until the server closes, or `null` past `max`. */
async function readToClose(reader: Reader, max: number): Promise<Uint8Array | null> {
  while (await reader.fill()) {
    if (reader.buffered.length > max) return null;
  }
  return reader.take(reader.buffered.length);
}

async function readBody(
  reader: Reader,
  status: number,
  headers: Headers,
  max: number,
): Promise<Uint8Array | null> {
  if (status === 204 || status === 304) return new Uint8Array(0);
  const encoding = headers.get("transfer-encoding");
  const length = headers.get("content-length");
  if (encoding !== null) {
    // RFC 9112 §6.1: chunked must be last; anything else cannot be framed here, and both
    // headers at once is how request smuggling starts (§6.3): refuse.
    if (encoding.trim().toLowerCase() !== "chunked" || length !== null) {
      throw new PinnedFetchError("answered a body framing that is not supported");
    }
    return await readChunked(reader, max);
  }
  if (length !== null) {
    if (!/^[0-9]{1,12}$/.test(length.trim())) {
      throw new PinnedFetchError("answered a malformed Content-Length");
    }
    return await readLength(reader, Number(length), max);
  }
  return await readToClose(reader, max);
}

/**
 * Sends `GET url` to the first of `addresses` that accepts a connection (TLS for https, with
 * the URL's host as the verified name) and reads the answer within the caps.
 * @throws {PinnedFetchError} a failed connection or a malformed answer
 * @throws the signal's reason (an `AbortError`) when aborted
 */
export function pinnedGet(request: PinnedGet): Promise<PinnedResponse> {
  return pinnedRequest(request);
}

/**
 * {@linkcode pinnedGet}, or a `POST` of `request.body` (its `Content-Length` set; header values
 * with CR or LF are refused).
 * @throws {PinnedFetchError} a failed connection or a malformed answer
 * @throws the signal's reason (an `AbortError`) when aborted
 */
export async function pinnedRequest(request: PinnedRequest): Promise<PinnedResponse> {
  const extra = Object.entries(request.headers ?? {});
  if (extra.some(([n, v]) => /[\r\n]/.test(n) || /[\r\n]/.test(v))) {
    throw new PinnedFetchError("a header value may not contain CR or LF");
  }
  const payload = new TextEncoder().encode(request.body ?? "");
  const { conn, address } = await connect(request);
  const close = () => {
    try {
      conn.close();
    } catch {
      // already closed
    }
  };
  request.signal?.addEventListener("abort", close, { once: true });
  try {
    const url = request.url;
    const method = request.method ?? "GET";
    const lines = [`${method} ${url.pathname}${url.search} HTTP/1.1`, `Host: ${url.host}`];
    for (const [name, value] of extra) lines.push(`${name}: ${value}`);
    if (method === "POST") lines.push(`Content-Length: ${payload.length}`);
    lines.push("Connection: close", "", "");
    const head = new TextEncoder().encode(lines.join("\r\n"));
    const bytes = new Uint8Array(head.length + payload.length);
    bytes.set(head);
    bytes.set(payload, head.length);
    for (let sent = 0; sent < bytes.length;) sent += await conn.write(bytes.subarray(sent));
    const reader = new Reader(conn);
    let answer = await readHead(reader);
    while (answer.status < 200) answer = await readHead(reader); // 1xx interim (RFC 9110 §15.2)
    const body = await readBody(reader, answer.status, answer.headers, request.maxBodyBytes);
    return { ...answer, body, address };
  } catch (error) {
    if (request.signal?.aborted) throw request.signal.reason;
    if (error instanceof PinnedFetchError) throw error;
    throw new PinnedFetchError("could not be read");
  } finally {
    request.signal?.removeEventListener("abort", close);
    close();
  }
}
