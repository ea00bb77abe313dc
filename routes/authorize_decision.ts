/** Placeholder: being written. */
import type { RouteContext } from "../lib/deps.ts";
import { jsonResponse } from "../lib/http.ts";

/** Not implemented yet. */
export function handler(_req: Request, _ctx: RouteContext): Response {
  return jsonResponse({ error: "not_implemented" }, 501);
}
