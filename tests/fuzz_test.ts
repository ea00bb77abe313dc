/**
 * Fuzzing every endpoint (issue 5 "The battery"): generated malformed input (wrong types, huge
 * values, unicode, bad JSON, wrong content types and methods, duplicate parameters, missing
 * fields, odd headers) sent in-process through `createHandler(deps)`, with a live backend behind
 * the MCP routes and a valid token so that requests get past authentication. For every case:
 * no 5xx, no hang (per-request timeout), the route's standard error shape and content type.
 *
 * The PRNG is seeded (`FUZZ_SEED` overrides the fixed seed); every failure names the seed, the
 * endpoint and the case number, so a run can be replayed exactly.
 */
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { createHandler } from "../main.ts";
import { assert, assertEquals } from "./_assert.ts";
import { startModernBackend } from "./_backends.ts";
import { makeDeps } from "./_helpers.ts";
import { field, HttpBrowser } from "./_http_browser.ts";
import {
  authorizeUrl,
  DEFAULT_BASE_URL,
  DEFAULT_PASSWORD,
  pkcePair,
  registerClient,
} from "./_oauth_flow.ts";
import { issueAccessToken } from "./_tokens.ts";

const SEED = Number(Deno.env.get("FUZZ_SEED") ?? 0x5eed_2026);
const CASES = 150;
const REQUEST_TIMEOUT_MS = 5000;
const BASE = DEFAULT_BASE_URL;

/** mulberry32: a small, fast, seedable PRNG (public domain). */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const chance = (p: number) => next() < p;
  return { next, int, pick, chance };
}
type Rng = ReturnType<typeof prng>;

const UNICODE = ["é", "日本", "🦕", "\u202e", "\u0000", "\ufeff", "\ud800", "Ω", "\u00a0", "\t"];

/** A string of some flavour: empty, ASCII, unicode, control characters, huge, URL-ish. */
function junkString(r: Rng): string {
  switch (r.int(10)) {
    case 0:
      return "";
    case 1:
      return "x".repeat(r.pick([255, 2049, 20_000, 70_000]));
    case 2:
      return Array.from({ length: 1 + r.int(20) }, () => r.pick(UNICODE)).join("");
    case 3:
      return r.pick(["null", "undefined", "true", "[]", "{}", "0", "-1", "1e309", "NaN"]);
    case 4:
      return r.pick([
        "javascript:alert(1)",
        "http://evil.example/cb",
        "http://127.0.0.1:3000/callback#frag",
        "https://user:pw@evil.example/",
        "%00%0d%0a",
        "../../etc/passwd",
        "http://[::1",
        "cursor://",
      ]);
    case 5:
      return String.fromCharCode(...Array.from({ length: 1 + r.int(40) }, () => r.int(0x80)));
    case 6:
      return "<script>alert(1)</script>\"'&";
    default:
      return randomAscii(r, 1 + r.int(64));
  }
}

function randomAscii(r: Rng, n: number): string {
  const chars =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~:/?#[]@!$&'()*+,;=%";
  return Array.from({ length: n }, () => chars[r.int(chars.length)]).join("");
}

/** A JSON value of any type, bounded in depth. */
function junkJson(r: Rng, depth = 0): unknown {
  const k = r.int(depth > 3 ? 5 : 8);
  switch (k) {
    case 0:
      return null;
    case 1:
      return r.chance(0.5);
    case 2:
      return r.pick([0, -1, 1.5, 2 ** 53 + 1, -0, 1e308]);
    case 3:
    case 4:
      return junkString(r);
    case 5:
      return Array.from({ length: r.int(4) }, () => junkJson(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = r.int(5); i > 0; i--) {
        o[r.chance(0.3) ? junkString(r) : randomAscii(r, 6)] = junkJson(r, depth + 1);
      }
      return o;
    }
  }
}

/** A body that is not valid JSON, or valid JSON of a surprising shape. */
function junkJsonBody(r: Rng, object: () => unknown): string {
  switch (r.int(9)) {
    case 0:
      return "";
    case 1:
      return "{";
    case 2:
      return '{"a":1,}';
    case 3:
      return "[".repeat(5000) + "]".repeat(5000);
    case 4:
      return JSON.stringify(junkJson(r));
    case 5:
      return '{"__proto__":{"admin":true},"constructor":{"prototype":{"x":1}}}';
    case 6:
      return "\ufeff" + JSON.stringify(object());
    case 7:
      return JSON.stringify(object()).slice(0, -3);
    default:
      return JSON.stringify(object());
  }
}

const CONTENT_TYPES = [
  "application/json",
  "application/json; charset=utf-8",
  "APPLICATION/JSON",
  "application/x-www-form-urlencoded",
  "text/plain",
  "multipart/form-data; boundary=x",
  "application/jsonx",
  "",
  "application/json, text/html",
];
const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/**
 * Header values as an HTTP server can receive them: ByteStrings without control characters
 * other than HTAB (RFC 9110 §5.5; Deno.serve's parser refuses the rest before any handler
 * runs, so in-process requests with them prove nothing). Anything else becomes ASCII junk.
 */
function safeHeaders(r: Rng, h: Record<string, string>): Headers {
  const out = new Headers();
  for (const [k, v] of Object.entries(h)) {
    try {
      // deno-lint-ignore no-control-regex
      out.append(k, v.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, "?"));
    } catch {
      out.append(k, randomAscii(r, 8).replace(/[^\x21-\x7e]/g, "a"));
    }
  }
  return out;
}

/** Form-encoded body from `fields` (possibly with duplicates and junk values). */
function junkForm(r: Rng, fields: Record<string, () => string>): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(fields)) {
    if (r.chance(0.25)) continue; // missing field
    params.append(name, r.chance(0.7) ? value() : junkString(r));
    if (r.chance(0.08)) params.append(name, junkString(r)); // duplicate
  }
  if (r.chance(0.2)) params.append(junkString(r), junkString(r));
  if (r.chance(0.05)) return "%%%&&&==" + randomAscii(r, 30);
  return params.toString();
}

/** Odd but well-formed request headers common to every endpoint. */
function oddHeaders(r: Rng): Record<string, string> {
  const h: Record<string, string> = {};
  if (r.chance(0.1)) h["origin"] = r.pick(["null", "http://evil.example", BASE, junkString(r)]);
  if (r.chance(0.1)) h["x-forwarded-for"] = junkString(r);
  if (r.chance(0.1)) h["accept"] = r.pick(["*/*", "text/html", "", junkString(r)]);
  if (r.chance(0.1)) h["cookie"] = r.pick(["a=b", "=;;=", "gw_csrf=" + junkString(r)]);
  if (r.chance(0.05)) h["x-junk"] = "y".repeat(8000);
  return h;
}

/** How a route answers errors (CONVENTIONS.md §Errors). */
type Shape = "oauth" | "authorize_page" | "consent_post" | "json" | "mcp" | "admin_page";

interface Case {
  req: Request;
  describe: string;
}

interface Target {
  name: string;
  shape: Shape;
  make: (r: Rng) => Case;
}

function describe(method: string, url: string, headers: Headers, body: string | null): string {
  const b = body === null ? "" : ` body(${body.length})=${JSON.stringify(body.slice(0, 160))}`;
  const h = JSON.stringify(Object.fromEntries([...headers].map(([k, v]) => [k, v.slice(0, 60)])));
  return `${method} ${url.slice(0, 200)} headers=${h}${b}`;
}

function build(
  r: Rng,
  url: string,
  method: string,
  headers: Record<string, string>,
  body: string | null,
): Case {
  const h = safeHeaders(r, { ...oddHeaders(r), ...headers });
  const withBody = method !== "GET" && method !== "HEAD" && body !== null;
  return {
    req: new Request(url, { method, headers: h, body: withBody ? body : null }),
    describe: describe(method, url, h, withBody ? body : null),
  };
}

/** Awaits the handler with a deadline; the timer never outlives the call. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function isOAuthErrorBody(body: unknown): boolean {
  if (typeof body !== "object" || body === null) return false;
  const b = body as Record<string, unknown>;
  return typeof b.error === "string" && b.error.length > 0 &&
    (b.error_description === undefined || typeof b.error_description === "string");
}

function isJsonRpcError(body: unknown): boolean {
  if (typeof body !== "object" || body === null) return false;
  const b = body as { jsonrpc?: unknown; error?: { code?: unknown; message?: unknown } };
  return b.jsonrpc === "2.0" && typeof b.error === "object" && b.error !== null &&
    Number.isInteger(b.error.code) && typeof b.error.message === "string";
}

/** Checks one answer against the route's contract; returns a reason when it breaks it. */
async function check(shape: Shape, req: Request, res: Response): Promise<string | null> {
  const type = (res.headers.get("content-type") ?? "").split(";")[0]!.trim();
  if (res.status >= 500) return `status ${res.status}: ${await res.text()}`;
  if (type === "text/event-stream") {
    await res.body?.cancel();
    if (shape !== "mcp") return "an SSE stream outside the MCP routes";
    return res.status === 200 ? null : `SSE with status ${res.status}`;
  }
  const text = req.method === "HEAD" ? "" : await res.text();
  if (res.status === 204 || (res.status >= 300 && res.status < 400) || res.status === 202) {
    if ((res.status === 302 || res.status === 303) && shape === "admin_page") {
      // The console sends signed-out browsers to sign-in, and a done form back to a page.
      const location = res.headers.get("location") ?? "";
      const inside = location.startsWith(`${BASE}/login?return_to=%2Fadmin`) ||
        location.startsWith(`${BASE}/admin`);
      return inside ? null : `a redirect out of the console: ${location}`;
    }
    if (res.status === 302 || res.status === 303) {
      if (shape !== "authorize_page" && shape !== "consent_post") return "unexpected redirect";
      const location = new URL(res.headers.get("location") ?? "");
      if (!location.searchParams.has("code") && !location.searchParams.has("error")) {
        return `redirect without code or error: ${location}`;
      }
      if (location.searchParams.get("iss") !== BASE) return "redirect without iss (RFC 9207)";
    } else if (res.status === 204 && req.method !== "OPTIONS") {
      return "204 outside a preflight";
    }
    return null;
  }
  if (req.method === "HEAD") return null;
  if (type === "text/html") {
    // A path that normalizes to "/" (e.g. "/healthz/%2e%2e") reaches the home page, also HTML.
    const page = shape === "authorize_page" || shape === "consent_post" ||
      shape === "admin_page" || new URL(req.url).pathname === "/";
    if (!page) return "HTML outside /authorize, /admin and /";
    if (!/^<!doctype html>/i.test(text.trimStart())) return "HTML page without a doctype";
    if (!(res.headers.get("content-security-policy") ?? "").includes("frame-ancestors 'none'")) {
      return "HTML page without frame-ancestors 'none'";
    }
    return null;
  }
  if (type === "application/x-ndjson") {
    if (shape !== "admin_page" || res.status !== 200) return "JSON Lines outside the export";
    const bad = text.split("\n").filter(Boolean).find((line) => {
      try {
        return typeof JSON.parse(line) !== "object";
      } catch {
        return true;
      }
    });
    return bad === undefined ? null : `an exported line that is not a record: ${bad.slice(0, 100)}`;
  }
  if (type !== "application/json") {
    return `status ${res.status} with content-type ${JSON.stringify(type)}: ${text.slice(0, 200)}`;
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return `not JSON: ${text.slice(0, 200)}`;
  }
  if (res.status < 400) return null;
  if (shape === "mcp") {
    if (isJsonRpcError(body)) return null;
    // Bearer failures are RFC 6750 §3 challenges, in OAuth shape with WWW-Authenticate.
    if (isOAuthErrorBody(body) && res.headers.has("www-authenticate")) return null;
    return `not a JSON-RPC error: ${text.slice(0, 300)}`;
  }
  return isOAuthErrorBody(body) ? null : `not an OAuth error body: ${text.slice(0, 300)}`;
}

Deno.test("fuzz: every endpoint answers malformed input in its standard error shape", async (t) => {
  const backend = startModernBackend();
  const deps = await makeDeps({
    config: {
      backends: [{ name: "alpha", url: backend.url, timeoutMs: 4000 }],
      rateLimits: {
        registerPerIpPerHour: 100_000,
        tokenPerClientPerMinute: 100_000,
        authorizePerIpPerMinute: 100_000,
        mcpPerGrantPerMinute: 100_000,
        passwordFailuresPer15Minutes: 100_000,
      },
    },
  });
  const handle = createHandler(deps);
  try {
    const client = await registerClient(handle);
    const confidential = await registerClient(handle, {
      token_endpoint_auth_method: "client_secret_basic",
    });
    const { verifier, challenge } = await pkcePair();
    const { accessToken, refreshToken } = await issueAccessToken(deps, {
      scope: "mcp",
      resource: `${BASE}/mcp`,
      clientId: client.client_id,
    });
    const consent = await handle(
      new Request(authorizeUrl({
        clientId: client.client_id,
        redirectUri: client.redirect_uris[0]!,
        codeChallenge: challenge,
      })),
    );
    const consentHtml = await consent.text();
    const requestId = consentHtml.match(/name="request_id" value="([^"]*)"/)?.[1] ?? "";
    const csrf = consentHtml.match(/name="csrf_token" value="([^"]*)"/)?.[1] ?? "";
    const cookie = (consent.headers.get("set-cookie") ?? "").split(";")[0]!;
    // The owner, signed in: the admin console's pages get past the sign-in check.
    const owner = new HttpBrowser({ [BASE]: handle });
    const signIn = await owner.navigate(`${BASE}/login?return_to=/admin/config`);
    const config = await owner.submit(`${BASE}/login`, {
      signin_id: field(signIn.html, "signin_id"),
      csrf_token: field(signIn.html, "csrf_token"),
      return_to: field(signIn.html, "return_to"),
      password: DEFAULT_PASSWORD,
    });
    assertEquals(config.status, 200, "the owner is signed in");
    const adminCookie = owner.cookieHeader(new URL(BASE));
    const adminCsrf = field(config.html, "csrf_token");

    const jsonRpc = (r: Rng) => () => {
      const msg: Record<string, unknown> = {
        jsonrpc: r.chance(0.8) ? "2.0" : junkJson(r),
        method: r.chance(0.6)
          ? r.pick([
            "initialize",
            "tools/list",
            "tools/call",
            "ping",
            "server/discover",
            "notifications/initialized",
            "resources/read",
            "subscriptions/listen",
            "prompts/get",
          ])
          : junkJson(r),
      };
      if (r.chance(0.8)) msg.id = r.pick([1, "a", null, junkJson(r)]);
      if (r.chance(0.7)) msg.params = junkJson(r);
      if (r.chance(0.3)) {
        msg.params = {
          name: r.chance(0.5) ? "alpha__echo" : junkString(r),
          arguments: junkJson(r),
          _meta: {
            "io.modelcontextprotocol/protocolVersion": r.pick(["2026-07-28", "1999-01-01", 7]),
            "io.modelcontextprotocol/clientCapabilities": junkJson(r),
          },
          protocolVersion: r.pick(["2025-11-25", "2025-03-26", junkString(r)]),
          capabilities: junkJson(r),
          clientInfo: junkJson(r),
        };
      }
      return r.chance(0.1) ? [msg, msg] : msg;
    };

    const mcpTarget = (path: string): Target => ({
      name: path,
      shape: "mcp",
      make: (r) => {
        const headers: Record<string, string> = {
          authorization: r.chance(0.9)
            ? `Bearer ${accessToken}`
            : r.pick(["Bearer", "Basic abc", `Bearer ${accessToken} x`, junkString(r)]),
          "content-type": r.chance(0.7) ? "application/json" : r.pick(CONTENT_TYPES),
          accept: r.chance(0.7)
            ? "application/json, text/event-stream"
            : r.pick(["", "*/*", "text/html"]),
        };
        if (r.chance(0.3)) headers["mcp-session-id"] = r.pick([crypto.randomUUID(), junkString(r)]);
        if (r.chance(0.3)) {
          headers["mcp-protocol-version"] = r.pick(["2026-07-28", "2025-11-25", junkString(r)]);
        }
        if (r.chance(0.3)) headers["mcp-method"] = r.pick(["tools/call", junkString(r)]);
        if (r.chance(0.2)) headers["mcp-name"] = junkString(r);
        if (r.chance(0.1)) headers["last-event-id"] = junkString(r);
        if (r.chance(0.1)) headers["mcp-param-x"] = junkString(r);
        const query = r.chance(0.05)
          ? `?access_token=${accessToken}`
          : r.chance(0.05)
          ? "?a=%zz"
          : "";
        const method = r.chance(0.75) ? "POST" : r.pick(METHODS);
        const at = path === "/mcp/alpha" && r.chance(0.05) ? "/mcp/nope" : path;
        return build(r, `${BASE}${at}${query}`, method, headers, junkJsonBody(r, jsonRpc(r)));
      },
    });

    const oauthForm = (path: string, fields: Record<string, () => string>): Target => ({
      name: path,
      shape: "oauth",
      make: (r) => {
        const headers: Record<string, string> = {
          "content-type": r.chance(0.7)
            ? "application/x-www-form-urlencoded"
            : r.pick(CONTENT_TYPES),
        };
        if (r.chance(0.2)) {
          headers.authorization = r.pick([
            `Basic ${btoa(`${confidential.client_id}:${confidential.client_secret}`)}`,
            `Basic ${btoa(`${confidential.client_id}:wrong`)}`,
            "Basic !!!",
            `Basic ${btoa(":")}`,
            `Bearer ${accessToken}`,
            junkString(r),
          ]);
        }
        const method = r.chance(0.85) ? "POST" : r.pick(METHODS);
        return build(r, `${BASE}${path}`, method, headers, junkForm(r, fields));
      },
    });

    const clientIds = (r: Rng) => () =>
      r.pick([
        client.client_id,
        confidential.client_id,
        "https://evil.example/cimd",
        junkString(r),
      ]);
    const r0 = prng(SEED);
    const targets: Target[] = [
      {
        name: "/register",
        shape: "oauth",
        make: (r) => {
          const meta = () => {
            const m: Record<string, unknown> = {
              client_name: r.chance(0.5) ? junkString(r) : "Fuzz",
              redirect_uris: r.chance(0.5)
                ? ["http://127.0.0.1:3000/callback"]
                : r.chance(0.5)
                ? junkJson(r)
                : [junkString(r), "https://ok.example/cb"],
              token_endpoint_auth_method: r.pick([
                "none",
                "client_secret_basic",
                "private_key_jwt",
                5,
              ]),
              grant_types: r.chance(0.5) ? ["authorization_code"] : junkJson(r),
            };
            for (const k of Object.keys(m)) if (r.chance(0.15)) delete m[k];
            if (r.chance(0.3)) {
              m[
                r.pick([
                  "scope",
                  "client_uri",
                  "logo_uri",
                  "jwks",
                  "software_id",
                  "application_type",
                  "response_types",
                  "client_id",
                  "client_secret",
                ])
              ] = junkJson(r);
            }
            return m;
          };
          const type = r.chance(0.75) ? "application/json" : r.pick(CONTENT_TYPES);
          const method = r.chance(0.85) ? "POST" : r.pick(METHODS);
          return build(
            r,
            `${BASE}/register`,
            method,
            { "content-type": type },
            junkJsonBody(r, meta),
          );
        },
      },
      {
        name: "GET /authorize",
        shape: "authorize_page",
        make: (r) => {
          const fields: Record<string, () => string> = {
            response_type: () => r.pick(["code", "token", "code id_token"]),
            client_id: clientIds(r),
            redirect_uri: () =>
              r.pick([
                "http://127.0.0.1:3000/callback",
                "http://127.0.0.1:9999/callback",
                "http://localhost:3000/callback",
                "https://evil.example/callback",
                "http://127.0.0.1:3000/callback?x=1",
                "http://127.0.0.1:3000/Callback",
              ]),
            code_challenge: () => r.pick([challenge, "short", "a".repeat(43)]),
            code_challenge_method: () => r.pick(["S256", "plain", "s256"]),
            scope: () => r.pick(["mcp", "mcp:alpha", "mcp:nope", "offline_access mcp", "openid"]),
            resource: () =>
              r.pick([
                `${BASE}/mcp`,
                `${BASE}/mcp/alpha`,
                `${BASE}/mcp/zzz`,
                "https://evil.example/mcp",
              ]),
            state: () => junkString(r),
          };
          const query = junkForm(r, fields);
          const method = r.chance(0.9) ? "GET" : r.pick(["PUT", "DELETE", "PATCH"]);
          return build(r, `${BASE}/authorize?${query}`, method, {}, null);
        },
      },
      {
        name: "POST /authorize",
        shape: "consent_post",
        make: (r) => {
          const headers: Record<string, string> = {
            "content-type": r.chance(0.8)
              ? "application/x-www-form-urlencoded"
              : r.pick(CONTENT_TYPES),
            cookie: r.chance(0.5) ? cookie : junkString(r),
          };
          if (r.chance(0.7)) headers.origin = r.chance(0.7) ? BASE : junkString(r);
          const body = junkForm(r, {
            request_id: () => r.pick([requestId, crypto.randomUUID()]),
            csrf_token: () => r.pick([csrf, "x".repeat(43)]),
            decision: () => r.pick(["approve", "deny", "maybe"]),
            password: () => r.pick(["wrong password", ""]),
          });
          return build(r, `${BASE}/authorize`, "POST", headers, body);
        },
      },
      oauthForm("/token", {
        grant_type: () =>
          r0.pick(["authorization_code", "refresh_token", "password", "client_credentials"]),
        code: () => r0.pick(["gwac_x", junkString(r0)]),
        redirect_uri: () => r0.pick(["http://127.0.0.1:3000/callback", junkString(r0)]),
        code_verifier: () => r0.pick([verifier, "short", "a".repeat(200)]),
        client_id: clientIds(r0),
        client_secret: () => r0.pick([confidential.client_secret ?? "", "wrong"]),
        refresh_token: () => r0.pick(["gwrt_bogus", junkString(r0)]),
        scope: () => r0.pick(["mcp", "mcp:alpha", "admin"]),
        resource: () => r0.pick([`${BASE}/mcp`, "https://evil.example/"]),
      }),
      oauthForm("/revoke", {
        token: () => r0.pick(["gwat_bogus", "gwrt_bogus", junkString(r0)]),
        token_type_hint: () => r0.pick(["access_token", "refresh_token", "id_token"]),
        client_id: clientIds(r0),
        client_secret: () => r0.pick([confidential.client_secret ?? "", "wrong"]),
      }),
      ...[
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource/mcp/alpha",
        "/healthz",
        "/health",
      ].map((path): Target => ({
        name: path,
        shape: "json",
        make: (r) => {
          const suffix = r.pick([
            "",
            "",
            "/",
            "/zzz",
            "/%2e%2e",
            `?${junkForm(r, { a: () => "b" })}`,
          ]);
          const headers: Record<string, string> = {};
          if (path === "/health" || r.chance(0.2)) {
            headers.authorization = r.pick([
              `Bearer ${accessToken}`,
              `Bearer ${refreshToken}`,
              "Bearer x",
              "Basic a",
              junkString(r),
            ]);
          }
          return build(
            r,
            `${BASE}${path}${suffix}`,
            r.chance(0.7) ? "GET" : r.pick(METHODS),
            headers,
            junkString(r),
          );
        },
      })),
      mcpTarget("/mcp/alpha"),
      mcpTarget("/mcp"),
      {
        name: "admin console",
        shape: "admin_page",
        make: (r) => {
          const path = r.pick([
            "/admin",
            "/admin/grants",
            "/admin/clients",
            "/admin/users",
            "/admin/audit",
            "/admin/audit.jsonl",
            "/admin/config",
            "/admin/grants/revoke",
            "/admin/users/revoke",
          ]);
          const time = () =>
            r.pick(["1h", "7d", "2026-07-01T12:00", "0s", "999999d", junkString(r)]);
          const query = r.chance(0.7)
            ? `?${
              junkForm(r, {
                user: () => r.pick(["owner", "corp:ann", junkString(r)]),
                backend: () => r.pick(["alpha", junkString(r)]),
                tool: () => r.pick(["alpha__*", "*", "**", junkString(r)]),
                outcome: () => r.pick(["ok", "error", "-32602", junkString(r)]),
                event: () => r.pick(["mcp", "token", junkString(r)]),
                since: time,
                until: time,
                before: () => r.pick(["0", "1e300", "-1", String(Date.now()), junkString(r)]),
                skip: () => r.pick(["0", "50", "-3", junkString(r)]),
                page: () => r.pick(["1", "0", "99999999", "1.5", junkString(r)]),
                client: () => junkString(r),
                revoked: () => junkString(r),
              })
            }`
            : "";
          const post = path.endsWith("/revoke") ? r.chance(0.85) : r.chance(0.1);
          const headers: Record<string, string> = {};
          if (r.chance(0.85)) headers.cookie = adminCookie;
          if (post) {
            headers["content-type"] = r.chance(0.85)
              ? "application/x-www-form-urlencoded"
              : r.pick(["application/json", "text/plain", junkString(r)]);
          }
          const body = junkForm(r, {
            grant_id: () => r.pick([crypto.randomUUID(), "../x", junkString(r)]),
            // Never the owner: the run stays signed in.
            sub: () => r.pick(["corp:ann", "github:1", junkString(r)]),
            confirm: () => r.pick(["yes", "no"]),
            csrf_token: () => (r.chance(0.7) ? adminCsrf : junkString(r)),
            return_to: () => r.pick(["/admin/grants?page=2", "//evil.example", junkString(r)]),
          });
          const method = post ? "POST" : r.chance(0.9) ? "GET" : r.pick(METHODS);
          return build(r, `${BASE}${path}${query}`, method, headers, body);
        },
      },
      {
        name: "unknown paths",
        shape: "json",
        make: (r) =>
          build(
            r,
            `${BASE}/${r.pick(["mcp/alpha/x", "admin/x", "%ff", "register/", ".well-known/x"])}`,
            r.pick(METHODS),
            {},
            junkString(r),
          ),
      },
    ];
    // The /token and /revoke field generators draw from r0; re-seed it per target below.
    for (const [ti, target] of targets.entries()) {
      await t.step(
        `${target.name}: ${CASES} malformed requests, no 5xx, standard errors`,
        async () => {
          const r = prng(SEED + ti);
          Object.assign(r0, prng(SEED + 1000 + ti));
          const statuses = new Map<number, number>();
          for (let i = 0; i < CASES; i++) {
            const c = target.make(r);
            const context = `seed=${SEED} target="${target.name}" case=${i}: ${c.describe}`;
            const res = await within(handle(c.req), REQUEST_TIMEOUT_MS, context);
            const problem = await within(
              check(target.shape, c.req, res),
              REQUEST_TIMEOUT_MS,
              context,
            );
            statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
            assertEquals(problem, null, `${problem} — ${context}`);
          }
          if (target.name !== "unknown paths") {
            assert(
              statuses.size > 1,
              `the generator produced one kind of answer: ${[...statuses]}`,
            );
          }
        },
      );
    }
    await t.step("the gateway still serves a valid MCP call afterwards", async () => {
      const res = await handle(
        new Request(`${BASE}/mcp/alpha`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${accessToken}`,
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
          },
          body: JSON.stringify({
            jsonrpc: "2.0",
            id: 1,
            method: "initialize",
            params: {
              protocolVersion: "2025-11-25",
              capabilities: {},
              clientInfo: { name: "f", version: "1" },
            },
          }),
        }),
      );
      assertEquals(res.status, 200);
      assert(/json|event-stream/.test(res.headers.get("content-type") ?? ""));
      assert((await res.text()).includes("modern-test-backend"));
    });
    await t.step("no 500 was logged as an unexpected error", () => {
      const errors = deps.logs.filter((l) => l.level === "error");
      assertEquals(errors, [], `seed=${SEED}`);
    });
  } finally {
    await closeAggregate(deps);
    deps.kv.close();
    await backend.close();
  }
});
