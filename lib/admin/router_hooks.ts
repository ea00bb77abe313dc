/**
 * What the router reports of every response to the operator's view: a 429 (any rate limit) is
 * an audit event `rate_limited`; a 401, or a 403 on an MCP route, counts in
 * `mcp.gateway.auth.failures` (telemetry). And the process's shutdown flushes the audit trail.
 */
import type { Deps } from "../deps.ts";
import { auditEvent } from "./audit.ts";
import { flushStdoutLog } from "../infra/log.ts";

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
 * Writes the audit trail's pending records and the MCP rate limiter's pending counts before the
 * process ends on SIGINT or SIGTERM, then
 * lets the signal do what it would have done (the listener is removed and the signal raised
 * again, so that the process ends as the signal asked). Not installed under Deno's `--watch`
 * (`deno task dev` passes `--watched`): the watcher sends SIGTERM to a program's listeners at every
 * restart, and raising it again would end the watcher. Where signals cannot be listened to (Deno
 * Deploy), or in watch mode, a stop loses at most one flush interval of records.
 */
export function flushAuditOnShutdown(
  deps: Pick<Deps, "audit"> & Partial<Pick<Deps, "mcpRateLimiter" | "kv" | "now">>,
): void {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    const onSignal = () => {
      // The MCP rate limiter's pending counts too, so other isolates see them (issue 14).
      const limiter = deps.mcpRateLimiter;
      limiter?.close();
      const counts = limiter && deps.kv && deps.now
        ? limiter.flush(deps.kv, deps.now()).catch(() => {})
        : Promise.resolve();
      Promise.all([deps.audit.close(), counts]).finally(() => {
        flushStdoutLog();
        Deno.removeSignalListener(signal, onSignal);
        Deno.kill(Deno.pid, signal);
      });
    };
    try {
      Deno.addSignalListener(signal, onSignal);
    } catch {
      // signals are not available here (Windows SIGTERM, Deno Deploy)
    }
  }
}
