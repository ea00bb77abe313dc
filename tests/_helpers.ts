/**
 * Shared test fixtures: real dependencies (a `:memory:` Deno KV, a parsed config, a controllable
 * clock) and helpers to serve the gateway on a real port.
 */
import { parseConfig } from "../lib/config.ts";
import { requireEncryptionKey } from "../lib/credentials/auth_config.ts";
import { noTelemetry } from "../lib/admin/telemetry.ts";
import {
  buildAuditWriter,
  buildExternalJwtVerifiers,
  buildMcpRateLimiter,
  type Deps,
  readSettings,
} from "../lib/deps.ts";
import { memoryLogger } from "../lib/infra/log.ts";
import { TokenCache } from "../lib/oauth/token_cache.ts";
import { createHandler } from "../main.ts";

/** Options of {@linkcode makeDeps}. */
export interface TestDepsOptions {
  /** Raw config object (before `${VAR}` interpolation). */
  config?: Record<string, unknown>;
  env?: Record<string, string>;
  kvPath?: string;
  cacheTtlMs?: number;
}

/** A clock the test moves by hand. */
export interface TestClock {
  now: () => number;
  advance: (ms: number) => void;
}

/** A test clock starting at the real time. */
export function testClock(start = Date.now()): TestClock {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

/** Real deps for a test, with its own KV and clock. Close with `deps.kv.close()`. */
export async function makeDeps(
  options: TestDepsOptions = {},
): Promise<Deps & { clock: TestClock; logs: Record<string, unknown>[] }> {
  const env: Record<string, string> = {
    PUBLIC_URL: "http://localhost:8000",
    GATEWAY_OWNER_PASSWORD: "correct horse battery staple",
    ...options.env,
  };
  const config = parseConfig(
    options.config ?? { backends: [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }] },
    (n) => env[n],
    "test config",
  );
  const clock = testClock();
  const log = memoryLogger();
  const settings = await readSettings((n) => env[n]);
  requireEncryptionKey(config, settings); // as loadDeps does at start
  const kv = await Deno.openKv(options.kvPath ?? ":memory:");
  const deps: Deps & { clock: TestClock; logs: Record<string, unknown>[] } = {
    kv,
    config,
    settings,
    now: clock.now,
    fetch: globalThis.fetch.bind(globalThis),
    log,
    tokenCache: new TokenCache({ ttlMs: options.cacheTtlMs ?? 1000 }),
    mcpRateLimiter: buildMcpRateLimiter(config, log, false),
    externalJwtVerifiers: [],
    // Flushed only by the test (`await deps.audit.flush()`): nothing writes between steps.
    audit: buildAuditWriter(config, { kv, log, now: () => deps.now() }, 0),
    telemetry: noTelemetry(),
    clock,
    logs: log.records,
  };
  // Late-bound, so that a test replacing `deps.now` or `deps.fetch` reaches the verifiers too.
  deps.externalJwtVerifiers = buildExternalJwtVerifiers(config, {
    now: () => deps.now(),
    fetch: (input, init) => deps.fetch(input, init),
  });
  return deps;
}

/** A gateway served on a real loopback port. Set `PUBLIC_URL` from `url` via `makeServedDeps`. */
export interface ServedGateway {
  url: string;
  deps: Deps & { clock: TestClock; logs: Record<string, unknown>[] };
  close: () => Promise<void>;
}

/**
 * Starts the gateway on `127.0.0.1:<free port>` with `PUBLIC_URL` set to that address.
 * `configFor` may use the port to build its config.
 */
export async function serveGateway(
  options: Omit<TestDepsOptions, "env"> & {
    env?: Record<string, string>;
    /** Builds the config once the gateway's URL is known (instead of `config`). */
    configFor?: (url: string) => Record<string, unknown> | Promise<Record<string, unknown>>;
  } = {},
): Promise<ServedGateway> {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const url = `http://127.0.0.1:${port}`;
  const config = options.configFor ? await options.configFor(url) : options.config;
  const deps = await makeDeps({ ...options, config, env: { PUBLIC_URL: url, ...options.env } });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port, onListen: () => {} },
    createHandler(deps),
  );
  return {
    url,
    deps,
    close: async () => {
      await server.shutdown();
      deps.kv.close();
    },
  };
}
