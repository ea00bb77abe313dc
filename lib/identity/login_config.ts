/**
 * The `login` section of `gateway.config.json`: upstream identity providers (any OpenID
 * Connect provider, GitHub) and the access rules that decide who may use which scopes.
 * `lib/config.ts` embeds {@linkcode loginSchema} and calls {@linkcode checkLogin}.
 */
import { z } from "zod";

/** Provider ids become URL segments (`/login/{id}`) and the prefix of user subjects. */
export const PROVIDER_ID = /^[a-z0-9-]{1,40}$/;

const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);

/** https, or http on a loopback host (development and tests only). */
const httpsOrLoopback = z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }).refine(
  (u) => new URL(u).protocol === "https:" || LOOPBACK_HOSTS.has(new URL(u).hostname),
  "must be https (http only on localhost)",
);

const id = z.string().regex(PROVIDER_ID, "must match [a-z0-9-] (1 to 40 characters)")
  .describe("Short id: the redirect URI at the provider is ${PUBLIC_URL}/login/<id>/callback.");
const clientId = z.string().min(1).max(500).describe("Client id the provider issued.");
const name = z.string().min(1).max(60).optional().describe("Label of the sign-in button.");
const oauthScope = z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, "is not a valid scope token");
const timeoutMs = z.int().min(100).max(60_000).default(10_000)
  .describe("Time allowed for each request to the provider.");

const oidcProviderSchema = z.strictObject({
  id,
  type: z.literal("oidc"),
  name,
  issuer: httpsOrLoopback.describe(
    "Issuer URL; discovery reads <issuer>/.well-known/openid-configuration.",
  ),
  clientId,
  clientSecret: z.string().min(1).optional()
    .describe("Client secret (use ${VAR}); absent = public client (PKCE only)."),
  scopes: z.array(oauthScope).min(1).default(["openid", "email", "profile"])
    .refine((s) => s.includes("openid"), 'must include "openid"')
    .describe("Scopes asked of the provider."),
  groupsClaim: z.string().min(1).max(200).optional()
    .describe("ID token / userinfo claim holding the user's groups (for `groups` rules)."),
  timeoutMs,
});

const githubProviderSchema = z.strictObject({
  id,
  type: z.literal("github"),
  name,
  clientId,
  clientSecret: z.string().min(1).describe("Client secret (use ${VAR})."),
  scopes: z.array(oauthScope).optional()
    .describe('Default: "read:user user:email", plus "read:org" when a rule has githubOrgs.'),
  authorizeUrl: httpsOrLoopback.default("https://github.com/login/oauth/authorize")
    .describe("GitHub Enterprise Server: https://<host>/login/oauth/authorize."),
  tokenUrl: httpsOrLoopback.default("https://github.com/login/oauth/access_token")
    .describe("GitHub Enterprise Server: https://<host>/login/oauth/access_token."),
  apiUrl: httpsOrLoopback.default("https://api.github.com")
    .describe("GitHub Enterprise Server: https://<host>/api/v3."),
  timeoutMs,
});

/** A tool glob over the names clients see on `/mcp` (`*` any run, `?` one character). */
const toolGlob = z.string().regex(/^[A-Za-z0-9_.*?-]{1,128}$/, "must be a tool-name glob");

const accessRuleSchema = z.strictObject({
  emails: z.array(z.email().transform((e) => e.toLowerCase())).optional()
    .describe("Verified emails this rule matches."),
  domains: z.array(
    z.string().regex(/^[a-z0-9.-]+\.[a-z]{2,}$/i, "must be a domain").transform((d) =>
      d.toLowerCase()
    ),
  ).optional().describe("Domains of verified emails this rule matches (exact, no subdomains)."),
  groups: z.array(z.string().min(1)).optional()
    .describe("Groups (from an OIDC provider's groupsClaim) this rule matches."),
  githubOrgs: z.array(z.string().regex(/^[A-Za-z0-9-]{1,39}$/)).optional()
    .describe("GitHub organizations whose active members this rule matches."),
  githubUsers: z.array(z.string().regex(/^[A-Za-z0-9-]{1,39}$/)).optional()
    .describe("GitHub logins this rule matches."),
  providers: z.array(id).optional()
    .describe("Only sign-ins through these provider ids match (default: any provider)."),
  scopes: z.array(z.string()).min(1).describe(
    'Scopes a matching user may get ("mcp", "mcp:<backend>").',
  ),
  tools: z.array(toolGlob).optional()
    .describe('Tool globs a matching user may call on /mcp (default: from scopes, "docs__*").'),
  admin: z.boolean().default(false).describe("Matching users are administrators."),
}).refine(
  (r) => [r.emails, r.domains, r.groups, r.githubOrgs, r.githubUsers].some((m) => m?.length),
  "needs at least one of emails, domains, groups, githubOrgs, githubUsers",
);

/** Zod schema of the `login` section. */
export const loginSchema = z.strictObject({
  providers: z.array(z.discriminatedUnion("type", [oidcProviderSchema, githubProviderSchema]))
    .default([]).describe("Identity providers users sign in with."),
  access: z.array(accessRuleSchema).default([])
    .describe("Who may use what: a user's scopes are the union of every matching rule's."),
}).prefault({}).describe("Team sign-in: identity providers and access rules.");

/** The parsed `login` section. */
export type LoginConfig = z.output<typeof loginSchema>;
/** One configured OpenID Connect provider. */
export type OidcProviderConfig = z.output<typeof oidcProviderSchema>;
/** One configured GitHub (or GitHub Enterprise Server) provider. */
export type GithubProviderConfig = z.output<typeof githubProviderSchema>;
/** One configured identity provider. */
export type ProviderConfig = OidcProviderConfig | GithubProviderConfig;
/** One access rule. */
export type AccessRule = z.output<typeof accessRuleSchema>;

/**
 * Cross-field rules of `login`: unique provider ids; rule scopes are known scopes; a rule's
 * `providers` exist; `groups` rules need an OIDC provider with `groupsClaim`, GitHub rules a
 * GitHub provider (else they could never match).
 */
export function checkLogin(login: LoginConfig, knownScopes: Set<string>, ctx: z.RefinementCtx) {
  const ids = new Set<string>();
  login.providers.forEach((p, i) => {
    if (ids.has(p.id)) {
      ctx.addIssue({
        code: "custom",
        path: ["login", "providers", i, "id"],
        message: "duplicate id",
      });
    }
    ids.add(p.id);
  });
  login.access.forEach((rule, i) => {
    const at = (field: string) => ["login", "access", i, field];
    for (const s of rule.scopes) {
      if (!knownScopes.has(s)) {
        ctx.addIssue({ code: "custom", path: at("scopes"), message: `unknown scope "${s}"` });
      }
    }
    for (const p of rule.providers ?? []) {
      if (!ids.has(p)) {
        ctx.addIssue({ code: "custom", path: at("providers"), message: `unknown provider "${p}"` });
      }
    }
    const usable = login.providers.filter((p) => !rule.providers || rule.providers.includes(p.id));
    if (rule.groups?.length && !usable.some((p) => p.type === "oidc" && p.groupsClaim)) {
      ctx.addIssue({
        code: "custom",
        path: at("groups"),
        message: "no OIDC provider has a groupsClaim",
      });
    }
    if (
      (rule.githubOrgs?.length || rule.githubUsers?.length) &&
      !usable.some((p) => p.type === "github")
    ) {
      const field = rule.githubOrgs?.length ? "githubOrgs" : "githubUsers";
      ctx.addIssue({ code: "custom", path: at(field), message: "no GitHub provider" });
    }
  });
}

/** The redirect URI to register at a provider (`${PUBLIC_URL}/login/{id}/callback`). */
export function callbackUrl(publicUrl: string, providerId: string): string {
  return `${publicUrl}/login/${providerId}/callback`;
}
