/**
 * Helpers that drive the OAuth flow like a client and a user would: register (RFC 7591),
 * make a PKCE pair (RFC 7636), and get a code through the consent form (OAuth 2.1 §4.1).
 * `fetchLike` is `createHandler(deps)` in-process or `(r) => fetch(r)` for a served gateway.
 */
import { randomToken, s256 } from "../lib/infra/crypto.ts";

/** Anything that answers a Request: an in-process handler or `fetch`. */
export type FetchLike = (req: Request) => Promise<Response>;

/** `PUBLIC_URL` of `makeDeps()` (tests/_helpers.ts). */
export const DEFAULT_BASE_URL = "http://localhost:8000";
/** Owner password of `makeDeps()`. */
export const DEFAULT_PASSWORD = "correct horse battery staple";
/** Redirect URI of the default test client. */
export const DEFAULT_REDIRECT_URI = "http://127.0.0.1:3000/callback";

/** Registers a client (default: a public client with one loopback redirect URI). */
export async function registerClient(
  fetchLike: FetchLike,
  metadata: Record<string, unknown> = {},
  baseUrl = DEFAULT_BASE_URL,
): Promise<Record<string, any> & { client_id: string; redirect_uris: string[] }> {
  const res = await fetchLike(
    new Request(`${baseUrl}/register`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        client_name: "Test client",
        redirect_uris: [DEFAULT_REDIRECT_URI],
        token_endpoint_auth_method: "none",
        grant_types: ["authorization_code", "refresh_token"],
        ...metadata,
      }),
    }),
  );
  const body = await res.json();
  if (res.status !== 201) {
    throw new Error(`registration failed: ${res.status} ${JSON.stringify(body)}`);
  }
  return body;
}

/** A PKCE verifier and its S256 challenge (RFC 7636 §4.1, §4.2). */
export async function pkcePair(): Promise<{ verifier: string; challenge: string }> {
  const verifier = randomToken(32);
  return { verifier, challenge: await s256(verifier) };
}

/** Parameters of {@linkcode authorizeCode}. */
export interface AuthorizeOptions {
  baseUrl?: string;
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  scope?: string;
  resource?: string;
  state?: string;
  password?: string;
}

/** The URL of `GET /authorize` for these options. */
export function authorizeUrl(o: AuthorizeOptions): URL {
  const url = new URL(`${o.baseUrl ?? DEFAULT_BASE_URL}/authorize`);
  const q = url.searchParams;
  q.set("response_type", "code");
  q.set("client_id", o.clientId);
  q.set("redirect_uri", o.redirectUri);
  q.set("code_challenge", o.codeChallenge);
  q.set("code_challenge_method", "S256");
  if (o.scope !== undefined) q.set("scope", o.scope);
  if (o.resource !== undefined) q.set("resource", o.resource);
  if (o.state !== undefined) q.set("state", o.state);
  return url;
}

/** The consent form of a page: its hidden fields, action and the CSRF cookie. */
export interface ConsentForm {
  action: string;
  requestId: string;
  csrfToken: string;
  /** `name=value` for the Cookie header. */
  cookie: string;
}

/** Extracts the hidden fields of the consent page and the cookie its response set. */
export function readConsentForm(html: string, res: Response): ConsentForm {
  const field = (name: string) => {
    const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`));
    if (!m) throw new Error(`consent page has no "${name}" field`);
    return m[1]!;
  };
  const action = html.match(/<form method="post" action="([^"]*)"/)?.[1];
  if (!action) throw new Error("consent page has no form");
  const setCookie = res.headers.get("set-cookie");
  if (!setCookie) throw new Error("consent page set no cookie");
  return {
    action: action.replaceAll("&amp;", "&"),
    requestId: field("request_id"),
    csrfToken: field("csrf_token"),
    cookie: setCookie.split(";")[0]!,
  };
}

/** Posts the consent form (`POST /authorize`) as the browser would. */
export function postDecision(
  fetchLike: FetchLike,
  form: ConsentForm,
  decision: "approve" | "deny",
  password?: string,
  baseUrl = DEFAULT_BASE_URL,
): Promise<Response> {
  const body = new URLSearchParams({
    request_id: form.requestId,
    csrf_token: form.csrfToken,
    decision,
  });
  if (password !== undefined) body.set("password", password);
  return fetchLike(
    new Request(`${baseUrl}/authorize`, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        cookie: form.cookie,
        origin: new URL(baseUrl).origin,
      },
      body,
    }),
  );
}

/**
 * Drives `GET /authorize`, reads the consent form and its cookie, approves with the owner
 * password, and returns the code and the full redirect location.
 */
export async function authorizeCode(
  fetchLike: FetchLike,
  options: AuthorizeOptions,
): Promise<{ code: string; location: URL }> {
  const baseUrl = options.baseUrl ?? DEFAULT_BASE_URL;
  const page = await fetchLike(new Request(authorizeUrl(options)));
  const html = await page.text();
  if (page.status !== 200) throw new Error(`GET /authorize: ${page.status} ${html.slice(0, 300)}`);
  const form = readConsentForm(html, page);
  const res = await postDecision(
    fetchLike,
    form,
    "approve",
    options.password ?? DEFAULT_PASSWORD,
    baseUrl,
  );
  await res.body?.cancel();
  const location = res.headers.get("location");
  if (res.status !== 303 || !location) throw new Error(`POST /authorize: ${res.status}`);
  const url = new URL(location);
  const code = url.searchParams.get("code");
  if (!code) throw new Error(`no code in ${url.origin}${url.pathname}: ${url.search}`);
  return { code, location: url };
}
