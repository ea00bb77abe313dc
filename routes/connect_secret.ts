/**
 * `POST /connect/{backend}`: the secret form of a `user-secret` backend. Signed in, CSRF-checked
 * (the session's token, our `Origin`); the secret (1–4096 characters, no control characters: it
 * becomes a header value) is stored sealed for (user, backend); then `/connections`.
 */
import { auditEvent } from "../lib/admin/audit.ts";
import { z } from "zod";
import type { RouteContext } from "../lib/deps.ts";
import type { UserSecretBackendAuth } from "../lib/credentials/auth_config.ts";
import {
  backendPageRequest,
  connectionForm,
  notAllowedPage,
  sessionMayUse,
} from "../lib/credentials/browser_pages.ts";
import { saveSecretConnection } from "../lib/credentials/connections.ts";
import { secretFormPage } from "../lib/credentials/pages.ts";
import { seeOther } from "../lib/identity/sign_in.ts";

const formSchema = z.object({
  csrf_token: z.string().max(256),
  secret: z.string().trim().min(1, "Enter a value.").max(4096, "At most 4096 characters.")
    .regex(/^[\x20-\x7e\x80-\uffff]*$/, "Control characters are not allowed."),
});

/** Stores the user's secret for the backend. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const page = await backendPageRequest(req, ctx, { type: "user-secret" });
  if (page instanceof Response) return page;
  const { backend, session } = page;
  const fields = await connectionForm(req, ctx, session);
  if (fields instanceof Response) return fields;
  if (!sessionMayUse(session, backend)) return notAllowedPage(ctx, backend);
  const form = formSchema.safeParse(fields);
  if (!form.success) {
    return secretFormPage({
      base: ctx.settings.publicUrl,
      backend: backend.name,
      label: (backend.auth as UserSecretBackendAuth).label,
      user: session.user,
      csrfToken: session.csrfToken,
      connected: false,
      error: form.error.issues[0]!.message,
    }, 400);
  }
  await saveSecretConnection(ctx, session.user.sub, backend.name, form.data.secret);
  ctx.log({ event: "backend_connected", user: session.user.sub, backend: backend.name });
  auditEvent(ctx, "backend_connect", {
    user: session.user.sub,
    backend: backend.name,
    method: "user-secret",
    outcome: "ok",
  });
  return seeOther(`${ctx.settings.publicUrl}/connections?connected=${backend.name}`);
}
