/**
 * `POST /admin/grants/revoke` (`grant_id`, `csrf_token`, `return_to`): revokes a grant and all
 * its tokens (refused at once by this isolate, by the others within the token cache's 1 s), audited
 * with the administrator as `actor`; then back to the listing (303, RFC 9110 §15.4.4).
 * CSRF-checked (lib/admin/console/gate.ts); an unknown grant → 404 page.
 */
import type { RouteContext } from "../lib/deps.ts";
import { revokeGrantAsAdmin } from "../lib/admin/grants_view.ts";
import { openConsoleForm } from "../lib/admin/console/gate.ts";
import { afterGrantRevoked, revokeGrantForm } from "../lib/admin/console/grants_page.ts";
import { badRequestPage, consoleErrorPage, SECTIONS } from "../lib/admin/console/layout.ts";
import { parseForm } from "../lib/admin/console/params.ts";
import { seeOther } from "../lib/identity/sign_in.ts";

/** Revokes the grant of the form. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const admin = await openConsoleForm(req, ctx, SECTIONS.grants.path);
  if (admin instanceof Response) return admin;
  const form = parseForm(admin.form, revokeGrantForm);
  if (!form.ok) return badRequestPage(admin.viewer, "grants", form.message);
  const grantId = form.value.grant_id;
  const revoked = await revokeGrantAsAdmin(ctx, grantId, admin.session.user.sub);
  if (!revoked) {
    return consoleErrorPage({
      title: "No such grant",
      message: `There is no live grant ${grantId}: it was revoked already, or it expired.`,
      status: 404,
      viewer: admin.viewer,
      section: "grants",
      back: { label: "Back to grants", href: `${ctx.settings.publicUrl}${SECTIONS.grants.path}` },
    });
  }
  ctx.logFields.revoked_grant = grantId;
  return seeOther(afterGrantRevoked(ctx.settings.publicUrl, form.value.return_to, grantId));
}
