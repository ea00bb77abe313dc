/**
 * A small local GitHub for the GitHub sign-in tests: the few endpoints the gateway uses, on
 * `127.0.0.1:<port 0>`, with the request and response shapes of GitHub's documentation:
 *
 * - `GET /login/oauth/authorize` and `POST /login/oauth/access_token` ("Authorizing OAuth apps",
 *   web application flow; PKCE `code_challenge`/`code_verifier` S256; errors such as
 *   `bad_verification_code` come back with status 200 and an `error` field);
 * - `GET /api/v3/user` ("Get the authenticated user": `login`, `id`, `name`, `email`, …);
 * - `GET /api/v3/user/emails` ("List email addresses for the authenticated user": an array of
 *   `{ email, primary, verified, visibility }`);
 * - `GET /api/v3/user/memberships/orgs/{org}` ("Get an organization membership for the
 *   authenticated user": `{ url, state: "active" | "pending", role, organization, user }`, 404
 *   when not a member).
 *
 * The API lives under `/api/v3`, as on GitHub Enterprise Server. Authorizing shows no page: the
 * user of `signInAs` approves at once. The API insists on the headers GitHub documents
 * (`Authorization: Bearer`, `User-Agent`).
 */
import { s256 } from "../lib/infra/crypto.ts";

/** A GitHub account of the test server. */
export interface GithubUser {
  id: number;
  login: string;
  name?: string;
  emails: { email: string; primary: boolean; verified: boolean }[];
  /** org login → membership state */
  orgs?: Record<string, "active" | "pending">;
}

/** The running test GitHub. */
export interface TestGithub {
  url: string;
  clientId: string;
  clientSecret: string;
  /** Who approves the next authorization. */
  signInAs: string;
  /** The next token exchange answers `bad_verification_code`. */
  failNextExchange: boolean;
  /** Query of each authorization request received. */
  authorizations: URLSearchParams[];
  close(): Promise<void>;
}

/** Starts the test GitHub with `users` (by login). */
export function startGithub(users: GithubUser[]): TestGithub {
  const codes = new Map<string, { login: string; challenge: string; redirectUri: string }>();
  const tokens = new Map<string, string>();
  const json = (body: unknown, status = 200) => Response.json(body, { status });
  const gh: TestGithub = {
    url: "",
    clientId: "Iv1.0123456789abcdef",
    clientSecret: "github-client-secret-0123456789abcdef",
    signInAs: "",
    failNextExchange: false,
    authorizations: [],
    close: () => server.shutdown(),
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const url = new URL(req.url);
    if (url.pathname === "/login/oauth/authorize") {
      const q = url.searchParams;
      gh.authorizations.push(q);
      if (q.get("client_id") !== gh.clientId) {
        return new Response("unknown client", { status: 404 });
      }
      const code = crypto.randomUUID();
      codes.set(code, {
        login: gh.signInAs,
        challenge: q.get("code_challenge") ?? "",
        redirectUri: q.get("redirect_uri") ?? "",
      });
      const back = new URL(q.get("redirect_uri")!);
      back.searchParams.set("code", code);
      back.searchParams.set("state", q.get("state") ?? "");
      return Response.redirect(back, 302);
    }
    if (url.pathname === "/login/oauth/access_token" && req.method === "POST") {
      const f = new URLSearchParams(await req.text());
      const grant = codes.get(f.get("code") ?? "");
      codes.delete(f.get("code") ?? "");
      const ok = grant && !gh.failNextExchange && f.get("client_id") === gh.clientId &&
        f.get("client_secret") === gh.clientSecret && f.get("redirect_uri") === grant.redirectUri &&
        await s256(f.get("code_verifier") ?? "") === grant.challenge;
      gh.failNextExchange = false;
      if (!ok) {
        return json({
          error: "bad_verification_code",
          error_description: "The code passed is incorrect or expired.",
          error_uri:
            "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code",
        });
      }
      const token = `gho_${crypto.randomUUID().replaceAll("-", "")}`;
      tokens.set(token, grant.login);
      return json({ access_token: token, token_type: "bearer", scope: "read:user,user:email" });
    }
    const auth = /^Bearer (.+)$/.exec(req.headers.get("authorization") ?? "")?.[1];
    const user = users.find((u) => u.login === tokens.get(auth ?? ""));
    if (!req.headers.get("user-agent")) return json({ message: "User-Agent required" }, 403);
    if (!user) return json({ message: "Requires authentication" }, 401);
    if (url.pathname === "/api/v3/user") {
      return json({
        login: user.login,
        id: user.id,
        node_id: `MDQ6VXNlcj${user.id}`,
        type: "User",
        site_admin: false,
        name: user.name ?? null,
        email: user.emails.find((e) => e.primary)?.email ?? null,
      });
    }
    if (url.pathname === "/api/v3/user/emails") {
      return json(user.emails.map((e) => ({ ...e, visibility: e.primary ? "private" : null })));
    }
    const org = /^\/api\/v3\/user\/memberships\/orgs\/([^/]+)$/.exec(url.pathname)?.[1];
    const state = org && Object.entries(user.orgs ?? {})
      .find(([name]) => name.toLowerCase() === decodeURIComponent(org).toLowerCase())?.[1];
    if (org && state) {
      return json({
        url: `${gh.url}/api/v3/orgs/${org}/memberships/${user.login}`,
        state,
        role: "member",
        organization_url: `${gh.url}/api/v3/orgs/${org}`,
        organization: { login: org, id: 1 },
        user: { login: user.login, id: user.id },
      });
    }
    return json({ message: "Not Found", documentation_url: "https://docs.github.com/rest" }, 404);
  });
  gh.url = `http://127.0.0.1:${server.addr.port}`;
  return gh;
}
