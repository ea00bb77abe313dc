/**
 * The file permissions of `deno task start`, printed as Deno flags (the task substitutes them):
 *
 * - `--allow-read`: the project (`.`: the code, loaded lazily), the config file
 *   (`GATEWAY_CONFIG`, default `./gateway.config.json`) and the Deno KV directory;
 * - `--allow-write`: the Deno KV directory only (SQLite writes `<file>-wal` and `-shm` beside the
 *   database, so the directory, not the file). None for `KV_PATH=:memory:` or a remote
 *   `https://` KV (KV Connect).
 *
 * The KV path is `KV_PATH`, else the default given as the first argument (the task passes the
 * same `./.data/gateway.kv` it gives main.ts as `--default-kv-path`). A path with whitespace or
 * a comma cannot be expressed in these flags: the script refuses it (exit 1, message on stderr).
 * Runs with `--allow-env=GATEWAY_CONFIG,KV_PATH` and nothing else.
 * @module
 */

/** Default config path, as in lib/deps.ts. */
export const DEFAULT_CONFIG_PATH = "./gateway.config.json";

/** The directory part of a path (`.` when it has none). */
function directoryOf(path: string): string {
  const slash = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  if (slash < 0) return ".";
  return slash === 0 ? path.slice(0, 1) : path.slice(0, slash);
}

function checked(name: string, path: string): string {
  if (/[\s,]/.test(path)) {
    throw new Error(
      `${name}: "${path}" contains whitespace or a comma, which deno task start cannot pass ` +
        "to --allow-read/--allow-write; use another path",
    );
  }
  return path;
}

/** The `--allow-read` and `--allow-write` flags for an environment. @throws {Error} */
export function startPermissions(
  env: (name: string) => string | undefined,
  defaultKvPath: string,
): string[] {
  const config = checked("GATEWAY_CONFIG", env("GATEWAY_CONFIG") || DEFAULT_CONFIG_PATH);
  const kvPath = env("KV_PATH") || defaultKvPath;
  const read = [".", config];
  const write: string[] = [];
  if (kvPath !== ":memory:" && !/^https?:\/\//i.test(kvPath)) {
    const dir = checked("KV_PATH", directoryOf(kvPath));
    read.push(dir);
    write.push(dir);
  }
  const flags = [`--allow-read=${[...new Set(read)].join(",")}`];
  if (write.length > 0) flags.push(`--allow-write=${write.join(",")}`);
  return flags;
}

if (import.meta.main) {
  try {
    const defaultKvPath = Deno.args[0] ?? "./.data/gateway.kv";
    console.log(startPermissions((name) => Deno.env.get(name), defaultKvPath).join(" "));
  } catch (error) {
    console.error(`deno task start: ${(error as Error).message}`);
    Deno.exit(1);
  }
}
