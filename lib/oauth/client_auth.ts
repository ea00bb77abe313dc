/**
 * Client authentication at the token and revocation endpoints (RFC 6749 §2.3.1, OAuth 2.1
 * §2.4, RFC 7009 §2.1), and the zod parsing of their form bodies.
 *
 * Methods: `client_secret_basic` (HTTP Basic, id and secret form-url-encoded), `client_secret_post`
 * (`client_id` + `client_secret` in the body) and `none` (public clients: `client_id` only).
 * A client must use the method it registered (RFC 7591 §2 `token_endpoint_auth_method`).
 * Clients are found by `findClient` (lib/oauth/clients.ts): pre-registered, metadata-document
 * clients (always public, method `none`) and registered clients that are not idle.
 */
import type { z } from "zod";
import { findClient } from "./clients.ts";
import { sha256Hex, timingSafeEqual } from "../infra/crypto.ts";
import type { Deps } from "../deps.ts";
import { OAuthError } from "./oauth_error.ts";
import type { ClientRecord } from "../store.ts";

/** The challenge sent with every `invalid_client` answer (RFC 6749 §5.2). */
export const BASIC_CHALLENGE = 'Basic realm="gateway"';

/** An `invalid_client` error: 401 with `WWW-Authenticate: Basic` (RFC 6749 §5.2). */
export function invalidClient(description: string): OAuthError {
  return new OAuthError("invalid_client", description, {
    status: 401,
    headers: { "WWW-Authenticate": BASIC_CHALLENGE },
  });
}

/**
 * Parses form fields with a zod schema; the first issue becomes `invalid_request` naming the
 * field (`"code_verifier" is required`), as RFC 6749 §5.2 asks for a malformed request.
 * @throws {OAuthError} `invalid_request`
 */
export function parseFormFields<S extends z.ZodType>(
  schema: S,
  form: Map<string, string>,
): z.output<S> {
  const result = schema.safeParse(Object.fromEntries(form));
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = String(issue.path[0] ?? "request");
  const missing = issue.code === "invalid_type" && !form.has(field);
  throw new OAuthError(
    "invalid_request",
    missing ? `"${field}" is required` : `"${field}" ${issue.message}`,
  );
}

/** Form-url-decodes one half of Basic credentials (RFC 6749 §2.3.1, Appendix B). */
function formDecode(value: string): string {
  return decodeURIComponent(value.replace(/\+/g, " "));
}

/** The credentials a request presents, before they are checked. */
interface Presented {
  method: ClientRecord["tokenEndpointAuthMethod"];
  clientId: string;
  secret?: string;
}

function presentedCredentials(req: Request, form: Map<string, string>): Presented {
  const header = req.headers.get("authorization");
  const bodyId = form.get("client_id");
  const bodySecret = form.get("client_secret");
  if (header !== null) {
    const match = /^Basic +([A-Za-z0-9+/]+=*) *$/i.exec(header);
    if (!match) throw invalidClient("only HTTP Basic client authentication is supported");
    let clientId: string;
    let secret: string;
    try {
      const decoded = new TextDecoder("utf-8", { fatal: true }).decode(
        Uint8Array.from(atob(match[1]!), (c) => c.charCodeAt(0)),
      );
      const colon = decoded.indexOf(":");
      if (colon < 0) throw new Error("no colon");
      clientId = formDecode(decoded.slice(0, colon));
      secret = formDecode(decoded.slice(colon + 1));
    } catch {
      throw invalidClient("malformed HTTP Basic credentials");
    }
    if (bodySecret !== undefined) {
      throw new OAuthError(
        "invalid_request",
        "use only one client authentication method (RFC 6749 §2.3)",
      );
    }
    if (bodyId !== undefined && bodyId !== clientId) {
      throw new OAuthError("invalid_request", '"client_id" differs from the Basic credentials');
    }
    return { method: "client_secret_basic", clientId, secret };
  }
  if (bodyId === undefined || bodyId === "") throw invalidClient('"client_id" is required');
  if (bodySecret !== undefined) {
    return { method: "client_secret_post", clientId: bodyId, secret: bodySecret };
  }
  return { method: "none", clientId: bodyId };
}

/**
 * The `client_id` a request states (Basic credentials or body), before anything is checked;
 * `undefined` when it states none or its credentials are malformed. Used to count failures.
 */
export function presentedClientId(req: Request, form: Map<string, string>): string | undefined {
  try {
    return presentedCredentials(req, form).clientId;
  } catch {
    return undefined;
  }
}

/**
 * Authenticates the client of a token or revocation request with the method it registered
 * (RFC 6749 §2.3.1, §3.2.1; OAuth 2.1 §2.4). The secret is compared as SHA-256 hex in
 * constant time.
 * @throws {OAuthError} `invalid_client` (401) or `invalid_request` (two methods at once)
 */
export async function authenticateClient(
  deps: Deps,
  req: Request,
  form: Map<string, string>,
): Promise<ClientRecord> {
  const presented = presentedCredentials(req, form);
  let client: ClientRecord | null;
  try {
    client = await findClient(deps, presented.clientId);
  } catch (e) {
    // A metadata document fetch refused by its rate limit stays a 429 (retry later).
    if (e instanceof OAuthError && e.status !== 429) throw invalidClient(e.message);
    throw e;
  }
  if (!client) throw invalidClient("unknown client");
  if (client.tokenEndpointAuthMethod !== presented.method) {
    throw invalidClient(
      `client must authenticate with ${client.tokenEndpointAuthMethod} (RFC 6749 §2.3.1)`,
    );
  }
  if (presented.method === "none") return client;
  const hash = await sha256Hex(presented.secret ?? "");
  if (!client.clientSecretHash || !timingSafeEqual(hash, client.clientSecretHash)) {
    throw invalidClient("client authentication failed");
  }
  return client;
}
