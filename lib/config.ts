/**
 * The gateway's configuration file: parsed once at start by a zod schema into a frozen,
 * typed object. A bad file fails the start with a message naming the file and the field.
 */
import { z } from "zod";
import { backendAuthSchema, checkBackendAuth } from "./credentials/auth_config.ts";
import { checkLogin, type LoginConfig, loginSchema } from "./identity/login_config.ts";
import { OAuthError } from "./oauth/oauth_error.ts";
import { validateRedirectUri } from "./oauth/redirect_uri.ts";
import { EXPOSED_NAME, looksShortened, SEPARATOR } from "./mcp/aggregate/naming.ts";
import {
  DEFAULT_ALLOWED_PRIVATE_USE_SCHEMES,
  isDangerousScheme,
  PRIVATE_USE_SCHEME,
} from "./oauth/redirect_schemes.ts";

/** Asymmetric JWS algorithms (RFC 7518 §3.1, RFC 8037) an operator may allow for external JWTs. */
export const ASYMMETRIC_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
] as const;

/** Backend names become URL segments and scope names (`mcp:<name>`). */
export const BACKEND_NAME = /^[a-z0-9-]{1,40}$/;

/** Globs over names or URIs: `*` any run of characters, `?` one character (lib/mcp/curation.ts). */
const globList = z.array(z.string().min(1).max(500)).max(1000);

const toolRulesSchema = z.strictObject({
  allow: globList.optional()
    .describe(
      "Globs over the backend's tool names: only matching tools are offered (absent: all).",
    ),
  deny: globList.optional()
    .describe("Globs of tools never offered and refused on call (deny wins over allow)."),
  rename: z.record(z.string().min(1), z.string()).optional()
    .describe("Backend tool name → name shown to clients (prefixed with <backend>__ on /mcp)."),
  describe: z.record(z.string().min(1), z.string().min(1).max(4000)).optional()
    .describe("Backend tool name → description shown to clients instead of the backend's."),
  defaults: z.record(z.string().min(1), z.record(z.string(), z.unknown())).optional()
    .describe(
      "Backend tool name → pinned argument values: injected on every call, never overridable, " +
        "removed from the advertised input schema.",
    ),
});

const listRulesSchema = z.strictObject({
  allow: globList.optional().describe("Globs: only matching items are offered (absent: all)."),
  deny: globList.optional().describe("Globs of items never offered and refused (deny wins)."),
});

const backendSchema = z.strictObject({
  name: z.string().regex(BACKEND_NAME, "must match [a-z0-9-] (1 to 40 characters)")
    .describe("Short name: the backend is served at /mcp/<name> and its scope is mcp:<name>."),
  url: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" })
    .describe("Streamable HTTP endpoint of the backend MCP server."),
  headers: z.record(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/), z.string())
    .default({})
    .describe("Headers sent to this backend on every request (its credentials). ${VAR} reads env."),
  timeoutMs: z.int().min(100).max(600_000).default(30_000)
    .describe("Time allowed for the backend to start answering a request."),
  listPollSeconds: z.int().min(1).max(3600).default(60)
    .describe(
      "How often /mcp polls the lists of a 2026-07-28 backend whose subscriptions/listen stream fails.",
    ),
  description: z.string().max(500).optional().describe("Shown in /health and docs."),
  auth: backendAuthSchema,
  tools: toolRulesSchema.optional()
    .describe("Curation of the backend's tools, on /mcp and /mcp/<name> alike."),
  prompts: listRulesSchema.optional().describe("Which prompts (by name) are offered."),
  resources: listRulesSchema.optional()
    .describe("Which resources are offered, by URI (templates by their URI template)."),
});

/**
 * The name rule of advertised tools (MCP 2025-11-25 Server/Tools §Tool Names; clients such as
 * Claude enforce `^[A-Za-z0-9_-]{1,64}$`): every rename must give a valid prefixed name, must not
 * end like a shortened name (`--` + 10 hex digits, naming.ts) and must be unique in its backend.
 */
function checkRenames(
  backend: z.output<typeof backendSchema>,
  at: PropertyKey[],
  ctx: z.RefinementCtx,
) {
  const seen = new Map<string, string>();
  for (const [from, to] of Object.entries(backend.tools?.rename ?? {})) {
    const path = [...at, "tools", "rename", from];
    const advertised = `${backend.name}${SEPARATOR}${to}`;
    if (to === "" || !EXPOSED_NAME.test(advertised)) {
      ctx.addIssue({
        code: "custom",
        path,
        message: `the advertised name "${advertised.slice(0, 100)}" must match ` +
          `^[A-Za-z0-9_-]{1,64}$ (1 to ${64 - backend.name.length - SEPARATOR.length} ` +
          "letters, digits, _ or - after the prefix)",
      });
    } else if (looksShortened(to)) {
      ctx.addIssue({
        code: "custom",
        path,
        message: `"${to}" ends like a shortened name (-- and 10 hex digits), which is reserved`,
      });
    }
    const other = seen.get(to);
    if (other !== undefined) {
      ctx.addIssue({ code: "custom", path, message: `"${to}" is also the new name of "${other}"` });
    }
    seen.set(to, from);
  }
}

const preRegisteredClientSchema = z.strictObject({
  clientId: z.string().regex(/^[A-Za-z0-9._~-]{1,100}$/, "must be 1-100 URL-safe characters")
    .describe("client_id the client uses."),
  clientSecret: z.string().min(16, "must have 16 characters or more").optional()
    .describe("Secret (use ${VAR}); absent = public client (PKCE only)."),
  tokenEndpointAuthMethod: z.enum(["none", "client_secret_basic", "client_secret_post"])
    .optional().describe("Defaults to client_secret_basic with a secret, none without."),
  clientName: z.string().max(200).optional(),
  redirectUris: z.array(z.string()).min(1).describe("Exact redirect URIs (RFC 8252 rules)."),
  scopes: z.array(z.string()).optional()
    .describe("Scopes this client may receive (default: every scope)."),
});

const externalIssuerSchema = z.strictObject({
  issuer: z.string().min(1).describe("Expected `iss` of the JWT access tokens."),
  jwksUrl: z.url({ protocol: /^https?$/ }).describe("The issuer's JWKS URL."),
  audience: z.string().min(1).optional()
    .describe("Accepted `aud` besides this gateway's resource URLs."),
  algorithms: z.array(z.enum(ASYMMETRIC_ALGORITHMS))
    .min(1).default(["RS256", "ES256"]),
  clockToleranceSeconds: z.int().min(0).max(300).default(30),
});

const perMinute = (fallback: number, what: string) =>
  z.int().min(1).default(fallback).describe(what);

const rateLimitsSchema = z.strictObject({
  registerPerIpPerHour: z.int().min(1).default(20)
    .describe("POST /register per client IP and hour."),
  tokenPerIpPerMinute: perMinute(
    120,
    "POST /token per client IP and minute, counted before any client lookup.",
  ),
  tokenPerClientPerMinute: perMinute(
    60,
    "Successful POST /token answers (tokens issued) per client and minute.",
  ),
  tokenFailuresPerClientAndIpPerMinute: perMinute(
    30,
    "Failed POST /token requests per (client_id, client IP) and minute.",
  ),
  revokePerIpPerMinute: perMinute(
    60,
    "POST /revoke per client IP and minute, counted before any client lookup.",
  ),
  authorizePerIpPerMinute: perMinute(60, "GET /authorize per client IP and minute."),
  mcpPerGrantPerMinute: perMinute(1200, "MCP requests per grant (or external principal)."),
  healthPerPrincipalPerMinute: perMinute(
    60,
    "GET /health per caller (grant or API key) and minute.",
  ),
  passwordFailuresPer15Minutes: z.int().min(1).default(5)
    .describe("Wrong owner passwords per (client, client IP) in 15 minutes."),
  passwordFailuresPerIpPer15Minutes: z.int().min(1).default(10)
    .describe("Wrong owner passwords per client IP, across all clients, in 15 minutes."),
  passwordFailuresGlobalPer15Minutes: z.int().min(1).default(100)
    .describe("Wrong owner passwords from everyone in 15 minutes; then password sign-in pauses."),
  openStreamsPerSession: z.int().min(1).max(1000).default(4)
    .describe("Open long-lived SSE streams (GET /mcp, GET /mcp/<backend>) per MCP session."),
  openStreamsPerPrincipal: z.int().min(1).max(10_000).default(32)
    .describe("Open long-lived SSE streams per grant or API key (listen streams included)."),
});

const auditSchema = z.strictObject({
  enabled: z.boolean().default(true)
    .describe("Record MCP operations and OAuth events in the audit trail (KV and log lines)."),
  retentionDays: z.int().min(1).max(3650).default(30)
    .describe("Days an audit record is kept in KV (expireIn; also checked on read)."),
  arguments: z.enum(["none", "redacted"]).default("none")
    .describe(
      "none: arguments are never recorded; redacted: recorded with secret-looking keys masked, size capped.",
    ),
});

type RawConfig = {
  defaultScopes: string;
  clients: z.output<typeof preRegisteredClientSchema>[];
  backends: { name: string }[];
  login: LoginConfig;
  allowedPrivateUseSchemes: string[];
};

/**
 * Cross-field rules: `defaultScopes` and each client's `scopes` are known scopes (`mcp`,
 * `mcp:<backend>`, `offline_access`), pre-registered client ids are unique, their redirect URIs
 * follow the registration rules (RFC 8252, OAuth 2.1 §2.3.1), and a secret goes with a
 * secret-based auth method (RFC 7591 §2 `token_endpoint_auth_method`).
 */
function checkClientsAndScopes(c: RawConfig, ctx: z.RefinementCtx): void {
  const known = new Set(["mcp", "offline_access", ...c.backends.map((b) => `mcp:${b.name}`)]);
  const unknownScope = (scopes: string[], path: PropertyKey[]) => {
    for (const s of scopes) {
      if (!known.has(s)) ctx.addIssue({ code: "custom", path, message: `unknown scope "${s}"` });
    }
  };
  unknownScope(c.defaultScopes.split(" "), ["defaultScopes"]);
  checkLogin(c.login, known, ctx);
  c.allowedPrivateUseSchemes.forEach((scheme, i) => {
    if (isDangerousScheme(scheme)) {
      ctx.addIssue({
        code: "custom",
        path: ["allowedPrivateUseSchemes", i],
        message: `"${scheme}" hands the URI to another program; it cannot be allowed`,
      });
    }
  });
  const ids = new Set<string>();
  c.clients.forEach((client, i) => {
    const at = (...rest: PropertyKey[]) => ["clients", i, ...rest];
    if (ids.has(client.clientId)) {
      ctx.addIssue({ code: "custom", path: at("clientId"), message: "duplicate clientId" });
    }
    ids.add(client.clientId);
    unknownScope(client.scopes ?? [], at("scopes"));
    client.redirectUris.forEach((uri, j) => {
      try {
        validateRedirectUri(uri, c.allowedPrivateUseSchemes);
      } catch (e) {
        if (!(e instanceof OAuthError)) throw e;
        ctx.addIssue({ code: "custom", path: at("redirectUris", j), message: e.message });
      }
    });
    const method = client.tokenEndpointAuthMethod;
    if (method === "none" && client.clientSecret !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: at("clientSecret"),
        message: 'must be absent when tokenEndpointAuthMethod is "none"',
      });
    }
    if (method !== undefined && method !== "none" && client.clientSecret === undefined) {
      ctx.addIssue({
        code: "custom",
        path: at("clientSecret"),
        message: `is required with tokenEndpointAuthMethod "${method}"`,
      });
    }
  });
}

/**
 * Shortest access-token lifetime. MCP clients renew a token ahead of its expiry (mcp-remote
 * 0.15 treats a token as expired 60 s early), so at 60 s they refresh before every request
 * and soon meet `rateLimits.tokenPerClientPerMinute`; 300 s leaves them four minutes of use
 * per token.
 */
export const MIN_ACCESS_TOKEN_TTL_SECONDS = 300;

/** Zod schema of `gateway.config.json`; `deno task schema` publishes it as JSON Schema. */
export const configSchema = z.strictObject({
  $schema: z.string().optional(),
  serverName: z.string().min(1).max(100).default("mcp-edge-gateway")
    .describe("serverInfo.name of the aggregated /mcp endpoint."),
  allowedOrigins: z.array(z.url().transform((u) => new URL(u).origin)).default([])
    .describe(
      "Browser origins (besides the gateway's own) allowed on MCP routes, e.g. the MCP Inspector's.",
    ),
  accessTokenTtlSeconds: z.int()
    .min(
      MIN_ACCESS_TOKEN_TTL_SECONDS,
      `must be at least ${MIN_ACCESS_TOKEN_TTL_SECONDS}: MCP clients refresh up to 60 s before ` +
        "expiry, so shorter lifetimes make them refresh before almost every request",
    )
    .max(86_400).default(3600)
    .describe(
      `Lifetime of access tokens, at least ${MIN_ACCESS_TOKEN_TTL_SECONDS} s (clients refresh ` +
        "up to 60 s before expiry).",
    ),
  refreshTokenTtlSeconds: z.int().min(3600).max(31_536_000).default(2_592_000)
    .describe("Lifetime of refresh tokens (each use rotates it)."),
  defaultScopes: z.string().regex(/^[a-z0-9:-]+( [a-z0-9:-]+)*$/).default("mcp")
    .describe("Scopes granted when a client asks for none (RFC 6749 §3.3)."),
  clients: z.array(preRegisteredClientSchema).default([])
    .describe("Clients registered by hand (no dynamic registration needed)."),
  registration: z.strictObject({
    mode: z.enum(["open", "off", "token"]).default("open")
      .describe("open: anyone may register; off: no DCR; token: needs an initial access token."),
    initialAccessTokens: z.array(z.string().min(16)).default([])
      .describe("Bearer tokens accepted by POST /register in mode token (use ${VAR})."),
    clientIdleDays: z.int().min(1).max(3650).default(90)
      .describe("A registered client unused for this long expires."),
  }).prefault({}),
  clientIdMetadataDocuments: z.strictObject({
    enabled: z.boolean().default(true),
    allowLoopback: z.boolean().default(false)
      .describe("Development only: allow http/loopback client_id URLs."),
    fetchesPerHostPerMinute: z.int().min(1).default(30)
      .describe("Metadata documents fetched per document host and minute."),
    fetchesPerMinute: z.int().min(1).default(120)
      .describe("Metadata documents fetched per minute, all hosts together."),
  }).prefault({}),
  externalIssuers: z.array(externalIssuerSchema).default([])
    .describe("External authorization servers whose JWT access tokens are accepted."),
  rateLimits: rateLimitsSchema.prefault({}),
  login: loginSchema,
  audit: auditSchema.prefault({}).describe("The audit trail (README: Operating the gateway)."),
  clientIpHeader: z.string().regex(/^[A-Za-z0-9-]+$/).optional()
    .describe("Header holding the client IP behind a proxy (e.g. x-forwarded-for)."),
  catalog: z.strictObject({
    mode: z.enum(["full", "search"]).default("full")
      .describe(
        "full: tools/list on /mcp lists every visible tool; search: it lists search_tools and " +
          "call_tool only.",
      ),
    searchAbove: z.int().min(1).optional()
      .describe("In full mode, switch a user to search when they see more tools than this."),
    cacheTtlSeconds: z.int().min(0).max(86_400).default(300)
      .describe(
        "How long backends' tool and prompt lists are cached (per isolate and in KV); a " +
          "backend's list_changed drops its entry at once. 0 disables the cache.",
      ),
  }).prefault({}).describe("The tool catalog of /mcp (tool search for large catalogs)."),
  clientIpHeaderHops: z.int().min(1).max(10).default(1)
    .describe(
      "Which entry of clientIpHeader is the client, counted from the right: the number of " +
        "your own proxies that append to it (entries further left are client-supplied).",
    ),
  allowedPrivateUseSchemes: z.array(z.string().regex(PRIVATE_USE_SCHEME, "is not a URI scheme"))
    .default([...DEFAULT_ALLOWED_PRIVATE_USE_SCHEMES])
    .describe(
      "Private-use redirect URI schemes allowed without a period (RFC 8252 §7.1 asks for a " +
        "reverse domain name such as com.example.app).",
    ),
  backends: z.array(backendSchema).min(1).superRefine((backends, ctx) => {
    const seen = new Set<string>();
    backends.forEach((b, i) => {
      if (seen.has(b.name)) {
        ctx.addIssue({ code: "custom", path: [i, "name"], message: `duplicate name "${b.name}"` });
      }
      seen.add(b.name);
      checkBackendAuth(b, [i], ctx);
      checkRenames(b, [i], ctx);
    });
  }),
}).superRefine(checkClientsAndScopes);

/** One backend MCP server, as configured. */
export type BackendConfig = Readonly<z.output<typeof backendSchema>>;
/** The whole parsed configuration (frozen). */
export type GatewayConfig = Readonly<Omit<z.output<typeof configSchema>, "backends">> & {
  readonly backends: readonly BackendConfig[];
};

/**
 * Thrown when the configuration cannot be used. Each problem is one line of the form
 * `<file>: <field>: <message>` ({@linkcode ConfigError.problems}); the message joins them.
 */
export class ConfigError extends Error {
  /** One line per problem, each naming the file and the field. */
  readonly problems: string[];
  constructor(problems: string | string[]) {
    const lines = typeof problems === "string" ? problems.split("\n") : problems;
    super(lines.join("\n"));
    this.name = "ConfigError";
    this.problems = lines;
  }
}

function pathString(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    out += typeof part === "number" ? `[${part}]` : (out ? "." : "") + String(part);
  }
  return out || "(root)";
}

const ENV_REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** One `${VAR}` of a config file: the variable and the field it sits in. */
export interface EnvReference {
  name: string;
  /** e.g. `backends[0].headers.Authorization`. */
  field: string;
}

/** Every `${VAR}` in the strings of a JSON value, in document order. */
export function envReferences(value: unknown, path: PropertyKey[] = []): EnvReference[] {
  if (typeof value === "string") {
    return [...value.matchAll(ENV_REFERENCE)].map((m) => ({
      name: m[1]!,
      field: pathString(path),
    }));
  }
  if (Array.isArray(value)) return value.flatMap((v, i) => envReferences(v, [...path, i]));
  if (value && typeof value === "object") {
    return Object.entries(value).flatMap(([k, v]) => envReferences(v, [...path, k]));
  }
  return [];
}

/**
 * Replaces `${VAR}` in every string of a JSON value with the environment's value.
 * @throws {ConfigError} one line per unset variable, naming the field.
 */
export function interpolateEnv(
  value: unknown,
  env: (name: string) => string | undefined,
): unknown {
  const missing = envReferences(value).filter((r) => env(r.name) === undefined);
  if (missing.length > 0) {
    throw new ConfigError(
      missing.map((r) => `${r.field}: environment variable ${r.name} is not set`),
    );
  }
  const replace = (v: unknown): unknown => {
    if (typeof v === "string") return v.replace(ENV_REFERENCE, (_, name: string) => env(name)!);
    if (Array.isArray(v)) return v.map(replace);
    if (v && typeof v === "object") {
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, replace(x)]));
    }
    return v;
  };
  return replace(value);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object") {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * Parses a configuration object (already read from JSON). `${VAR}` is resolved with `env`.
 * @throws {ConfigError} naming `source` and the offending field.
 */
export function parseConfig(
  raw: unknown,
  env: (name: string) => string | undefined,
  source = "config",
): GatewayConfig {
  let interpolated: unknown;
  try {
    interpolated = interpolateEnv(raw, env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    throw new ConfigError(e.problems.map((p) => `${source}: ${p}`));
  }
  const result = configSchema.safeParse(interpolated);
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((i) => `${source}: ${pathString(i.path)}: ${i.message}`),
    );
  }
  const config = deepFreeze(result.data) as GatewayConfig;
  sources.set(config, raw);
  return config;
}

const sources = new WeakMap<GatewayConfig, unknown>();

/**
 * The configuration as written, before `${VAR}` interpolation (for the admin views, which show
 * `${VAR}` instead of its value); `undefined` for a config not made by {@linkcode parseConfig}.
 */
export function configSource(config: GatewayConfig): unknown {
  return sources.get(config);
}

/** Reads and parses the JSON file at `path`. @throws {ConfigError} */
export async function loadConfigFile(
  path: string,
  env: (name: string) => string | undefined,
): Promise<GatewayConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    const reason = e instanceof Deno.errors.NotFound ? "no such file" : (e as Error).message;
    throw new ConfigError(`${path}: cannot read the config file (${reason})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  return parseConfig(raw, env, path);
}
