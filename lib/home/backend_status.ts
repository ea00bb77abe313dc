/**
 * The public status of each backend, for `GET /` and the start-up banner: the result of the
 * `/health` probe (`probeBackend`), cached per isolate so that an unauthenticated page never
 * costs more than one probe per backend per {@linkcode STATUS_TTL_MS}.
 */
import type { BackendConfig, GatewayConfig } from "../config.ts";
import type { Deps } from "../deps.ts";
import { type BackendHealth, probeBackend } from "../mcp/proxy.ts";

/** How long a probe result is reused. */
export const STATUS_TTL_MS = 30_000;

/** One backend's latest probe, if any has finished. */
export interface BackendStatus {
  backend: BackendConfig;
  /** Absent while the first probe has not answered. */
  health?: BackendHealth;
  /** `deps.now()` when `health` was measured. */
  checkedAt?: number;
}

interface Entry {
  health?: BackendHealth;
  checkedAt?: number;
  inflight?: Promise<void>;
}

const caches = new WeakMap<GatewayConfig, Map<string, Entry>>();

function entryOf(config: GatewayConfig, name: string): Entry {
  let byName = caches.get(config);
  if (!byName) caches.set(config, byName = new Map());
  let entry = byName.get(name);
  if (!entry) byName.set(name, entry = {});
  return entry;
}

/** Starts a probe unless one is running; concurrent callers share it. */
function refresh(deps: Pick<Deps, "fetch" | "config" | "now">, backend: BackendConfig, e: Entry) {
  e.inflight ??= probeBackend(deps, deps.config, backend)
    .catch((): BackendHealth => ({
      name: backend.name,
      status: "down",
      latencyMs: 0,
      error: "unreachable",
    }))
    .then((health) => {
      e.health = health;
      e.checkedAt = deps.now();
      e.inflight = undefined;
    });
  return e.inflight;
}

/**
 * The status of every backend, in config order. A result younger than {@linkcode STATUS_TTL_MS}
 * is reused; an older one is returned at once while a new probe runs in the background; a
 * backend never probed is waited for at most `waitMs` (its probe goes on and fills the cache).
 */
export async function backendStatuses(
  deps: Pick<Deps, "fetch" | "config" | "now">,
  waitMs: number,
): Promise<BackendStatus[]> {
  const pending: Promise<void>[] = [];
  const entries = deps.config.backends.map((backend) => {
    const e = entryOf(deps.config, backend.name);
    const fresh = e.checkedAt !== undefined && deps.now() - e.checkedAt < STATUS_TTL_MS;
    if (!fresh) {
      const probe = refresh(deps, backend, e);
      if (e.health === undefined) pending.push(probe);
    }
    return { backend, e };
  });
  if (pending.length > 0) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(pending),
      new Promise((resolve) => timer = setTimeout(resolve, waitMs)),
    ]);
    clearTimeout(timer);
  }
  return entries.map(({ backend, e }) => ({
    backend,
    ...(e.health ? { health: e.health, checkedAt: e.checkedAt } : {}),
  }));
}
