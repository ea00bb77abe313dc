/**
 * Dynamic client registration (RFC 7591): validating client metadata, storing the client and
 * rendering the registration response. Secrets are returned once and stored as SHA-256 hashes.
 */
import { z } from "zod";
import { randomToken, sha256Hex } from "../infra/crypto.ts";
import { OAuthError } from "./oauth_error.ts";
import { defaultApplicationType, validateRedirectUri } from "./redirect_uri.ts";
import { clientKey, type ClientRecord } from "../store.ts";

/** Largest registration request body (bytes). */
export const REGISTER_BODY_LIMIT = 16 * 1024;

const text = (max: number) => z.string().min(1).max(max);
const webUrl = z.string().max(2000).refine((s) => {
  try {
    return ["https:", "http:"].includes(new URL(s).protocol);
  } catch {
    return false;
  }
}, "must be an http(s) URL");

/**
 * Zod schema of the client metadata this gateway understands (RFC 7591 §2). Unknown fields are
 * dropped, as §2 asks ("the authorization server MUST ignore any client metadata ... that it
 * does not understand").
 */
export const clientMetadataSchema = z.object({
  redirect_uris: z.array(z.string()).min(1, "must list at least one URI").max(20),
  token_endpoint_auth_method: z.enum(["none", "client_secret_basic", "client_secret_post"])
    .default("client_secret_basic"),
  grant_types: z.array(z.enum(["authorization_code", "refresh_token"])).min(1)
    .default(["authorization_code"]),
  response_types: z.array(z.enum(["code"])).min(1).default(["code"]),
  // Absent → from the redirect URIs (see `parseClientMetadata`).
  application_type: z.enum(["web", "native"]).optional(),
  client_name: text(200).optional(),
  client_uri: webUrl.optional(),
  logo_uri: webUrl.optional(),
  scope: text(1000).optional(),
  software_id: text(200).optional(),
  software_version: text(100).optional(),
});

/** Client metadata after validation (snake_case, as on the wire), `application_type` decided. */
export type ClientMetadata = z.output<typeof clientMetadataSchema> & {
  application_type: "web" | "native";
};

function fieldName(path: readonly PropertyKey[]): string {
  return path.map(String).join(".") || "body";
}

/**
 * Parses a registration request body (RFC 7591 §3.1). `allowedSchemes`: the config's
 * `allowedPrivateUseSchemes` (see `validateRedirectUri`).
 * @throws {OAuthError} `invalid_redirect_uri` for a bad redirect URI, else
 * `invalid_client_metadata` naming the field (RFC 7591 §3.2.2).
 */
export function parseClientMetadata(
  body: unknown,
  allowedSchemes?: readonly string[],
): ClientMetadata {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new OAuthError("invalid_client_metadata", "the body must be a JSON object");
  }
  const result = clientMetadataSchema.safeParse(body);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const field = fieldName(issue.path);
    const code = issue.path[0] === "redirect_uris"
      ? "invalid_redirect_uri"
      : "invalid_client_metadata";
    throw new OAuthError(code, `"${field}": ${issue.message}`);
  }
  const meta = {
    ...result.data,
    // OIDC Dynamic Client Registration §2 defaults to "web"; a client whose every redirect URI
    // is loopback or a private-use scheme is a native app (RFC 8252 §7), so that is the default.
    application_type: result.data.application_type ??
      defaultApplicationType(result.data.redirect_uris),
  };
  for (const uri of meta.redirect_uris) validateRedirectUri(uri, allowedSchemes);
  meta.grant_types = [...new Set(meta.grant_types)];
  meta.response_types = [...new Set(meta.response_types)];
  // RFC 7591 §2.1: response_type "code" goes with grant_type "authorization_code".
  if (!meta.grant_types.includes("authorization_code")) {
    throw new OAuthError(
      "invalid_client_metadata",
      '"grant_types" must include "authorization_code" (the only way to obtain a grant here)',
    );
  }
  return meta;
}

/** A client just registered, with its secret in clear when confidential (returned once). */
export interface RegisteredClient {
  record: ClientRecord;
  clientSecret?: string;
}

/**
 * Creates a client from validated metadata and stores it at `["client", clientId]`, with
 * `lastUsedAt = now` and `idleMs` as the clean-up hint (`expireIn`); lookups go through
 * `findClient` (lib/oauth/clients.ts), which enforces the idle period.
 */
export async function registerClient(
  kv: Deno.Kv,
  meta: ClientMetadata,
  now: number,
  idleMs?: number,
): Promise<RegisteredClient> {
  const clientId = randomToken(16);
  const confidential = meta.token_endpoint_auth_method !== "none";
  const clientSecret = confidential ? randomToken() : undefined;
  const record: ClientRecord = {
    clientId,
    clientSecretHash: clientSecret ? await sha256Hex(clientSecret) : undefined,
    clientName: meta.client_name,
    clientUri: meta.client_uri,
    logoUri: meta.logo_uri,
    redirectUris: meta.redirect_uris,
    tokenEndpointAuthMethod: meta.token_endpoint_auth_method,
    grantTypes: meta.grant_types,
    responseTypes: meta.response_types,
    applicationType: meta.application_type,
    scope: meta.scope,
    softwareId: meta.software_id,
    softwareVersion: meta.software_version,
    clientIdIssuedAt: Math.floor(now / 1000),
    lastUsedAt: now,
  };
  for (const k of Object.keys(record) as (keyof ClientRecord)[]) {
    if (record[k] === undefined) delete record[k];
  }
  const { ok } = await kv.atomic().check({ key: clientKey(clientId), versionstamp: null })
    .set(clientKey(clientId), record, idleMs ? { expireIn: idleMs } : undefined).commit();
  if (!ok) throw new Error("client id collision");
  return { record, clientSecret };
}

/** The RFC 7591 §3.2.1 client information response. */
export function registrationResponse(client: RegisteredClient): Record<string, unknown> {
  const r = client.record;
  const body: Record<string, unknown> = {
    client_id: r.clientId,
    client_id_issued_at: r.clientIdIssuedAt,
  };
  if (client.clientSecret !== undefined) {
    body.client_secret = client.clientSecret;
    body.client_secret_expires_at = 0;
  }
  Object.assign(body, {
    redirect_uris: r.redirectUris,
    token_endpoint_auth_method: r.tokenEndpointAuthMethod,
    grant_types: r.grantTypes,
    response_types: r.responseTypes,
    application_type: r.applicationType,
    client_name: r.clientName,
    client_uri: r.clientUri,
    logo_uri: r.logoUri,
    scope: r.scope,
    software_id: r.softwareId,
    software_version: r.softwareVersion,
  });
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
  return body;
}
