/**
 * `POST /connections/{backend}/disconnect`: forgets the signed-in user's connection to a
 * per-user backend, revoking its tokens at the backend's authorization server when it can
 * (disconnect.ts). CSRF-checked; then `/connections`.
 */
import type { RouteContext } from "../lib/deps.ts";
import { backendPageRequest, connectionForm } from "../lib/credentials/browser_pages.ts";
import { disconnect } from "../lib/credentials/disconnect.ts";
import { seeOther } from "../lib/identity/sign_in.ts";

/** Disconnects the backend. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const page = await backendPageRequest(req, ctx, { returnTo: "/connections" });
  if (page instanceof Response) return page;
  const form = await connectionForm(req, ctx, page.session);
  if (form instanceof Response) return form;
  const { revoked } = await disconnect(ctx, page.session.user, page.backend);
  ctx.logFields.revoked = revoked;
  return seeOther(`${ctx.settings.publicUrl}/connections?disconnected=${page.backend.name}`);
}
