/**
 * Who the gateway is at a backend's authorization server, in this order (issue 9):
 *
 * 1. the configured `auth.clientId` / `auth.clientSecret`;
 * 2. its own Client ID Metadata Document, `${PUBLIC_URL}/oauth/client.json` (MCP 2025-11-25
 *    Authorization §Client ID Metadata Documents), when the server advertises
 *    `client_id_metadata_document_supported` and `PUBLIC_URL` is https (a document's URL must be);
 * 3. dynamic registration (RFC 7591), once per backend and issuer, kept in KV
 *    (`["backend_client", backend, issuer]`, its secret sealed).
 *
 * When a server refuses the chosen identity (an `invalid_client` / `unauthorized_client` answer),
 * {@linkcode clientRefused} remembers it and the next connect falls back to the next way; every
 * fallback is logged with its reason.
 */
import { z } from "zod";
import type { BackendConfig } from "../config.ts";
import type { Deps } from "../deps.ts";
import { backendClientKey, type BackendClientRecord, type BackendOAuthInfo } from "../store.ts";
import type { AuthServerInfo } from "./backend_oauth_discovery.ts";
import { seal, unseal } from "./encryption.ts";
import { BackendAuthError, jsonObject, outboundRequest } from "./outbound.ts";

/** How the gateway authenticates at a backend's token endpoint (RFC 6749 §2.3). */
export type ClientAuthMethod = "none" | "client_secret_basic" | "client_secret_post";

/** The gateway's identity at one authorization server. */
export interface BackendClient {
  method: BackendOAuthInfo["clientMethod"];
  clientId: string;
  clientSecret?: string;
  authMethod: ClientAuthMethod;
}

type IdentityDeps = Pick<Deps, "kv" | "now" | "fetch" | "log" | "config" | "settings">;

/** The redirect URI of a backend's connect flow (register it at a hand-made client). */
export function connectCallbackUrl(publicUrl: string, backend: string): string {
  return `${publicUrl}/connect/${backend}/callback`;
}

/** The URL of the gateway's Client ID Metadata Document: also its `client_id` there. */
export function clientMetadataDocumentUrl(publicUrl: string): string {
  return `${publicUrl}/oauth/client.json`;
}

function configuredClient(backend: BackendConfig): BackendClient | null {
  const auth = backend.auth;
  if (auth?.type !== "oauth" || auth.clientId === undefined) return null;
  return {
    method: "configured",
    clientId: auth.clientId,
    ...(auth.clientSecret !== undefined ? { clientSecret: auth.clientSecret } : {}),
    authMethod: auth.tokenEndpointAuthMethod ??
      (auth.clientSecret !== undefined ? "client_secret_basic" : "none"),
  };
}

/** Why the metadata document is not used at `server`, or `null` when it may be. */
function metadataDocumentUnusable(
  deps: IdentityDeps,
  server: AuthServerInfo,
  record: BackendClientRecord | null,
): string | null {
  if (!server.metadataDocumentSupported) {
    return "the server does not advertise client_id_metadata_document_supported";
  }
  if (!deps.settings.publicUrl.startsWith("https://")) {
    return "PUBLIC_URL is not https (a metadata document's URL must be)";
  }
  if (record?.metadataDocumentRefusedAt !== undefined) {
    return "the server refused the gateway's metadata document before";
  }
  return null;
}

const logged = new WeakMap<Deno.Kv, Set<string>>();

/** Logs a fallback between identities, once per isolate, backend, issuer and reason. */
function logFallback(
  deps: IdentityDeps,
  backend: string,
  issuer: string,
  from: string,
  to: string,
  reason: string,
): void {
  let seen = logged.get(deps.kv);
  if (!seen) logged.set(deps.kv, seen = new Set());
  const key = `${backend}\n${issuer}\n${from}\n${reason}`;
  if (seen.has(key)) return;
  seen.add(key);
  deps.log({ level: "warn", event: "backend_client_fallback", backend, issuer, from, to, reason });
}

/** The method to register with: the server's preference among ours (RFC 8414 §2 default basic). */
function registrationAuthMethod(server: AuthServerInfo): ClientAuthMethod {
  const offered = server.authMethods ?? ["client_secret_basic"];
  return (["client_secret_basic", "client_secret_post", "none"] as const)
    .find((m) => offered.includes(m)) ?? "none";
}

const registrationResponse = z.object({
  client_id: z.string().min(1).max(500),
  client_secret: z.string().min(1).max(2000).optional(),
  token_endpoint_auth_method: z.enum(["none", "client_secret_basic", "client_secret_post"])
    .optional(),
});

/** Registers the gateway at `server` (RFC 7591 §3.1). @throws {BackendAuthError} */
async function register(
  deps: IdentityDeps,
  backend: BackendConfig,
  server: AuthServerInfo,
  redirectUri: string,
): Promise<NonNullable<BackendClientRecord["registration"]> & { clientSecret?: string }> {
  const what = `dynamic registration at ${server.issuer}`;
  const authMethod = registrationAuthMethod(server);
  const res = await outboundRequest(backend, server.registrationEndpoint!, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({
      client_name: deps.config.serverName,
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: authMethod,
      application_type: "web",
      client_uri: deps.settings.publicUrl,
    }),
  }, what);
  if (res.status >= 500) throw new BackendAuthError(`${what} answered HTTP ${res.status}`, true);
  const parsed = registrationResponse.safeParse(jsonObject(res.text));
  if (res.status !== 201 && res.status !== 200 || !parsed.success) {
    const error = jsonObject(res.text)?.error;
    throw new BackendAuthError(
      `${what} was refused (HTTP ${res.status}${
        typeof error === "string" ? `, ${error.slice(0, 60)}` : ""
      })`,
    );
  }
  const r = parsed.data;
  const method = r.token_endpoint_auth_method ?? (r.client_secret ? authMethod : "none");
  return {
    clientId: r.client_id,
    authMethod: r.client_secret ? method : "none",
    redirectUri,
    registeredAt: deps.now(),
    ...(r.client_secret ? { clientSecret: r.client_secret } : {}),
  };
}

/** The registration of a record, its secret unsealed. */
async function registeredClient(
  deps: IdentityDeps,
  key: Deno.KvKey,
  registration: NonNullable<BackendClientRecord["registration"]>,
): Promise<BackendClient> {
  const client: BackendClient = {
    method: "dcr",
    clientId: registration.clientId,
    authMethod: registration.authMethod,
  };
  if (registration.sealedSecret) {
    const { clientSecret } = await unseal<{ clientSecret: string }>(
      deps.settings.encryptionKey!,
      key,
      registration.sealedSecret,
    );
    client.clientSecret = clientSecret;
  }
  return client;
}

/** The gateway's registration at `server`, registering once if there is none. */
async function dynamicClient(
  deps: IdentityDeps,
  backend: BackendConfig,
  server: AuthServerInfo,
): Promise<BackendClient> {
  const key = backendClientKey(backend.name, server.issuer);
  const redirectUri = connectCallbackUrl(deps.settings.publicUrl, backend.name);
  const entry = await deps.kv.get<BackendClientRecord>(key);
  const existing = entry.value?.registration;
  if (existing && existing.redirectUri === redirectUri) {
    return await registeredClient(deps, key, existing);
  }
  if (!server.registrationEndpoint) {
    throw new BackendAuthError(
      `the authorization server ${server.issuer} of backend ${backend.name} neither accepts ` +
        "the gateway's metadata document nor offers dynamic registration: register a client " +
        `with redirect URI ${redirectUri} and set auth.clientId`,
    );
  }
  const fresh = await register(deps, backend, server, redirectUri);
  const { clientSecret, ...registration } = fresh;
  if (clientSecret) {
    registration.sealedSecret = await seal(deps.settings.encryptionKey!, key, { clientSecret });
  }
  const record: BackendClientRecord = { ...entry.value, registration };
  const { ok } = await deps.kv.atomic().check(entry).set(key, record).commit();
  if (!ok) {
    // Another isolate registered at the same moment: use its registration.
    const winner = (await deps.kv.get<BackendClientRecord>(key)).value?.registration;
    if (winner) return await registeredClient(deps, key, winner);
  }
  deps.log({
    event: "backend_client_registered",
    backend: backend.name,
    issuer: server.issuer,
    client_id: registration.clientId,
  });
  return {
    method: "dcr",
    clientId: registration.clientId,
    authMethod: registration.authMethod,
    ...(clientSecret ? { clientSecret } : {}),
  };
}

/**
 * The identity to start a connect with at `server` (see the module doc).
 * @throws {BackendAuthError} when none is possible, or registration fails
 */
export async function chooseBackendClient(
  deps: IdentityDeps,
  backend: BackendConfig,
  server: AuthServerInfo,
): Promise<BackendClient> {
  const configured = configuredClient(backend);
  if (configured) return configured;
  const record =
    (await deps.kv.get<BackendClientRecord>(backendClientKey(backend.name, server.issuer)))
      .value;
  const unusable = metadataDocumentUnusable(deps, server, record);
  if (unusable === null) {
    return {
      method: "cimd",
      clientId: clientMetadataDocumentUrl(deps.settings.publicUrl),
      authMethod: "none",
    };
  }
  logFallback(
    deps,
    backend.name,
    server.issuer,
    "metadata document",
    "dynamic registration",
    unusable,
  );
  return await dynamicClient(deps, backend, server);
}

/**
 * The identity a connection's tokens were issued to, for refresh and revocation.
 * @throws {BackendAuthError} when that identity is gone (e.g. its registration was dropped)
 */
export async function clientOfConnection(
  deps: IdentityDeps,
  backend: BackendConfig,
  info: BackendOAuthInfo,
): Promise<BackendClient> {
  if (info.clientMethod === "configured") {
    const configured = configuredClient(backend);
    if (configured?.clientId === info.clientId) return configured;
  } else if (info.clientMethod === "cimd") {
    return { method: "cimd", clientId: info.clientId, authMethod: "none" };
  } else {
    const key = backendClientKey(backend.name, info.issuer);
    const registration = (await deps.kv.get<BackendClientRecord>(key)).value?.registration;
    if (registration?.clientId === info.clientId) {
      return await registeredClient(deps, key, registration);
    }
  }
  throw new BackendAuthError(`the gateway's client at ${info.issuer} changed; connect again`);
}

/**
 * The server refused `client` (`invalid_client` / `unauthorized_client`): the next connect
 * falls back to the next identity (a refused metadata document → registration; a refused
 * registration → a new one). Logged with `why`.
 */
export async function clientRefused(
  deps: IdentityDeps,
  backend: string,
  issuer: string,
  client: Pick<BackendClient, "method" | "clientId">,
  why: string,
): Promise<void> {
  const key = backendClientKey(backend, issuer);
  const entry = await deps.kv.get<BackendClientRecord>(key);
  let record: BackendClientRecord | null = null;
  if (client.method === "cimd") {
    record = { ...entry.value, metadataDocumentRefusedAt: deps.now() };
  } else if (client.method === "dcr" && entry.value?.registration?.clientId === client.clientId) {
    const { registration: _, ...rest } = entry.value;
    record = rest;
  }
  if (record) await deps.kv.atomic().check(entry).set(key, record).commit();
  const to = client.method === "configured" ? "(none: fix auth.clientId)" : "dynamic registration";
  logFallback(deps, backend, issuer, client.method, to, `refused: ${why.slice(0, 120)}`);
}

/**
 * The gateway's Client ID Metadata Document (served at `/oauth/client.json`): a public client
 * (`none`, PKCE) whose redirect URIs are the callbacks of the `oauth` backends, or `null` when
 * there is none. Its `client_id` is its own URL (MCP 2025-11-25 §Client ID Metadata Documents).
 */
export function clientMetadataDocument(
  deps: Pick<Deps, "config" | "settings">,
): Record<string, unknown> | null {
  const base = deps.settings.publicUrl;
  const redirectUris = deps.config.backends.filter((b) => b.auth?.type === "oauth")
    .map((b) => connectCallbackUrl(base, b.name));
  if (redirectUris.length === 0) return null;
  return {
    client_id: clientMetadataDocumentUrl(base),
    client_name: deps.config.serverName,
    client_uri: base,
    redirect_uris: redirectUris,
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    token_endpoint_auth_method: "none",
    application_type: "web",
  };
}
