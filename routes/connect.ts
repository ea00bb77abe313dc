/**
 * `GET /connect/{backend}`: where a user connects their own account to a per-user backend (the
 * URL the lazy-consent answers give). Signed out → the sign-in entry, back here afterwards. An
 * `oauth` backend → straight to its authorization server (connect_flow.ts); a `user-secret`
 * backend → the secret form.
 */
import type { RouteContext } from "../lib/deps.ts";
import {
  backendPageRequest,
  connectionsLink,
  notAllowedPage,
  sessionMayUse,
} from "../lib/credentials/browser_pages.ts";
import { startConnect } from "../lib/credentials/connect_flow.ts";
import { loadConnection } from "../lib/credentials/connections.ts";
import { BackendAuthError } from "../lib/credentials/outbound.ts";
import { secretFormPage } from "../lib/credentials/pages.ts";
import { seeOther } from "../lib/identity/sign_in.ts";
import { linkedPageResponse } from "../lib/identity/sign_in_page.ts";

/** Starts a connect, or shows the secret form. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const page = await backendPageRequest(req, ctx);
  if (page instanceof Response) return page;
  const { backend, session } = page;
  if (!sessionMayUse(session, backend)) return notAllowedPage(ctx, backend);
  if (backend.auth!.type === "user-secret") {
    return secretFormPage({
      base: ctx.settings.publicUrl,
      backend: backend.name,
      label: backend.auth!.label,
      user: session.user,
      csrfToken: session.csrfToken,
      connected: (await loadConnection(ctx, session.user.sub, backend.name)) !== null,
    });
  }
  try {
    return seeOther(await startConnect(ctx, session.user, backend));
  } catch (e) {
    if (!(e instanceof BackendAuthError)) throw e;
    ctx.logFields.error = e.message.slice(0, 200);
    return linkedPageResponse(
      e.unreachable ? "Sign-in unavailable" : "Cannot connect",
      `The gateway cannot start the sign-in of ${backend.name}: ${e.message}.`,
      502,
      [
        { label: "Try again", href: `${ctx.settings.publicUrl}/connect/${backend.name}` },
        connectionsLink(ctx),
      ],
    );
  }
}
