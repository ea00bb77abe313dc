/**
 * `GET /login`: the sign-in entry. `?request=<id>` continues a pending authorization request of
 * this browser (the consent page once signed in, else the sign-in page); `?return_to=<path>`
 * (a same-origin path, default `/`) signs the browser in and goes back there — the admin console
 * and the per-user pages send signed-out browsers here.
 */
import type { RouteContext } from "../lib/deps.ts";
import { authorizePage, signInUnavailable } from "../lib/identity/authorize_sign_in.ts";
import { currentBrowserSession } from "../lib/identity/browser_session.ts";
import { LoginError } from "../lib/identity/login_flow.ts";
import {
  boundPendingRequest,
  parseReturnTo,
  returnToUrl,
} from "../lib/identity/pending_request.ts";
import { seeOther, signInPage } from "../lib/identity/sign_in.ts";
import { linkedPageResponse } from "../lib/identity/sign_in_page.ts";
import { htmlResponse } from "../lib/infra/http.ts";

/** Shows the consent or sign-in page, or sends a signed-in browser back to its path. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const params = new URL(req.url).searchParams;
  const unavailable = signInUnavailable(ctx);
  if (unavailable) return unavailable;
  const requestId = params.get("request");
  if (requestId !== null) {
    try {
      const pending = await boundPendingRequest(req, ctx, requestId);
      // HEAD (RFC 9110 §9.3.2): the page's status, without the access check that may end it.
      if (req.method === "HEAD") return htmlResponse("", 200);
      return await authorizePage(req, ctx, pending);
    } catch (e) {
      if (!(e instanceof LoginError)) throw e;
      return linkedPageResponse(e.title, e.message, e.status);
    }
  }
  const returnTo = parseReturnTo(params.get("return_to") ?? "/");
  if (returnTo === null) {
    return linkedPageResponse(
      "Invalid request",
      '"return_to" must be a path on this gateway.',
      400,
    );
  }
  if (await currentBrowserSession(req, ctx)) {
    return seeOther(returnToUrl(returnTo, ctx.settings.publicUrl));
  }
  return signInPage(ctx, returnTo);
}
