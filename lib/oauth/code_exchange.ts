/**
 * The authorization code grant at the token endpoint (RFC 6749 §4.1.3, OAuth 2.1 §4.1.3,
 * RFC 7636 §4.6, RFC 8707 §2.2): the code is redeemed exactly once, in one atomic commit that
 * also stores the grant and its first token pair.
 */
import { z } from "zod";
import { s256, sha256Hex, timingSafeEqual } from "../infra/crypto.ts";
import type { Deps } from "../deps.ts";
import { OAuthError } from "./oauth_error.ts";
import { resolveResource } from "./resources.ts";
import { type ClientRecord, codeKey, type CodeRecord, type GrantRecord, ttl } from "../store.ts";
import { type MintedTokens, mintTokens, putGrant, revokeGrant } from "./tokens.ts";
import { auditEvent, auditUser } from "../admin/audit.ts";

/** How long a redeemed code is kept past its expiry, to detect a replay (RFC 6749 §4.1.2). */
export const REPLAY_WINDOW_MS = 10 * 60 * 1000;

/** `code_verifier` = 43*128unreserved (RFC 7636 §4.1). */
const CODE_VERIFIER = /^[A-Za-z0-9\-._~]{43,128}$/;

/** Wire fields of an authorization code token request (RFC 6749 §4.1.3, RFC 7636 §4.5). */
export const codeRequestSchema = z.object({
  code: z.string().min(1, "must not be empty"),
  redirect_uri: z.string().min(1, "must not be empty"),
  code_verifier: z.string().regex(
    CODE_VERIFIER,
    "must be 43 to 128 characters of [A-Za-z0-9-._~] (RFC 7636 §4.1)",
  ),
  resource: z.string().optional(),
}).transform((f) => ({
  code: f.code,
  redirectUri: f.redirect_uri,
  codeVerifier: f.code_verifier,
  resource: f.resource,
}));

/** A parsed authorization code token request. */
export type CodeRequest = z.output<typeof codeRequestSchema>;

/**
 * Whether a request for a code comes from whoever requested it: the code's client, and the PKCE
 * verifier of the code's challenge (RFC 7636 §4.6). Revocation on replay (RFC 6749 §4.1.2)
 * answers only such a request. Anyone may state a public client's id, so the id alone proves
 * nothing: without this, whoever saw a used code (in a log, a history, a `Referer`) could revoke
 * the grant of the client it was issued to.
 */
async function presentedByRequester(
  code: CodeRecord,
  client: ClientRecord,
  req: CodeRequest,
): Promise<boolean> {
  if (code.clientId !== client.clientId) return false;
  return timingSafeEqual(await s256(req.codeVerifier), code.codeChallenge);
}

/**
 * Redeems an authorization code for `client` (already authenticated).
 *
 * - unknown or expired code → `invalid_grant`
 * - code already redeemed, presented again by its requester (its client, with its PKCE verifier)
 *   → its grant and tokens are revoked, then `invalid_grant` (RFC 6749 §4.1.2); presented by
 *   anyone else → `invalid_grant` only
 * - other client, other `redirect_uri`, or PKCE mismatch → `invalid_grant` (RFC 6749 §4.1.3,
 *   RFC 7636 §4.6)
 * - `resource` not the code's → `invalid_target` (RFC 8707 §2.2)
 * - a concurrent redemption won the commit → `invalid_grant` (nothing revoked)
 * @throws {OAuthError}
 */
export async function exchangeCode(
  deps: Deps,
  client: ClientRecord,
  req: CodeRequest,
): Promise<MintedTokens> {
  const now = deps.now();
  const key = codeKey(await sha256Hex(req.code));
  const entry = await deps.kv.get<CodeRecord>(key);
  const code = entry.value;
  if (
    code?.redeemedGrantId !== undefined && now < code.expiresAt + REPLAY_WINDOW_MS &&
    await presentedByRequester(code, client, req)
  ) {
    await revokeGrant(deps, code.redeemedGrantId);
    auditEvent(deps, "reuse_detected", {
      user: auditUser(code.user),
      clientId: client.clientId,
      grantId: code.redeemedGrantId,
      method: "authorization_code",
      outcome: "invalid_grant",
    });
    throw new OAuthError(
      "invalid_grant",
      "authorization code was already used; the tokens issued from it are revoked",
    );
  }
  if (!code || code.redeemedGrantId !== undefined || code.expiresAt <= now) {
    throw new OAuthError("invalid_grant", "authorization code is invalid or expired");
  }
  if (code.clientId !== client.clientId) {
    throw new OAuthError("invalid_grant", "authorization code was issued to another client");
  }
  if (code.redirectUri !== req.redirectUri) {
    throw new OAuthError(
      "invalid_grant",
      '"redirect_uri" does not match the authorization request',
    );
  }
  if (!timingSafeEqual(await s256(req.codeVerifier), code.codeChallenge)) {
    throw new OAuthError("invalid_grant", '"code_verifier" does not match the code challenge');
  }
  if (req.resource !== undefined) {
    const resource = resolveResource(req.resource, deps.settings.publicUrl, deps.config);
    if (resource !== code.resource) {
      throw new OAuthError("invalid_target", '"resource" differs from the authorization request');
    }
  }
  const grant: GrantRecord = {
    grantId: crypto.randomUUID(),
    clientId: client.clientId,
    scope: code.scope,
    resource: code.resource,
    createdAt: now,
    expiresAt: now + deps.config.refreshTokenTtlSeconds * 1000,
  };
  if (code.user) grant.user = code.user;
  if (code.tools) grant.tools = code.tools;
  const op = deps.kv.atomic()
    .check(entry)
    .set(key, { ...code, redeemedGrantId: grant.grantId }, {
      expireIn: ttl(code.expiresAt + REPLAY_WINDOW_MS, now),
    });
  putGrant(deps, op, grant);
  const minted = await mintTokens(deps, op, grant);
  if (!(await op.commit()).ok) {
    throw new OAuthError(
      "invalid_grant",
      "authorization code was redeemed by a concurrent request",
    );
  }
  return minted;
}
