/**
 * `GET /connections`: the signed-in user's per-user backends (those their access rules cover),
 * connected or not, with connect and disconnect. `?connected=<backend>` / `?disconnected=<backend>`
 * confirm an action, shown only when it is true of the stored state.
 */
import type { RouteContext } from "../lib/deps.ts";
import { sessionMayUse, sessionOrSignIn } from "../lib/credentials/browser_pages.ts";
import { listConnections } from "../lib/credentials/connections.ts";
import { connectionsPage } from "../lib/credentials/pages.ts";

/** Shows the user's connections. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const session = await sessionOrSignIn(req, ctx, "/connections");
  if (session instanceof Response) return session;
  ctx.logFields.user = session.user.sub;
  const stored = await listConnections(ctx, session.user.sub);
  const lines = ctx.config.backends
    .filter((b) => b.auth !== undefined && sessionMayUse(session, b))
    .map((b) => ({
      name: b.name,
      ...(b.description ? { description: b.description } : {}),
      type: b.auth!.type,
      ...(b.auth!.type === "user-secret" ? { label: b.auth!.label } : {}),
      ...(stored.has(b.name) ? { connectedAt: stored.get(b.name)!.connectedAt } : {}),
    }));
  const params = new URL(req.url).searchParams;
  const connected = params.get("connected");
  const disconnected = params.get("disconnected");
  let notice: string | undefined;
  if (connected && lines.some((l) => l.name === connected && l.connectedAt !== undefined)) {
    notice = `${connected} is connected.`;
  } else if (disconnected && lines.some((l) => l.name === disconnected && !l.connectedAt)) {
    notice = `${disconnected} is disconnected.`;
  }
  return connectionsPage({
    base: ctx.settings.publicUrl,
    user: session.user,
    lines,
    csrfToken: session.csrfToken,
    ...(notice ? { notice } : {}),
  });
}
