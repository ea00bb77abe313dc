/**
 * `GET /connect/{backend}/callback`: the redirect URI of a backend's authorization server. The
 * browser must still be signed in as the user who started the connect; the flow is checked and
 * consumed, the code exchanged, the tokens stored (connect_flow.ts); then `/connections` says
 * the backend is connected. Every failure is an error page with a way to start again.
 */
import { auditEvent } from "../lib/admin/audit.ts";
import type { RouteContext } from "../lib/deps.ts";
import {
  connectionsLink,
  perUserBackend,
  unknownBackendPage,
} from "../lib/credentials/browser_pages.ts";
import { ConnectError, finishConnect } from "../lib/credentials/connect_flow.ts";
import { BackendAuthError } from "../lib/credentials/outbound.ts";
import { currentBrowserSession } from "../lib/identity/browser_session.ts";
import { seeOther } from "../lib/identity/sign_in.ts";
import { linkedPageResponse } from "../lib/identity/sign_in_page.ts";

/** Finishes a connect. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const backend = perUserBackend(ctx, ctx.params.backend);
  if (!backend || backend.auth?.type !== "oauth") return unknownBackendPage(ctx);
  ctx.logFields.backend = backend.name;
  const again = { label: "Start again", href: `${ctx.settings.publicUrl}/connect/${backend.name}` };
  const session = await currentBrowserSession(req, ctx);
  if (!session) {
    return linkedPageResponse(
      "Signed out",
      `You are no longer signed in to the gateway, so ${backend.name} cannot be connected. ` +
        "Start again.",
      401,
      [again],
    );
  }
  ctx.logFields.user = session.user.sub;
  try {
    await finishConnect(ctx, session.user, backend, new URL(req.url).searchParams);
  } catch (e) {
    if (!(e instanceof ConnectError || e instanceof BackendAuthError)) throw e;
    ctx.logFields.error = e.message.slice(0, 200);
    const outcome = e instanceof ConnectError ? "connect_failed" : "backend_unreachable";
    auditEvent(ctx, "backend_connect", audited(session.user.sub, backend.name, outcome));
    const status = e instanceof ConnectError ? e.status : 502;
    return linkedPageResponse(`${backend.name} not connected`, e.message, status, [
      again,
      connectionsLink(ctx),
    ]);
  }
  auditEvent(ctx, "backend_connect", audited(session.user.sub, backend.name, "ok"));
  return seeOther(`${ctx.settings.publicUrl}/connections?connected=${backend.name}`);
}

const audited = (user: string, backend: string, outcome: string) => ({
  user,
  backend,
  method: "oauth",
  outcome,
});
