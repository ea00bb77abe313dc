/**
 * The gateway at a backend's token and revocation endpoints: authorization-code and refresh
 * grants (RFC 6749 §4.1.3, §6) with `resource` (RFC 8707 §2.2), revocation (RFC 7009 §2.1), and
 * client authentication (RFC 6749 §2.3.1: `client_secret_basic` with form-encoded id and secret,
 * or `client_secret_post`; public clients send `client_id`). Token responses are validated
 * (RFC 6749 §5.1: `Bearer` only); error responses keep their RFC 6749 §5.2 `error` code.
 */
import { z } from "zod";
import type { BackendConfig } from "../config.ts";
import type { BackendClient } from "./backend_client_identity.ts";
import { BackendAuthError, jsonObject, outboundRequest } from "./outbound.ts";

/** Tokens from a backend's authorization server. */
export interface BackendTokens {
  accessToken: string;
  refreshToken?: string;
  /** Seconds (RFC 6749 §5.1 `expires_in`). */
  expiresIn?: number;
  scope?: string;
}

/** The token endpoint refused the request with an RFC 6749 §5.2 error code. */
export class TokenEndpointError extends BackendAuthError {
  constructor(message: string, readonly code: string) {
    super(message);
    this.name = "TokenEndpointError";
  }
}

const tokenResponse = z.object({
  access_token: z.string().min(1).max(16_000),
  token_type: z.string().refine((t) => t.toLowerCase() === "bearer", "must be Bearer"),
  expires_in: z.coerce.number().positive().max(10 * 365 * 86_400).optional(),
  refresh_token: z.string().min(1).max(16_000).optional(),
  scope: z.string().max(2000).optional(),
});

/** `application/x-www-form-urlencoded` encoding of one value (RFC 6749 §2.3.1, Appendix B). */
const formEncode = (s: string) => new URLSearchParams({ s }).toString().slice(2);

/** Adds the client's authentication to a token or revocation request (RFC 6749 §2.3.1). */
function authenticate(client: BackendClient, body: URLSearchParams, headers: Headers): void {
  if (client.authMethod === "client_secret_basic" && client.clientSecret !== undefined) {
    const pair = `${formEncode(client.clientId)}:${formEncode(client.clientSecret)}`;
    headers.set("authorization", `Basic ${btoa(pair)}`);
    return;
  }
  body.set("client_id", client.clientId);
  if (client.authMethod === "client_secret_post" && client.clientSecret !== undefined) {
    body.set("client_secret", client.clientSecret);
  }
}

/**
 * One grant at `tokenEndpoint`.
 * @throws {TokenEndpointError} the server's RFC 6749 §5.2 refusal
 * @throws {BackendAuthError} unreachable (5xx, network) or a malformed answer
 */
export async function tokenRequest(
  backend: BackendConfig,
  tokenEndpoint: string,
  client: BackendClient,
  params: Record<string, string>,
): Promise<BackendTokens> {
  const what = `the token endpoint of backend ${backend.name}`;
  const body = new URLSearchParams(params);
  const headers = new Headers({
    "content-type": "application/x-www-form-urlencoded",
    accept: "application/json",
  });
  authenticate(client, body, headers);
  const res = await outboundRequest(backend, tokenEndpoint, {
    method: "POST",
    headers,
    body: body.toString(),
  }, what);
  const json = jsonObject(res.text);
  if (res.status >= 500) throw new BackendAuthError(`${what} answered HTTP ${res.status}`, true);
  if (res.status !== 200) {
    const code = typeof json?.error === "string" ? json.error.slice(0, 60) : "invalid_response";
    throw new TokenEndpointError(`${what} refused: ${code} (HTTP ${res.status})`, code);
  }
  const parsed = tokenResponse.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new BackendAuthError(
      `${what} answered an invalid token response ("${issue.path.join(".")}" ${issue.message})`,
    );
  }
  const t = parsed.data;
  return {
    accessToken: t.access_token,
    ...(t.refresh_token ? { refreshToken: t.refresh_token } : {}),
    ...(t.expires_in !== undefined ? { expiresIn: t.expires_in } : {}),
    ...(t.scope ? { scope: t.scope } : {}),
  };
}

/**
 * Revokes a token at `endpoint` (RFC 7009 §2.1). Best effort: `false` when the server could not
 * be reached or refused (the connection is forgotten anyway).
 */
export async function revokeToken(
  backend: BackendConfig,
  endpoint: string,
  client: BackendClient,
  token: string,
  hint: "access_token" | "refresh_token",
): Promise<boolean> {
  const body = new URLSearchParams({ token, token_type_hint: hint });
  const headers = new Headers({ "content-type": "application/x-www-form-urlencoded" });
  authenticate(client, body, headers);
  try {
    const res = await outboundRequest(backend, endpoint, {
      method: "POST",
      headers,
      body: body.toString(),
    }, `the revocation endpoint of backend ${backend.name}`);
    return res.status === 200;
  } catch (e) {
    if (e instanceof BackendAuthError) return false;
    throw e;
  }
}
