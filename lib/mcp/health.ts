/**
 * `/health`'s view of the backends: only those the caller may use, probed at most once per
 * {@linkcode HEALTH_CACHE_MS} per isolate, and at most `rateLimits.healthPerPrincipalPerMinute`
 * answers per caller.
 *
 * A probe sends a backend its configured credentials, so a caller must not be able to make the
 * gateway probe a backend outside its scope, nor probe any backend at the caller's rate: the
 * results are shared by every caller of the isolate for a few seconds (concurrent requests wait
 * for the same probe).
 * @module
 */
import type { BackendConfig, GatewayConfig } from "../config.ts";
import type { Deps } from "../deps.ts";
import { hit, type RateLimitResult } from "../infra/rate_limit.ts";
import type { TokenRecord } from "../store.ts";
import { audienceCovers, backendResource, scopeCoversBackend } from "../oauth/resources.ts";
import { type BackendHealth, probeBackend } from "./proxy.ts";

/** How long an isolate reuses a backend's probe result. */
export const HEALTH_CACHE_MS = 5_000;

/** Who asks: an API key (every backend) or an access token (its scope and audience). */
export type HealthCaller = { id: string; token?: Pick<TokenRecord, "scope" | "resource"> };

/**
 * The backends a caller may see: every backend for an API key; for an access token, those its
 * scope covers (`mcp` or `mcp:<backend>`) on an audience that reaches them (RFC 8707 §2).
 */
export function visibleBackends(
  config: GatewayConfig,
  publicUrl: string,
  caller: HealthCaller,
): BackendConfig[] {
  const token = caller.token;
  if (!token) return [...config.backends];
  return config.backends.filter((b) =>
    scopeCoversBackend(token.scope, b.name) &&
    audienceCovers(token.resource, backendResource(publicUrl, b.name), publicUrl)
  );
}

/** Counts one `/health` request of `caller` (KV, one-minute window). */
export function limitHealthRequests(
  deps: Pick<Deps, "kv" | "now" | "config">,
  caller: HealthCaller,
): Promise<RateLimitResult> {
  const perMinute = deps.config.rateLimits.healthPerPrincipalPerMinute;
  return hit(deps.kv, "health", caller.id, perMinute, 60_000, deps.now());
}

interface CachedProbe {
  at: number;
  result: Promise<BackendHealth>;
}

const probes = new WeakMap<GatewayConfig, Map<string, CachedProbe>>();

/** The health of `backends`, from probes at most {@linkcode HEALTH_CACHE_MS} old. */
export function backendHealth(
  deps: Pick<Deps, "fetch" | "now" | "config">,
  backends: readonly BackendConfig[],
): Promise<BackendHealth[]> {
  let cache = probes.get(deps.config);
  if (!cache) probes.set(deps.config, cache = new Map());
  const now = deps.now();
  return Promise.all(backends.map((b) => {
    const cached = cache.get(b.name);
    if (cached && now - cached.at < HEALTH_CACHE_MS && now >= cached.at) return cached.result;
    const result = probeBackend(deps, deps.config, b);
    cache.set(b.name, { at: now, result });
    return result;
  }));
}
