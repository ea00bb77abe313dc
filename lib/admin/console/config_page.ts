/**
 * The console's configuration page: the running configuration with its defaults and without
 * secrets (lib/admin/config_view.ts: secret fields `[redacted]`, `${VAR}` values shown as
 * written), and the facts of the environment that are not secrets (which of them are set, never
 * their values).
 */
import type { Deps } from "../../deps.ts";
import { redactedConfig } from "../config_view.ts";
import { html } from "./html.ts";
import { type Column, consolePage, table, type Viewer } from "./layout.ts";

/** The configuration page. */
export function configPage(
  viewer: Viewer,
  deps: Pick<Deps, "config" | "settings">,
  version: string,
) {
  const s = deps.settings;
  const facts: [string, string][] = [
    ["Version", version],
    ["PUBLIC_URL (issuer)", s.publicUrl],
    ["Owner password (GATEWAY_OWNER_PASSWORD)", s.ownerPassword ? "set" : "not set"],
    ["API keys (GATEWAY_API_KEY)", String(s.apiKeyHashes.length)],
    ["Cookies", s.secureCookies ? "__Host- prefixed, Secure" : "plain names (http)"],
  ];
  const columns: Column<[string, string]>[] = [
    { label: "Setting", cell: ([k]) => k },
    { label: "Value", cell: ([, v]) => html`<span class="mono">${v}</span>` },
  ];
  const json = JSON.stringify(redactedConfig(deps.config), null, 2);
  const body = html`<h1>Configuration</h1>
<p class="sub">What this gateway runs with: defaults filled in, every secret shown as
<code>[redacted]</code>, values read from <code>\${VAR}</code> shown as written.</p>
${table(columns, facts, "")}
<h2>gateway.config.json</h2><pre>${json}</pre>`;
  return consolePage({ title: "Configuration", section: "config", viewer, body });
}
