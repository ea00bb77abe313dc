/**
 * The start-up banner: what an operator needs in the first minute, printed once to stderr
 * (stdout carries the JSON request log). {@linkcode renderBanner} is pure (data in, lines out);
 * {@linkcode printBanner} gathers the data (probing each backend once) and writes it.
 */
import type { Deps } from "../deps.ts";
import { type BackendStatus, backendStatuses } from "../home/backend_status.ts";
import { signInMethods } from "../identity/startup.ts";
import { isLoopbackHost } from "../oauth/redirect_uri.ts";
import { describeKvLocation, type KvLocation, kvLocation, kvWarnings } from "./kv_location.ts";
import { VERSION } from "./version.ts";

/** A line of the sign-in part: a method, or a warning about sign-in. */
export interface SignInLine {
  level: "info" | "warn";
  message: string;
}

/** Everything the banner shows. */
export interface BannerData {
  version: string;
  denoVersion: string;
  /** Where the server listens, e.g. `http://0.0.0.0:8000`. */
  listen: string;
  publicUrl: string;
  /** `PUBLIC_URL` was set (otherwise the default `http://localhost:<port>` is in use). */
  publicUrlSet: boolean;
  backends: BackendStatus[];
  kv: KvLocation;
  /** The sign-in methods (identity providers with their callback URLs, the owner password). */
  signIn: SignInLine[];
  apiKeys: number;
  externalIssuers: string[];
}

const LABEL_WIDTH = 12;

function section(label: string, values: string[]): string[] {
  return values.map((v, i) => `  ${(i === 0 ? label : "").padEnd(LABEL_WIDTH)}${v}`);
}

function healthText(s: BackendStatus): string {
  const h = s.health;
  if (!h) return "no answer yet";
  if (h.status === "up") {
    return `up (HTTP ${h.httpStatus} in ${h.latencyMs} ms)`;
  }
  return `DOWN (${h.error ?? "unreachable"})`;
}

/** The warnings of a banner: sign-in, an http public URL off loopback, backends, KV. */
export function bannerWarnings(data: BannerData): string[] {
  const warnings = data.signIn.filter((l) => l.level === "warn").map((l) => l.message);
  const url = new URL(data.publicUrl);
  if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) {
    warnings.push(
      `PUBLIC_URL ${data.publicUrl} is plain http on a non-loopback host: OAuth 2.1 requires ` +
        "https there (clients refuse it) and tokens would cross the network in clear",
    );
  }
  for (const s of data.backends) {
    if (s.health?.status === "down") {
      warnings.push(
        `backend ${s.backend.name} is down (${s.health.error ?? "unreachable"}): /mcp leaves ` +
          `it out and /mcp/${s.backend.name} answers 502 until it is back`,
      );
    }
  }
  warnings.push(...kvWarnings(data.kv));
  return warnings;
}

/**
 * The per-user backends (issue 9): where users connect, and for `oauth` backends the redirect
 * URI to register at a client made by hand. None: no line.
 */
function perUserLines(data: BannerData): string[] {
  const perUser = data.backends.map((s) => s.backend).filter((b) => b.auth);
  if (perUser.length === 0) return [];
  const width = Math.max(...perUser.map((b) => b.name.length));
  return [
    `${data.publicUrl}/connections  where each user connects their own account`,
    ...perUser.map((b) =>
      `${b.name.padEnd(width)}  ` +
      (b.auth!.type === "oauth"
        ? `oauth: redirect URI ${data.publicUrl}/connect/${b.name}/callback`
        : `user-secret: ${b.auth!.label}`)
    ),
  ];
}

/** The banner's lines (no trailing newlines, no colour). */
export function renderBanner(data: BannerData): string[] {
  const mcp = `${data.publicUrl}/mcp`;
  const width = Math.max(
    mcp.length,
    ...data.backends.map((s) => mcp.length + 1 + s.backend.name.length),
  );
  const signIn = data.signIn.filter((l) => l.level === "info")
    .map((l) => l.message.replace(/^sign-in with /, ""));
  const lines = [
    `mcp-edge-gateway ${data.version} (Deno ${data.denoVersion}) listening on ${data.listen}`,
    ...section("public URL", [
      data.publicUrlSet ? data.publicUrl : `${data.publicUrl} (PUBLIC_URL unset: set it when ` +
        "clients reach this gateway by another address, such as a tunnel or a domain)",
    ]),
    ...section("MCP", [
      `${mcp.padEnd(width)}  every backend, one sign-in`,
      ...data.backends.map((s) => `${`${mcp}/${s.backend.name}`.padEnd(width)}  ${healthText(s)}`),
    ]),
    ...section("guide", [`${data.publicUrl}/  how to connect each client`]),
    ...section("KV", [describeKvLocation(data.kv)]),
    ...section("sign-in", signIn.length > 0 ? signIn : ["none"]),
  ];
  lines.push(...section("per-user", perUserLines(data)));
  if (data.apiKeys > 0) lines.push(...section("API keys", [`${data.apiKeys} (GATEWAY_API_KEY)`]));
  if (data.externalIssuers.length > 0) {
    lines.push(...section("JWT issuers", data.externalIssuers));
  }
  for (const w of bannerWarnings(data)) lines.push(`warning: ${w}`);
  return lines;
}

/** What `main.ts` knows at start that the banner shows: the listen address, `PUBLIC_URL`, KV. */
export function startFacts(
  addr: Deno.NetAddr,
  env: (name: string) => string | undefined,
  defaultKvPath: string | undefined,
): { listen: string; publicUrlSet: boolean; kv: KvLocation } {
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return {
    listen: `http://${host}:${addr.port}`,
    publicUrlSet: Boolean(env("PUBLIC_URL")),
    kv: kvLocation(env, defaultKvPath),
  };
}

/** How long the banner waits for the first probe of each backend. */
const PROBE_WAIT_MS = 10_000;

/**
 * Probes every backend once (bounded), then writes the banner with `write` (stderr by default).
 * Called once, from `main.ts`, after the server listens: probes never delay serving.
 */
export async function printBanner(
  deps: Pick<Deps, "config" | "settings" | "fetch" | "now">,
  start: { listen: string; publicUrlSet: boolean; kv: KvLocation },
  write: (line: string) => void = (line) => console.error(line),
): Promise<void> {
  const backends = await backendStatuses(deps, PROBE_WAIT_MS);
  const lines = renderBanner({
    version: VERSION,
    denoVersion: Deno.version.deno,
    listen: start.listen,
    publicUrl: deps.settings.publicUrl,
    publicUrlSet: start.publicUrlSet,
    backends,
    kv: start.kv,
    signIn: signInMethods(deps),
    apiKeys: deps.settings.apiKeyHashes.length,
    externalIssuers: deps.config.externalIssuers.map((i) => i.issuer),
  });
  for (const line of lines) write(line);
}
