/**
 * `POST /connect/{backend}`: the secret form of a `user-secret` backend. Signed in, CSRF-checked
 * (the session's token, our `Origin`); the secret (1–4096 characters, no control characters: it
 * becomes a header value) is stored sealed for (user, backend); then `/connections`.
 */
import { z } from "zod";
import type { RouteContext } from "../lib/deps.ts";
import {
  csrfFailedPage,
  formCsrfOk,
  notAllowedPage,
  perUserBackend,
  sessionMayUse,
  sessionOrSignIn,
  unknownBackendPage,
} from "../lib/credentials/browser_pages.ts";
import { saveSecretConnection } from "../lib/credentials/connections.ts";
import { secretFormPage } from "../lib/credentials/pages.ts";
import { seeOther } from "../lib/identity/sign_in.ts";
import { linkedPageResponse } from "../lib/identity/sign_in_page.ts";
import { readForm } from "../lib/infra/http.ts";
import { OAuthError } from "../lib/oauth/oauth_error.ts";

const formSchema = z.object({
  csrf_token: z.string().max(256),
  secret: z.string().trim().min(1, "Enter a value.").max(4096, "At most 4096 characters.")
    .regex(/^[\x20-\x7e\x80-\uffff]*$/, "Control characters are not allowed."),
});

/** Stores the user's secret for the backend. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const backend = perUserBackend(ctx, ctx.params.backend);
  if (!backend || backend.auth?.type !== "user-secret") return unknownBackendPage(ctx);
  ctx.logFields.backend = backend.name;
  const session = await sessionOrSignIn(req, ctx, `/connect/${backend.name}`);
  if (session instanceof Response) return session;
  ctx.logFields.user = session.user.sub;
  let fields;
  try {
    fields = Object.fromEntries(await readForm(req));
  } catch (e) {
    if (!(e instanceof OAuthError)) throw e;
    return linkedPageResponse("Invalid form", e.message, 400);
  }
  if (!formCsrfOk(req, ctx, session, fields.csrf_token?.slice(0, 256))) return csrfFailedPage(ctx);
  if (!sessionMayUse(session, backend)) return notAllowedPage(ctx, backend);
  const form = formSchema.safeParse(fields);
  if (!form.success) {
    return secretFormPage({
      base: ctx.settings.publicUrl,
      backend: backend.name,
      label: backend.auth.label,
      user: session.user,
      csrfToken: session.csrfToken,
      connected: false,
      error: form.error.issues[0]!.message,
    }, 400);
  }
  await saveSecretConnection(ctx, session.user.sub, backend.name, form.data.secret);
  ctx.log({ event: "backend_connected", user: session.user.sub, backend: backend.name });
  return seeOther(`${ctx.settings.publicUrl}/connections?connected=${backend.name}`);
}
