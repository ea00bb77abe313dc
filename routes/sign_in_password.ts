/**
 * `POST /login`: the owner password form of a `return_to` sign-in. CSRF-checked (double
 * submit, `Origin`), the password checked by `checkPasswordAttempt` (rate-limited: RFC 6749
 * §10.10); right → the browser is signed in as the owner and sent to its path.
 */
import { z } from "zod";
import type { RouteContext } from "../lib/deps.ts";
import { OWNER } from "../lib/identity/access_rules.ts";
import { parseReturnTo } from "../lib/identity/pending_request.ts";
import {
  checkSignInCsrf,
  clearSignInCsrf,
  completeSignIn,
  signInPage,
} from "../lib/identity/sign_in.ts";
import { linkedPageResponse, tooManyAttemptsResponse } from "../lib/identity/sign_in_page.ts";
import { readForm } from "../lib/infra/http.ts";
import { checkPasswordAttempt } from "../lib/oauth/authorization.ts";
import { OAuthError } from "../lib/oauth/oauth_error.ts";
import { auditEvent } from "../lib/admin/audit.ts";

const formSchema = z.object({
  signin_id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  csrf_token: z.string().min(1).max(256),
  return_to: z.string().max(512),
  password: z.string().max(1024),
});

/** The rate-limit subject of password sign-ins that continue no authorization request. */
const SIGN_IN_CLIENT = "(sign-in)";

/** Checks the owner password and signs the browser in. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  let form;
  try {
    form = formSchema.safeParse(Object.fromEntries(await readForm(req)));
  } catch (e) {
    if (!(e instanceof OAuthError)) throw e;
    return linkedPageResponse("Invalid form", e.message, 400);
  }
  const returnTo = form.success ? parseReturnTo(form.data.return_to) : null;
  if (!form.success || returnTo === null) {
    return linkedPageResponse("Invalid form", "The sign-in form is incomplete.", 400);
  }
  const f = form.data;
  if (!checkSignInCsrf(req, ctx, { signinId: f.signin_id, csrfToken: f.csrf_token })) {
    return linkedPageResponse(
      "Forbidden",
      "The form could not be verified (CSRF check failed).",
      403,
    );
  }
  if (!ctx.settings.ownerPassword) {
    return linkedPageResponse("Sign-in failed", "This gateway has no owner password.", 400);
  }
  const attempt = await checkPasswordAttempt(ctx, SIGN_IN_CLIENT, ctx.clientIp, f.password);
  if (attempt.result === "blocked") {
    return tooManyAttemptsResponse(attempt.retryAfterSeconds);
  }
  if (attempt.result === "wrong") {
    auditEvent(ctx, "sign_in", { user: OWNER.sub, method: "owner", outcome: "wrong_password" });
    return signInPage(ctx, returnTo, { error: "Wrong password. Try again.", status: 401 });
  }
  const clear = clearSignInCsrf(ctx, f.signin_id);
  return await completeSignIn(req, ctx, { returnTo }, { providerId: "owner", user: OWNER }, [
    clear,
  ]);
}
