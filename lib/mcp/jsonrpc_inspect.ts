/**
 * Reading and rewriting the JSON-RPC 2.0 messages that cross the pass-through (MCP Transports
 * §Streamable HTTP: a POST carries one message, or a batch in 2025-03-26; the answer is JSON or
 * an SSE stream of messages). Used by the curated pass-through (curated_proxy.ts); built so that
 * any per-message concern (e.g. an audit of each call and its outcome) can reuse the same hook.
 *
 * - {@linkcode parseJsonRpcBody}: the POST's message(s), from its text.
 * - {@linkcode transformMessages}: a response body transformed message by message through a
 *   {@linkcode MessageHook}: JSON (one message or a batch) is parsed and re-serialized; SSE is
 *   rewritten event by event as it streams (an event the hook leaves unchanged keeps its exact
 *   bytes, comments and `id:`/`retry:` lines stay, a `data` that is not JSON passes untouched).
 */

/** A parsed JSON-RPC message (request, notification or response). */
export type JsonRpcMessage = Record<string, any>;

/** A POST body as JSON-RPC: its messages and whether they came as a batch. */
export interface ParsedBody {
  messages: JsonRpcMessage[];
  batch: boolean;
}

const isObject = (v: unknown): v is JsonRpcMessage =>
  v !== null && typeof v === "object" && !Array.isArray(v);

/** Parses a POST body; `null` when it is not JSON or holds anything but JSON-RPC objects. */
export function parseJsonRpcBody(text: string): ParsedBody | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return null;
  }
  if (Array.isArray(parsed)) {
    return parsed.length > 0 && parsed.every(isObject) ? { messages: parsed, batch: true } : null;
  }
  return isObject(parsed) ? { messages: [parsed], batch: false } : null;
}

/** A message the server sends that answers request `id` (a result or an error, no method). */
export function isResponse(message: JsonRpcMessage): boolean {
  return message.method === undefined && ("result" in message || "error" in message);
}

/** A client request (has a method and an id). */
export function isRequest(message: JsonRpcMessage): boolean {
  return typeof message.method === "string" && message.id !== undefined && message.id !== null;
}

/** A key for a JSON-RPC id (string and number ids stay apart). */
export function idKey(id: unknown): string {
  return `${typeof id}:${String(id)}`;
}

/**
 * Called with each message of a response, in order: returns the message to send (the same
 * object when unchanged), or `null` to drop it.
 */
export type MessageHook = (message: JsonRpcMessage) => JsonRpcMessage | null;

/** Options of {@linkcode transformMessages}. */
export interface TransformOptions {
  /** Messages sent first (JSON: added to the batch; SSE: one event each). */
  prepend?: JsonRpcMessage[];
  /**
   * Called once when the body is over: `aborted` when it failed or was cancelled before its
   * end (the backend's stream broke, or the client went away). At once for a body passed
   * untouched (another media type).
   */
  onEnd?: (aborted: boolean) => void;
}

/**
 * The body `body` (of media type `contentType`) with every JSON-RPC message passed through
 * `hook` (see {@linkcode TransformOptions}). Other media types pass untouched.
 */
export function transformMessages(
  body: ReadableStream<Uint8Array>,
  contentType: string | null,
  hook: MessageHook,
  options: TransformOptions = {},
): ReadableStream<Uint8Array> {
  const type = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  const prepend = options.prepend ?? [];
  let ended = false;
  const onEnd = (aborted: boolean) => {
    if (ended) return;
    ended = true;
    options.onEnd?.(aborted);
  };
  if (type === "application/json") return jsonTransform(body, hook, prepend, onEnd);
  if (type === "text/event-stream") return body.pipeThrough(sseTransform(hook, prepend, onEnd));
  onEnd(false);
  return body;
}

const encoder = new TextEncoder();

function jsonTransform(
  body: ReadableStream<Uint8Array>,
  hook: MessageHook,
  prepend: JsonRpcMessage[],
  onEnd: (aborted: boolean) => void,
): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async start(controller) {
      const text = await new Response(body).text().catch(() => null);
      if (text === null) {
        onEnd(true);
        return controller.error(new Error("backend body failed"));
      }
      const parsed = parseJsonRpcBody(text);
      if (!parsed) {
        onEnd(false);
        controller.enqueue(encoder.encode(text));
        return controller.close();
      }
      const out = parsed.messages.map(hook).filter((m): m is JsonRpcMessage => m !== null);
      onEnd(false);
      const all = [...prepend, ...out];
      const changed = prepend.length > 0 || out.length !== parsed.messages.length ||
        out.some((m, i) => m !== parsed.messages[i]);
      const serialized = !changed
        ? text
        : JSON.stringify(parsed.batch || all.length !== 1 ? all : all[0]);
      controller.enqueue(encoder.encode(serialized));
      controller.close();
    },
    cancel() {
      onEnd(true);
    },
  });
}

const sseEvent = (message: JsonRpcMessage) =>
  encoder.encode(`event: message\ndata: ${JSON.stringify(message)}\n\n`);

/** Rewrites an SSE stream event by event (WHATWG HTML §9.2 event stream format). */
function sseTransform(
  hook: MessageHook,
  prepend: JsonRpcMessage[],
  onEnd: (aborted: boolean) => void,
): TransformStream<Uint8Array, Uint8Array> {
  const decoder = new TextDecoder();
  let buffer = "";
  const emit = (raw: string, controller: TransformStreamDefaultController<Uint8Array>) => {
    const lines = raw.split("\n");
    const dataLines = lines.filter((l) => l.startsWith("data:"));
    let message: unknown;
    if (dataLines.length > 0) {
      try {
        message = JSON.parse(dataLines.map((l) => l.slice(l[5] === " " ? 6 : 5)).join("\n"));
      } catch {
        message = undefined;
      }
    }
    if (!isObject(message)) return controller.enqueue(encoder.encode(`${raw}\n\n`));
    const out = hook(message);
    if (out === message) return controller.enqueue(encoder.encode(`${raw}\n\n`));
    if (out === null) return;
    const kept = lines.filter((l) => l !== "" && !l.startsWith("data:")).join("\n");
    controller.enqueue(
      encoder.encode(`${kept ? kept + "\n" : ""}data: ${JSON.stringify(out)}\n\n`),
    );
  };
  return new TransformStream<Uint8Array, Uint8Array>({
    start(controller) {
      for (const m of prepend) controller.enqueue(sseEvent(m));
    },
    transform(chunk, controller) {
      buffer = (buffer + decoder.decode(chunk, { stream: true })).replace(/\r\n/g, "\n");
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const raw = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        emit(raw, controller);
      }
    },
    flush(controller) {
      buffer += decoder.decode();
      if (buffer.trim() !== "") emit(buffer.replace(/\n+$/, ""), controller);
      onEnd(false);
    },
    cancel() {
      onEnd(true);
    },
  });
}

/** An HTTP header value: ASCII as is, anything else as `=?base64?…?=` (MCP 2026-07-28). */
export function mcpHeaderValue(value: string): string {
  if (/^[\x20-\x7e]*$/.test(value)) return value;
  let s = "";
  for (const b of encoder.encode(value)) s += String.fromCharCode(b);
  return `=?base64?${btoa(s)}?=`;
}
