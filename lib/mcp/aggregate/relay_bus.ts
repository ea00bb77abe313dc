/**
 * The messages isolates exchange about relayed traffic of the aggregated `/mcp`, over one
 * `BroadcastChannel` (it reaches every isolate of a Deno Deploy deployment; a message never comes
 * back to the channel that posted it, so every sender also applies its own message locally).
 *
 * A 2025-era client is served per request by whichever isolate gets the request, while what it
 * answers or asks for concerns state held by another one: the call waiting for its elicitation
 * answer (`answer`), the streams of its session (`session_*`), a 2026-07-28 client's call parked
 * while it answers an input request (`park_*`). Nothing here is needed for correctness on a
 * single isolate; every wait on a reply is bounded by a timeout.
 */

/** A 2025-era client's JSON-RPC response to a request the gateway sent it. */
export interface ClientAnswer {
  result?: Record<string, unknown>;
  error?: { code: number; message: string; data?: unknown };
}

/** What a resumed parked call produced (see input_relay.ts). */
export type ParkOutcome =
  | { result: Record<string, unknown> }
  | { ask: { key: string; method: string; params: Record<string, unknown> }; round: number }
  | { error: { code: number; message: string; data?: unknown } };

/** Every message on the bus. */
export type BusMessage =
  | { t: "answer"; key: string; answer: ClientAnswer }
  | {
    t: "park_resume";
    id: string;
    round: number;
    principal: string;
    responses: Record<string, unknown> | undefined;
    reply: string;
  }
  | { t: "park_ack"; reply: string }
  | { t: "park_outcome"; reply: string; outcome: ParkOutcome }
  | { t: "session_level"; session: string; level: string }
  | { t: "session_sub"; session: string; uri: string }
  | { t: "session_unsub"; session: string; uri: string }
  | { t: "session_end"; session: string };

type Handler<T extends BusMessage["t"]> = (message: Extract<BusMessage, { t: T }>) => void;

/** Name of the channel. */
export const RELAY_CHANNEL = "gateway-mcp-relay";

/** The isolate's end of the relay channel. */
export class RelayBus {
  #channel: BroadcastChannel | null;
  #handlers = new Map<string, (message: any) => void>();

  constructor(channel?: BroadcastChannel) {
    this.#channel = channel ?? null;
    if (this.#channel) {
      this.#channel.onmessage = (e: MessageEvent<BusMessage>) => {
        const type = e.data && typeof e.data === "object" ? e.data.t : undefined;
        if (typeof type === "string") this.#handlers.get(type)?.(e.data);
      };
    }
  }

  /** Handles messages of type `t` from other isolates (one handler per type). */
  on<T extends BusMessage["t"]>(t: T, handler: Handler<T>): void {
    this.#handlers.set(t, handler);
  }

  /** Sends `message` to every other isolate. */
  post(message: BusMessage): void {
    try {
      this.#channel?.postMessage(message);
    } catch {
      // closed channel: only this isolate is reached
    }
  }

  /** Closes the channel. */
  close(): void {
    this.#channel?.close();
    this.#channel = null;
  }
}
