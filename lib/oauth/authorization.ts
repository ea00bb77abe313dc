/**
 * The authorization endpoint's logic (OAuth 2.1 §4.1.1, RFC 6749 §4.1): validating requests in
 * two phases (RFC 6749 §4.1.2.1), keeping a pending request while the owner decides, checking
 * the consent form (CSRF, password), and issuing authorization codes.
 */
import { z } from "zod";
import { findClient } from "./clients.ts";
import { parseCookies } from "../infra/cookies.ts";
import { csrfCookieName } from "../infra/cookies.ts";
import { randomToken, sha256Hex, timingSafeEqual } from "../infra/crypto.ts";
import { originAllowed } from "../infra/http.ts";
import type { Deps } from "../deps.ts";
import { OAuthError } from "./oauth_error.ts";
import { buildRedirectUrl, selectRedirectUri, validateRedirectUri } from "./redirect_uri.ts";
import { checkGuess, type GuessOutcome, passwordGuessLimits } from "../infra/guess_limit.ts";
import { ipLimitSubject } from "../infra/client_ip.ts";
import { hit } from "../infra/rate_limit.ts";
import { resolveResource, resolveScope } from "./resources.ts";
import {
  authzKey,
  type AuthzRequestRecord,
  type ClientRecord,
  codeKey,
  type CodeRecord,
  getLive,
  ttl,
} from "../store.ts";

/** How long the owner has to decide (the pending request's lifetime). */
export const AUTHZ_REQUEST_TTL_MS = 10 * 60_000;
/** Lifetime of an authorization code (RFC 6749 §4.1.2: "a maximum ... of 10 minutes"). */
export const CODE_TTL_MS = 60_000;
/** Longest `state` echoed back. */
const MAX_STATE_LENGTH = 2000;

/**
 * A phase-1 failure (RFC 6749 §4.1.2.1): the client or redirect URI cannot be trusted, so the
 * owner sees an error page and the browser is NOT redirected.
 */
export class AuthorizePageError extends Error {
  constructor(
    readonly title: string,
    message: string,
    readonly status = 400,
    /** For 429: the `Retry-After` value in seconds. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = "AuthorizePageError";
  }
}

/** The client and redirect URI of an authorization request, both verified (phase 1). */
export interface VerifiedTarget {
  client: ClientRecord;
  redirectUri: string;
}

function single(params: URLSearchParams, name: string): string | undefined {
  const all = params.getAll(name);
  if (all.length > 1) throw new OAuthError("invalid_request", `"${name}" is repeated`);
  return all[0];
}

/**
 * Phase 1: `client_id` names a known client ({@linkcode findClient}: pre-registered, metadata
 * document or registered) and `redirect_uri` matches one of its URIs (OAuth 2.1 §4.1.1.3;
 * loopback ports ignored, RFC 8252 §7.3), or is omitted while exactly one is registered
 * (RFC 6749 §3.1.2.3). A metadata document that cannot be fetched or is invalid is a phase-1
 * error too: its redirect URIs cannot be trusted.
 * @throws {AuthorizePageError}
 */
export async function verifyTarget(
  deps: Parameters<typeof findClient>[0],
  params: URLSearchParams,
): Promise<VerifiedTarget> {
  const ids = params.getAll("client_id");
  const uris = params.getAll("redirect_uri");
  if (ids.length !== 1 || !ids[0]) {
    throw new AuthorizePageError(
      "Invalid request",
      ids.length > 1 ? '"client_id" is repeated.' : '"client_id" is required.',
    );
  }
  if (uris.length > 1) {
    throw new AuthorizePageError("Invalid request", '"redirect_uri" is repeated.');
  }
  let client: ClientRecord | null;
  try {
    client = await findClient(deps, ids[0]);
  } catch (e) {
    if (!(e instanceof OAuthError)) throw e;
    if (e.status === 429) {
      const retry = Number(e.headers.get("retry-after")) || 60;
      throw new AuthorizePageError("Too many requests", `${e.message}.`, 429, retry);
    }
    throw new AuthorizePageError("Application could not be identified", `${e.message}.`);
  }
  if (!client) {
    throw new AuthorizePageError(
      "Unknown application",
      "This application is not registered with this gateway. Register it again from the app.",
    );
  }
  const redirectUri = selectRedirectUri(client.redirectUris, uris[0]);
  if (redirectUri === null) {
    throw new AuthorizePageError(
      "Invalid redirect URI",
      uris[0] === undefined
        ? '"redirect_uri" is required: this application registered several.'
        : "The redirect URI does not match any URI this application registered.",
    );
  }
  try {
    // Today's rules, also for clients registered before them (e.g. a scheme now refused).
    validateRedirectUri(redirectUri, deps.config.allowedPrivateUseSchemes);
  } catch (e) {
    if (!(e instanceof OAuthError)) throw e;
    throw new AuthorizePageError("Invalid redirect URI", `The ${e.message}.`);
  }
  return { client, redirectUri };
}

/** The rest of an authorization request, validated (phase 2). */
export interface AuthorizeParams {
  codeChallenge: string;
  scope: string;
  resource: string;
  state?: string;
}

/** The `state` to echo in an error redirect: only a single, reasonably sized value. */
export function echoableState(params: URLSearchParams): string | undefined {
  const all = params.getAll("state");
  return all.length === 1 && all[0]!.length <= MAX_STATE_LENGTH ? all[0] : undefined;
}

/**
 * Phase 2 (OAuth 2.1 §4.1.1, RFC 7636 §4.3, RFC 8707 §2): parameters sent once,
 * `response_type=code`, a S256 `code_challenge`, known scopes (within the client's
 * `allowedScopes`; `defaultScopes` when absent, RFC 6749 §3.3) and resource.
 * @throws {OAuthError} to be redirected to the client (RFC 6749 §4.1.2.1).
 */
export function parseAuthorizeParams(
  params: URLSearchParams,
  deps: Pick<Deps, "settings" | "config">,
  client?: Pick<ClientRecord, "allowedScopes">,
): AuthorizeParams {
  for (const name of new Set(params.keys())) single(params, name);
  const responseType = single(params, "response_type");
  if (!responseType) throw new OAuthError("invalid_request", '"response_type" is required');
  if (responseType !== "code") {
    throw new OAuthError("unsupported_response_type", 'only "response_type=code" is supported');
  }
  const method = single(params, "code_challenge_method");
  const challenge = single(params, "code_challenge");
  if (!challenge) {
    throw new OAuthError("invalid_request", '"code_challenge" is required (PKCE, RFC 7636)');
  }
  if (method !== "S256") {
    throw new OAuthError(
      "invalid_request",
      method === undefined
        ? '"code_challenge_method" is required and must be S256'
        : '"code_challenge_method" must be S256',
    );
  }
  if (!/^[A-Za-z0-9_-]{43}$/.test(challenge)) {
    throw new OAuthError("invalid_request", '"code_challenge" must be 43 base64url characters');
  }
  const state = single(params, "state");
  if (state !== undefined && state.length > MAX_STATE_LENGTH) {
    throw new OAuthError(
      "invalid_request",
      `"state" is longer than ${MAX_STATE_LENGTH} characters`,
    );
  }
  const scope = resolveScope(single(params, "scope"), deps.config, client?.allowedScopes);
  const resource = resolveResource(
    single(params, "resource"),
    deps.settings.publicUrl,
    deps.config,
  );
  return { codeChallenge: challenge, scope, resource, state };
}

/**
 * An authorization error response (RFC 6749 §4.1.2.1) with `iss` (RFC 9207 §2): the redirect
 * URI plus `error`, `error_description`, `state` and `iss`.
 */
export function errorRedirectUrl(
  redirectUri: string,
  error: OAuthError,
  state: string | undefined,
  issuer: string,
): string {
  return buildRedirectUrl(redirectUri, {
    error: error.code,
    error_description: error.message,
    state,
    iss: issuer,
  });
}

/** A pending request and the CSRF token bound to it (clear value, for cookie and form). */
export interface PendingConsent {
  requestId: string;
  csrfToken: string;
  record: AuthzRequestRecord;
}

/** Stores a validated request at `["authz", requestId]` for 10 minutes, with a CSRF hash. */
export async function startConsent(
  kv: Deno.Kv,
  target: VerifiedTarget,
  params: AuthorizeParams,
  now: number,
): Promise<PendingConsent> {
  const requestId = randomToken(16);
  const csrfToken = randomToken();
  const record: AuthzRequestRecord = {
    clientId: target.client.clientId,
    redirectUri: target.redirectUri,
    codeChallenge: params.codeChallenge,
    scope: params.scope,
    resource: params.resource,
    csrfHash: await sha256Hex(csrfToken),
    expiresAt: now + AUTHZ_REQUEST_TTL_MS,
  };
  if (params.state !== undefined) record.state = params.state;
  await kv.set(authzKey(requestId), record, { expireIn: AUTHZ_REQUEST_TTL_MS });
  return { requestId, csrfToken, record };
}

/** Zod schema of the consent form (POST /authorize). */
export const decisionFormSchema = z.object({
  request_id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "is malformed"),
  csrf_token: z.string().min(1).max(256),
  decision: z.enum(["approve", "deny"]),
  password: z.string().max(1024).optional(),
});

/** The consent form, parsed. */
export interface DecisionForm {
  requestId: string;
  csrfToken: string;
  decision: "approve" | "deny";
  password?: string;
}

/** Parses the consent form. @throws {AuthorizePageError} naming the field. */
export function parseDecisionForm(form: Map<string, string>): DecisionForm {
  const result = decisionFormSchema.safeParse(Object.fromEntries(form));
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new AuthorizePageError(
      "Invalid form",
      `"${issue.path.map(String).join(".")}": ${issue.message}`,
    );
  }
  const d = result.data;
  return {
    requestId: d.request_id,
    csrfToken: d.csrf_token,
    decision: d.decision,
    password: d.password,
  };
}

/** Loads a pending request that has not expired. */
export function getPendingConsent(
  kv: Deno.Kv,
  requestId: string,
  now: number,
): Promise<Deno.KvEntry<AuthzRequestRecord> | null> {
  return getLive<AuthzRequestRecord>(kv, authzKey(requestId), now);
}

/**
 * CSRF check of the consent form (double submit bound to the request): the cookie and the form
 * carry the same token, its SHA-256 is the stored hash, and the `Origin` is allowed
 * ({@linkcode originAllowed}).
 */
export async function checkCsrf(
  req: Request,
  form: DecisionForm,
  record: AuthzRequestRecord,
  settings: Deps["settings"],
): Promise<boolean> {
  if (!originAllowed(req, settings.publicUrl)) return false;
  const cookies = parseCookies(req.headers.get("cookie"));
  const cookie = cookies.get(csrfCookieName(form.requestId, settings.secureCookies)) ?? "";
  const sameToken = timingSafeEqual(cookie, form.csrfToken);
  const sameHash = timingSafeEqual(await sha256Hex(form.csrfToken), record.csrfHash);
  return sameToken && sameHash;
}

/** Compares a password with the owner's in constant time (SHA-256 of both, then compare). */
export async function checkOwnerPassword(given: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([sha256Hex(given), sha256Hex(expected)]);
  return timingSafeEqual(a, b);
}

/** The window of `rateLimits.authorizePerIpPerMinute`. */
export const AUTHORIZE_WINDOW_MS = 60_000;

/**
 * Counts one `GET /authorize` of `clientIp` (`rateLimits.authorizePerIpPerMinute`): each can
 * start a metadata document fetch and stores a pending request, so a flood is refused with
 * 429 and `Retry-After` (RFC 6585 §4) before any of that work.
 * @throws {AuthorizePageError} 429, with the seconds to wait in `retryAfterSeconds`.
 */
export async function limitAuthorizeRequests(
  deps: Pick<Deps, "kv" | "now" | "config">,
  clientIp: string,
): Promise<void> {
  const r = await hit(
    deps.kv,
    "authorize",
    ipLimitSubject(clientIp),
    deps.config.rateLimits.authorizePerIpPerMinute,
    AUTHORIZE_WINDOW_MS,
    deps.now(),
  );
  if (!r.allowed) {
    throw new AuthorizePageError(
      "Too many requests",
      "Too many authorization requests from your address. Try again in a minute.",
      429,
      r.retryAfterSeconds,
    );
  }
}

/** The outcome of {@linkcode checkPasswordAttempt}. */
export type PasswordAttempt = GuessOutcome;

/**
 * Checks the owner password under the guessing limits of lib/infra/guess_limit.ts (RFC 6749
 * §10.10: "prevent online guessing"): per (client, IP) `rateLimits.passwordFailuresPer15Minutes`,
 * per IP across all clients `passwordFailuresPerIpPer15Minutes`, and globally
 * `passwordFailuresGlobalPer15Minutes`. The attempt is reserved atomically before the password
 * is compared; once a limit is reached every attempt is blocked, even with the right password,
 * until its 15-minute window ends. A right password does not count.
 */
export async function checkPasswordAttempt(
  deps: Pick<Deps, "kv" | "now" | "settings" | "config"> & Partial<Pick<Deps, "log">>,
  clientId: string,
  clientIp: string,
  password: string | undefined,
): Promise<PasswordAttempt> {
  const expected = deps.settings.ownerPassword;
  return await checkGuess(
    deps,
    { secret: "owner_password", subject: clientId, ip: clientIp },
    passwordGuessLimits(deps.config.rateLimits),
    async () => expected !== undefined && await checkOwnerPassword(password ?? "", expected),
  );
}

/** Replaces the CSRF token of a pending request (after a failed attempt); `null` if it raced. */
export async function renewCsrf(
  kv: Deno.Kv,
  entry: Deno.KvEntry<AuthzRequestRecord>,
  now: number,
): Promise<string | null> {
  const csrfToken = randomToken();
  const record = { ...entry.value, csrfHash: await sha256Hex(csrfToken) };
  const { ok } = await kv.atomic().check(entry)
    .set(entry.key, record, { expireIn: ttl(record.expiresAt, now) }).commit();
  return ok ? csrfToken : null;
}

/** Deletes a pending request if it is still the given entry; false if someone else won. */
export async function dropPendingConsent(
  kv: Deno.Kv,
  entry: Deno.KvEntry<AuthzRequestRecord>,
): Promise<boolean> {
  return (await kv.atomic().check(entry).delete(entry.key).commit()).ok;
}

/**
 * Consumes a pending request and issues its authorization code (RFC 6749 §4.1.2) in one
 * atomic commit: the request is used at most once. The code's hash is the key; it lives 60 s.
 * `approved` carries who approved and the scope narrowed to what they may use (team sign-in).
 * Returns the clear code, or `null` when the request was already consumed.
 */
export async function issueCode(
  kv: Deno.Kv,
  entry: Deno.KvEntry<AuthzRequestRecord>,
  now: number,
  approved?: Pick<CodeRecord, "scope" | "user" | "tools">,
): Promise<string | null> {
  const code = randomToken();
  const r = entry.value;
  const record: CodeRecord = {
    clientId: r.clientId,
    redirectUri: r.redirectUri,
    codeChallenge: r.codeChallenge,
    scope: approved?.scope ?? r.scope,
    resource: r.resource,
    expiresAt: now + CODE_TTL_MS,
  };
  if (approved?.user) record.user = approved.user;
  if (approved?.tools) record.tools = approved.tools;
  const { ok } = await kv.atomic().check(entry).delete(entry.key)
    .set(codeKey(await sha256Hex(code)), record, { expireIn: CODE_TTL_MS }).commit();
  return ok ? code : null;
}

/** The successful authorization response (RFC 6749 §4.1.2, RFC 9207 §2). */
export function codeRedirectUrl(
  record: AuthzRequestRecord,
  code: string,
  issuer: string,
): string {
  return buildRedirectUrl(record.redirectUri, { code, state: record.state, iss: issuer });
}
