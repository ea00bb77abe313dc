/**
 * MCP edge gateway: an OAuth 2.1 authorization server and an authenticated front for the MCP
 * backends of `gateway.config.json`. One route table; each route lives in `routes/`.
 */
import { clientIp } from "./lib/infra/client_ip.ts";
import { type Deps, loadDeps, type RouteContext } from "./lib/deps.ts";
import {
  BodyTooLargeError,
  DEFAULT_BODY_LIMIT,
  jsonResponse,
  jsonRpcErrorResponse,
  limitRequestBody,
  MCP_BODY_LIMIT,
  preflight,
  withCors,
} from "./lib/infra/http.ts";
import { withoutBody } from "./lib/infra/head.ts";
import { isKvFailure, KV_RETRY_AFTER_SECONDS } from "./lib/infra/kv_errors.ts";
import { OAuthError, oauthErrorResponse } from "./lib/oauth/oauth_error.ts";
import * as adminAudit from "./routes/admin_audit.ts";
import * as adminAuditExport from "./routes/admin_audit_export.ts";
import * as adminBackends from "./routes/admin_backends.ts";
import * as adminClients from "./routes/admin_clients.ts";
import * as adminConfig from "./routes/admin_config.ts";
import * as adminGrantRevoke from "./routes/admin_grant_revoke.ts";
import * as adminGrants from "./routes/admin_grants.ts";
import * as adminUserRevoke from "./routes/admin_user_revoke.ts";
import * as adminUsers from "./routes/admin_users.ts";
import * as asMetadata from "./routes/as_metadata.ts";
import * as authorize from "./routes/authorize.ts";
import * as authorizeDecision from "./routes/authorize_decision.ts";
import * as connect from "./routes/connect.ts";
import * as connectCallback from "./routes/connect_callback.ts";
import * as connectSecret from "./routes/connect_secret.ts";
import * as connections from "./routes/connections.ts";
import * as disconnect from "./routes/disconnect.ts";
import * as health from "./routes/health.ts";
import * as healthz from "./routes/healthz.ts";
import * as home from "./routes/home.ts";
import * as mcpBackend from "./routes/mcp_backend.ts";
import * as oauthClientMetadata from "./routes/oauth_client_metadata.ts";
import * as openIdConfiguration from "./routes/openid_configuration.ts";
import * as protectedResource from "./routes/protected_resource.ts";
import * as register from "./routes/register.ts";
import * as login from "./routes/login.ts";
import * as loginCallback from "./routes/login_callback.ts";
import * as revoke from "./routes/revoke.ts";
import * as signIn from "./routes/sign_in.ts";
import * as signInPassword from "./routes/sign_in_password.ts";
import * as signOut from "./routes/sign_out.ts";
import * as token from "./routes/token.ts";
import { printBanner, startFacts } from "./lib/startup/banner.ts";
import { exitOnStartupError } from "./lib/startup/errors.ts";
import { flushAuditOnShutdown, observeResponse } from "./lib/admin/router_hooks.ts";

/** A route handler: reads its input, calls `lib/`, renders a response. */
export type Handler = (req: Request, ctx: RouteContext) => Response | Promise<Response>;

/** One entry of the route table (the shape of std's `unstable_route`). */
export interface Route {
  name: string;
  pattern: URLPattern;
  method: string | string[];
  handler: Handler;
  /** Browser clients may call it cross-origin (CORS headers, preflight answered). */
  cors?: boolean;
  /** An MCP route: errors are JSON-RPC errors, bodies may reach {@linkcode MCP_BODY_LIMIT}. */
  mcp?: boolean;
  /**
   * HEAD (RFC 9110 §9.3.2) runs a GET route's handler (which sees the HEAD method) and drops the
   * body. `false`: the GET starts or finishes a one-time flow (state stored or consumed), so
   * HEAD is 405 there. MCP routes never answer HEAD (MCP Transports define GET, POST, DELETE).
   */
  head?: false;
}

const p = (pathname: string) => new URLPattern({ pathname });

/**
 * A route whose module loads on its first request. The aggregated `/mcp` route pulls in the MCP
 * SDK (about 25 MB of heap): a gateway used only through `/mcp/<backend>` never pays for it.
 * The specifier is a literal, so Deno Deploy bundles the module.
 */
function lazyHandler(load: () => Promise<{ handler: Handler }>): Handler {
  let loaded: Promise<{ handler: Handler }> | undefined;
  return async (req, ctx) => (await (loaded ??= load())).handler(req, ctx);
}
const MCP_METHODS = ["GET", "POST", "DELETE"];

/** The gateway's routes, matched in order. */
export const routes: Route[] = [
  { name: "home", pattern: p("/"), method: "GET", handler: home.handler },
  { name: "healthz", pattern: p("/healthz"), method: "GET", handler: healthz.handler },
  { name: "health", pattern: p("/health"), method: "GET", handler: health.handler, cors: true },
  {
    name: "as_metadata",
    pattern: p("/.well-known/oauth-authorization-server"),
    method: "GET",
    handler: asMetadata.handler,
    cors: true,
  },
  {
    name: "openid_configuration",
    pattern: p("/.well-known/openid-configuration"),
    method: "GET",
    handler: openIdConfiguration.handler,
    cors: true,
  },
  {
    name: "protected_resource",
    pattern: p("/.well-known/oauth-protected-resource{/mcp}?"),
    method: "GET",
    handler: protectedResource.handler,
    cors: true,
  },
  {
    name: "protected_resource",
    pattern: p("/.well-known/oauth-protected-resource/mcp/:backend"),
    method: "GET",
    handler: protectedResource.handler,
    cors: true,
  },
  {
    name: "register",
    pattern: p("/register"),
    method: "POST",
    handler: register.handler,
    cors: true,
  },
  { name: "authorize", pattern: p("/authorize"), method: "GET", handler: authorize.handler },
  {
    name: "authorize_decision",
    pattern: p("/authorize"),
    method: "POST",
    handler: authorizeDecision.handler,
  },
  { name: "sign_in", pattern: p("/login"), method: "GET", handler: signIn.handler },
  {
    name: "sign_in_password",
    pattern: p("/login"),
    method: "POST",
    handler: signInPassword.handler,
  },
  {
    name: "login",
    pattern: p("/login/:provider"),
    method: "GET",
    handler: login.handler,
    head: false,
  },
  {
    name: "login_callback",
    pattern: p("/login/:provider/callback"),
    method: "GET",
    handler: loginCallback.handler,
    head: false,
  },
  { name: "sign_out", pattern: p("/logout"), method: "POST", handler: signOut.handler },
  {
    name: "connect",
    pattern: p("/connect/:backend"),
    method: "GET",
    handler: connect.handler,
    head: false,
  },
  {
    name: "connect_secret",
    pattern: p("/connect/:backend"),
    method: "POST",
    handler: connectSecret.handler,
  },
  {
    name: "connect_callback",
    pattern: p("/connect/:backend/callback"),
    method: "GET",
    handler: connectCallback.handler,
    head: false,
  },
  { name: "connections", pattern: p("/connections"), method: "GET", handler: connections.handler },
  {
    name: "disconnect",
    pattern: p("/connections/:backend/disconnect"),
    method: "POST",
    handler: disconnect.handler,
  },
  {
    name: "oauth_client_metadata",
    pattern: p("/oauth/client.json"),
    method: "GET",
    handler: oauthClientMetadata.handler,
    cors: true,
  },
  // The admin console (lib/admin/console/): administrators' browser sessions only.
  { name: "admin", pattern: p("/admin{/}?"), method: "GET", handler: adminBackends.handler },
  {
    name: "admin_grants",
    pattern: p("/admin/grants"),
    method: "GET",
    handler: adminGrants.handler,
  },
  {
    name: "admin_grant_revoke",
    pattern: p("/admin/grants/revoke"),
    method: "POST",
    handler: adminGrantRevoke.handler,
  },
  {
    name: "admin_clients",
    pattern: p("/admin/clients"),
    method: "GET",
    handler: adminClients.handler,
  },
  { name: "admin_users", pattern: p("/admin/users"), method: "GET", handler: adminUsers.handler },
  {
    name: "admin_user_revoke",
    pattern: p("/admin/users/revoke"),
    method: "POST",
    handler: adminUserRevoke.handler,
  },
  { name: "admin_audit", pattern: p("/admin/audit"), method: "GET", handler: adminAudit.handler },
  {
    name: "admin_audit_export",
    pattern: p("/admin/audit.jsonl"),
    method: "GET",
    handler: adminAuditExport.handler,
  },
  {
    name: "admin_config",
    pattern: p("/admin/config"),
    method: "GET",
    handler: adminConfig.handler,
  },
  { name: "token", pattern: p("/token"), method: "POST", handler: token.handler, cors: true },
  { name: "revoke", pattern: p("/revoke"), method: "POST", handler: revoke.handler, cors: true },
  {
    name: "mcp",
    pattern: p("/mcp"),
    method: MCP_METHODS,
    handler: lazyHandler(() => import("./routes/mcp.ts")),
    cors: true,
    mcp: true,
  },
  {
    name: "mcp_backend",
    pattern: p("/mcp/:backend"),
    method: MCP_METHODS,
    handler: mcpBackend.handler,
    cors: true,
    mcp: true,
  },
];

function allows(route: Route, method: string): boolean {
  if (method === "HEAD") return !route.mcp && route.head !== false && allows(route, "GET");
  return Array.isArray(route.method) ? route.method.includes(method) : route.method === method;
}

/** The `Allow` value of a path (RFC 9110 §10.2.1): its routes' methods, HEAD after GET. */
function allowHeader(candidates: Route[]): string {
  const methods = new Set<string>();
  for (const r of candidates) {
    for (const m of [r.method].flat()) methods.add(m);
    if (allows(r, "HEAD")) methods.add("HEAD");
  }
  return [...methods].join(", ");
}

/** 413 (RFC 9110 §15.5.14): RFC 6749 §5.2 `invalid_request`, or JSON-RPC -32600 on MCP. */
function bodyTooLarge(error: BodyTooLargeError, route: Route): Response {
  return route.mcp
    ? jsonRpcErrorResponse(413, -32600, error.message)
    : jsonResponse({ error: "invalid_request", error_description: error.message }, 413);
}

/**
 * Renders anything a route threw: OAuth errors as RFC 6749 §5.2 JSON, over-long bodies as 413,
 * storage (Deno KV) failures as 503 `temporarily_unavailable` with `Retry-After` (RFC 9110
 * §15.6.4; JSON-RPC -32603 on MCP routes), the rest as a bare 500.
 */
function renderError(error: unknown, deps: Deps, route: Route): Response {
  if (error instanceof OAuthError) return oauthErrorResponse(error);
  if (error instanceof BodyTooLargeError) return bodyTooLarge(error, route);
  const kvFailure = isKvFailure(error);
  deps.log({
    level: "error",
    route: route.name,
    error: error instanceof Error ? error.name : "unknown",
    message: error instanceof Error ? error.message.slice(0, 200) : undefined,
    ...(kvFailure ? { kv_failure: true } : {}),
  });
  if (kvFailure) {
    const headers = { "retry-after": String(KV_RETRY_AFTER_SECONDS) };
    const description = "storage is temporarily unavailable; retry later";
    return route.mcp
      ? jsonRpcErrorResponse(503, -32603, `temporarily_unavailable: ${description}`, { headers })
      : jsonResponse(
        { error: "temporarily_unavailable", error_description: description },
        503,
        headers,
      );
  }
  return jsonResponse({ error: "server_error" }, 500);
}

/** The tool of an MCP request, when its headers name it (MCP 2026-07-28 `Mcp-Name`). */
function toolOf(req: Request): string | undefined {
  if (req.headers.get("mcp-method") !== "tools/call") return undefined;
  return req.headers.get("mcp-name")?.slice(0, 100) ?? undefined;
}

/** The routes matching one path, with each route's path parameters. */
interface PathMatch {
  candidates: Route[];
  params: Map<Route, Record<string, string | undefined>>;
}

const MATCH_CACHE_SIZE = 1024;
const matchCache = new Map<string, PathMatch>();

/**
 * Matches a path against the route table once and remembers the answer (URLPattern matching
 * costs tens of µs per pattern; the same few paths come back on every MCP request). The cache
 * is bounded: when full it starts again.
 */
function matchPath(url: URL): PathMatch {
  let match = matchCache.get(url.pathname);
  if (match) return match;
  const params = new Map<Route, Record<string, string | undefined>>();
  const candidates = routes.filter((r) => {
    const m = r.pattern.exec(url);
    if (m) params.set(r, m.pathname.groups);
    return m !== null;
  });
  match = { candidates, params };
  if (matchCache.size >= MATCH_CACHE_SIZE) matchCache.clear();
  matchCache.set(url.pathname, match);
  return match;
}

/** Builds the gateway's request handler from its dependencies. */
export function createHandler(
  deps: Deps,
): (req: Request, info?: Deno.ServeHandlerInfo) => Promise<Response> {
  return async (req, info) => {
    const started = performance.now();
    const requestId = crypto.randomUUID();
    const url = new URL(req.url);
    const { candidates, params } = matchPath(url);
    const logFields: Record<string, unknown> = {};
    let routeName = "not_found";
    let res: Response;
    if (candidates.length === 0) {
      res = jsonResponse({ error: "not_found" }, 404);
    } else if (req.method === "OPTIONS" && candidates.some((r) => r.cors)) {
      routeName = candidates[0]!.name;
      const methods = candidates.flatMap((r) => r.method);
      res = preflight(req, [...new Set(methods), "OPTIONS"].join(", "));
    } else {
      const route = candidates.find((r) => allows(r, req.method));
      if (!route) {
        routeName = candidates[0]!.name;
        const allow = allowHeader(candidates);
        // MCP routes answer every error as JSON-RPC (CONVENTIONS.md §Errors).
        res = candidates[0]!.mcp
          ? jsonRpcErrorResponse(405, -32600, `method ${req.method} is not allowed`, {
            headers: { allow },
          })
          : jsonResponse({ error: "method_not_allowed" }, 405, { allow });
      } else {
        routeName = route.name;
        const remote = info && "hostname" in info.remoteAddr ? info.remoteAddr.hostname : undefined;
        const ctx: RouteContext = {
          ...deps,
          params: { ...params.get(route) },
          clientIp: clientIp(req.headers, {
            header: deps.config.clientIpHeader,
            hops: deps.config.clientIpHeaderHops,
          }, remote),
          logFields,
          requestId,
        };
        if (route.mcp) {
          const tool = toolOf(req);
          if (tool) logFields.tool = tool;
        }
        const bodyLimit = route.mcp ? MCP_BODY_LIMIT : DEFAULT_BODY_LIMIT;
        let overflowed = () => false;
        try {
          const limited = limitRequestBody(req, bodyLimit);
          overflowed = limited.overflowed;
          res = await route.handler(limited.request, ctx);
        } catch (error) {
          res = renderError(error, deps, route);
        }
        if (overflowed() && res.status !== 413) {
          // The capped stream failed inside the route (e.g. while fetch streamed it upstream).
          await res.body?.cancel().catch(() => {});
          res = bodyTooLarge(new BodyTooLargeError(bodyLimit), route);
        }
        if (route.cors) res = withCors(res, req);
      }
    }
    if (req.method === "HEAD") res = await withoutBody(res);
    observeResponse(deps, routeName, res, logFields, requestId);
    deps.log({
      route: routeName,
      method: req.method,
      status: res.status,
      ms: Math.round((performance.now() - started) * 10) / 10,
      request_id: requestId,
      ...logFields,
    });
    return res;
  };
}

if (import.meta.main) {
  // `--default-kv-path=<file>` (deno task dev): the KV file when KV_PATH is unset.
  const defaultKvPath = Deno.args.find((a) => a.startsWith("--default-kv-path="))?.slice(18);
  // A bad config or variable: one line per problem on stderr, exit code 1, no stack trace.
  const deps = await loadDeps(defaultKvPath).catch(exitOnStartupError);
  // Under `deno task dev` (`--watched`) a SIGTERM is the watcher's restart, not the end.
  if (!Deno.args.includes("--watched")) flushAuditOnShutdown(deps);
  Deno.serve({
    port: deps.settings.port,
    onListen: (addr) => {
      const env = (name: string) => Deno.env.get(name);
      void printBanner(deps, startFacts(addr, env, defaultKvPath));
    },
  }, createHandler(deps));
}
