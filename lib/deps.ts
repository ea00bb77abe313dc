/**
 * Everything a route needs, built once by {@linkcode loadDeps} (or by a test) and passed in.
 * Nothing here is read at import time.
 */
import { type GatewayConfig, loadConfigFile } from "./config.ts";
import { requireEncryptionKey } from "./credentials/auth_config.ts";
import { parseEncryptionKey } from "./credentials/encryption.ts";
import { sha256Hex } from "./infra/crypto.ts";
import { createExternalJwtVerifier, type ExternalJwtVerifier } from "./oauth/external_jwt.ts";
import { consoleLogger, type Logger, stdoutLogger } from "./infra/log.ts";
import { BatchedRateLimiter } from "./infra/rate_limit.ts";
import { TokenCache } from "./oauth/token_cache.ts";

/** Settings read from the environment (the runtime contract in README.md). */
export interface Settings {
  port: number;
  /** Canonical external origin, no trailing slash: the `issuer` and base of every URL. */
  publicUrl: string;
  /** SHA-256 hex of each static API key (`GATEWAY_API_KEY`, comma-separated). */
  apiKeyHashes: string[];
  /** `GATEWAY_OWNER_PASSWORD`: the built-in owner sign-in (absent: only identity providers). */
  ownerPassword?: string;
  /** Whether cookies may use the `__Host-` prefix (https public URL). */
  secureCookies: boolean;
  /** `GATEWAY_ENCRYPTION_KEY`: the AES-GCM key of stored per-user backend credentials. */
  encryptionKey?: CryptoKey;
}

/** Dependencies shared by every route. */
export interface Deps {
  kv: Deno.Kv;
  config: GatewayConfig;
  settings: Settings;
  /** Clock in ms since epoch; tests inject their own. */
  now: () => number;
  /** `fetch` used to reach backends; tests may inject their own. */
  fetch: typeof fetch;
  log: Logger;
  tokenCache: TokenCache;
  /** MCP calls per grant or principal (`rateLimits.mcpPerGrantPerMinute`), batched to KV. */
  mcpRateLimiter: BatchedRateLimiter;
  /** One verifier per `externalIssuers[]` entry, in config order. */
  externalJwtVerifiers: ExternalJwtVerifier[];
}

/** Per-request context given to a route handler. */
export interface RouteContext extends Deps {
  params: Record<string, string | undefined>;
  /** Client address, for rate limits and logs. */
  clientIp: string;
  /** Set by the router: fields added to this request's log line. */
  logFields: Record<string, unknown>;
}

/** Parses the environment into {@linkcode Settings}. @throws {Error} naming the variable. */
export async function readSettings(env: (name: string) => string | undefined): Promise<Settings> {
  const portText = env("PORT") ?? "8000";
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`PORT: "${portText}" is not a port number`);
  }
  const rawUrl = env("PUBLIC_URL") ?? `http://localhost:${port}`;
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw new Error(`PUBLIC_URL: "${rawUrl}" is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new Error(`PUBLIC_URL: must be http(s), got "${rawUrl}"`);
  }
  if (url.search || url.hash) throw new Error("PUBLIC_URL: must not have a query or fragment");
  const publicUrl = `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
  const keys = (env("GATEWAY_API_KEY") ?? "").split(",").map((k) => k.trim()).filter(Boolean);
  for (const key of keys) {
    if (key.length < 16) throw new Error("GATEWAY_API_KEY: each key needs 16 characters or more");
  }
  const password = env("GATEWAY_OWNER_PASSWORD") || undefined;
  const encryptionKey = env("GATEWAY_ENCRYPTION_KEY");
  return {
    port,
    publicUrl,
    apiKeyHashes: await Promise.all(keys.map(sha256Hex)),
    ownerPassword: password,
    secureCookies: url.protocol === "https:",
    ...(encryptionKey ? { encryptionKey: await parseEncryptionKey(encryptionKey) } : {}),
  };
}

/** The MCP rate limiter of a config: one-minute windows, flushed to KV about every second. */
export function buildMcpRateLimiter(config: GatewayConfig, log: Logger): BatchedRateLimiter {
  return new BatchedRateLimiter({
    bucket: "mcp",
    limit: config.rateLimits.mcpPerGrantPerMinute,
    windowMs: 60_000,
    flushIntervalMs: 1000,
    flushEvery: 100,
    onError: (error) =>
      log({
        level: "warn",
        event: "rate_limit_flush_failed",
        error: error instanceof Error ? error.name : "unknown",
      }),
  });
}

/** Verifiers of the configured external issuers; they fetch JWKS with `deps.fetch`. */
export function buildExternalJwtVerifiers(
  config: GatewayConfig,
  deps: Pick<Deps, "now" | "fetch">,
): ExternalJwtVerifier[] {
  return config.externalIssuers.map((issuer) => createExternalJwtVerifier(issuer, deps));
}

/**
 * Builds the production dependencies from the environment. `defaultKvPath` is used when
 * `KV_PATH` is unset (`deno task dev` passes `./.data/gateway.kv`; on Deno Deploy there is none,
 * so `Deno.openKv()` opens the project's database).
 */
export async function loadDeps(defaultKvPath?: string): Promise<Deps> {
  const env = (name: string) => Deno.env.get(name);
  const settings = await readSettings(env);
  const config = await loadConfigFile(env("GATEWAY_CONFIG") ?? "./gateway.config.json", env);
  requireEncryptionKey(config, settings);
  const kvPath = env("KV_PATH") || defaultKvPath;
  // Deno Deploy collects console output; elsewhere a direct write to stdout is cheaper.
  const log = env("DENO_DEPLOYMENT_ID") ? consoleLogger : stdoutLogger;
  const kv = await Deno.openKv(kvPath || undefined);
  const now = Date.now;
  const fetchFn = globalThis.fetch.bind(globalThis);
  return {
    kv,
    config,
    settings,
    now,
    fetch: fetchFn,
    log,
    tokenCache: new TokenCache({ channel: new BroadcastChannel("gateway-token-revocations") }),
    mcpRateLimiter: buildMcpRateLimiter(config, log),
    externalJwtVerifiers: buildExternalJwtVerifiers(config, { now, fetch: fetchFn }),
  };
}
