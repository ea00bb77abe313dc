/**
 * Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document-00, as MCP
 * 2025-11-25 Authorization §Client ID Metadata Documents uses it): a `client_id` that is an
 * https URL names a JSON document of RFC 7591 §2 client metadata, which the gateway fetches,
 * validates and caches instead of a registration.
 *
 * Fetching: SSRF-guarded ({@linkcode checkFetchUrl}) right before the request, and the
 * connection goes to an address the guard checked (lib/infra/pinned_fetch.ts: the name is not
 * resolved again, so DNS rebinding cannot swap in a private address); no redirects followed, at
 * most {@linkcode CIMD_MAX_BYTES} read, at most {@linkcode CIMD_TIMEOUT_MS} for the whole
 * exchange, JSON content type only. Fetches are limited per document host and in total
 * (`clientIdMetadataDocuments.fetchesPerHostPerMinute`, `fetchesPerMinute`; 429 beyond).
 *
 * Caching (draft §4.3 "MUST NOT cache error responses" nor invalid documents): valid documents
 * only, for the response's `Cache-Control: max-age` clamped to [{@linkcode CIMD_CACHE_MIN_SECONDS},
 * {@linkcode CIMD_CACHE_MAX_SECONDS}], default {@linkcode CIMD_CACHE_DEFAULT_SECONDS};
 * `no-store`/`no-cache` → not cached. A freshly fetched document is kept only in a small
 * per-isolate LRU for at most {@linkcode CIMD_UNCONFIRMED_TTL_SECONDS}: anyone can make the
 * gateway fetch a URL, so nothing is written to KV until the document was used in a successful
 * authorization ({@linkcode confirmClientIdMetadata}, called when a code is issued), after which
 * it lives in KV at `["cimd", url]` (`expiresAt` checked on read) for its cache lifetime.
 * @module
 */
import { z } from "zod";
import { OAuthError, rateLimited } from "./oauth_error.ts";
import { defaultApplicationType, isLoopbackHost, validateRedirectUri } from "./redirect_uri.ts";
import { PinnedFetchError, pinnedGet } from "../infra/pinned_fetch.ts";
import { hit } from "../infra/rate_limit.ts";
import { checkFetchUrl, type DnsResolver, SsrfError } from "../infra/ssrf_guard.ts";
import { type ClientRecord, getLive, ttl } from "../store.ts";

/** Largest document read (draft §6.6 suggests about 5 KB). */
export const CIMD_MAX_BYTES = 5 * 1024;
/** Time allowed for the whole fetch, body included. */
export const CIMD_TIMEOUT_MS = 5_000;
/** Cache lifetime without `max-age`. */
export const CIMD_CACHE_DEFAULT_SECONDS = 300;
/** Lower bound of the cache lifetime (keeps a hostile `max-age=0` from forcing refetches). */
export const CIMD_CACHE_MIN_SECONDS = 60;
/** Upper bound of the cache lifetime. */
export const CIMD_CACHE_MAX_SECONDS = 86_400;
/** Longest client_id URL accepted (it becomes a KV key). */
export const CIMD_MAX_URL_LENGTH = 1000;
/** How long an isolate keeps a document no authorization has used yet (never in KV). */
export const CIMD_UNCONFIRMED_TTL_SECONDS = 60;
/** Documents kept per isolate (least recently used dropped first). */
export const CIMD_MEMORY_ENTRIES = 200;

/** A client described by a metadata document: a {@linkcode ClientRecord} plus its host. */
export interface MetadataDocumentClient extends ClientRecord {
  /** Marks a metadata-document client; the consent page shows it prominently (draft §6.1). */
  metadataDocumentHost: string;
  tokenEndpointAuthMethod: "none";
}

/** Options of {@linkcode resolveClientIdMetadata}. */
export interface ResolveClientIdMetadataOptions {
  /** Development/tests only: allow http and loopback document URLs. */
  allowLoopback?: boolean;
  /** Overrides {@linkcode CIMD_TIMEOUT_MS} (tests). */
  timeoutMs?: number;
  /** DNS resolver for the SSRF guard; defaults to `Deno.resolveDns`. */
  resolveDns?: DnsResolver;
  /** The config's `allowedPrivateUseSchemes`, for the document's redirect URIs. */
  allowedSchemes?: readonly string[];
  /** Fetch limits (`clientIdMetadataDocuments.fetchesPerHostPerMinute`, `fetchesPerMinute`). */
  fetchLimits?: { perHostPerMinute: number; perMinute: number };
  /** Extra root certificates (PEM) for https documents: tests with a private CA only. */
  caCerts?: string[];
}

/** What {@linkcode resolveClientIdMetadata} needs from `Deps`. */
export interface ClientIdMetadataDeps {
  kv: Deno.Kv;
  now: () => number;
}

interface CachedDocument {
  client: MetadataDocumentClient;
  expiresAt: number;
}

/** A document in an isolate's memory. */
interface RememberedDocument extends CachedDocument {
  /** Served from memory until then (at most the unconfirmed TTL until it is in KV). */
  memoryUntil: number;
  /** Whether it is stored in KV (a successful authorization used it, or it came from KV). */
  stored: boolean;
}

/** KV key of a cached document. */
export const cimdKey = (url: string): Deno.KvKey => ["cimd", url];

/** Per-isolate cache, one map per KV handle (so tests with their own KV do not share it). */
const memory = new WeakMap<Deno.Kv, Map<string, RememberedDocument>>();

/**
 * Whether a `client_id` is URL-shaped (`https://…`, or `http://…` for the development
 * setting) and so must be treated as a metadata document URL rather than a registered id.
 * Registered ids are random base64url strings and never contain `://`. Whether the URL is
 * acceptable is decided by {@linkcode resolveClientIdMetadata}.
 */
export function isClientIdMetadataUrl(clientId: string): boolean {
  return /^https?:\/\//i.test(clientId);
}

function fail(clientId: string, why: string): OAuthError {
  return new OAuthError("invalid_client", `client metadata document ${clientId}: ${why}`);
}

/**
 * Checks the form of a client identifier URL (draft §3): https, a path other than `/`, no
 * dot segments, no fragment, no userinfo; and in normalized form, since the document's
 * `client_id` is compared to it by simple string comparison (RFC 3986 §6.2.1).
 * @throws {OAuthError} `invalid_client`
 */
export function validateClientIdUrl(clientId: string, allowLoopback = false): URL {
  const bad = (why: string) => fail(clientId, why);
  if (clientId.length > CIMD_MAX_URL_LENGTH) {
    throw bad(`must be at most ${CIMD_MAX_URL_LENGTH} characters`);
  }
  if (clientId.includes("#")) throw bad("must not contain a fragment");
  let url: URL;
  try {
    url = new URL(clientId);
  } catch {
    throw bad("is not a URL");
  }
  const loopbackHttp = allowLoopback && url.protocol === "http:" && isLoopbackHost(url.hostname);
  if (url.protocol !== "https:" && !loopbackHttp) throw bad("must use the https scheme");
  if (url.username || url.password) throw bad("must not contain a username or password");
  const rawPath = clientId.replace(/^[a-z]+:\/\/[^/?]*/i, "").replace(/\?.*$/, "");
  if (rawPath.split("/").some((s) => /^(\.|%2e){1,2}$/i.test(s))) {
    throw bad('must not contain "." or ".." path segments');
  }
  if (url.pathname === "/" || url.pathname === "") throw bad("must contain a path");
  if (url.href !== clientId) throw bad(`must be in normalized form (${url.href})`);
  return url;
}

const httpUrl = z.string().max(2000).refine((s) => {
  try {
    return ["https:", "http:"].includes(new URL(s).protocol);
  } catch {
    return false;
  }
}, "must be an http(s) URL");

/**
 * The document's schema (RFC 7591 §2 fields; unknown fields are ignored per §2). MCP
 * 2025-11-25 requires `client_id`, `client_name` and `redirect_uris`.
 */
const documentSchema = z.object({
  client_id: z.string(),
  client_name: z.string().min(1).max(200),
  redirect_uris: z.array(z.string()).min(1, "must list at least one URI").max(20),
  token_endpoint_auth_method: z.string().optional(),
  grant_types: z.array(z.string()).min(1).optional(),
  response_types: z.array(z.string()).min(1).optional(),
  application_type: z.enum(["web", "native"]).optional(),
  client_uri: httpUrl.optional(),
  logo_uri: httpUrl.optional(),
  scope: z.string().min(1).max(1000).optional(),
  software_id: z.string().min(1).max(200).optional(),
  software_version: z.string().min(1).max(100).optional(),
});

/** Grant types a document may list; others (implicit, password, client_credentials…) refuse. */
const KNOWN_GRANTS = new Set(["authorization_code", "refresh_token"]);

/**
 * Validates a fetched document against its URL and turns it into a client record.
 * @throws {OAuthError} `invalid_client` naming the field.
 */
export function parseClientIdMetadataDocument(
  url: URL,
  doc: unknown,
  now: number,
  allowedSchemes?: readonly string[],
): MetadataDocumentClient {
  const clientId = url.href;
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw fail(clientId, "is not a JSON object");
  }
  // Draft §4.1: a document establishes no shared secret.
  for (const field of ["client_secret", "client_secret_expires_at"]) {
    if (field in doc) throw fail(clientId, `"${field}" must not be present`);
  }
  const result = documentSchema.safeParse(doc);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw fail(clientId, `"${issue.path.map(String).join(".")}": ${issue.message}`);
  }
  const d = result.data;
  if (d.client_id !== clientId) {
    throw fail(clientId, '"client_id" does not equal the document URL (draft §4.1)');
  }
  if (d.token_endpoint_auth_method !== undefined && d.token_endpoint_auth_method !== "none") {
    throw fail(clientId, '"token_endpoint_auth_method" must be "none"');
  }
  for (const uri of d.redirect_uris) {
    try {
      validateRedirectUri(uri, allowedSchemes);
    } catch (e) {
      throw fail(clientId, e instanceof OAuthError ? e.message : "invalid redirect URI");
    }
  }
  const grantTypes = [...new Set(d.grant_types ?? ["authorization_code"])];
  const unknownGrant = grantTypes.find((g) => !KNOWN_GRANTS.has(g));
  if (unknownGrant) throw fail(clientId, `grant type "${unknownGrant}" is not supported`);
  if (!grantTypes.includes("authorization_code")) {
    throw fail(clientId, '"grant_types" must include "authorization_code"');
  }
  const responseTypes = [...new Set(d.response_types ?? ["code"])];
  if (responseTypes.length !== 1 || responseTypes[0] !== "code") {
    throw fail(clientId, '"response_types" must be ["code"]');
  }
  const record: MetadataDocumentClient = {
    clientId,
    clientName: d.client_name,
    clientUri: d.client_uri,
    logoUri: d.logo_uri,
    redirectUris: d.redirect_uris,
    tokenEndpointAuthMethod: "none",
    grantTypes,
    responseTypes,
    applicationType: d.application_type ?? defaultApplicationType(d.redirect_uris),
    scope: d.scope,
    softwareId: d.software_id,
    softwareVersion: d.software_version,
    clientIdIssuedAt: Math.floor(now / 1000),
    metadataDocumentHost: url.host,
  };
  for (const k of Object.keys(record) as (keyof MetadataDocumentClient)[]) {
    if (record[k] === undefined) delete record[k];
  }
  return record;
}

/**
 * Cache lifetime in seconds from a `Cache-Control` header (RFC 9111 §5.2.2): `null` for
 * `no-store`/`no-cache`, else `max-age` clamped to [60 s, 24 h], default 5 min.
 */
export function cacheLifetimeSeconds(cacheControl: string | null): number | null {
  const directives = (cacheControl ?? "").toLowerCase().split(",").map((d) => d.trim());
  if (directives.some((d) => d === "no-store" || d === "no-cache" || d.startsWith("no-cache="))) {
    return null;
  }
  const maxAge = directives.map((d) => /^max-age="?(\d+)"?$/.exec(d)).find((m) => m);
  const seconds = maxAge ? Number(maxAge[1]) : CIMD_CACHE_DEFAULT_SECONDS;
  return Math.min(CIMD_CACHE_MAX_SECONDS, Math.max(CIMD_CACHE_MIN_SECONDS, seconds));
}

function isJsonType(contentType: string | null): boolean {
  const type = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  return type === "application/json" || /^application\/[a-z0-9.!#$&^_-]+\+json$/.test(type);
}

/** The window of the document fetch limits. */
const FETCH_WINDOW_MS = 60_000;

/**
 * Counts one document fetch against the limits per host and in total (KV, so across isolates).
 * @throws {OAuthError} 429 `temporarily_unavailable` with `Retry-After` past either limit.
 */
async function limitFetches(
  deps: ClientIdMetadataDeps,
  url: URL,
  limits: NonNullable<ResolveClientIdMetadataOptions["fetchLimits"]>,
): Promise<void> {
  const now = deps.now();
  const perHost = limits.perHostPerMinute;
  const host = await hit(deps.kv, "cimd_fetch_host", url.host, perHost, FETCH_WINDOW_MS, now);
  if (!host.allowed) {
    throw rateLimited(
      `too many client metadata documents fetched from ${url.host}; ` +
        `retry after ${host.retryAfterSeconds} s`,
      host.retryAfterSeconds,
    );
  }
  const all = await hit(deps.kv, "cimd_fetch", "all", limits.perMinute, FETCH_WINDOW_MS, now);
  if (!all.allowed) {
    throw rateLimited(
      `too many client metadata documents fetched in total; retry after ${all.retryAfterSeconds} s`,
      all.retryAfterSeconds,
    );
  }
}

async function fetchDocument(
  deps: ClientIdMetadataDeps,
  url: URL,
  options: ResolveClientIdMetadataOptions,
): Promise<{ doc: unknown; cacheControl: string | null }> {
  const clientId = url.href;
  let addresses: string[];
  try {
    ({ addresses } = await checkFetchUrl(url, {
      allowLoopback: options.allowLoopback,
      resolveDns: options.resolveDns,
    }));
  } catch (e) {
    if (e instanceof SsrfError) throw fail(clientId, `may not be fetched: ${e.message}`);
    throw e;
  }
  if (options.fetchLimits) await limitFetches(deps, url, options.fetchLimits);
  const timeoutMs = options.timeoutMs ?? CIMD_TIMEOUT_MS;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const res = await pinnedGet({
      url,
      addresses,
      headers: { accept: "application/json", "user-agent": "mcp-edge-gateway" },
      maxBodyBytes: CIMD_MAX_BYTES,
      signal: controller.signal,
      caCerts: options.caCerts,
    });
    if (res.status >= 300 && res.status < 400) {
      throw fail(clientId, `answered a redirect (HTTP ${res.status}); redirects are not followed`);
    }
    if (res.status !== 200) throw fail(clientId, `answered HTTP ${res.status}`);
    if (!isJsonType(res.headers.get("content-type"))) {
      throw fail(clientId, "is not served as JSON (application/json)");
    }
    if (!res.body) throw fail(clientId, `is larger than ${CIMD_MAX_BYTES} bytes`);
    let doc: unknown;
    try {
      doc = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(res.body));
    } catch {
      throw fail(clientId, "is not valid JSON");
    }
    return { doc, cacheControl: res.headers.get("cache-control") };
  } catch (e) {
    if (e instanceof OAuthError) throw e;
    if (controller.signal.aborted) throw fail(clientId, `took longer than ${timeoutMs} ms`);
    const why = e instanceof PinnedFetchError ? ` (${e.message})` : "";
    throw fail(clientId, `could not be fetched${why}`);
  } finally {
    clearTimeout(timer);
  }
}

function memoryOf(kv: Deno.Kv): Map<string, RememberedDocument> {
  let map = memory.get(kv);
  if (!map) memory.set(kv, map = new Map());
  return map;
}

function remember(kv: Deno.Kv, url: string, entry: RememberedDocument): void {
  const map = memoryOf(kv);
  map.delete(url);
  if (map.size >= CIMD_MEMORY_ENTRIES) map.delete(map.keys().next().value!);
  map.set(url, entry);
}

/**
 * Resolves a URL `client_id` to its client: from the per-isolate cache, else KV, else by
 * fetching and validating the document (then kept in memory only, see the module
 * documentation). Errors are never cached (draft §4.3).
 * @throws {OAuthError} `invalid_client` with a description of what is wrong, or 429
 * `temporarily_unavailable` when the fetch limits are reached.
 */
export async function resolveClientIdMetadata(
  deps: ClientIdMetadataDeps,
  clientId: string,
  options: ResolveClientIdMetadataOptions = {},
): Promise<MetadataDocumentClient> {
  const url = validateClientIdUrl(clientId, options.allowLoopback);
  const now = deps.now();
  const map = memoryOf(deps.kv);
  const hit = map.get(clientId);
  if (hit && hit.memoryUntil > now && hit.expiresAt > now) {
    remember(deps.kv, clientId, hit); // most recently used
    return hit.client;
  }
  const stored = await getLive<CachedDocument>(deps.kv, cimdKey(clientId), now);
  if (stored) {
    const { client, expiresAt } = stored.value;
    remember(deps.kv, clientId, { client, expiresAt, memoryUntil: expiresAt, stored: true });
    return client;
  }
  const { doc, cacheControl } = await fetchDocument(deps, url, options);
  const fetchedAt = deps.now();
  const client = parseClientIdMetadataDocument(url, doc, fetchedAt, options.allowedSchemes);
  const lifetime = cacheLifetimeSeconds(cacheControl);
  if (lifetime !== null) {
    const expiresAt = fetchedAt + lifetime * 1000;
    const memoryUntil = Math.min(expiresAt, fetchedAt + CIMD_UNCONFIRMED_TTL_SECONDS * 1000);
    remember(deps.kv, clientId, { client, expiresAt, memoryUntil, stored: false });
  } else {
    map.delete(clientId);
  }
  return client;
}

/**
 * Stores a document in KV, for its cache lifetime, once it was used in a successful
 * authorization (a code was issued to its client). When another isolate fetched it, it is
 * resolved here first (memory, KV, or one more limited fetch). A no-op for documents already
 * in KV or not cacheable (`no-store`).
 * @throws {OAuthError} as {@linkcode resolveClientIdMetadata}
 */
export async function confirmClientIdMetadata(
  deps: ClientIdMetadataDeps,
  clientId: string,
  options: ResolveClientIdMetadataOptions = {},
): Promise<void> {
  if (!memory.get(deps.kv)?.has(clientId)) await resolveClientIdMetadata(deps, clientId, options);
  const entry = memory.get(deps.kv)?.get(clientId);
  const now = deps.now();
  if (!entry || entry.stored || entry.expiresAt <= now) return;
  const cached: CachedDocument = { client: entry.client, expiresAt: entry.expiresAt };
  await deps.kv.set(cimdKey(clientId), cached, { expireIn: ttl(entry.expiresAt, now) });
  entry.stored = true;
  entry.memoryUntil = entry.expiresAt;
}

/**
 * Whether every redirect URI of a client is on a loopback host: the consent page then warns
 * that the code goes to a program on the user's own machine (MCP 2025-11-25 Security Best
 * Practices §Confused Deputy; issue: "warns when every redirect URI is on localhost").
 */
export function allRedirectUrisLoopback(client: Pick<ClientRecord, "redirectUris">): boolean {
  return client.redirectUris.every((uri) => {
    try {
      const u = new URL(uri);
      return (u.protocol === "http:" || u.protocol === "https:") && isLoopbackHost(u.hostname);
    } catch {
      return false;
    }
  });
}
