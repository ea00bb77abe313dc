/**
 * `GET /health`: backend status for operators. Authenticated by any live access token of this
 * gateway or an API key (RFC 6750 §2.1); otherwise 401 with a Bearer challenge (RFC 6750 §3).
 * Lists only the backends the caller's scope and audience cover, from probes shared for a few
 * seconds, and answers at most `rateLimits.healthPerPrincipalPerMinute` times per caller (429
 * with `Retry-After`, RFC 6585 §4) — lib/mcp/health.ts.
 */
import {
  bearerChallenge,
  bearerToken,
  lookupAccessToken,
  matchApiKey,
} from "../lib/oauth/bearer.ts";
import type { RouteContext } from "../lib/deps.ts";
import { jsonResponse } from "../lib/infra/http.ts";
import {
  backendHealth,
  type HealthCaller,
  limitHealthRequests,
  visibleBackends,
} from "../lib/mcp/health.ts";
import { aggregateResource } from "../lib/oauth/resources.ts";

async function caller(req: Request, ctx: RouteContext): Promise<HealthCaller | null> {
  const token = bearerToken(req.headers.get("authorization"));
  if (token === null) return null;
  const apiKey = matchApiKey(ctx, token);
  if (apiKey) return { id: apiKey.id };
  const record = await lookupAccessToken(ctx, token);
  return record ? { id: record.grantId, token: record } : null;
}

/** `{ status: "ok" | "degraded", backends: [...] }`; "degraded" when any listed one is down. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const who = await caller(req, ctx);
  if (!who) {
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
  const limit = await limitHealthRequests(ctx, who);
  if (!limit.allowed) {
    return jsonResponse(
      {
        error: "temporarily_unavailable",
        error_description: `too many /health requests; retry after ${limit.retryAfterSeconds} s`,
      },
      429,
      { "retry-after": String(limit.retryAfterSeconds) },
    );
  }
  const backends = await backendHealth(
    ctx,
    visibleBackends(ctx.config, ctx.settings.publicUrl, who),
  );
  const status = backends.every((b) => b.status === "up") ? "ok" : "degraded";
  return jsonResponse({ status, backends });
}
