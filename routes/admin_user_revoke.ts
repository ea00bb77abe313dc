/**
 * `POST /admin/users/revoke` (`sub`, `confirm=yes`, `csrf_token`): revokes everything of a user —
 * every grant and token, every browser session — audited with the administrator as `actor`; then
 * back to the users page (303, RFC 9110 §15.4.4). CSRF-checked (lib/admin/console/gate.ts).
 */
import type { RouteContext } from "../lib/deps.ts";
import { revokeUserAsAdmin } from "../lib/admin/grants_view.ts";
import { openConsoleForm } from "../lib/admin/console/gate.ts";
import { badRequestPage, SECTIONS } from "../lib/admin/console/layout.ts";
import { parseForm } from "../lib/admin/console/params.ts";
import { afterUserRevoked, revokeUserForm } from "../lib/admin/console/users_page.ts";
import { seeOther } from "../lib/identity/sign_in.ts";

/** Revokes everything of the form's user. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const admin = await openConsoleForm(req, ctx, SECTIONS.users.path);
  if (admin instanceof Response) return admin;
  const form = parseForm(admin.form, revokeUserForm);
  if (!form.ok) return badRequestPage(admin.viewer, "users", form.message);
  const sub = form.value.sub;
  const done = await revokeUserAsAdmin(ctx, sub, admin.session.user.sub);
  ctx.logFields.revoked_user = sub;
  return seeOther(afterUserRevoked(ctx.settings.publicUrl, sub, done));
}
