/**
 * `POST /register`: dynamic client registration (RFC 7591 §3), subject to the registration
 * policy (mode off/open/token, per-IP limit: lib/oauth/registration_policy.ts).
 */
import {
  parseClientMetadata,
  REGISTER_BODY_LIMIT,
  registerClient,
  registrationResponse,
} from "../lib/oauth/client_registration.ts";
import { clientIdleMs } from "../lib/oauth/clients.ts";
import type { RouteContext } from "../lib/deps.ts";
import { jsonResponse, mediaType, readBodyText } from "../lib/infra/http.ts";
import { OAuthError } from "../lib/oauth/oauth_error.ts";
import { checkRegistrationPolicy } from "../lib/oauth/registration_policy.ts";

/** Registers a client from a JSON body (RFC 7591 §3.1) and answers 201 (§3.2.1). */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  await checkRegistrationPolicy(ctx, req, ctx.clientIp);
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
  const meta = parseClientMetadata(body, ctx.config.allowedPrivateUseSchemes);
  const client = await registerClient(ctx.kv, meta, ctx.now(), clientIdleMs(ctx.config));
  ctx.logFields.client_id = client.record.clientId;
  return jsonResponse(registrationResponse(client), 201);
}
