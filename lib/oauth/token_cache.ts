/**
 * A short-lived, per-isolate cache of validated access tokens, so that a hot MCP route does
 * not read KV on every request. Entries live at most `ttlMs` (default 1 s), so a revocation made
 * by another isolate takes effect within that bound even if its broadcast is lost; revocations
 * are also broadcast (BroadcastChannel reaches every isolate of a Deno Deploy deployment) and
 * applied at once in the isolate that made them.
 */
import type { TokenRecord } from "../store.ts";

interface CacheEntry {
  record: TokenRecord | null;
  until: number;
}

/** A revocation notice sent between isolates. */
export interface RevocationMessage {
  grantIds?: string[];
  tokenHashes?: string[];
}

/** Cache of access-token lookups keyed by token hash. */
export class TokenCache {
  #entries = new Map<string, CacheEntry>();
  #channel: BroadcastChannel | null;
  readonly ttlMs: number;
  readonly maxEntries: number;

  constructor(options: { ttlMs?: number; maxEntries?: number; channel?: BroadcastChannel } = {}) {
    this.ttlMs = options.ttlMs ?? 1000;
    this.maxEntries = options.maxEntries ?? 10_000;
    this.#channel = options.channel ?? null;
    if (this.#channel) {
      this.#channel.onmessage = (e: MessageEvent<RevocationMessage>) => this.#apply(e.data);
    }
  }

  /** The cached lookup (`null` = known not to exist), or `undefined` when not cached. */
  get(hash: string, now: number): TokenRecord | null | undefined {
    const entry = this.#entries.get(hash);
    if (!entry) return undefined;
    if (entry.until <= now || (entry.record && entry.record.expiresAt <= now)) {
      this.#entries.delete(hash);
      return undefined;
    }
    return entry.record;
  }

  /** Remembers a lookup for at most `ttlMs` (and never past the token's own expiry). */
  set(hash: string, record: TokenRecord | null, now: number): void {
    if (this.ttlMs <= 0) return;
    if (this.#entries.size >= this.maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    const until = Math.min(now + this.ttlMs, record?.expiresAt ?? Infinity);
    this.#entries.set(hash, { record, until });
  }

  /** Drops revoked tokens here and tells the other isolates. */
  revoke(message: RevocationMessage): void {
    this.#apply(message);
    try {
      this.#channel?.postMessage(message);
    } catch {
      // A closed channel only loses the fast path; entries still expire within ttlMs.
    }
  }

  #apply(message: RevocationMessage): void {
    for (const hash of message.tokenHashes ?? []) this.#entries.delete(hash);
    if (message.grantIds?.length) {
      const grants = new Set(message.grantIds);
      for (const [hash, entry] of this.#entries) {
        if (entry.record && grants.has(entry.record.grantId)) this.#entries.delete(hash);
      }
    }
  }

  /** Closes the broadcast channel. */
  close(): void {
    this.#channel?.close();
    this.#channel = null;
  }
}
