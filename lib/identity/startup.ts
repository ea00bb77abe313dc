/**
 * What the start prints about sign-in: each identity provider with the callback URL to register
 * at it, and a clear warning when nobody can sign in (no provider, no owner password).
 */
import type { Deps } from "../deps.ts";
import { callbackUrl } from "./login_config.ts";
import { providerLabel } from "./sign_in_page.ts";

/** One line per sign-in method, and warnings; `level` says how to print each. */
export function signInMethods(
  deps: Pick<Deps, "config" | "settings">,
): { level: "info" | "warn"; message: string }[] {
  const { providers, access } = deps.config.login;
  const lines: { level: "info" | "warn"; message: string }[] = providers.map((p) => ({
    level: "info",
    message: `sign-in with ${providerLabel(p)} (${p.type}): register the callback URL ${
      callbackUrl(deps.settings.publicUrl, p.id)
    }`,
  }));
  if (deps.settings.ownerPassword) {
    lines.push({
      level: "info",
      message: "sign-in with the owner password (GATEWAY_OWNER_PASSWORD)",
    });
  }
  if (providers.length > 0 && access.length === 0) {
    lines.push({
      level: "warn",
      message: "login.access has no rule: nobody signing in through a provider gets access",
    });
  }
  if (lines.length === 0) {
    lines.push({
      level: "warn",
      message: "nobody can authorize clients: configure login.providers or set " +
        "GATEWAY_OWNER_PASSWORD (API keys and external JWTs still work)",
    });
  }
  return lines;
}
