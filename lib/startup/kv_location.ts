/**
 * Where the gateway's Deno KV database lives, decided once at start from `KV_PATH`, the
 * `--default-kv-path` the tasks pass (`dev`, `demo`, `start`) and whether this is Deno Deploy. One place decides it;
 * `loadDeps` opens it and the start-up banner describes it.
 */
import { isLoopbackHost } from "../oauth/redirect_uri.ts";
import { onDenoDeploy } from "./deno_deploy.ts";
import { SettingsError } from "./errors.ts";

/** Where KV lives. */
export type KvLocation =
  /** `KV_PATH=:memory:` — gone when the process stops. */
  | { kind: "memory" }
  /** A SQLite file: `KV_PATH`, or the tasks' `--default-kv-path` (`./.data/gateway.kv`). */
  | { kind: "file"; path: string; from: "KV_PATH" | "task default" }
  /** KV Connect (`KV_PATH=https://…`): a `denokv` server or a Deno Deploy database. */
  | { kind: "remote"; url: string }
  /** Deno Deploy with `KV_PATH` unset: the database assigned to the app. */
  | { kind: "deploy" }
  /** `KV_PATH` unset elsewhere: Deno's default file for this project under `DENO_DIR`. */
  | { kind: "default" };

/**
 * Decides where KV lives. A URL in `KV_PATH` is KV Connect (it needs `DENO_KV_ACCESS_TOKEN`). On
 * Deno Deploy (`DENO_DEPLOYMENT_ID` set) only the assigned database works: a file is neither
 * shared between instances nor kept, `:memory:` is one empty database per instance, and KV
 * Connect has no token there (Deploy refuses variables named `DENO_*`).
 * @throws {SettingsError} naming the variable.
 */
export function kvLocation(
  env: (name: string) => string | undefined,
  defaultKvPath?: string,
): KvLocation {
  const onDeploy = onDenoDeploy(env);
  const raw = env("KV_PATH") || undefined;
  if (raw === undefined) {
    if (onDeploy) return { kind: "deploy" };
    return defaultKvPath ? { kind: "file", path: defaultKvPath, from: "task default" } : {
      kind: "default",
    };
  }
  if (raw === ":memory:") {
    if (onDeploy) {
      throw new SettingsError(
        "KV_PATH: :memory: on Deno Deploy would give every instance its own empty database; " +
          "unset it to use the database assigned to the app",
      );
    }
    return { kind: "memory" };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new SettingsError(`KV_PATH: "${raw}" is not a valid URL`);
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      throw new SettingsError("KV_PATH: a KV Connect URL must be http(s)");
    }
    if (onDeploy) {
      throw new SettingsError(
        "KV_PATH: KV Connect cannot authenticate on Deno Deploy (Deploy refuses variables " +
          "named DENO_*, so DENO_KV_ACCESS_TOKEN cannot be set there); unset KV_PATH to use the " +
          "database assigned to the app (deno deploy database assign)",
      );
    }
    if (url.username || url.password) {
      throw new SettingsError(
        "KV_PATH: put the access token in DENO_KV_ACCESS_TOKEN, not in the URL",
      );
    }
    if (!env("DENO_KV_ACCESS_TOKEN")) {
      throw new SettingsError(
        "KV_PATH is a KV Connect URL: set DENO_KV_ACCESS_TOKEN to the access token of that " +
          "database (the denokv server's --access-token, or a Deno Deploy access token)",
      );
    }
    return { kind: "remote", url: raw };
  }
  if (onDeploy) {
    throw new SettingsError(
      "KV_PATH: a file path on Deno Deploy is not kept nor shared between instances; unset " +
        "KV_PATH to use the database assigned to the app (deno deploy database assign)",
    );
  }
  return { kind: "file", path: raw, from: "KV_PATH" };
}

/** The argument for `Deno.openKv` (`undefined` = Deno's default, or Deploy's database). */
export function kvOpenPath(location: KvLocation): string | undefined {
  switch (location.kind) {
    case "memory":
      return ":memory:";
    case "file":
      return location.path;
    case "remote":
      return location.url;
    default:
      return undefined;
  }
}

/** A URL without its query and fragment (a KV Connect URL carries no secret, but be sure). */
function displayUrl(raw: string): string {
  const url = new URL(raw);
  return `${url.origin}${url.pathname}`;
}

/** One line saying where KV lives, for the start-up banner. */
export function describeKvLocation(location: KvLocation): string {
  switch (location.kind) {
    case "memory":
      return "in memory (KV_PATH=:memory:): everything is lost when the process stops";
    case "file":
      return location.from === "KV_PATH"
        ? `SQLite file ${location.path} (KV_PATH)`
        : `SQLite file ${location.path} (the default of deno task; set KV_PATH to change it)`;
    case "remote":
      return `KV Connect ${displayUrl(location.url)} (KV_PATH, DENO_KV_ACCESS_TOKEN)`;
    case "deploy":
      return "Deno Deploy: the KV database assigned to this app (one per timeline)";
    case "default":
      return "Deno's default file for this project, under DENO_DIR/location_data/ " +
        "(set KV_PATH to choose the file)";
  }
}

/** Warnings about a KV location: in-memory state, KV Connect in clear over the network. */
export function kvWarnings(location: KvLocation): string[] {
  if (location.kind === "memory") {
    return ["KV is in memory: registered clients, grants and tokens vanish on restart"];
  }
  if (location.kind === "remote") {
    const url = new URL(location.url);
    if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) {
      return [
        `KV Connect over plain http to ${url.host}: the access token and all data cross the ` +
        "network in clear; use https",
      ];
    }
  }
  return [];
}
