/**
 * `GET /health`: backend status for operators. Authenticated by any live access token of this
 * gateway (any audience) or an API key (RFC 6750 §2.1); otherwise 401 with a Bearer challenge
 * (RFC 6750 §3). Every backend is probed in parallel within its own `timeoutMs`.
 */
import {
  bearerChallenge,
  bearerToken,
  lookupAccessToken,
  matchApiKey,
} from "../lib/oauth/bearer.ts";
import type { RouteContext } from "../lib/deps.ts";
import { jsonResponse } from "../lib/infra/http.ts";
import { probeBackend } from "../lib/mcp/proxy.ts";
import { aggregateResource } from "../lib/oauth/resources.ts";

async function isAuthorized(req: Request, ctx: RouteContext): Promise<boolean> {
  const token = bearerToken(req.headers.get("authorization"));
  if (token === null) return false;
  return matchApiKey(ctx, token) !== null || (await lookupAccessToken(ctx, token)) !== null;
}

/** `{ status: "ok" | "degraded", backends: [...] }`; "degraded" when any backend is down. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  if (!(await isAuthorized(req, ctx))) {
    const hasCredentials = req.headers.has("authorization");
    return jsonResponse(
      {
        error: "invalid_token",
        error_description: hasCredentials
          ? "token is invalid or expired"
          : "authentication required",
      },
      401,
      {
        "www-authenticate": bearerChallenge(
          ctx,
          aggregateResource(ctx.settings.publicUrl),
          hasCredentials ? { error: "invalid_token" } : {},
        ),
      },
    );
  }
  const backends = await Promise.all(
    ctx.config.backends.map((b) => probeBackend(ctx, ctx.config, b)),
  );
  const status = backends.every((b) => b.status === "up") ? "ok" : "degraded";
  return jsonResponse({ status, backends });
}
