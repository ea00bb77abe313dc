/**
 * Fixtures of the per-user backend credential suites: the gateway served on a real port with
 * team sign-in (panva's oidc-provider as "Corp SSO", tests/_idp.ts) and per-user backends (the
 * OAuth-protected notes backend of tests/_oauth_backend.ts, or others); browsers signed in to the
 * gateway as a given user, who connect a backend by signing in at its authorization server; and
 * the gateway's own MCP access tokens for a user.
 */
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import type { Deps } from "../lib/deps.ts";
import { mintTokens, putGrant } from "../lib/oauth/tokens.ts";
import type { UserRef } from "../lib/store.ts";
import { assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { type ServedGateway, serveGateway } from "./_helpers.ts";
import { HttpBrowser, type Page, providerHref, signInAtIdp } from "./_http_browser.ts";
import { oidcProviderConfig, startIdp, type TestIdp } from "./_idp.ts";
import {
  type NotesBackend,
  type NotesBackendOptions,
  startNotesBackend,
} from "./_oauth_backend.ts";

/** `GATEWAY_ENCRYPTION_KEY` of the tests: 32 bytes (0, 1, …, 31) in base64. */
export const ENCRYPTION_KEY = btoa(String.fromCharCode(...Array.from({ length: 32 }, (_, i) => i)));

/** The gateway users (their Corp SSO login is the key; their gateway subject `corp:<key>`). */
export const USERS = {
  ana: { email: "ana@example.com", email_verified: true, name: "Ana Lima" },
  bob: { email: "bob@example.com", email_verified: true, name: "Bob Stone" },
  eve: { email: "eve@example.com", email_verified: true, name: "Eve Moss" },
};

/** The gateway user `login` as tokens carry it. */
export function userRef(login: keyof typeof USERS): UserRef {
  const u = USERS[login];
  return { sub: `corp:${login}`, email: u.email, name: u.name };
}

/** A running gateway with per-user backends. */
export interface CredentialsSetup {
  idp: TestIdp;
  notes: NotesBackend;
  gw: ServedGateway;
  /** The raw config the gateway was started with. */
  config: Record<string, unknown>;
  close(): Promise<void>;
}

/**
 * Starts Corp SSO, the notes backend and the gateway. Ana and Bob may use every backend, Eve
 * only `other` (a backend name that need not exist). `backends` adds backends (given the notes
 * backend's URL); `notesAuth` replaces notes' `auth`.
 */
export async function startCredentialsSetup(
  options: {
    notes?: NotesBackendOptions;
    notesAuth?: Record<string, unknown>;
    backends?: (notes: NotesBackend) => Record<string, unknown>[];
    env?: Record<string, string>;
    configFor?: (
      url: string,
      notes: NotesBackend,
    ) => Record<string, unknown> | Promise<Record<string, unknown>>;
    /** A Deno KV file instead of `:memory:` (to share it with a second instance). */
    kvPath?: string;
  } = {},
): Promise<CredentialsSetup> {
  const idp = await startIdp(USERS);
  const notes = await startNotesBackend(options.notes);
  const extra = options.backends?.(notes) ?? [];
  let config: Record<string, unknown> = {};
  const gw = await serveGateway({
    env: { GATEWAY_ENCRYPTION_KEY: ENCRYPTION_KEY, ...options.env },
    ...(options.kvPath ? { kvPath: options.kvPath } : {}),
    configFor: async (url) =>
      config = await options.configFor?.(url, notes) ?? {
        backends: [
          { name: "notes", url: notes.url, auth: options.notesAuth ?? { type: "oauth" } },
          ...extra,
        ],
        login: {
          providers: [oidcProviderConfig(idp)],
          access: [
            { emails: ["ana@example.com", "bob@example.com"], scopes: ["mcp"] },
            { emails: ["eve@example.com"], scopes: [`mcp:${extra[0]?.name ?? "notes"}`] },
          ],
        },
      },
  });
  idp.register(`${gw.url}/login/corp/callback`);
  return {
    idp,
    notes,
    gw,
    config,
    async close() {
      await closeAggregate(gw.deps);
      await gw.close();
      await notes.close();
      await idp.close();
    },
  };
}

/** A browser signed in to the gateway as `login` through Corp SSO (it lands on /connections). */
export async function signedInBrowser(gwUrl: string, login: string): Promise<HttpBrowser> {
  const browser = new HttpBrowser();
  let page = await browser.navigate(`${gwUrl}/login?return_to=/connections`);
  assertEquals(page.status, 200, page.html.slice(0, 300));
  page = await browser.navigate(providerHref(page.html, "Corp SSO"));
  page = await signInAtIdp(browser, page, login);
  assertEquals(page.url.pathname, "/connections", page.html.slice(0, 300));
  return browser;
}

/**
 * Opens `/connect/{backend}` in `browser` and signs in at the backend's authorization server as
 * `account` (login and consent); returns the page reached (normally `/connections`).
 */
export async function connectBackend(
  browser: HttpBrowser,
  gwUrl: string,
  backend: string,
  account: string,
  stop?: (u: URL) => boolean,
): Promise<Page> {
  const page = await browser.navigate(`${gwUrl}/connect/${backend}`, {}, stop);
  return await signInAtIdp(browser, page, account, stop);
}

/** An access token of the gateway for `user` (a grant as if they had approved a client). */
export async function userToken(
  deps: Deps,
  user: UserRef | undefined,
  options: { scope?: string; resource?: string } = {},
): Promise<string> {
  const now = deps.now();
  const grant = {
    grantId: crypto.randomUUID(),
    clientId: "per-user-test-client",
    scope: options.scope ?? "mcp",
    resource: options.resource ?? `${deps.settings.publicUrl}/mcp`,
    createdAt: now,
    expiresAt: now + deps.config.refreshTokenTtlSeconds * 1000,
    ...(user ? { user } : {}),
  };
  const op = deps.kv.atomic();
  putGrant(deps, op, grant);
  const minted = await mintTokens(deps, op, grant);
  if (!(await op.commit()).ok) throw new Error("userToken: commit failed");
  return minted.accessToken;
}

/** Asserts a gateway HTML page: status, content type, no framing, and its text. */
export function assertPage(page: Page, status: number, text: RegExp): void {
  assertEquals(page.status, status, page.html.slice(0, 400));
  assertMatch(page.res.headers.get("content-type") ?? "", /^text\/html/);
  assertStringIncludes(
    page.res.headers.get("content-security-policy") ?? "",
    "frame-ancestors 'none'",
  );
  assertEquals(page.res.headers.get("x-frame-options"), "DENY");
  assertMatch(page.html, text);
}
