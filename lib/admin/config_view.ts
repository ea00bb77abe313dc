/**
 * The running configuration without secrets, for the operator: every value of a secret field
 * (backend `headers`, client secrets, initial access tokens, identity providers' client secrets,
 * anything named like a secret, token or password) becomes `"[redacted]"`, and any other value
 * that came from `${VAR}` shows as written (`"https://${HOST}/mcp"`), never as its value.
 */
import { configSource, type GatewayConfig } from "../config.ts";
import { REDACTED } from "../infra/log.ts";

/** Field names whose string values are secrets (numbers, e.g. rate limits, are kept). */
const SECRET_FIELD = /^(headers|initialAccessTokens)$|secret|token|password|credential|apikey/i;

function view(value: unknown, source: unknown, secret: boolean): unknown {
  if (typeof value === "string") {
    if (secret) return REDACTED;
    return typeof source === "string" && source.includes("${") ? source : value;
  }
  if (Array.isArray(value)) {
    return value.map((v, i) => view(v, Array.isArray(source) ? source[i] : undefined, secret));
  }
  if (value && typeof value === "object") {
    const src = source && typeof source === "object" ? source as Record<string, unknown> : {};
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, view(v, src[k], secret || SECRET_FIELD.test(k))]),
    );
  }
  return value;
}

/** The configuration as the gateway runs it, defaults filled in, secrets out (see module doc). */
export function redactedConfig(config: GatewayConfig): Record<string, unknown> {
  return view(config, configSource(config), false) as Record<string, unknown>;
}
