/**
 * Access rules (`login.access`): who may use which scopes and tools. A user's allowed scopes
 * are the union of the `scopes` of every rule that matches them; no rule matches → no access.
 * The built-in owner (the owner password) may use everything and is an administrator.
 */
import type { GatewayConfig } from "../config.ts";
import { ALL_BACKENDS_SCOPE } from "../oauth/resources.ts";
import type { UserRef } from "../store.ts";
import type { AccessRule, ProviderConfig } from "./login_config.ts";

/** The subject of the built-in owner sign-in. */
export const OWNER_SUB = "owner";

/** The built-in owner (the `GATEWAY_OWNER_PASSWORD` sign-in). */
export const OWNER: UserRef = Object.freeze({ sub: OWNER_SUB, name: "Gateway owner" });

/** What the rules match on: a user and the facts their provider vouched for at sign-in. */
export interface Identity {
  /** The provider id, or "owner". */
  providerId: string;
  user: UserRef;
  /** OIDC `groupsClaim` values. */
  groups?: string[];
  /** GitHub: organizations (of `githubOrgs` rules) the user is an active member of. */
  githubOrgs?: string[];
}

/** What a user may do. */
export interface Access {
  /** Allowed scopes (`mcp` = every backend). */
  scopes: string[];
  admin: boolean;
  /** Tool globs; absent = no narrowing (a matching rule allows every tool). */
  tools?: string[];
}

/** Whether an identity is the built-in owner. */
export function isOwner(user: UserRef): boolean {
  return user.sub === OWNER_SUB;
}

/** The provider id of a subject (`"{providerId}:{subject}"`), or "owner". */
export function providerIdOf(sub: string): string {
  return sub === OWNER_SUB ? OWNER_SUB : sub.slice(0, sub.indexOf(":"));
}

const lower = (values: readonly string[] | undefined) => values?.map((v) => v.toLowerCase());

function ruleMatches(rule: AccessRule, identity: Identity, provider: ProviderConfig): boolean {
  if (rule.providers && !rule.providers.includes(provider.id)) return false;
  const email = identity.user.email?.toLowerCase();
  if (email && rule.emails?.includes(email)) return true;
  if (email && rule.domains?.includes(email.slice(email.lastIndexOf("@") + 1))) return true;
  if (provider.type === "oidc" && identity.groups?.some((g) => rule.groups?.includes(g))) {
    return true;
  }
  if (provider.type !== "github") return false;
  const login = identity.user.login?.toLowerCase();
  if (login && lower(rule.githubUsers)?.includes(login)) return true;
  const orgs = lower(identity.githubOrgs) ?? [];
  return lower(rule.githubOrgs)?.some((o) => orgs.includes(o)) ?? false;
}

/**
 * Tool globs of a rule's scopes (the contract of issue 10): `mcp` → `*`, `mcp:b` → `b__*`
 * (the aggregated endpoint's `backend__tool` names).
 */
export function globsOf(scopes: readonly string[]): string[] {
  return scopes.flatMap((s) =>
    s === ALL_BACKENDS_SCOPE ? ["*"] : s.startsWith("mcp:") ? [`${s.slice(4)}__*`] : []
  );
}

/**
 * Evaluates the access rules for an identity; `null` when no rule matches (or its provider is
 * no longer configured). The owner may use every scope and is an administrator. Tools: the
 * union of `rule.tools ?? globsOf(rule.scopes)`, absent when it contains `*`.
 */
export function evaluateAccess(config: GatewayConfig, identity: Identity): Access | null {
  if (isOwner(identity.user)) return { scopes: [ALL_BACKENDS_SCOPE], admin: true };
  const provider = config.login.providers.find((p) => p.id === identity.providerId);
  if (!provider || !identity.user.sub.startsWith(`${provider.id}:`)) return null;
  const matching = config.login.access.filter((r) => ruleMatches(r, identity, provider));
  if (matching.length === 0) return null;
  const scopes = [...new Set(matching.flatMap((r) => r.scopes))];
  const tools = [...new Set(matching.flatMap((r) => r.tools ?? globsOf(r.scopes)))];
  const access: Access = { scopes, admin: matching.some((r) => r.admin) };
  if (!tools.includes("*")) access.tools = tools;
  return access;
}

/**
 * The requested scopes narrowed to what a user may use (issue 8 §5): `mcp` stays when allowed,
 * else it stands for every allowed `mcp:<backend>`; `mcp:<backend>` stays when `mcp` or itself
 * is allowed. Returns the space-separated result, or `null` when nothing remains.
 */
export function narrowScope(requested: string, allowed: readonly string[]): string | null {
  const all = allowed.includes(ALL_BACKENDS_SCOPE);
  const out: string[] = [];
  const add = (s: string) => void (out.includes(s) || out.push(s));
  for (const s of requested.split(" ").filter(Boolean)) {
    if (s === ALL_BACKENDS_SCOPE) {
      if (all) add(s);
      else allowed.filter((a) => a.startsWith("mcp:")).forEach(add);
    } else if (all || allowed.includes(s)) add(s);
  }
  return out.length > 0 ? out.join(" ") : null;
}

/** A user's grant for a request: the narrowed scope and the tool globs, or `null`. */
export interface GrantScope {
  scope: string;
  tools?: string[];
}

/** {@linkcode narrowScope} and the tools of an access, or `null` when no scope remains. */
export function grantScopeFor(requested: string, access: Access): GrantScope | null {
  const scope = narrowScope(requested, access.scopes);
  if (scope === null) return null;
  return access.tools ? { scope, tools: access.tools } : { scope };
}
