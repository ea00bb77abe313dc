/**
 * Elicitation and sampling relayed between backends and clients of the aggregated `/mcp`, in
 * every era combination (MCP 2025-11-25 Client/Elicitation, Client/Sampling; 2026-07-28
 * Basic/Patterns/Multi Round-Trip Requests). The routed methods that may ask for input
 * (`tools/call`, `prompts/get`, `resources/read`) run through {@linkcode relayedCall}:
 *
 * | backend ↓ / client →  | 2025 client (per-request legacy leg)      | 2026-07-28 client                      |
 * |-----------------------|-------------------------------------------|----------------------------------------|
 * | 2025 backend asks     | a request on the call's SSE stream; the   | the call is parked, the client gets    |
 * | (server→client req.)  | answer POST reaches the call on any       | `input_required`; its retry resumes    |
 * |                       | isolate ({@linkcode ClientAnswers})       | the call on any isolate ({@linkcode ParkedCalls}) |
 * | 2026 backend returns  | each embedded request asked as in the row | handed on with the gateway's sealed    |
 * | `input_required`      | above, then the backend is retried        | `requestState` (server.ts)             |
 *
 * A client that did not declare the capability a request needs is never asked: the backend's
 * request is refused with a clear error (2025 backend) or the call ends with the SDK's own
 * message (2026 backend). Every wait for a person is bounded by {@linkcode INPUT_TIMEOUT_MS};
 * while it lasts, the backend call's own `timeoutMs` is paused.
 */
import {
  inputRequired,
  isInputRequiredResult,
  ProtocolError,
  ProtocolErrorCode,
  type Server,
  type ServerContext,
} from "@modelcontextprotocol/server";
import { z } from "zod";
import type { Deps } from "../../deps.ts";
import type { CallRelay } from "./call_relay.ts";
import { cancelKey, type CancelRegistry } from "./cancel.ts";
import type { Hold } from "./fanout.ts";
import { isLogLevel, LOG_LEVEL_KEY, logAllows, type LogLevel, namedLog } from "./log_relay.ts";
import type { ClientAnswer, ParkOutcome, RelayBus } from "./relay_bus.ts";
import { openRequestStateClaims, REQUEST_STATE_TTL_MS, sealRequestState } from "./request_state.ts";

/** How long the gateway waits for a client to answer one input request (a person answers). */
export const INPUT_TIMEOUT_MS = REQUEST_STATE_TTL_MS;

/** How long a retry waits for the isolate holding its parked call to acknowledge it. */
export const PARK_ACK_MS = 3000;

/** Rounds of `input_required` one call may go through for a 2025-era client. */
export const MAX_INPUT_ROUNDS = 8;

/** Calls an isolate keeps parked at most (a further one is refused to its backend). */
export const MAX_PARKED = 1000;

/** A routed method whose result may need input from the client. */
export type MrtrMethod = "tools/call" | "prompts/get" | "resources/read";

const CAPABILITY_KEY = "io.modelcontextprotocol/clientCapabilities";

/** The client capability an input request needs (as the SDK checks it). */
const CAPABILITY_OF: Record<string, string> = {
  "elicitation/create": "elicitation",
  "sampling/createMessage": "sampling",
  "roots/list": "roots",
};

const isObject = (v: unknown): v is Record<string, any> =>
  v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * Whether a client that declared `declared` cannot answer `method` (MCP 2025-11-25
 * Client/Elicitation §Capabilities: `elicitation: {}` means form mode; URL mode needs `url`).
 * `roots/list` is never relayed: the gateway does not declare roots to backends.
 */
export function lacksCapability(
  declared: Record<string, unknown> | undefined,
  method: string,
  params: unknown,
): boolean {
  const name = CAPABILITY_OF[method];
  if (!name || name === "roots") return true;
  const capability = declared?.[name];
  if (!isObject(capability)) return true;
  if (name !== "elicitation") return false;
  const mode = isObject(params) && params.mode === "url" ? "url" : "form";
  if (mode === "url") return capability.url === undefined;
  return Object.keys(capability).length > 0 && capability.form === undefined;
}

/** The refusal of a request (`method`) the calling client cannot answer (see {@linkcode refusalError}). */
export function refusal(method: string): ProtocolError {
  const { code, message } = refusalError(method);
  return new ProtocolError(code, message);
}

/**
 * The JSON-RPC error a backend gets for a request (`method`) the calling client cannot answer:
 * shared with the `tools/call` fast path (fast_call.ts), which refuses such requests itself.
 */
export function refusalError(method: string): { code: number; message: string } {
  const what = CAPABILITY_OF[method] ?? method;
  return {
    code: ProtocolErrorCode.InvalidRequest,
    message: `The client of this call did not declare the ${what} capability: the aggregated ` +
      `/mcp endpoint cannot relay ${method} to it`,
  };
}

/** The key under which a 2025-era client's answer to request `id` of a session is awaited. */
export const answerKey = (sessionHash: string, id: unknown): string =>
  `${sessionHash}:${JSON.stringify(id)}`;

/**
 * Answers of 2025-era clients to the requests the gateway sent them. The request went out on a
 * call's SSE stream in one isolate; the client POSTs its answer, which may reach another
 * isolate: {@linkcode deliver} settles the wait here, or broadcasts it.
 */
export class ClientAnswers {
  #waiting = new Map<string, (answer: ClientAnswer) => void>();
  #bus: RelayBus;

  constructor(bus: RelayBus) {
    this.#bus = bus;
    bus.on("answer", (m) => void this.#settle(m.key, m.answer));
  }

  /** Waits for the answer `key` (rejects on `signal` or after `timeoutMs`). */
  wait(key: string, signal: AbortSignal, timeoutMs: number): Promise<ClientAnswer> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        this.#waiting.delete(key);
      };
      const onAbort = () => {
        done();
        reject(signal.reason ?? new Error("aborted"));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no answer within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      this.#waiting.set(key, (answer) => {
        done();
        resolve(answer);
      });
    });
  }

  /** A client's answer arrived at this isolate. */
  deliver(key: string, answer: ClientAnswer): void {
    if (!this.#settle(key, answer)) this.#bus.post({ t: "answer", key, answer });
  }

  #settle(key: string, answer: ClientAnswer): boolean {
    const settle = this.#waiting.get(key);
    settle?.(answer);
    return settle !== undefined;
  }
}

/** Prefix of the ids of the requests the gateway sends clients (no client id collides). */
const ASK_ID_PREFIX = "mcpgw-";

const AnswerSchema = z.union([
  z.object({
    jsonrpc: z.literal("2.0"),
    id: z.string().startsWith(ASK_ID_PREFIX).max(100),
    result: z.record(z.string(), z.unknown()),
  }),
  z.object({
    jsonrpc: z.literal("2.0"),
    id: z.string().startsWith(ASK_ID_PREFIX).max(100),
    error: z.object({
      code: z.number().int(),
      message: z.string().max(10_000),
      data: z.unknown().optional(),
    }),
  }),
]);

/**
 * The answers to the gateway's own requests in a 2025-era client's POST body (a JSON-RPC
 * response, or a batch of them), or `undefined` when the body is anything else.
 */
export function clientAnswersOf(
  body: unknown,
): { id: string; answer: ClientAnswer }[] | undefined {
  const messages = Array.isArray(body) ? body : [body];
  const out: { id: string; answer: ClientAnswer }[] = [];
  for (const message of messages) {
    const parsed = AnswerSchema.safeParse(message);
    if (!parsed.success) return undefined;
    const m = parsed.data;
    out.push({
      id: m.id,
      answer: "result" in m ? { result: m.result } : {
        error: {
          code: m.error.code,
          message: m.error.message,
          ...(m.error.data !== undefined ? { data: m.error.data } : {}),
        },
      },
    });
  }
  return out.length > 0 ? out : undefined;
}

/**
 * Sends `method` to a 2025-era client as a server-to-client request on the SSE stream of the
 * request `ctx` serves (MCP 2025-11-25 Transports: "The server MAY send JSON-RPC requests and
 * notifications before sending the JSON-RPC response"), with an id unique to the gateway, and
 * waits for the client's answer, which comes back in a POST of its own (handler.ts).
 */
export async function askLegacyClient(
  answers: ClientAnswers,
  server: Server,
  ctx: ServerContext,
  sessionHash: string,
  method: string,
  params: unknown,
  signal: AbortSignal,
): Promise<Record<string, unknown>> {
  const transport = server.transport;
  if (!transport) throw new ProtocolError(ProtocolErrorCode.InternalError, "Connection closed");
  const id = `${ASK_ID_PREFIX}${crypto.randomUUID()}`;
  const stop = new AbortController();
  const answer = answers.wait(
    answerKey(sessionHash, id),
    AbortSignal.any([signal, stop.signal]),
    INPUT_TIMEOUT_MS,
  );
  try {
    await transport.send({ jsonrpc: "2.0", id, method, params } as any, {
      relatedRequestId: ctx.mcpReq.id,
    });
  } catch (error) {
    stop.abort(error);
    answer.catch(() => {});
    throw error;
  }
  const reply = await answer;
  if (reply.error) {
    throw new ProtocolError(reply.error.code, reply.error.message, reply.error.data);
  }
  return isObject(reply.result) ? reply.result : {};
}

/** An input request of a backend waiting for a 2026-07-28 client's answer. */
interface PendingInput {
  key: string;
  method: string;
  params: Record<string, unknown>;
  offered: boolean;
  settle: (answer: Record<string, unknown>) => void;
  fail: (error: unknown) => void;
}

/** The input requests of one call toward a 2026-07-28 client, in the order they came. */
class PendingInputs {
  #items: PendingInput[] = [];
  #wake?: (input: PendingInput) => void;
  #count = 0;

  ask(
    method: string,
    params: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const remove = () => {
        this.#items = this.#items.filter((i) => i !== item);
        signal.removeEventListener("abort", onAbort);
      };
      const item: PendingInput = {
        key: `input${++this.#count}`,
        method,
        params,
        offered: false,
        settle: (answer) => {
          remove();
          resolve(answer);
        },
        fail: (error) => {
          remove();
          reject(error);
        },
      };
      const onAbort = () => item.fail(signal.reason ?? new Error("aborted"));
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      this.#items.push(item);
      this.#offer();
    });
  }

  /** The next input request not yet handed to the client. */
  next(): Promise<PendingInput> {
    return new Promise((resolve) => {
      this.#wake = resolve;
      this.#offer();
    });
  }

  #offer(): void {
    const item = this.#wake && this.#items.find((i) => !i.offered);
    if (!item) return;
    item.offered = true;
    const wake = this.#wake!;
    this.#wake = undefined;
    wake(item);
  }
}

/** What a running call did next: ended, failed, or asked for input. */
type Step = { result: any } | { error: unknown } | { input: PendingInput };

function nextStep(running: Promise<Step>, inputs: PendingInputs): Promise<Step> {
  return Promise.race([running, inputs.next().then((input) => ({ input }))]);
}

const askOf = (input: PendingInput) => ({
  key: input.key,
  method: input.method,
  params: input.params,
});

function errorOf(error: unknown): { code: number; message: string; data?: unknown } {
  if (error instanceof ProtocolError) {
    return {
      code: error.code,
      message: error.message,
      ...(error.data !== undefined ? { data: error.data } : {}),
    };
  }
  return { code: ProtocolErrorCode.InternalError, message: "Internal error" };
}

function stateError(message: string): ParkOutcome {
  return {
    error: {
      code: ProtocolErrorCode.InvalidParams,
      message,
      data: { reason: "invalid_request_state" },
    },
  };
}

/** The call behind a 2026-07-28 client's relayed input request (see {@linkcode ParkedCalls}). */
interface Park {
  id: string;
  principal: string;
  round: number;
  running: Promise<Step>;
  inputs: PendingInputs;
  pending: PendingInput;
  relay: ModernRelay;
  abort: AbortController;
  busy: boolean;
  timer?: ReturnType<typeof setTimeout>;
}

/**
 * Calls parked while a 2026-07-28 client answers an input request of a 2025-era backend: the
 * backend waits on the gateway's shared connection for its answer, the client got
 * `input_required` and retries with `inputResponses`, maybe at another isolate. A retry here
 * resumes the call directly; elsewhere it is broadcast, acknowledged by the isolate that holds the
 * call (within {@linkcode PARK_ACK_MS}, else the call is gone) and answered with what the call did
 * next. A parked call unanswered for {@linkcode INPUT_TIMEOUT_MS} is given up: its backend gets an
 * error for the input request.
 */
export class ParkedCalls {
  #parks = new Map<string, Park>();
  /** Calls that were parked here and ended: a late retry is answered at once. */
  #ended = new Set<string>();
  #replies = new Map<string, { ack: () => void; outcome: (o: ParkOutcome) => void }>();
  #bus: RelayBus;

  constructor(bus: RelayBus) {
    this.#bus = bus;
    bus.on("park_resume", async (m) => {
      const park = this.#parks.get(m.id);
      if (!park) return;
      bus.post({ t: "park_ack", reply: m.reply });
      const outcome = await this.#resumeHere(park, m.round, m.principal, m.responses, undefined);
      bus.post({ t: "park_outcome", reply: m.reply, outcome });
    });
    bus.on("park_ack", (m) => this.#replies.get(m.reply)?.ack());
    bus.on("park_outcome", (m) => this.#replies.get(m.reply)?.outcome(m.outcome));
  }

  /** Parks a call that asked for `pending`; `undefined` when this isolate holds too many. */
  park(fields: Omit<Park, "id" | "round" | "busy" | "timer">): Park | undefined {
    if (this.#parks.size >= MAX_PARKED) return undefined;
    const park: Park = { ...fields, id: crypto.randomUUID(), round: 1, busy: false };
    this.#parks.set(park.id, park);
    this.#expire(park);
    fields.running.then(() => {
      // a call that ends while parked (its deadline, an error) is not resumed any more
      if (!park.busy) this.#drop(park);
    });
    return park;
  }

  /**
   * Resumes parked call `id` with the client's `responses` for `round`, here or at the isolate
   * that holds it. `ctx` is the retry's request (the call's log messages go there from now on).
   */
  async resume(
    id: string,
    round: number,
    principal: string,
    responses: Record<string, unknown> | undefined,
    waitMs: number,
    signal: AbortSignal,
    ctx: ServerContext,
  ): Promise<ParkOutcome> {
    const park = this.#parks.get(id);
    if (park) return await this.#resumeHere(park, round, principal, responses, ctx);
    if (this.#ended.has(id)) return stateError("Invalid or expired requestState");
    const reply = crypto.randomUUID();
    return await new Promise<ParkOutcome>((resolve) => {
      const finish = (outcome: ParkOutcome) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        this.#replies.delete(reply);
        resolve(outcome);
      };
      const onAbort = () =>
        finish({ error: { code: ProtocolErrorCode.InternalError, message: "Request cancelled" } });
      let timer = setTimeout(
        () =>
          finish(stateError(
            "The call waiting for this input is no longer running (it expired, or ran on a " +
              "gateway instance that stopped); call again",
          )),
        PARK_ACK_MS,
      );
      this.#replies.set(reply, {
        ack: () => {
          clearTimeout(timer);
          timer = setTimeout(
            () =>
              finish({
                error: { code: ProtocolErrorCode.InternalError, message: "Request timed out" },
              }),
            waitMs,
          );
        },
        outcome: finish,
      });
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      this.#bus.post({ t: "park_resume", id, round, principal, responses, reply });
    });
  }

  /** Gives up every parked call (shutdown, tests). */
  close(): void {
    for (const park of [...this.#parks.values()]) {
      park.pending.fail(new ProtocolError(ProtocolErrorCode.InternalError, "Gateway closing"));
      park.abort.abort();
      this.#drop(park);
    }
  }

  async #resumeHere(
    park: Park,
    round: number,
    principal: string,
    responses: Record<string, unknown> | undefined,
    ctx: ServerContext | undefined,
  ): Promise<ParkOutcome> {
    if (principal !== park.principal || round !== park.round || park.busy) {
      return stateError("Invalid or expired requestState");
    }
    const answer = responses?.[park.pending.key];
    // No answer for the pending request: ask it again (MCP 2026-07-28 MRTR retries are idempotent).
    if (!isObject(answer)) return { ask: askOf(park.pending), round: park.round };
    park.busy = true;
    clearTimeout(park.timer);
    if (ctx) park.relay.ctx = ctx;
    park.pending.settle(answer);
    const next = await nextStep(park.running, park.inputs);
    park.busy = false;
    if ("input" in next) {
      park.pending = next.input;
      park.round++;
      this.#expire(park);
      return { ask: askOf(next.input), round: park.round };
    }
    this.#drop(park);
    return "result" in next ? { result: next.result } : { error: errorOf(next.error) };
  }

  #expire(park: Park): void {
    clearTimeout(park.timer);
    park.timer = setTimeout(() => {
      if (park.busy) return;
      park.pending.fail(new ProtocolError(ProtocolErrorCode.InternalError, "No answer in time"));
      park.abort.abort(new Error("no answer in time"));
      this.#drop(park);
    }, INPUT_TIMEOUT_MS);
  }

  #drop(park: Park): void {
    clearTimeout(park.timer);
    if (this.#parks.get(park.id) !== park) return;
    this.#parks.delete(park.id);
    if (this.#ended.size >= MAX_PARKED) this.#ended.delete(this.#ended.values().next().value!);
    this.#ended.add(park.id);
  }
}

/** The fields of one round toward the backend (MCP 2026-07-28 MRTR retry fields). */
export interface RoundFields {
  inputResponses?: Record<string, unknown>;
  requestState?: string;
}

/** A routed call's relay, with the log level its end client asked for (if any). */
export interface EndClientRelay extends CallRelay {
  logLevel?: LogLevel;
}

/** One round of the backend call, as server.ts runs it (routing, deadline, error mapping). */
export type RunRound = (
  round: { fields: RoundFields; relay: EndClientRelay; parent: AbortSignal },
) => Promise<any>;

/** What the relay needs from the gateway. */
export interface InputRelayEnv extends Pick<Deps, "kv" | "now"> {
  answers: ClientAnswers;
  parks: ParkedCalls;
  cancels: CancelRegistry;
}

/** The client side of one routed request. */
export interface CallClient {
  ctx: ServerContext;
  /** The per-request SDK server (its transport carries a 2025-era client's requests). */
  server: Server;
  principal: string;
  /** A 2025-era client's session (the per-request legacy leg), else a 2026-07-28 client. */
  session?: { hash: string; capabilities: Record<string, unknown>; logLevel?: string };
}

/** The routed call: method, backend, the name or URI as the client sent it, the backend's limit. */
export interface RoundTarget {
  method: MrtrMethod;
  backend: string;
  name: string;
  timeoutMs: number;
}

/** The backend's final result (`done`), or the answer to give the client now (`reply`). */
export type RoundOutcome = { done: any } | { reply: any };

/**
 * Runs a routed call with input relayed in both directions (see the module doc). `done` is the
 * backend's last result, which server.ts rewrites for the client (a 2026-07-28 backend's
 * `input_required` toward a 2026-07-28 client included); `reply` is an `input_required` for a
 * 2026-07-28 client whose call is parked.
 */
export async function relayedCall(
  env: InputRelayEnv,
  client: CallClient,
  target: RoundTarget,
  run: RunRound,
): Promise<RoundOutcome> {
  return client.session
    ? await legacyClientCall(env, client, client.session, target, run)
    : await modernClientCall(env, client, target, run);
}

/** A 2025-era client's call relay: asks go out on the call's SSE stream. */
class LegacyRelay implements EndClientRelay {
  hold?: Hold;
  logLevel?: LogLevel;

  constructor(
    private env: InputRelayEnv,
    private client: CallClient,
    private session: NonNullable<CallClient["session"]>,
    private backend: string,
    private signal: AbortSignal,
  ) {
    if (isLogLevel(session.logLevel)) this.logLevel = session.logLevel;
  }

  lacks(method: string, params: unknown): boolean {
    return lacksCapability(this.session.capabilities, method, params);
  }

  askClient(method: string, params: unknown, signal = this.signal) {
    return askLegacyClient(
      this.env.answers,
      this.client.server,
      this.client.ctx,
      this.session.hash,
      method,
      params,
      signal,
    );
  }

  async ask(method: string, params: Record<string, unknown>, signal: AbortSignal) {
    if (this.lacks(method, params)) throw refusal(method);
    const asking = this.askClient(method, params, AbortSignal.any([signal, this.signal]));
    return await (this.hold ? this.hold(asking) : asking);
  }

  log(params: Record<string, unknown>): void {
    if (!logAllows(this.logLevel, params.level)) return;
    this.client.ctx.mcpReq.notify(namedLog(this.backend, params) as any).catch(() => {});
  }
}

/** What the SDK's legacy shim answers when input cannot be fulfilled (same shape). */
function legacyFailure(method: MrtrMethod, message: string): any {
  if (method === "tools/call") return { content: [{ type: "text", text: message }], isError: true };
  throw new ProtocolError(ProtocolErrorCode.InternalError, message);
}

async function legacyClientCall(
  env: InputRelayEnv,
  client: CallClient,
  session: NonNullable<CallClient["session"]>,
  target: RoundTarget,
  run: RunRound,
): Promise<RoundOutcome> {
  const tracked = env.cancels.track(cancelKey(session.hash, client.ctx.mcpReq.id));
  const parent = AbortSignal.any([client.ctx.mcpReq.signal, tracked.signal]);
  const ended = new AbortController();
  const relay = new LegacyRelay(
    env,
    client,
    session,
    target.backend,
    AbortSignal.any([parent, ended.signal]),
  );
  try {
    let fields: RoundFields = {};
    for (let round = 1;; round++) {
      const result = await run({ fields, relay, parent });
      if (!isInputRequiredResult(result)) return { done: result };
      if (round > MAX_INPUT_ROUNDS) {
        return {
          done: legacyFailure(
            target.method,
            `${target.method} needed more than ${MAX_INPUT_ROUNDS} rounds of input`,
          ),
        };
      }
      const raw = (result as { inputRequests?: unknown }).inputRequests;
      const requests = Object.entries(isObject(raw) ? raw : {});
      for (const [key, entry] of requests) {
        const method = isObject(entry) ? String(entry.method) : "";
        if (relay.lacks(method, isObject(entry) ? entry.params : undefined)) {
          return {
            done: legacyFailure(
              target.method,
              `Cannot request input '${key}' (${method}): the client on this 2025-era ` +
                "connection did not declare the required capability",
            ),
          };
        }
      }
      let inputResponses: Record<string, unknown>;
      try {
        inputResponses = Object.fromEntries(
          await Promise.all(
            requests.map(async ([key, entry]) => [
              key,
              await relay.askClient(String(entry.method), entry.params),
            ]),
          ),
        );
      } catch (error) {
        if (parent.aborted) {
          throw new ProtocolError(ProtocolErrorCode.InternalError, "Request cancelled");
        }
        const why = error instanceof Error ? error.message : String(error);
        return {
          done: legacyFailure(
            target.method,
            `Fulfilling input required by '${target.method}' failed: ${why}`,
          ),
        };
      }
      const state = (result as { requestState?: unknown }).requestState;
      fields = {
        ...(requests.length > 0 ? { inputResponses } : {}),
        ...(typeof state === "string" ? { requestState: state } : {}),
      };
    }
  } finally {
    ended.abort();
    tracked.done();
  }
}

/** The `_meta` envelope of a 2026-07-28 request (MCP 2026-07-28 Basic §_meta). */
const envelopeOf = (ctx: ServerContext): Record<string, unknown> =>
  (ctx.mcpReq.envelope ?? {}) as Record<string, unknown>;

/** A 2026-07-28 client's call relay: asks park the call (see {@linkcode ParkedCalls}). */
class ModernRelay implements EndClientRelay {
  hold?: Hold;
  logLevel?: LogLevel;

  constructor(
    public ctx: ServerContext,
    private inputs: PendingInputs,
    private ended: AbortSignal,
    private backend: string,
  ) {
    const level = envelopeOf(ctx)[LOG_LEVEL_KEY];
    if (isLogLevel(level)) this.logLevel = level;
  }

  async ask(method: string, params: Record<string, unknown>, signal: AbortSignal) {
    const declared = envelopeOf(this.ctx)[CAPABILITY_KEY];
    if (lacksCapability(isObject(declared) ? declared : undefined, method, params)) {
      throw refusal(method);
    }
    const asking = this.inputs.ask(method, params, AbortSignal.any([signal, this.ended]));
    return await (this.hold ? this.hold(asking) : asking);
  }

  log(params: Record<string, unknown>): void {
    if (!logAllows(envelopeOf(this.ctx)[LOG_LEVEL_KEY], params.level)) return;
    this.ctx.mcpReq.notify(namedLog(this.backend, params) as any).catch(() => {});
  }
}

async function parkedReply(
  env: InputRelayEnv,
  client: CallClient,
  target: RoundTarget,
  park: string,
  outcome: Extract<ParkOutcome, { ask: unknown }>,
): Promise<any> {
  const requestState = await sealRequestState(env, {
    principal: client.principal,
    backend: target.backend,
    method: target.method,
    name: target.name,
    park,
    round: outcome.round,
  });
  const { key, method, params } = outcome.ask;
  return inputRequired({ inputRequests: { [key]: { method, params } } as any, requestState });
}

async function modernClientCall(
  env: InputRelayEnv,
  client: CallClient,
  target: RoundTarget,
  run: RunRound,
): Promise<RoundOutcome> {
  const { ctx } = client;
  const responses = ctx.mcpReq.inputResponses as Record<string, unknown> | undefined;
  const state = ctx.mcpReq.requestState<unknown>();
  let fields: RoundFields = responses ? { inputResponses: responses } : {};
  if (state !== undefined) {
    const claims = await openRequestStateClaims(env, state, {
      principal: client.principal,
      backend: target.backend,
      method: target.method,
      name: target.name,
    });
    // A connect round of per_user.ts: the user connected meanwhile; nothing of it is the backend's.
    if (claims.connect) fields = {};
    if (claims.park !== undefined) {
      const outcome = await env.parks.resume(
        claims.park,
        claims.round ?? 0,
        client.principal,
        responses,
        target.timeoutMs + PARK_ACK_MS,
        ctx.mcpReq.signal,
        ctx,
      );
      if ("result" in outcome) return { done: outcome.result };
      if ("error" in outcome) {
        throw new ProtocolError(outcome.error.code, outcome.error.message, outcome.error.data);
      }
      return { reply: await parkedReply(env, client, target, claims.park, outcome) };
    }
    if (claims.backendState !== undefined) {
      fields = { ...fields, requestState: claims.backendState };
    }
  }
  // The call gets its own signal: once parked it outlives this request.
  const call = new AbortController();
  const onAbort = () => call.abort(ctx.mcpReq.signal.reason);
  if (ctx.mcpReq.signal.aborted) onAbort();
  ctx.mcpReq.signal.addEventListener("abort", onAbort, { once: true });
  const ended = new AbortController();
  const inputs = new PendingInputs();
  const relay = new ModernRelay(ctx, inputs, ended.signal, target.backend);
  const running: Promise<Step> = run({ fields, relay, parent: call.signal }).then(
    (result) => ({ result }),
    (error) => ({ error }),
  ).finally(() => ended.abort());
  try {
    for (;;) {
      const next = await nextStep(running, inputs);
      if ("input" in next) {
        const park = env.parks.park({
          principal: client.principal,
          running,
          inputs,
          pending: next.input,
          relay,
          abort: call,
        });
        if (!park) {
          next.input.fail(
            new ProtocolError(
              ProtocolErrorCode.InternalError,
              "Too many calls wait for input on this gateway instance",
            ),
          );
          continue;
        }
        ctx.mcpReq.signal.removeEventListener("abort", onAbort);
        return {
          reply: await parkedReply(env, client, target, park.id, {
            ask: askOf(next.input),
            round: park.round,
          }),
        };
      }
      if ("error" in next) throw next.error;
      return { done: next.result };
    }
  } finally {
    ctx.mcpReq.signal.removeEventListener("abort", onAbort);
  }
}
