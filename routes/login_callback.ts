/**
 * `GET /login/{providerId}/callback`: the identity provider's answer (RFC 6749 §4.1.2). The
 * `state` must name a live sign-in of this provider started in this browser (it is consumed:
 * a replayed callback fails); an `error` from the provider, a provider that cannot be reached
 * and an ID token that fails its checks each get an error page, and store nothing. Otherwise
 * the access rules decide (lib/identity/sign_in.ts).
 */
import type { RouteContext } from "../lib/deps.ts";
import {
  consumeLogin,
  findProvider,
  LoginError,
  providerIdentity,
} from "../lib/identity/login_flow.ts";
import { IdTokenError } from "../lib/identity/providers/oidc.ts";
import { ProviderError } from "../lib/identity/providers/provider_http.ts";
import { completeSignIn, signInEntry } from "../lib/identity/sign_in.ts";
import { linkedPageResponse, providerLabel } from "../lib/identity/sign_in_page.ts";

/** Finishes a sign-in at the provider. */
export async function handler(req: Request, ctx: RouteContext): Promise<Response> {
  const provider = findProvider(ctx, ctx.params.provider);
  if (!provider) {
    return linkedPageResponse("Not found", "This gateway has no such sign-in provider.", 404);
  }
  ctx.logFields.provider = provider.id;
  const params = new URL(req.url).searchParams;
  let flow;
  try {
    flow = await consumeLogin(req, ctx, provider, params);
  } catch (e) {
    if (!(e instanceof LoginError)) throw e;
    ctx.logFields.sign_in_error = "bad_state";
    return linkedPageResponse(e.title, e.message, e.status);
  }
  const headers = { "set-cookie": flow.clearCookie };
  const target = flow.record.requestId !== undefined
    ? { requestId: flow.record.requestId }
    : { returnTo: flow.record.returnTo ?? "/" };
  const again = [{ label: "Try again", href: signInEntry(ctx, target) }];
  const error = params.get("error");
  if (error !== null || !params.get("code")) {
    const code = (error ?? "no code").replace(/[^\x20-\x7e]/g, "").slice(0, 60);
    ctx.logFields.sign_in_error = `provider_${code}`;
    const message = `${providerLabel(provider)} did not sign you in (${code}).`;
    return linkedPageResponse("Sign-in not completed", message, 400, again, headers);
  }
  let identity;
  try {
    identity = await providerIdentity(ctx, provider, flow, params);
  } catch (e) {
    if (!(e instanceof ProviderError)) throw e;
    ctx.logFields.sign_in_error = e.reason;
    const status = e instanceof IdTokenError ? 401 : 502;
    return linkedPageResponse("Sign-in failed", e.message, status, again, headers);
  }
  return await completeSignIn(req, ctx, target, identity, [flow.clearCookie]);
}
