/**
 * `POST /logout`: signs the browser out (its session is deleted, its cookie cleared). The form
 * carries the session's CSRF token; afterwards the browser goes back to the sign-in page of
 * its pending request (`request_id`), or the sign-in page of `return_to` (default `/`).
 */
import type { RouteContext } from "../lib/deps.ts";
import { endBrowserSession } from "../lib/identity/browser_session.ts";
import { parseReturnTo } from "../lib/identity/pending_request.ts";
import { seeOther, signInEntry } from "../lib/identity/sign_in.ts";
import { linkedPageResponse } from "../lib/identity/sign_in_page.ts";
import { readForm } from "../lib/infra/http.ts";
import { OAuthError } from "../lib/oauth/oauth_error.ts";

/** Ends the browser's session. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  let form;
  try {
    form = await readForm(req);
  } catch (e) {
    if (!(e instanceof OAuthError)) throw e;
    return linkedPageResponse("Invalid form", e.message, 400);
  }
  const clear = await endBrowserSession(req, ctx, (form.get("csrf_token") ?? "").slice(0, 256));
  if (!clear) {
    return linkedPageResponse(
      "Forbidden",
      "The form could not be verified (CSRF check failed).",
      403,
    );
  }
  const requestId = form.get("request_id");
  const returnTo = parseReturnTo(form.get("return_to") ?? null);
  const target = requestId && /^[A-Za-z0-9_-]{1,64}$/.test(requestId)
    ? { requestId }
    : { returnTo: returnTo ?? "/" };
  return seeOther(signInEntry(ctx, target), [clear]);
}
