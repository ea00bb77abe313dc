/**
 * KV operations on the hot path of an authenticated MCP call with a warm isolate (issue 14:
 * target 0 writes, at most 1 read). Counted for real: the gateway's own `loadDeps()` builds the
 * dependencies, then `deps.kv` is wrapped by a counting proxy and the audit writer (the one part
 * that keeps its own KV reference) is rebuilt on it, so every read and write of the request path
 * (bearer check, rate limiter, audit, sessions, catalog) goes through the counter. The
 * handler is served in this process on a loopback port and called over HTTP, one call at a time,
 * and each call's reads and writes are the counter's difference across it.
 *
 * Background work is not the request path: the rate limiter's batched flushes and the audit
 * trail's batch writes are pushed out of the measured window (flush interval 1 h, explicit
 * flushes between phases), as the tests' dependencies do.
 */
import { buildAuditWriter, type Deps, loadDeps } from "../lib/deps.ts";
import { BatchedRateLimiter } from "../lib/infra/rate_limit.ts";
import { mintTokens, putGrant } from "../lib/oauth/tokens.ts";
import { clientKey } from "../lib/store.ts";
import { createHandler } from "../main.ts";
import type { McpRequest } from "./mcp.ts";

/** Reads and writes seen by a {@linkcode countingKv}. */
export interface KvOps {
  reads: number;
  writes: number;
}

/**
 * Wraps a `Deno.Kv` so that every `get`/`getMany`/`list` counts as a read and every
 * `set`/`delete`/`atomic().commit()`/`enqueue` as a write (bench and tests only).
 */
export function countingKv(kv: Deno.Kv, ops: KvOps): Deno.Kv {
  const READS = new Set(["get", "getMany", "list"]);
  const WRITES = new Set(["set", "delete", "enqueue"]);
  return new Proxy(kv, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      const name = String(prop);
      if (name === "atomic") {
        return () => {
          const op = target.atomic();
          const commit = op.commit.bind(op);
          op.commit = () => {
            ops.writes++;
            return commit();
          };
          return op;
        };
      }
      return (...args: unknown[]) => {
        if (READS.has(name)) ops.reads++;
        else if (WRITES.has(name)) ops.writes++;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

/** Per-call KV operations of one route, over `calls` warm calls. */
export interface HotPathKv {
  calls: number;
  reads: number;
  writes: number;
  maxReadsPerCall: number;
  maxWritesPerCall: number;
}

/** A gateway in this process whose KV operations are counted. */
export interface CountedGateway {
  url: string;
  deps: Deps;
  ops: KvOps;
  token: string;
  close: () => Promise<void>;
}

/** Starts the gateway in-process over `backends`, with a counting KV and one minted token. */
export async function startCountedGateway(
  backends: { name: string; url: string }[],
): Promise<CountedGateway> {
  const dir = await Deno.makeTempDir({ prefix: "bench-kvops-" });
  const configPath = `${dir}/gateway.config.json`;
  await Deno.writeTextFile(configPath, JSON.stringify({ serverName: "kvops", backends }));
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const ops: KvOps = { reads: 0, writes: 0 };
  const env: Record<string, string> = {
    PORT: String(port),
    PUBLIC_URL: `http://127.0.0.1:${port}`,
    KV_PATH: `${dir}/gateway.kv`,
    GATEWAY_CONFIG: configPath,
    GATEWAY_OWNER_PASSWORD: "bench owner password 1234",
  };
  const saved = new Map<string, string | undefined>();
  let deps: Deps;
  try {
    for (const [k, v] of Object.entries(env)) {
      saved.set(k, Deno.env.get(k));
      Deno.env.set(k, v);
    }
    deps = await loadDeps();
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
  // Background writes out of the measured window (see the module doc).
  deps.mcpRateLimiter.close();
  await deps.audit.close();
  deps = {
    ...deps,
    kv: countingKv(deps.kv, ops),
    log: () => {},
    mcpRateLimiter: new BatchedRateLimiter({
      bucket: "mcp",
      limit: deps.config.rateLimits.mcpPerGrantPerMinute,
      windowMs: 60_000,
      flushIntervalMs: 3_600_000,
      flushEvery: 1_000_000,
    }),
  };
  deps.audit = buildAuditWriter(deps.config, deps, 0);
  const now = Date.now();
  await deps.kv.set(clientKey("bench-client"), {
    clientId: "bench-client",
    clientName: "gateway bench",
    redirectUris: ["http://127.0.0.1:9/callback"],
    tokenEndpointAuthMethod: "none",
    grantTypes: ["authorization_code", "refresh_token"],
    responseTypes: ["code"],
    applicationType: "native",
    clientIdIssuedAt: Math.floor(now / 1000),
  });
  const grant = {
    grantId: crypto.randomUUID(),
    clientId: "bench-client",
    scope: "mcp",
    resource: `${env.PUBLIC_URL}/mcp`,
  };
  const op = deps.kv.atomic();
  putGrant(deps, op, { ...grant, createdAt: now, expiresAt: now + 86_400_000 });
  const { accessToken } = await mintTokens(deps, op, grant);
  await op.commit();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port, onListen: () => {} },
    createHandler(deps),
  );
  const final = deps;
  return {
    url: env.PUBLIC_URL!,
    deps: final,
    ops,
    token: accessToken,
    close: async () => {
      await server.shutdown();
      final.tokenCache?.close();
      await final.audit.close().catch(() => {});
      final.kv.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/**
 * `warmup` calls, then `calls` sequential calls of `req` to `url`, each call's KV reads and
 * writes counted. Every call must answer 200 with a JSON-RPC result.
 */
export async function hotPathKv(
  gw: CountedGateway,
  url: string,
  req: McpRequest,
  calls: number,
  warmup = 5,
): Promise<HotPathKv> {
  const call = async () => {
    const res = await fetch(url, { method: "POST", headers: req.headers, body: req.body });
    const text = await res.text();
    if (res.status !== 200 || !text.includes('"result"')) {
      throw new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`);
    }
  };
  for (let i = 0; i < warmup; i++) await call();
  await gw.deps.audit.flush();
  const out: HotPathKv = { calls, reads: 0, writes: 0, maxReadsPerCall: 0, maxWritesPerCall: 0 };
  for (let i = 0; i < calls; i++) {
    const before = { ...gw.ops };
    await call();
    const reads = gw.ops.reads - before.reads;
    const writes = gw.ops.writes - before.writes;
    out.reads += reads;
    out.writes += writes;
    out.maxReadsPerCall = Math.max(out.maxReadsPerCall, reads);
    out.maxWritesPerCall = Math.max(out.maxWritesPerCall, writes);
  }
  await gw.deps.audit.flush();
  return out;
}
