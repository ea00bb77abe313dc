/**
 * The per-gateway parts of what the aggregated `/mcp` relays beyond lists and calls: answers and
 * parked calls of relayed input requests (input_relay.ts), the 2025-era sessions' streams
 * (session_feed.ts), resource subscriptions (subscriptions.ts) and backend log levels
 * (log_relay.ts), wired to the backend pool's notices and to one relay bus (relay_bus.ts).
 */
import type { BackendConfig } from "../../config.ts";
import type { Deps } from "../../deps.ts";
import { ClientAnswers, ParkedCalls } from "./input_relay.ts";
import { BackendLogLevels, isLogLevel, type LogLevel } from "./log_relay.ts";
import type { BackendPool } from "./pool.ts";
import { RELAY_CHANNEL, RelayBus } from "./relay_bus.ts";
import { setSessionLogLevel } from "./session.ts";
import { SessionFeeds } from "./session_feed.ts";
import { ResourceSubscriptions } from "./subscriptions.ts";

/** A 2025-era session, as validated for the current request. */
export interface RelaySession {
  hash: string;
  expiresAt: number;
  capabilities: Record<string, unknown>;
  logLevel?: string;
}

/** See the module doc. */
export class RelayHub {
  readonly bus: RelayBus;
  readonly answers: ClientAnswers;
  readonly parks: ParkedCalls;
  readonly feeds = new SessionFeeds();
  readonly subscriptions: ResourceSubscriptions;
  readonly levels: BackendLogLevels;
  #deps: Pick<Deps, "kv" | "now" | "log">;

  constructor(
    deps: Deps,
    pool: BackendPool,
    resourceUpdated: (uri: string) => void,
    channel = new BroadcastChannel(RELAY_CHANNEL),
  ) {
    this.#deps = deps;
    this.bus = new RelayBus(channel);
    this.answers = new ClientAnswers(this.bus);
    this.parks = new ParkedCalls(this.bus);
    this.levels = new BackendLogLevels(pool);
    this.subscriptions = new ResourceSubscriptions({
      kv: deps.kv,
      now: () => deps.now(),
      log: deps.log,
      pool,
      feeds: this.feeds,
      bus: this.bus,
      resourceUpdated,
    });
    pool.listeners.add({
      log: (backend, params) => this.feeds.log(backend, params),
      updated: (backend, uri) => this.subscriptions.updated(backend, uri),
      connected: (connection) => this.subscriptions.connected(connection),
    });
    this.bus.on("session_level", (m) => {
      if (isLogLevel(m.level)) this.#applyLevel(m.session, m.level);
    });
  }

  /**
   * A GET stream of a 2025-era session opened here: it receives the session's resource updates
   * and log messages from now on (holding its subscriptions and log level at the backends).
   * Returns the detach to call when the stream closes.
   */
  attachStream(
    session: RelaySession,
    backends: readonly string[],
    write: (message: unknown) => void,
  ): () => void {
    const level = isLogLevel(session.logLevel) ? session.logLevel : undefined;
    const detach = this.feeds.attach(session.hash, { backends: new Set(backends), write }, level);
    if (level) this.#needLevel(session.hash, backends, level);
    this.subscriptions.attachSession(session.hash).catch((error) =>
      this.#warn("attach_session", error)
    );
    return () => {
      if (!detach()) return;
      this.subscriptions.releaseAll(session.hash);
      for (const b of backends) this.levels.drop(b, `stream:${session.hash}`, true);
    };
  }

  /**
   * `logging/setLevel` of a 2025-era session: kept with the session, applied to its streams in
   * every isolate, and fanned out to the backends of its scope (each connection's level becomes
   * at most this verbose; see {@linkcode BackendLogLevels}).
   */
  async setLevel(
    session: RelaySession,
    level: LogLevel,
    backends: readonly BackendConfig[],
  ): Promise<void> {
    await setSessionLogLevel(this.#deps, session.hash, level);
    this.#applyLevel(session.hash, level);
    this.bus.post({ t: "session_level", session: session.hash, level });
    const once = `set:${crypto.randomUUID()}`;
    await Promise.all(backends.map(async (b) => {
      try {
        await this.levels.need(b.name, once, level);
      } catch (error) {
        this.#warn("set_level", error, b.name);
      } finally {
        this.levels.drop(b.name, once, false);
      }
    }));
  }

  /** Closes the bus and gives up parked calls (tests; shutdown). */
  close(): void {
    this.parks.close();
    this.bus.close();
  }

  #applyLevel(hash: string, level: LogLevel): void {
    if (!this.feeds.has(hash)) return;
    this.feeds.setLevel(hash, level);
    this.#needLevel(hash, this.feeds.backendsOf(hash), level);
  }

  #needLevel(hash: string, backends: Iterable<string>, level: LogLevel): void {
    for (const b of backends) {
      this.levels.need(b, `stream:${hash}`, level).catch((error) =>
        this.#warn("set_level", error, b)
      );
    }
  }

  #warn(what: string, error: unknown, backend?: string): void {
    this.#deps.log({
      level: "warn",
      event: "mcp_relay_failed",
      what,
      ...(backend ? { backend } : {}),
      error: error instanceof Error ? error.message.slice(0, 200) : "unknown",
    });
  }
}
