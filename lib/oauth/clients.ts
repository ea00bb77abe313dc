/**
 * The one client lookup of the gateway, used by `/authorize`, the consent form, `/token` and
 * `/revoke`. A `client_id` is resolved, in this order, as:
 *
 * 1. a pre-registered client of the config (`clients`): its secret is hashed once per config
 *    (SHA-256, never compared in clear) and its `scopes` become {@linkcode ClientRecord.allowedScopes};
 * 2. a Client ID Metadata Document when the id is an http(s) URL
 *    (draft-ietf-oauth-client-id-metadata-document, MCP 2025-11-25 Authorization §Client ID
 *    Metadata Documents) and `clientIdMetadataDocuments.enabled`; such clients are public;
 * 3. a dynamically registered client (RFC 7591) in KV, unknown once idle for longer than
 *    `registration.clientIdleDays`. Its `lastUsedAt` is refreshed at most once a day, so a busy
 *    client does not cost a KV write per request; `expireIn` is only a clean-up hint.
 * @module
 */
import type { GatewayConfig } from "../config.ts";
import type { Logger } from "../infra/log.ts";
import { OAuthError } from "./oauth_error.ts";
import { sha256Hex } from "../infra/crypto.ts";
import {
  confirmClientIdMetadata,
  isClientIdMetadataUrl,
  resolveClientIdMetadata,
  type ResolveClientIdMetadataOptions,
} from "./client_id_metadata.ts";
import { defaultApplicationType } from "./redirect_uri.ts";
import { clientKey, type ClientRecord } from "../store.ts";

/** One day in ms: the most often a registered client's `lastUsedAt` is written. */
export const LAST_USED_WRITE_INTERVAL_MS = 86_400_000;

/** What {@linkcode findClient} needs from `Deps`. */
export interface ClientLookupDeps {
  kv: Deno.Kv;
  config: GatewayConfig;
  now: () => number;
  fetch: typeof fetch;
}

/** Idle lifetime of a registered client, in ms (`registration.clientIdleDays`). */
export function clientIdleMs(config: GatewayConfig): number {
  return config.registration.clientIdleDays * LAST_USED_WRITE_INTERVAL_MS;
}

type PreRegistered = GatewayConfig["clients"][number];

/** Turns a config client into a {@linkcode ClientRecord} (its secret as a SHA-256 hash). */
export async function preRegisteredRecord(c: PreRegistered): Promise<ClientRecord> {
  const record: ClientRecord = {
    clientId: c.clientId,
    redirectUris: [...c.redirectUris],
    tokenEndpointAuthMethod: c.tokenEndpointAuthMethod ??
      (c.clientSecret ? "client_secret_basic" : "none"),
    grantTypes: ["authorization_code", "refresh_token"],
    responseTypes: ["code"],
    applicationType: defaultApplicationType(c.redirectUris),
    clientIdIssuedAt: 0,
  };
  if (c.clientSecret !== undefined) record.clientSecretHash = await sha256Hex(c.clientSecret);
  if (c.clientName !== undefined) record.clientName = c.clientName;
  if (c.scopes !== undefined) record.allowedScopes = [...c.scopes];
  return record;
}

/** Pre-registered clients by id, built once per (frozen) config object. */
const preRegisteredCache = new WeakMap<GatewayConfig, Promise<Map<string, ClientRecord>>>();

function preRegisteredClients(config: GatewayConfig): Promise<Map<string, ClientRecord>> {
  let clients = preRegisteredCache.get(config);
  if (!clients) {
    clients = Promise.all(config.clients.map(preRegisteredRecord))
      .then((records) => new Map(records.map((r) => [r.clientId, r])));
    preRegisteredCache.set(config, clients);
  }
  return clients;
}

/**
 * Loads a registered client from KV: `null` when absent or idle for longer than
 * `registration.clientIdleDays`. A use refreshes `lastUsedAt` when it is a day old or more
 * (one conditional write; a lost race is harmless: someone else just wrote it).
 */
async function findRegisteredClient(
  deps: ClientLookupDeps,
  clientId: string,
): Promise<ClientRecord | null> {
  const entry = await deps.kv.get<ClientRecord>(clientKey(clientId));
  const client = entry.value;
  if (!client) return null;
  const now = deps.now();
  const idleMs = clientIdleMs(deps.config);
  const lastUsed = client.lastUsedAt ?? client.clientIdIssuedAt * 1000;
  if (now - lastUsed > idleMs) return null;
  if (now - lastUsed >= LAST_USED_WRITE_INTERVAL_MS) {
    const touched: ClientRecord = { ...client, lastUsedAt: now };
    await deps.kv.atomic().check(entry).set(entry.key, touched, { expireIn: idleMs }).commit();
    return touched;
  }
  return client;
}

/**
 * Finds the client named by `clientId`: pre-registered, then metadata document, then
 * registered (see the module documentation). `null` when unknown (or idle).
 * @throws {OAuthError} `invalid_client` when a metadata document cannot be fetched or is
 * invalid (the description says why); `/authorize` shows it on an error page.
 */
export async function findClient(
  deps: ClientLookupDeps,
  clientId: string,
): Promise<ClientRecord | null> {
  if (clientId.length === 0 || clientId.length > 2000) return null;
  const preRegistered = (await preRegisteredClients(deps.config)).get(clientId);
  if (preRegistered) return preRegistered;
  if (isClientIdMetadataUrl(clientId)) {
    if (!deps.config.clientIdMetadataDocuments.enabled) return null;
    return await resolveClientIdMetadata(deps, clientId, metadataOptions(deps.config));
  }
  if (clientId.length > 256) return null;
  return await findRegisteredClient(deps, clientId);
}

/** How metadata documents are fetched under a config. */
function metadataOptions(config: GatewayConfig): ResolveClientIdMetadataOptions {
  const cimd = config.clientIdMetadataDocuments;
  return {
    allowLoopback: cimd.allowLoopback,
    allowedSchemes: config.allowedPrivateUseSchemes,
    fetchLimits: {
      perHostPerMinute: cimd.fetchesPerHostPerMinute,
      perMinute: cimd.fetchesPerMinute,
    },
  };
}

/**
 * After a code was issued to `clientId`: a metadata-document client's document is now worth
 * keeping in KV ({@linkcode confirmClientIdMetadata}); other clients need nothing. Never fails
 * the authorization: a document that cannot be stored is simply fetched again later.
 */
export async function confirmClientUse(
  deps: ClientLookupDeps & { log: Logger },
  clientId: string,
): Promise<void> {
  if (!isClientIdMetadataUrl(clientId) || !deps.config.clientIdMetadataDocuments.enabled) return;
  try {
    await confirmClientIdMetadata(deps, clientId, metadataOptions(deps.config));
  } catch (error) {
    // The code is issued either way; the document is fetched again on its next use.
    if (error instanceof OAuthError) return;
    deps.log({
      level: "warn",
      event: "cimd_store_failed",
      error: error instanceof Error ? error.name : "unknown",
    });
  }
}

/** Whether `clientId` is one of the config's pre-registered clients (trusted by the operator). */
export function isPreRegistered(config: GatewayConfig, clientId: string): boolean {
  return config.clients.some((c) => c.clientId === clientId);
}
