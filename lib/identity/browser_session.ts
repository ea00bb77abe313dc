/**
 * The browser sign-in session: who is signed in at the gateway in this browser, for 12 hours.
 * A random 256-bit id in an HttpOnly SameSite=Lax cookie (`__Host-gw_session` on https, plain
 * `gw_session` on http localhost: RFC 6265bis §4.1.3.2); KV holds only its SHA-256 under
 * `["browser_session", hash]` with `expiresAt` checked on read. Every sign-in gets a new id
 * (the old one is deleted: no session fixation). Later features (admin console, per-user backend
 * connections) read it through {@linkcode currentBrowserSession}.
 */
import { parseCookies, serializeCookie } from "../infra/cookies.ts";
import { randomToken, sha256Hex, timingSafeEqual } from "../infra/crypto.ts";
import type { Deps } from "../deps.ts";
import { browserSessionKey, type BrowserSessionRecord, getLive, type UserRef } from "../store.ts";
import { type Access, evaluateAccess, type Identity, isOwner } from "./access_rules.ts";

/** Lifetime of a browser sign-in session. */
export const BROWSER_SESSION_TTL_MS = 12 * 60 * 60 * 1000;

/** Name of the session cookie. */
export function sessionCookieName(secure: boolean): string {
  return `${secure ? "__Host-" : ""}gw_session`;
}

/** A signed-in browser, with what the current access rules allow its user. */
export interface BrowserSession {
  user: UserRef;
  identity: Identity;
  /** The user's access under the current rules (a user who lost all access is signed out). */
  access: Access;
  /** `access.admin`, for the admin console. */
  admin: boolean;
  expiresAt: number;
  /** CSRF token of forms posted by this session (derived from the clear session id). */
  csrfToken: string;
}

type SessionDeps = Pick<Deps, "kv" | "now" | "config" | "settings">;

const ID_FORMAT = /^[A-Za-z0-9_-]{43}$/;

function sessionIdOf(req: Request, secure: boolean): string | null {
  const id = parseCookies(req.headers.get("cookie")).get(sessionCookieName(secure));
  return id !== undefined && ID_FORMAT.test(id) ? id : null;
}

const ownerCheck = (id: string, password: string) => sha256Hex(`owner-session\n${id}\n${password}`);

/** The CSRF token of a session's forms: SHA-256 of the clear id (only its browser knows it). */
export const sessionCsrfToken = (id: string) => sha256Hex(`csrf\n${id}`);

/**
 * The signed-in session of a request, or `null`: no cookie, unknown or expired id, a user the
 * current rules no longer allow, or an owner session from before the owner password changed
 * (or was removed).
 */
export async function currentBrowserSession(
  req: Request,
  deps: SessionDeps,
): Promise<BrowserSession | null> {
  const id = sessionIdOf(req, deps.settings.secureCookies);
  if (!id) return null;
  const entry = await getLive<BrowserSessionRecord>(
    deps.kv,
    browserSessionKey(await sha256Hex(id)),
    deps.now(),
  );
  if (!entry) return null;
  const r = entry.value;
  if (isOwner(r.user)) {
    const password = deps.settings.ownerPassword;
    if (!password || !r.ownerCheck) return null;
    if (!timingSafeEqual(await ownerCheck(id, password), r.ownerCheck)) return null;
  }
  const identity: Identity = { providerId: r.providerId, user: r.user };
  if (r.groups) identity.groups = r.groups;
  if (r.githubOrgs) identity.githubOrgs = r.githubOrgs;
  const access = evaluateAccess(deps.config, identity);
  if (!access) return null;
  return {
    user: r.user,
    identity,
    access,
    admin: access.admin,
    expiresAt: r.expiresAt,
    csrfToken: await sessionCsrfToken(id),
  };
}

/**
 * Signs a browser in: stores a new session for `identity` and deletes the one the request
 * carried, if any. Returns the `Set-Cookie` value.
 */
export async function startBrowserSession(
  req: Request,
  deps: SessionDeps,
  identity: Identity,
): Promise<string> {
  const secure = deps.settings.secureCookies;
  const id = randomToken();
  const now = deps.now();
  const record: BrowserSessionRecord = {
    user: identity.user,
    providerId: identity.providerId,
    createdAt: now,
    expiresAt: now + BROWSER_SESSION_TTL_MS,
  };
  if (identity.groups) record.groups = identity.groups;
  if (identity.githubOrgs) record.githubOrgs = identity.githubOrgs;
  if (isOwner(identity.user)) {
    record.ownerCheck = await ownerCheck(id, deps.settings.ownerPassword!);
  }
  const op = deps.kv.atomic().set(browserSessionKey(await sha256Hex(id)), record, {
    expireIn: BROWSER_SESSION_TTL_MS,
  });
  const previous = sessionIdOf(req, secure);
  if (previous) op.delete(browserSessionKey(await sha256Hex(previous)));
  await op.commit();
  return serializeCookie(sessionCookieName(secure), id, {
    secure,
    maxAge: BROWSER_SESSION_TTL_MS / 1000,
  });
}

/**
 * Signs a browser out when `csrfToken` is its session's. Returns the `Set-Cookie` value that
 * clears the cookie, or `null` when the token does not match (nothing is changed).
 */
export async function endBrowserSession(
  req: Request,
  deps: SessionDeps,
  csrfToken: string,
): Promise<string | null> {
  const secure = deps.settings.secureCookies;
  const id = sessionIdOf(req, secure);
  if (id) {
    if (!timingSafeEqual(await sessionCsrfToken(id), csrfToken)) return null;
    await deps.kv.delete(browserSessionKey(await sha256Hex(id)));
  }
  return serializeCookie(sessionCookieName(secure), "", { secure, maxAge: 0 });
}
