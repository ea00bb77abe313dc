/** `GET /healthz`: unauthenticated liveness, no details. */
import type { RouteContext } from "../lib/deps.ts";
import { jsonResponse } from "../lib/infra/http.ts";

/** Always `{ "status": "ok" }` while the process serves requests. */
export function handler(_req: Request, _ctx: RouteContext): Response {
  return jsonResponse({ status: "ok" });
}
