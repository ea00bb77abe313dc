/**
 * Parallel fan-out to backends, each with its own time limit (the backend's `timeoutMs`). A
 * backend that fails or is too slow is left out of the answer and logged; the others still
 * answer. Results keep the configuration's order, so merged lists are deterministic.
 */
import type { BackendConfig } from "../../config.ts";
import type { Logger } from "../../infra/log.ts";
import type { BackendConnection, PoolView } from "./pool.ts";

/** One backend's share of a fan-out. */
export interface FanOutItem<T> {
  backend: string;
  value: T;
}

/** Thrown (internally) when a backend did not answer within its `timeoutMs`. */
export class BackendTimeoutError extends Error {
  constructor(backend: string, ms: number) {
    super(`backend ${backend} did not answer within ${ms} ms`);
    this.name = "BackendTimeoutError";
  }
}

/** Passed to the SDK so that its own request timer never fires before ours. */
export const SDK_TIMEOUT_MS = 2_000_000_000;

/** Stops a backend's time limit while `waiting` is pending (see {@linkcode withDeadline}). */
export type Hold = <U>(waiting: Promise<U>) => Promise<U>;

/**
 * Runs `op` on one backend with its time limit: the signal given to `op` aborts at the limit
 * (or when `parent` aborts), which makes the SDK cancel the upstream request (legacy:
 * `notifications/cancelled`; modern: the request's stream is closed). `keepAlive()` restarts
 * the limit (called on progress, like the SDK's `resetTimeoutOnProgress`); `hold(p)` stops it
 * while `p` is pending and restarts it afterwards (the backend waits for a person answering an
 * elicitation, not the other way round).
 */
export async function withDeadline<T>(
  backend: BackendConfig,
  parent: AbortSignal | undefined,
  op: (signal: AbortSignal, keepAlive: () => void, hold: Hold) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  const onAbort = () => controller.abort(parent?.reason);
  if (parent?.aborted) onAbort();
  parent?.addEventListener("abort", onAbort, { once: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  let expire: () => void = () => {};
  const deadline = new Promise<never>((_, reject) => {
    expire = () => {
      const error = new BackendTimeoutError(backend.name, backend.timeoutMs);
      controller.abort(error);
      reject(error);
    };
  });
  let holds = 0;
  const arm = () => {
    clearTimeout(timer);
    if (!controller.signal.aborted && holds === 0) timer = setTimeout(expire, backend.timeoutMs);
  };
  const hold: Hold = async (waiting) => {
    holds++;
    clearTimeout(timer);
    try {
      return await waiting;
    } finally {
      holds--;
      arm();
    }
  };
  arm();
  try {
    return await Promise.race([op(controller.signal, arm, hold), deadline]);
  } finally {
    clearTimeout(timer);
    parent?.removeEventListener("abort", onAbort);
  }
}

/**
 * Connects to every backend (from the pool) and runs `op` on each in parallel; returns the
 * successes in `backends` order. Failures are logged with the backend name and left out.
 */
export function fanOut<T>(
  pool: Pick<PoolView, "get">,
  backends: readonly BackendConfig[],
  log: Logger,
  what: string,
  op: (connection: BackendConnection, signal: AbortSignal) => Promise<T>,
  parent?: AbortSignal,
): Promise<FanOutItem<T>[]> {
  return settleEach(
    backends,
    log,
    what,
    (b) => withDeadline(b, parent, async (signal) => op(await pool.get(b.name), signal)),
  );
}

/**
 * Runs `op` on every backend in parallel and returns the successes in `backends` order; a
 * failure is logged with the backend name and left out (`op` bounds its own time).
 */
export async function settleEach<T>(
  backends: readonly BackendConfig[],
  log: Logger,
  what: string,
  op: (backend: BackendConfig) => Promise<T>,
): Promise<FanOutItem<T>[]> {
  const settled = await Promise.allSettled(backends.map(op));
  const out: FanOutItem<T>[] = [];
  settled.forEach((s, i) => {
    const backend = backends[i]!.name;
    if (s.status === "fulfilled") {
      out.push({ backend, value: s.value });
    } else {
      log({
        level: "warn",
        event: "backend_left_out",
        what,
        backend,
        error: s.reason instanceof Error ? s.reason.message.slice(0, 200) : "unknown",
      });
    }
  });
  return out;
}
