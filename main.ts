/**
 * MCP edge gateway: an OAuth 2.1 authorization server and an authenticated front for the MCP
 * backends of `gateway.config.json`. One route table; each route lives in `routes/`.
 */
import { type Deps, loadDeps, type RouteContext } from "./lib/deps.ts";
import { BodyTooLargeError, jsonResponse, preflight, withCors } from "./lib/http.ts";
import { OAuthError, oauthErrorResponse } from "./lib/oauth_error.ts";
import * as asMetadata from "./routes/as_metadata.ts";
import * as authorize from "./routes/authorize.ts";
import * as authorizeDecision from "./routes/authorize_decision.ts";
import * as health from "./routes/health.ts";
import * as healthz from "./routes/healthz.ts";
import * as mcp from "./routes/mcp.ts";
import * as mcpBackend from "./routes/mcp_backend.ts";
import * as protectedResource from "./routes/protected_resource.ts";
import * as register from "./routes/register.ts";
import * as revoke from "./routes/revoke.ts";
import * as token from "./routes/token.ts";

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
}

const p = (pathname: string) => new URLPattern({ pathname });
const MCP_METHODS = ["GET", "POST", "DELETE"];

/** The gateway's routes, matched in order. */
export const routes: Route[] = [
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
    handler: asMetadata.handler,
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
  { name: "register", pattern: p("/register"), method: "POST", handler: register.handler, cors: true },
  { name: "authorize", pattern: p("/authorize"), method: "GET", handler: authorize.handler },
  {
    name: "authorize_decision",
    pattern: p("/authorize"),
    method: "POST",
    handler: authorizeDecision.handler,
  },
  { name: "token", pattern: p("/token"), method: "POST", handler: token.handler, cors: true },
  { name: "revoke", pattern: p("/revoke"), method: "POST", handler: revoke.handler, cors: true },
  { name: "mcp", pattern: p("/mcp"), method: MCP_METHODS, handler: mcp.handler, cors: true },
  {
    name: "mcp_backend",
    pattern: p("/mcp/:backend"),
    method: MCP_METHODS,
    handler: mcpBackend.handler,
    cors: true,
  },
];

function allows(route: Route, method: string): boolean {
  return Array.isArray(route.method) ? route.method.includes(method) : route.method === method;
}

/** Renders anything a route threw: OAuth errors as RFC 6749 §5.2 JSON, the rest as bare 500. */
function renderError(error: unknown, deps: Deps, route: string): Response {
  if (error instanceof OAuthError) return oauthErrorResponse(error);
  if (error instanceof BodyTooLargeError) {
    return jsonResponse({ error: "invalid_request", error_description: error.message }, 413);
  }
  deps.log({
    level: "error",
    route,
    error: error instanceof Error ? error.name : "unknown",
    message: error instanceof Error ? error.message.slice(0, 200) : undefined,
  });
  return jsonResponse({ error: "server_error" }, 500);
}

/** Builds the gateway's request handler from its dependencies. */
export function createHandler(
  deps: Deps,
): (req: Request, info?: Deno.ServeHandlerInfo) => Promise<Response> {
  return async (req, info) => {
    const started = performance.now();
    const url = new URL(req.url);
    const candidates = routes.filter((r) => r.pattern.test(url));
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
        res = jsonResponse({ error: "method_not_allowed" }, 405, {
          allow: [...new Set(candidates.flatMap((r) => r.method))].join(", "),
        });
      } else {
        routeName = route.name;
        const ctx: RouteContext = {
          ...deps,
          params: route.pattern.exec(url)?.pathname.groups ?? {},
          clientIp: info && "hostname" in info.remoteAddr ? info.remoteAddr.hostname : "unknown",
          logFields,
        };
        try {
          res = await route.handler(req, ctx);
        } catch (error) {
          res = renderError(error, deps, route.name);
        }
        if (route.cors) res = withCors(res, req);
      }
    }
    deps.log({
      route: routeName,
      method: req.method,
      status: res.status,
      ms: Math.round((performance.now() - started) * 10) / 10,
      ...logFields,
    });
    return res;
  };
}

if (import.meta.main) {
  const deps = await loadDeps();
  Deno.serve({ port: deps.settings.port }, createHandler(deps));
}
