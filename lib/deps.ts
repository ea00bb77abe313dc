/**
 * Everything a route needs, built once by {@linkcode loadDeps} (or by a test) and passed in.
 * Nothing here is read at import time.
 */
import { AuditWriter } from "./admin/audit.ts";
import { buildTelemetry, type Telemetry } from "./admin/telemetry.ts";
import { type GatewayConfig, loadConfigFile } from "./config.ts";
import { requireEncryptionKey } from "./credentials/auth_config.ts";
import { parseEncryptionKey } from "./credentials/encryption.ts";
import { sha256Hex } from "./infra/crypto.ts";
import { createExternalJwtVerifier, type ExternalJwtVerifier } from "./oauth/external_jwt.ts";
import { consoleLogger, type Logger, stdoutLogger } from "./infra/log.ts";
import { BatchedRateLimiter } from "./infra/rate_limit.ts";
import { TokenCache } from "./oauth/token_cache.ts";
import { SettingsError } from "./startup/errors.ts";
import { deployProductionUrl, onDenoDeploy } from "./startup/deno_deploy.ts";
import { kvLocation, kvOpenPath } from "./startup/kv_location.ts";

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
  /** The audit trail's per-isolate writer (and of grants' last use), lib/admin/audit.ts. */
  audit: AuditWriter;
  /** OpenTelemetry spans and metrics (disabled unless the runtime exports them). */
  telemetry: Telemetry;
}

/** Per-request context given to a route handler. */
export interface RouteContext extends Deps {
  params: Record<string, string | undefined>;
  /** Client address, for rate limits and logs. */
  clientIp: string;
  /** Set by the router: fields added to this request's log line. */
  logFields: Record<string, unknown>;
  /** Set by the router: this request's id (its log line's `request_id`, its audit records'). */
  requestId: string;
}

/**
 * Parses the environment into {@linkcode Settings}. On Deno Deploy (`DENO_DEPLOYMENT_ID` set)
 * `PUBLIC_URL` is required: the OAuth issuer must be the URL clients use (RFC 8414 §3.3), and
 * guessing `http://localhost:8000` there would publish unusable metadata.
 * @throws {SettingsError} naming the variable.
 */
export async function readSettings(env: (name: string) => string | undefined): Promise<Settings> {
  const portText = env("PORT") ?? "8000";
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new SettingsError(`PORT: "${portText}" is not a port number`);
  }
  if (!env("PUBLIC_URL") && onDenoDeploy(env)) {
    const url = deployProductionUrl(env);
    throw new SettingsError(
      `PUBLIC_URL is required on Deno Deploy: set it to the app's public https URL, e.g. ` +
        `deno deploy env add PUBLIC_URL ${url} (or in the app's settings, Environment ` +
        `Variables, for the Production and Development contexts), then deploy again`,
    );
  }
  const rawUrl = env("PUBLIC_URL") || `http://localhost:${port}`;
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw new SettingsError(`PUBLIC_URL: "${rawUrl}" is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new SettingsError(`PUBLIC_URL: must be http(s), got "${rawUrl}"`);
  }
  if (url.search || url.hash) {
    throw new SettingsError("PUBLIC_URL: must not have a query or fragment");
  }
  const publicUrl = `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
  const keys = (env("GATEWAY_API_KEY") ?? "").split(",").map((k) => k.trim()).filter(Boolean);
  for (const key of keys) {
    if (key.length < 16) {
      throw new SettingsError("GATEWAY_API_KEY: each key needs 16 characters or more");
    }
  }
  const password = env("GATEWAY_OWNER_PASSWORD") || undefined;
  const encryptionKey = env("GATEWAY_ENCRYPTION_KEY");
  return {
    port,
    publicUrl,
    apiKeyHashes: await Promise.all(keys.map(sha256Hex)),
    ownerPassword: password,
    secureCookies: url.protocol === "https:",
    ...(encryptionKey ? { encryptionKey: await encryptionKeyOf(encryptionKey) } : {}),
  };
}

/**
 * The MCP rate limiter of a config: one-minute windows, flushed to KV about every second (on a
 * timer too, unless `timer` is false: tests drive flushes themselves).
 */
export function buildMcpRateLimiter(
  config: GatewayConfig,
  log: Logger,
  timer = true,
): BatchedRateLimiter {
  return new BatchedRateLimiter({
    bucket: "mcp",
    limit: config.rateLimits.mcpPerGrantPerMinute,
    windowMs: 60_000,
    flushIntervalMs: 1000,
    flushEvery: 100,
    timer,
    onError: (error) =>
      log({
        level: "warn",
        event: "rate_limit_flush_failed",
        error: error instanceof Error ? error.name : "unknown",
      }),
  });
}

/**
 * The audit writer of a config: batched, flushed `flushIntervalMs` after the first pending
 * record (1 s in production; 0 in tests: only an explicit `flush()` writes).
 */
export function buildAuditWriter(
  config: GatewayConfig,
  deps: Pick<Deps, "kv" | "log" | "now">,
  flushIntervalMs = 1000,
): AuditWriter {
  return new AuditWriter({
    kv: deps.kv,
    log: deps.log,
    now: deps.now,
    enabled: config.audit.enabled,
    retentionMs: config.audit.retentionDays * 86_400_000,
    grantUsedTtlMs: config.refreshTokenTtlSeconds * 1000,
    flushIntervalMs,
  });
}

/** Verifiers of the configured external issuers; they fetch JWKS with `deps.fetch`. */
export function buildExternalJwtVerifiers(
  config: GatewayConfig,
  deps: Pick<Deps, "now" | "fetch">,
): ExternalJwtVerifier[] {
  return config.externalIssuers.map((issuer) => createExternalJwtVerifier(issuer, deps));
}

/** Opens KV; a failure names `KV_PATH` (or, on Deno Deploy, the missing database). */
async function openKv(path: string | undefined, onDeploy: boolean): Promise<Deno.Kv> {
  try {
    return await Deno.openKv(path);
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    throw new SettingsError(
      onDeploy && path === undefined
        ? `Deno KV: cannot open the app's database (${reason}); assign one: deno deploy ` +
          "database provision <name> --kind denokv, then deno deploy database assign <name>"
        : `KV_PATH: cannot open ${path ?? "Deno's default database"} (${reason})`,
    );
  }
}

/**
 * Reads settings, the config file and the KV location, reporting every problem at once (an
 * `AggregateError` when there are several) instead of stopping at the first.
 */
async function readStartInputs(
  env: (name: string) => string | undefined,
  defaultKvPath: string | undefined,
): Promise<{ settings: Settings; config: GatewayConfig; kvPath: string | undefined }> {
  const [settings, config, location] = await Promise.allSettled([
    readSettings(env),
    loadConfigFile(env("GATEWAY_CONFIG") || "./gateway.config.json", env),
    Promise.resolve().then(() => kvLocation(env, defaultKvPath)),
  ]);
  if (
    settings.status === "rejected" || config.status === "rejected" ||
    location.status === "rejected"
  ) {
    const errors = [settings, config, location].flatMap((r) =>
      r.status === "rejected" ? [r.reason] : []
    );
    throw errors.length === 1 ? errors[0] : new AggregateError(errors, "the gateway cannot start");
  }
  try {
    requireEncryptionKey(config.value, settings.value);
  } catch (e) {
    throw new SettingsError((e as Error).message);
  }
  return { settings: settings.value, config: config.value, kvPath: kvOpenPath(location.value) };
}

/** `GATEWAY_ENCRYPTION_KEY` as an AES-GCM key. @throws {SettingsError} naming the variable */
async function encryptionKeyOf(text: string): Promise<CryptoKey> {
  try {
    return await parseEncryptionKey(text);
  } catch (e) {
    throw new SettingsError((e as Error).message);
  }
}

/**
 * Builds the production dependencies from the environment. `defaultKvPath` is used when
 * `KV_PATH` is unset (`deno task dev` passes `./.data/gateway.kv`; on Deno Deploy there is none,
 * so `Deno.openKv()` opens the database assigned to the app).
 */
export async function loadDeps(defaultKvPath?: string): Promise<Deps> {
  const env = (name: string) => Deno.env.get(name);
  const { settings, config, kvPath } = await readStartInputs(env, defaultKvPath);
  // Deno Deploy collects console output; elsewhere a direct write to stdout is cheaper.
  const log = onDenoDeploy(env) ? consoleLogger : stdoutLogger;
  const kv = await openKv(kvPath, onDenoDeploy(env));
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
    audit: buildAuditWriter(config, { kv, log, now }),
    telemetry: await buildTelemetry(kv),
  };
}
