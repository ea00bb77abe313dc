/**
 * Test fixtures that write clients and authorization codes straight into KV, hashed exactly as
 * `/register` and `/authorize` do, so token-endpoint tests need neither route.
 */
import { assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { randomToken, s256, sha256Hex } from "../lib/infra/crypto.ts";
import type { Deps } from "../lib/deps.ts";
import { clientKey, type ClientRecord, codeKey, type CodeRecord } from "../lib/store.ts";

/** A client stored in KV, with its clear secret (confidential clients only). */
export interface StoredClient {
  client: ClientRecord;
  secret?: string;
}

/** Stores a client (RFC 7591 §3.2.1 shape); confidential methods get a random secret. */
export async function putClient(
  deps: Deps,
  options: {
    method?: ClientRecord["tokenEndpointAuthMethod"];
    clientId?: string;
    secret?: string;
    redirectUri?: string;
    grantTypes?: string[];
  } = {},
): Promise<StoredClient> {
  const method = options.method ?? "none";
  const secret = method === "none" ? undefined : options.secret ?? randomToken();
  const client: ClientRecord = {
    clientId: options.clientId ?? crypto.randomUUID(),
    clientSecretHash: secret === undefined ? undefined : await sha256Hex(secret),
    clientName: "Test client",
    redirectUris: [options.redirectUri ?? "http://127.0.0.1:33418/callback"],
    tokenEndpointAuthMethod: method,
    grantTypes: options.grantTypes ?? ["authorization_code", "refresh_token"],
    responseTypes: ["code"],
    applicationType: "native",
    clientIdIssuedAt: Math.floor(deps.now() / 1000),
  };
  if (client.clientSecretHash === undefined) delete client.clientSecretHash;
  await deps.kv.set(clientKey(client.clientId), client);
  return { client, secret };
}

/** An authorization code stored in KV, with its clear value and PKCE verifier. */
export interface StoredCode {
  code: string;
  verifier: string;
  record: CodeRecord;
}

/** Stores an authorization code as an approved consent would (60 s lifetime, RFC 6749 §4.1.2). */
export async function putCode(
  deps: Deps,
  client: ClientRecord,
  options: { scope?: string; resource?: string; redirectUri?: string } = {},
): Promise<StoredCode> {
  const code = randomToken();
  const verifier = randomToken(48);
  const record: CodeRecord = {
    clientId: client.clientId,
    redirectUri: options.redirectUri ?? client.redirectUris[0]!,
    codeChallenge: await s256(verifier),
    scope: options.scope ?? "mcp",
    resource: options.resource ?? `${deps.settings.publicUrl}/mcp`,
    expiresAt: deps.now() + 60_000,
  };
  await deps.kv.set(codeKey(await sha256Hex(code)), record, { expireIn: 60_000 });
  return { code, verifier, record };
}

/** A form POST to the in-process gateway (`application/x-www-form-urlencoded`). */
export function formRequest(
  path: string,
  fields: Record<string, string>,
  headers: Record<string, string> = {},
): Request {
  return new Request(`http://localhost:8000${path}`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
    body: new URLSearchParams(fields),
  });
}

/** The `Authorization: Basic` value for a client (RFC 6749 §2.3.1: both halves form-encoded). */
export function basicAuth(clientId: string, secret: string): string {
  const enc = (s: string) => new URLSearchParams({ s }).toString().slice(2);
  return `Basic ${btoa(`${enc(clientId)}:${enc(secret)}`)}`;
}

/** The RFC 6749 §5.1 token response, as a test reads it. */
export interface TokenBody {
  access_token: string;
  token_type: string;
  expires_in: number;
  refresh_token: string;
  scope: string;
}

/** Asserts a successful token response (200, JSON, no-store, no-cache) and returns its body. */
export async function expectTokens(res: Response): Promise<TokenBody> {
  assertEquals(res.status, 200, await peek(res));
  assertEquals(res.headers.get("content-type"), "application/json");
  assertEquals(res.headers.get("cache-control"), "no-store");
  assertEquals(res.headers.get("pragma"), "no-cache");
  const body = await res.json() as TokenBody;
  assertEquals(body.token_type, "Bearer");
  assertMatch(body.access_token, /^gwat_[A-Za-z0-9_-]{43}$/);
  assertMatch(body.refresh_token, /^gwrt_[A-Za-z0-9_-]{43}$/);
  return body;
}

/**
 * Asserts an RFC 6749 §5.2 error: status, JSON content type, `no-store`, the error code and
 * (optionally) a part of its description.
 */
export async function expectOAuthError(
  res: Response,
  status: number,
  error: string,
  descriptionPart?: string,
): Promise<void> {
  assertEquals(res.status, status, await peek(res));
  assertEquals(res.headers.get("content-type"), "application/json");
  assertEquals(res.headers.get("cache-control"), "no-store");
  const body = await res.json() as { error: string; error_description: string };
  assertEquals(body.error, error);
  if (descriptionPart !== undefined) assertStringIncludes(body.error_description, descriptionPart);
}

async function peek(res: Response): Promise<string> {
  return `body: ${await res.clone().text()}`;
}
