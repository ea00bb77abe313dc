/**
 * Per-session notifications of 2025-era clients: the open GET streams (MCP 2025-11-25
 * Transports §Listening for Messages from the Server) of each session held by this isolate, and
 * delivery of messages meant for one session only (a resource update it subscribed to, a log
 * message at or above the level it set).
 *
 * Every stream carries the set of backends its session's scope covers, and a message is
 * delivered only when its backend is in that set: a session never hears of a backend it may not
 * use, whichever path the message took.
 */
import { logAllows, type LogLevel, namedLog } from "./log_relay.ts";

/** One open stream of a session. */
export interface SessionSink {
  /** Backends the session's scope covers. */
  backends: ReadonlySet<string>;
  /** Writes one JSON-RPC message on the stream. */
  write: (message: unknown) => void;
}

interface SessionStreams {
  sinks: Set<SessionSink>;
  level?: LogLevel;
}

/** The isolate's open session streams. */
export class SessionFeeds {
  #sessions = new Map<string, SessionStreams>();

  /** Registers a stream of session `hash`; returns its removal (true when it was the last). */
  attach(hash: string, sink: SessionSink, level: LogLevel | undefined): () => boolean {
    let entry = this.#sessions.get(hash);
    if (!entry) this.#sessions.set(hash, entry = { sinks: new Set(), level });
    entry.sinks.add(sink);
    return () => {
      entry.sinks.delete(sink);
      if (entry.sinks.size > 0) return false;
      if (this.#sessions.get(hash) === entry) this.#sessions.delete(hash);
      return true;
    };
  }

  /** Whether this isolate holds a stream of session `hash`. */
  has(hash: string): boolean {
    return this.#sessions.has(hash);
  }

  /** The sessions with a stream here (their hashes). */
  sessions(): IterableIterator<string> {
    return this.#sessions.keys();
  }

  /** The backends the streams of session `hash` here may hear of. */
  backendsOf(hash: string): Set<string> {
    const out = new Set<string>();
    for (const sink of this.#sessions.get(hash)?.sinks ?? []) {
      for (const b of sink.backends) out.add(b);
    }
    return out;
  }

  /** The log level session `hash` set, as known here. */
  level(hash: string): LogLevel | undefined {
    return this.#sessions.get(hash)?.level;
  }

  /** Records the log level session `hash` set (for its streams here). */
  setLevel(hash: string, level: LogLevel): void {
    const entry = this.#sessions.get(hash);
    if (entry) entry.level = level;
  }

  /** Sends `message` about `backend` to the streams of session `hash` whose scope covers it. */
  send(hash: string, backend: string, message: unknown): void {
    for (const sink of this.#sessions.get(hash)?.sinks ?? []) {
      if (sink.backends.has(backend)) sink.write(message);
    }
  }

  /**
   * A backend's session-wide log message (not tied to a call): to every local stream whose
   * session set a level the message reaches and whose scope covers the backend.
   */
  log(backend: string, params: Record<string, unknown>): void {
    for (const [hash, entry] of this.#sessions) {
      if (logAllows(entry.level, params.level)) this.send(hash, backend, namedLog(backend, params));
    }
  }
}
