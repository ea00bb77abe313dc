/**
 * What `/mcp` declares to a backend as a client (issue 15 item 2): only the capabilities it can
 * honour for the calling client. Elicitation (form mode) and sampling requests of a backend are
 * relayed to the end client (input_relay.ts) in every era combination, but only to a client that
 * declared the capability; so a backend is told `elicitation` / `sampling` only on behalf of a
 * client that declared it (MCP 2025-11-25 Basic/Lifecycle §Capability Negotiation: a server may
 * offer tools only to clients with a capability, e.g. server-everything's
 * `trigger-elicitation-request`). URL-mode elicitation and `roots` are never declared (not
 * relayed).
 *
 * The four possible declarations are the relay profiles: `""` (neither), `"e"`, `"s"`, `"es"`.
 * A 2025-era backend learns them once, at `initialize`, so the pool keeps one connection per
 * backend and profile (pool.ts); a 2026-07-28 backend reads them from each request's envelope.
 * Lists are cached per backend and profile (list_cache.ts), so two clients can see different
 * lists of the same backend.
 */
import type { ClientCapabilities } from "@modelcontextprotocol/client";
import { lacksCapability } from "./input_relay.ts";

/** A set of relayable capabilities: `e` elicitation (form), `s` sampling. */
export type RelayProfile = "" | "e" | "s" | "es";

/** Every profile (cache invalidation drops each). */
export const RELAY_PROFILES: readonly RelayProfile[] = ["", "e", "s", "es"];

/** The profile of a client from its declared capabilities (2025 `initialize`, 2026 `_meta`). */
export function relayProfile(declared: unknown): RelayProfile {
  const caps = declared !== null && typeof declared === "object" && !Array.isArray(declared)
    ? declared as Record<string, unknown>
    : undefined;
  const e = !lacksCapability(caps, "elicitation/create", {});
  const s = !lacksCapability(caps, "sampling/createMessage", {});
  return e ? (s ? "es" : "e") : (s ? "s" : "");
}

/** The capabilities the gateway declares to backends on behalf of a client of `profile`. */
export function declaredCapabilities(profile: RelayProfile): ClientCapabilities {
  return {
    ...(profile.includes("e") ? { elicitation: { form: {} } } : {}),
    ...(profile.includes("s") ? { sampling: {} } : {}),
  };
}

/** What may be declared to a backend for a client that declared `declared`. */
export function relayedCapabilities(declared: unknown): ClientCapabilities {
  return declaredCapabilities(relayProfile(declared));
}

/**
 * Whether the capabilities a backend's -32021 (MissingRequiredClientCapability, MCP 2026-07-28
 * MRTR) names are all relayable ones: then the gateway declared them for clients that have them,
 * and the refusal is the backend's true answer to this client (passed on as is), not a sign of
 * input the gateway cannot relay (roots, URL-mode elicitation).
 */
export function onlyRelayable(required: unknown): boolean {
  if (required === null || typeof required !== "object" || Array.isArray(required)) return false;
  const entries = Object.entries(required as Record<string, unknown>);
  return entries.length > 0 && entries.every(([name, value]) =>
    name === "sampling" ||
    (name === "elicitation" &&
      !(value !== null && typeof value === "object" && "url" in (value as object)))
  );
}
