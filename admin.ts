/**
 * `deno task admin <command>`: the gateway's admin CLI (lib/admin/cli.ts) against the same Deno
 * KV as the server. `deno task admin --help` lists the commands.
 */
import { runAdminCli } from "./lib/admin/cli.ts";

if (import.meta.main) {
  const encoder = new TextEncoder();
  const exists = (path: string) => {
    try {
      Deno.statSync(path);
      return true;
    } catch {
      return false;
    }
  };
  const code = await runAdminCli(Deno.args, { env: (n) => Deno.env.get(n), exists }, {
    out: (line) => Deno.stdout.writeSync(encoder.encode(line + "\n")),
    err: (line) => Deno.stderr.writeSync(encoder.encode(line + "\n")),
  });
  Deno.exit(code);
}
