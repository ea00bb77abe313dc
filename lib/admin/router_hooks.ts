/**
 * What the router reports of every response to the operator's view: a 429 (any rate limit) is
 * an audit event `rate_limited`; a 401, or a 403 on an MCP route, counts in
 * `mcp.gateway.auth.failures` (telemetry). And the process's shutdown flushes the audit trail.
 */
import type { Deps } from "../deps.ts";
import { auditEvent } from "./audit.ts";

const field = (fields: Record<string, unknown>, name: string) =>
  typeof fields[name] === "string" ? fields[name] as string : undefined;

/**
 * Observes the response of route `route`. `logFields` are the request's log fields, which
 * name the caller when it was identified (`user`, `client_id`, `grant_id`).
 */
export function observeResponse(
  deps: Pick<Deps, "audit" | "telemetry" | "now">,
  route: string,
  res: Response,
  logFields: Record<string, unknown>,
  requestId: string,
): void {
  if (res.status === 429) {
    auditEvent({ ...deps, requestId }, "rate_limited", {
      user: field(logFields, "user"),
      clientId: field(logFields, "client_id"),
      grantId: field(logFields, "grant_id"),
      backend: field(logFields, "backend"),
      method: route,
      outcome: "denied",
    });
  }
  if (res.status === 401 || res.status === 403) deps.telemetry?.authFailure(route, res);
}

/**
 * Writes the audit trail's pending records before the process ends on SIGINT or SIGTERM
 * (where signals can be listened to; elsewhere, e.g. on Deno Deploy, at most one flush interval
 * of records is lost when an isolate is stopped).
 */
export function flushAuditOnShutdown(deps: Pick<Deps, "audit">): void {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(signal, () => {
        deps.audit.close().finally(() => Deno.exit(0));
      });
    } catch {
      // signals are not available here (Windows SIGTERM, Deno Deploy)
    }
  }
}
