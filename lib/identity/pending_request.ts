/**
 * Where a sign-in comes from and goes back to: a pending authorization request
 * (`["authz", requestId]`, stored by `GET /authorize`) or a same-origin `return_to` path.
 *
 * A pending request is referred to by its id only, and only the browser that started it may
 * continue it: it must hold the request's CSRF cookie, whose SHA-256 the request keeps.
 */
import { getPendingConsent } from "../oauth/authorization.ts";
import { errorRedirectUrl } from "../oauth/authorization.ts";
import { findClient } from "../oauth/clients.ts";
import { OAuthError } from "../oauth/oauth_error.ts";
import { csrfCookieName, parseCookies } from "../infra/cookies.ts";
import { sha256Hex, timingSafeEqual } from "../infra/crypto.ts";
import type { Deps } from "../deps.ts";
import type { AuthzRequestRecord, ClientRecord } from "../store.ts";
import { LoginError } from "./login_flow.ts";
import type { PageLink } from "./sign_in_page.ts";

/** A pending authorization request, as the sign-in and consent pages need it. */
export interface PendingAuthorization {
  requestId: string;
  /** The clear CSRF token of the request (from its cookie, or just issued). */
  csrfToken: string;
  record: AuthzRequestRecord;
  client: Pick<ClientRecord, "clientId" | "clientName" | "metadataDocumentHost" | "redirectUris">;
}

const REQUEST_ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * The pending request `requestId`, if it is live and this browser started it.
 * @throws {LoginError}
 */
export async function boundPendingRequest(
  req: Request,
  deps: Pick<Deps, "kv" | "now" | "config" | "fetch" | "settings">,
  requestId: string,
): Promise<PendingAuthorization & { entry: Deno.KvEntry<AuthzRequestRecord> }> {
  const entry = REQUEST_ID.test(requestId)
    ? await getPendingConsent(deps.kv, requestId, deps.now())
    : null;
  if (!entry) {
    throw new LoginError(
      "Request expired",
      "This authorization request has expired or was used. Start again from your application.",
    );
  }
  const name = csrfCookieName(requestId, deps.settings.secureCookies);
  const csrfToken = parseCookies(req.headers.get("cookie")).get(name) ?? "";
  if (!timingSafeEqual(await sha256Hex(csrfToken), entry.value.csrfHash)) {
    throw new LoginError(
      "Sign-in failed",
      "This authorization was started in another browser. Start again from your application.",
    );
  }
  return { ...await pendingAuthorization(deps, requestId, entry.value, csrfToken), entry };
}

/** A {@linkcode PendingAuthorization} of a request already loaded (its client looked up). */
export async function pendingAuthorization(
  deps: Pick<Deps, "kv" | "now" | "config" | "fetch">,
  requestId: string,
  record: AuthzRequestRecord,
  csrfToken: string,
): Promise<PendingAuthorization> {
  const client = await findClient(deps, record.clientId).catch(() => null) ??
    { clientId: record.clientId, redirectUris: [] };
  return { requestId, csrfToken, record, client };
}

/** The link back to the application with `error=access_denied` (RFC 6749 §4.1.2.1, RFC 9207). */
export function backToClient(
  pending: Pick<PendingAuthorization, "record" | "client">,
  issuer: string,
  description: string,
): PageLink {
  const name = pending.client.clientName ?? pending.client.clientId;
  return {
    label: `Return to ${name}`,
    href: errorRedirectUrl(
      pending.record.redirectUri,
      new OAuthError("access_denied", description),
      pending.record.state,
      issuer,
    ),
  };
}

/**
 * A `return_to` value, if it is a path of this gateway: starts with one `/` (not `//` or
 * `/\`, which browsers read as another host), printable ASCII without backslashes, at most
 * 512 characters. Returns the path, or `null`.
 */
export function parseReturnTo(value: string | null): string | null {
  if (value === null || value.length > 512) return null;
  return /^\/(?!\/)[\x21-\x5b\x5d-\x7e]*$/.test(value) ? value : null;
}

/** The absolute URL of a `return_to` path (under `PUBLIC_URL`, so on the gateway's origin). */
export function returnToUrl(path: string, publicUrl: string): string {
  return `${publicUrl}${path}`;
}
