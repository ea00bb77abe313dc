/**
 * `deno task dev`: the gateway in watch mode. Deno's `--watch` restarts it when a module changes;
 * the config file (`GATEWAY_CONFIG`, default `./gateway.config.json`) is watched too, so that an
 * edit to it restarts the gateway — also after a start that failed on a bad config. With
 * `KV_PATH` unset, KV lives in `./.data/gateway.kv`.
 */

/** Where `deno task dev` (and `deno task demo`) keep KV when `KV_PATH` is unset. */
export const DEV_KV_PATH = "./.data/gateway.kv";

/** The config file the gateway reads (`GATEWAY_CONFIG`, default `./gateway.config.json`). */
export function configPath(env: (name: string) => string | undefined): string {
  return env("GATEWAY_CONFIG") || "./gateway.config.json";
}

/** The `deno` arguments of the watched gateway. */
export function devArgs(env: (name: string) => string | undefined): string[] {
  return [
    "run",
    `--watch=${configPath(env)}`,
    "--v8-flags=--max-semi-space-size=4",
    "--allow-net",
    "--allow-env",
    "--allow-read",
    "--allow-write",
    new URL("../main.ts", import.meta.url).href,
    ...(env("KV_PATH") ? [] : [`--default-kv-path=${DEV_KV_PATH}`]),
    // Deno's watcher stops the program with SIGTERM at every restart: no shutdown hooks then.
    "--watched",
  ];
}

/**
 * Runs `deno <args>` with this process's stdio, passing SIGINT and SIGTERM on to it; resolves
 * with its exit code.
 */
export async function runDeno(args: string[], env: Record<string, string> = {}): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), { args, env, stdin: "inherit" }).spawn();
  const forward = (signal: Deno.Signal) => () => {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  };
  const listeners: [Deno.Signal, () => void][] = [];
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      const listener = forward(signal);
      Deno.addSignalListener(signal, listener);
      listeners.push([signal, listener]);
    } catch {
      // SIGTERM cannot be listened to on Windows
    }
  }
  const { code } = await child.status;
  for (const [signal, listener] of listeners) Deno.removeSignalListener(signal, listener);
  return code;
}

if (import.meta.main) {
  const env = (name: string) => Deno.env.get(name);
  if (!env("KV_PATH")) await Deno.mkdir("./.data", { recursive: true });
  Deno.exit(await runDeno(devArgs(env)));
}
