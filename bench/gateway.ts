/**
 * The gateway under test: a temporary config and KV file, the gateway started as a subprocess
 * (`deno run -A main.ts`, the runtime contract's env), and tokens minted straight into its KV
 * file with `lib/oauth/tokens.ts` (`mintTokens` + `putGrant`), in batched atomic commits.
 */
import { type GatewayConfig, parseConfig } from "../lib/config.ts";
import { type Deps, loadDeps } from "../lib/deps.ts";
import { clientKey, type ClientRecord } from "../lib/store.ts";
import { mintTokens, putGrant } from "../lib/oauth/tokens.ts";
import { freePort, type Proc, startGateway } from "./procs.ts";

/** Owner password of bench gateways. */
export const OWNER_PASSWORD = "bench owner password 1234";
/** Static API key of bench gateways (not used for measuring; tokens are). */
export const API_KEY = "bench-api-key-0123456789abcdef";
/** The client that bench-minted grants belong to (also stored as a public client). */
export const BENCH_CLIENT_ID = "bench-client";
/** Its redirect URI. */
export const BENCH_REDIRECT_URI = "http://127.0.0.1:9/callback";

/** Rate-limit settings of the config raised for the bench (`rateLimits.*`). */
const RATE_LIMITS = [
  "registerPerIpPerHour",
  "tokenPerIpPerMinute",
  "tokenPerClientPerMinute",
  "tokenFailuresPerClientAndIpPerMinute",
  "revokePerIpPerMinute",
  "authorizePerIpPerMinute",
  "mcpPerGrantPerMinute",
  "healthPerPrincipalPerMinute",
  "passwordFailuresPer15Minutes",
  "passwordFailuresPerIpPer15Minutes",
  "passwordFailuresGlobalPer15Minutes",
];

/** A running gateway with its KV file open in the bench process too. */
export interface BenchGateway {
  proc: Proc;
  publicUrl: string;
  kvPath: string;
  kv: Deno.Kv;
  /** Enough of `Deps` for `mintTokens` / `putGrant` / `authenticate`. */
  deps: Deps;
  /** Whether the config's `rateLimits` were raised out of the way. */
  rateLimitsRaised: boolean;
  /** The environment the process runs with (to start a second process on the same KV file). */
  env: Record<string, string>;
  /** The `deno run` flags it runs with (e.g. `--v8-flags=…`). */
  denoFlags: string[];
  /** Stops the process and starts a fresh one on the same port, config and KV file. */
  restart: () => Promise<void>;
  stop: () => Promise<void>;
}

/** Starts a gateway fronting `backends` with its own temp dir. */
/**
 * The `--v8-flags=…` of `deno task start` (deno.json), so the bench runs the gateway the way
 * operators do (it caps V8's young and old generations, which bounds peak RSS under load).
 */
export function startTaskV8Flags(repoRoot: string): string[] {
  const denoJson = JSON.parse(Deno.readTextFileSync(`${repoRoot}/deno.json`));
  const start = String(denoJson.tasks?.start ?? "");
  return start.split(/\s+/).filter((arg) => arg.startsWith("--v8-flags="));
}

export async function launchGateway(
  name: string,
  repoRoot: string,
  backends: { name: string; url: string }[],
  denoFlags: string[] = startTaskV8Flags(repoRoot),
  extraConfig: Record<string, unknown> = {},
): Promise<BenchGateway> {
  const dir = await Deno.makeTempDir({ prefix: `bench-${name}-` });
  const kvPath = `${dir}/gateway.kv`;
  const configPath = `${dir}/gateway.config.json`;
  // Rate limits raised so that they do not cap throughput (their cost is still paid); dropped
  // if this version of the config schema does not know them.
  let raw: Record<string, unknown> = {
    serverName: `bench-${name}`,
    rateLimits: Object.fromEntries(RATE_LIMITS.map((k) => [k, 1_000_000_000])),
    ...extraConfig,
    backends,
  };
  let config;
  let rateLimitsRaised = true;
  try {
    config = parseConfig(raw, () => undefined, configPath);
  } catch {
    rateLimitsRaised = false;
    raw = { serverName: `bench-${name}`, ...extraConfig, backends };
    config = parseConfig(raw, () => undefined, configPath);
  }
  await Deno.writeTextFile(configPath, JSON.stringify(raw, null, 2));
  const port = freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "",
    HOME: Deno.env.get("HOME") ?? "/tmp",
    PUBLIC_URL: publicUrl,
    KV_PATH: kvPath,
    GATEWAY_CONFIG: configPath,
    GATEWAY_OWNER_PASSWORD: OWNER_PASSWORD,
    GATEWAY_API_KEY: API_KEY,
  };
  for (const k of ["DENO_DIR", "XDG_CACHE_HOME", "NO_COLOR"]) {
    const v = Deno.env.get(k);
    if (v !== undefined) env[k] = v;
  }
  const deps = await benchDeps(env, { kvPath, config, port, publicUrl });
  const kv = deps.kv;
  const client: ClientRecord = {
    clientId: BENCH_CLIENT_ID,
    clientName: "gateway bench",
    redirectUris: [BENCH_REDIRECT_URI],
    tokenEndpointAuthMethod: "none",
    grantTypes: ["authorization_code", "refresh_token"],
    responseTypes: ["code"],
    applicationType: "native",
    clientIdIssuedAt: Math.floor(Date.now() / 1000),
  };
  await kv.set(clientKey(BENCH_CLIENT_ID), client);
  let proc: Proc;
  try {
    proc = await startGateway(name, repoRoot, env, port, denoFlags);
  } catch (e) {
    await closeDeps(deps);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }
  const gw: BenchGateway = {
    proc,
    publicUrl,
    kvPath,
    kv,
    deps,
    rateLimitsRaised,
    env,
    denoFlags,
    restart: async () => {
      await gw.proc.stop();
      gw.proc = await startGateway(name, repoRoot, env, port, denoFlags);
    },
    stop: async () => {
      await gw.proc.stop();
      await closeDeps(deps);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  return gw;
}

/**
 * The gateway's own dependencies, built by `loadDeps()` from the same environment as the
 * subprocess (set on this process only for the call), with logging silenced. When this tree's
 * `loadDeps` cannot be used that way, a hand-made subset that `mintTokens` needs.
 */
async function benchDeps(
  env: Record<string, string>,
  o: { kvPath: string; config: GatewayConfig; port: number; publicUrl: string },
): Promise<Deps> {
  const saved = new Map<string, string | undefined>();
  try {
    for (const [k, v] of Object.entries(env)) {
      saved.set(k, Deno.env.get(k));
      Deno.env.set(k, v);
    }
    saved.set("PORT", Deno.env.get("PORT"));
    Deno.env.set("PORT", String(o.port));
    const deps = await loadDeps();
    return { ...deps, log: () => {} };
  } catch {
    return {
      kv: await Deno.openKv(o.kvPath),
      config: o.config,
      settings: {
        port: o.port,
        publicUrl: o.publicUrl,
        apiKeyHashes: [],
        ownerPassword: OWNER_PASSWORD,
        secureCookies: false,
      },
      now: Date.now,
      fetch: globalThis.fetch.bind(globalThis),
      log: () => {},
    } as unknown as Deps;
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
}

/** Flushes what the bench's own deps hold (rate-limit counts), closes its channel and KV. */
async function closeDeps(deps: Deps): Promise<void> {
  const d = deps as Partial<Deps> & {
    mcpRateLimiter?: { flush?: (kv: Deno.Kv, now: number) => Promise<void> };
  };
  try {
    await d.mcpRateLimiter?.flush?.(deps.kv, Date.now());
  } catch {
    // best effort
  }
  d.tokenCache?.close();
  await d.audit?.close().catch(() => {});
  deps.kv.close();
}

/** Tokens minted into a gateway's KV. */
export interface Minted {
  accessTokens: string[];
  refreshTokens: string[];
}

/**
 * Mints `count` live token pairs (one grant per `perGrant` pairs) with `mintTokens` +
 * `putGrant`, committing `batch` pairs per atomic operation. Keeps the clear text of at most
 * `keep` pairs (spread over the whole range).
 */
export async function mint(
  gw: BenchGateway,
  count: number,
  opts: {
    resource: string;
    scope?: string;
    keep?: number;
    batch?: number;
    perGrant?: number;
    parallel?: number;
  },
): Promise<Minted> {
  const batch = opts.batch ?? 180;
  const perGrant = opts.perGrant ?? batch;
  const keep = opts.keep ?? count;
  const stride = Math.max(1, Math.floor(count / keep));
  const out: Minted = { accessTokens: [], refreshTokens: [] };
  const now = Date.now();
  let grant = null as null | { grantId: string; clientId: string; scope: string; resource: string };
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < count; i += batch) {
    const op = gw.kv.atomic();
    const n = Math.min(batch, count - i);
    const pending: Promise<unknown>[] = [];
    for (let j = 0; j < n; j++) {
      const index = i + j;
      if (grant === null || index % perGrant === 0) {
        grant = {
          grantId: crypto.randomUUID(),
          clientId: BENCH_CLIENT_ID,
          scope: opts.scope ?? "mcp",
          resource: opts.resource,
        };
        putGrant(gw.deps, op, {
          ...grant,
          createdAt: now,
          expiresAt: now + gw.deps.config.refreshTokenTtlSeconds * 1000,
        });
      }
      pending.push(
        mintTokens(gw.deps, op, grant).then((t) => {
          if (index % stride === 0 && out.accessTokens.length < keep) {
            out.accessTokens.push(t.accessToken);
            out.refreshTokens.push(t.refreshToken);
          }
        }),
      );
    }
    await Promise.all(pending);
    // A few commits in flight at once: each is atomic on its own; SQLite serialises them.
    const commit: Promise<void> = op.commit().then((res) => {
      inFlight.delete(commit);
      if (!res.ok) throw new Error("KV commit of minted tokens failed");
    });
    inFlight.add(commit);
    if (inFlight.size >= (opts.parallel ?? 4)) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  return out;
}

/** Number of live access tokens in a gateway's KV. */
export async function countAccessTokens(kv: Deno.Kv, limit: number): Promise<number> {
  let n = 0;
  for await (const _ of kv.list({ prefix: ["access"] }, { limit })) n++;
  return n;
}
