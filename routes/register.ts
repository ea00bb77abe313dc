/** `POST /register`: dynamic client registration (RFC 7591 §3). */
import {
  parseClientMetadata,
  REGISTER_BODY_LIMIT,
  registerClient,
  registrationResponse,
} from "../lib/client_registration.ts";
import type { RouteContext } from "../lib/deps.ts";
import { jsonResponse, mediaType, readBodyText } from "../lib/http.ts";
import { OAuthError } from "../lib/oauth_error.ts";

/** Registers a client from a JSON body (RFC 7591 §3.1) and answers 201 (§3.2.1). */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  if (mediaType(req) !== "application/json") {
    throw new OAuthError("invalid_client_metadata", "content-type must be application/json");
  }
  const text = await readBodyText(req, REGISTER_BODY_LIMIT);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new OAuthError("invalid_client_metadata", "the body is not valid JSON");
  }
  const client = await registerClient(ctx.kv, parseClientMetadata(body), ctx.now());
  ctx.logFields.client_id = client.record.clientId;
  return jsonResponse(registrationResponse(client), 201);
}
