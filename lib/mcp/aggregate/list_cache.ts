/**
 * Cache of each backend's tool and prompt lists, so that a `tools/list` on `/mcp` does not fan
 * out to every backend each time, not even on a fresh isolate:
 *
 * 1. per isolate (a Map), then
 * 2. in Deno KV (`["list_cache", backend, kind]` + slices, see lib/store.ts), shared by every
 *    isolate, then
 * 3. the backend itself (the caller's `fetch`), whose answer is stored in both.
 *
 * Entries live `catalog.cacheTtlSeconds` (the KV record's `expiresAt`, checked on read; an
 * isolate's copy expires with it). A backend's `notifications/<kind>/list_changed` (MCP
 * 2025-11-25 Server/Tools §List Changed Notification; relayed by pool.ts) drops the entry at once:
 * in this isolate, in KV (a tombstone, whose new versionstamp also fails any write of a list
 * fetched before the change: the write is an atomic `check`), and in the other isolates through a
 * `BroadcastChannel`. An isolate that holds no backend connection hears no change itself; the KV
 * tombstone and the broadcast reach it, and the TTL bounds what an isolate on its own could miss.
 * Concurrent misses of one list share one fetch. Lists come from the gateway's own backend
 * credentials (the configured headers), so one cached list serves every user; curation and
 * per-user globs apply after (catalog.ts). What a backend lists may depend on the capabilities
 * the gateway declared for the caller, so each list is cached per relay profile
 * (relay_profile.ts); an invalidation drops every profile's copy.
 */
import type { BackendConfig } from "../../config.ts";
import { sha256HexSync } from "../../infra/crypto.ts";
import { RELAY_PROFILES, type RelayProfile } from "./relay_profile.ts";
import type { Logger } from "../../infra/log.ts";
import {
  listCacheKey,
  type ListCacheKind,
  type ListCacheMeta,
  listCachePartKey,
  ttl,
} from "../../store.ts";

/** BroadcastChannel that carries invalidations between isolates. */
export const LIST_CACHE_CHANNEL = "gateway-list-cache";

/** Characters per KV slice (V8 stores at most 2 bytes a character: under the 64 KiB value cap). */
const PART_CHARS = 30_000;
/** Lists longer than this many slices stay in the isolate only (one atomic commit must hold them). */
const MAX_PARTS = 20;
/** `getMany` reads at most 10 keys. */
const GET_MANY = 10;

interface Entry {
  items: unknown[];
  expiresAt: number;
}

/** What the cache needs. */
export interface ListCacheOptions {
  kv: Deno.Kv;
  now: () => number;
  /** Lifetime of an entry; 0 disables the cache (every call fetches). */
  ttlMs: number;
  log: Logger;
  /** Invalidations from and to other isolates (none in tests that do not need it). */
  channel?: BroadcastChannel;
}

interface Invalidation {
  backend: string;
  kind: ListCacheKind;
}

/** The backend lists cache of one gateway instance (see the module doc). */
export class ListCache {
  #o: ListCacheOptions;
  #entries = new Map<string, Entry>();
  /** Bumped by every invalidation: a fetch started under an older value is not stored. */
  #generations = new Map<string, number>();
  #loading = new Map<string, Promise<unknown[]>>();
  #writes = new Set<Promise<void>>();

  constructor(options: ListCacheOptions) {
    this.#o = options;
    options.channel?.addEventListener("message", (event) => {
      const m = (event as MessageEvent<Invalidation>).data;
      if (m && typeof m.backend === "string" && (m.kind === "tools" || m.kind === "prompts")) {
        this.#forget(m.backend, m.kind);
      }
    });
  }

  /** Whether lists are cached at all (`catalog.cacheTtlSeconds` > 0). */
  get enabled(): boolean {
    return this.#o.ttlMs > 0;
  }

  /**
   * The list `kind` of `backend` as clients of relay `profile` see it: cached, else fetched with
   * `fetch` (and cached).
   */
  get<T>(
    backend: BackendConfig,
    kind: ListCacheKind,
    fetch: () => Promise<T[]>,
    profile: RelayProfile = "",
  ): Promise<T[]> {
    if (this.#o.ttlMs <= 0) return fetch();
    const key = `${backend.name}\n${kind}\n${profile}`;
    const entry = this.#entries.get(key);
    if (entry && entry.expiresAt > this.#o.now()) return Promise.resolve(entry.items as T[]);
    let loading = this.#loading.get(key);
    if (!loading) {
      const started: Promise<unknown[]> = this.#load(backend, kind, profile, key, fetch).finally(
        () => {
          if (this.#loading.get(key) === started) this.#loading.delete(key);
        },
      );
      this.#loading.set(key, loading = started);
    }
    return loading as Promise<T[]>;
  }

  /** Drops a backend's list everywhere (its `list_changed` arrived). */
  invalidate(backend: string, kind: ListCacheKind): void {
    this.#forget(backend, kind);
    if (this.#o.ttlMs <= 0) return;
    try {
      this.#o.channel?.postMessage({ backend, kind } satisfies Invalidation);
    } catch {
      // channel closed
    }
    const now = this.#o.now();
    const tombstone: ListCacheMeta = { source: "", generation: "", parts: 0, expiresAt: now };
    const op = this.#o.kv.atomic();
    for (const profile of RELAY_PROFILES) {
      op.set(listCacheKey(backend, kind, profile), tombstone, { expireIn: this.#o.ttlMs });
    }
    const write = op.commit().then(
      () => {},
      (error) => this.#warn("list_cache_invalidate_failed", backend, error),
    ).finally(() => this.#writes.delete(write));
    this.#writes.add(write);
  }

  /** Waits for pending tombstone writes and empties the isolate's copy (shutdown, tests). */
  async close(): Promise<void> {
    await Promise.all(this.#writes);
    this.#entries.clear();
  }

  #forget(backend: string, kind: ListCacheKind): void {
    for (const profile of RELAY_PROFILES) {
      const key = `${backend}\n${kind}\n${profile}`;
      this.#entries.delete(key);
      this.#generations.set(key, (this.#generations.get(key) ?? 0) + 1);
      this.#loading.delete(key);
    }
  }

  async #load<T>(
    backend: BackendConfig,
    kind: ListCacheKind,
    profile: RelayProfile,
    key: string,
    fetch: () => Promise<T[]>,
  ): Promise<T[]> {
    const generation = this.#generations.get(key) ?? 0;
    const source = sha256HexSync(backend.url).slice(0, 16);
    let seen: Deno.KvEntryMaybe<ListCacheMeta> | undefined;
    try {
      seen = await this.#o.kv.get<ListCacheMeta>(listCacheKey(backend.name, kind, profile));
      const stored = await this.#read(backend.name, kind, seen.value, source);
      if (stored) {
        this.#keep(key, generation, { items: stored, expiresAt: seen.value!.expiresAt });
        return stored as T[];
      }
    } catch (error) {
      this.#warn("list_cache_read_failed", backend.name, error);
    }
    const items = await fetch();
    const expiresAt = this.#o.now() + this.#o.ttlMs;
    if (this.#keep(key, generation, { items, expiresAt }) && seen) {
      await this.#write(backend.name, kind, profile, seen, { source, expiresAt }, items);
    }
    return items;
  }

  /** Keeps an entry in the isolate unless it was invalidated since `generation`. */
  #keep(key: string, generation: number, entry: Entry): boolean {
    if ((this.#generations.get(key) ?? 0) !== generation) return false;
    this.#entries.set(key, entry);
    return true;
  }

  async #read(
    backend: string,
    kind: ListCacheKind,
    meta: ListCacheMeta | null,
    source: string,
  ): Promise<unknown[] | null> {
    if (!meta || meta.expiresAt <= this.#o.now() || meta.source !== source || meta.parts < 1) {
      return null;
    }
    const keys = Array.from(
      { length: meta.parts },
      (_, i) => listCachePartKey(backend, kind, meta.generation, i),
    );
    let text = "";
    for (let i = 0; i < keys.length; i += GET_MANY) {
      for (const part of await this.#o.kv.getMany<string[]>(keys.slice(i, i + GET_MANY))) {
        if (typeof part.value !== "string") return null;
        text += part.value;
      }
    }
    const items = JSON.parse(text);
    return Array.isArray(items) ? items : null;
  }

  /** Stores the list in KV unless its record changed since it was read (an invalidation). */
  async #write(
    backend: string,
    kind: ListCacheKind,
    profile: RelayProfile,
    seen: Deno.KvEntryMaybe<ListCacheMeta>,
    head: { source: string; expiresAt: number },
    items: unknown[],
  ): Promise<void> {
    const text = JSON.stringify(items);
    const parts = Math.max(1, Math.ceil(text.length / PART_CHARS));
    if (parts > MAX_PARTS) return;
    const generation = crypto.randomUUID();
    const expireIn = ttl(head.expiresAt, this.#o.now());
    const op = this.#o.kv.atomic().check(seen);
    for (let i = 0; i < parts; i++) {
      op.set(
        listCachePartKey(backend, kind, generation, i),
        text.slice(i * PART_CHARS, (i + 1) * PART_CHARS),
        { expireIn },
      );
    }
    const meta: ListCacheMeta = { ...head, generation, parts };
    op.set(listCacheKey(backend, kind, profile), meta, { expireIn });
    try {
      await op.commit();
    } catch (error) {
      this.#warn("list_cache_write_failed", backend, error);
    }
  }

  #warn(event: string, backend: string, error: unknown): void {
    this.#o.log({
      level: "warn",
      event,
      backend,
      error: error instanceof Error ? error.message.slice(0, 200) : "unknown",
    });
  }
}
