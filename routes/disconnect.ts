/**
 * `POST /connections/{backend}/disconnect`: forgets the signed-in user's connection to a
 * per-user backend, revoking its tokens at the backend's authorization server when it can
 * (disconnect.ts). CSRF-checked; then `/connections`.
 */
import type { RouteContext } from "../lib/deps.ts";
import {
  csrfFailedPage,
  formCsrfOk,
  perUserBackend,
  sessionOrSignIn,
  unknownBackendPage,
} from "../lib/credentials/browser_pages.ts";
import { disconnect } from "../lib/credentials/disconnect.ts";
import { seeOther } from "../lib/identity/sign_in.ts";
import { linkedPageResponse } from "../lib/identity/sign_in_page.ts";
import { readForm } from "../lib/infra/http.ts";
import { OAuthError } from "../lib/oauth/oauth_error.ts";

/** Disconnects the backend. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const backend = perUserBackend(ctx, ctx.params.backend);
  if (!backend) return unknownBackendPage(ctx);
  ctx.logFields.backend = backend.name;
  const session = await sessionOrSignIn(req, ctx, "/connections");
  if (session instanceof Response) return session;
  ctx.logFields.user = session.user.sub;
  let form;
  try {
    form = await readForm(req);
  } catch (e) {
    if (!(e instanceof OAuthError)) throw e;
    return linkedPageResponse("Invalid form", e.message, 400);
  }
  if (!formCsrfOk(req, ctx, session, form.get("csrf_token")?.slice(0, 256))) {
    return csrfFailedPage(ctx);
  }
  const { revoked } = await disconnect(ctx, session.user, backend);
  ctx.logFields.revoked = revoked;
  return seeOther(`${ctx.settings.publicUrl}/connections?disconnected=${backend.name}`);
}
