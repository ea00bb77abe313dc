/**
 * What the operator's views (lib/admin/*_view.ts, the admin CLI, later the console) need: the
 * same KV as the gateway, a clock, the token cache (revocations), and — when it could be loaded —
 * the configuration and the audit writer.
 */
import type { GatewayConfig } from "../config.ts";
import type { Deps } from "../deps.ts";
import type { AuditWriter } from "./audit.ts";

/** Dependencies of the admin views. */
export type AdminDeps = Pick<Deps, "kv" | "now" | "tokenCache"> & {
  /** Absent when the CLI could not load the gateway's config (config clients then unknown). */
  config?: GatewayConfig;
  audit?: AuditWriter;
};

/** ISO 8601 of a time in ms since epoch, or `null`. */
export function iso(ms: number | null | undefined): string | null {
  return typeof ms === "number" && Number.isFinite(ms) ? new Date(ms).toISOString() : null;
}

/** `kv.getMany` over any number of keys (Deno KV reads at most 10 per call). */
export async function getManyChunked<T>(
  kv: Deno.Kv,
  keys: Deno.KvKey[],
): Promise<Deno.KvEntryMaybe<T>[]> {
  const out: Deno.KvEntryMaybe<T>[] = [];
  for (let i = 0; i < keys.length; i += 10) {
    out.push(...await kv.getMany<T[]>(keys.slice(i, i + 10)));
  }
  return out;
}
