/**
 * `deno task deploy --org <org> --app <app>`: the whole Deno Deploy path with today's
 * `deno deploy` CLI (Deno Deploy Classic and deployctl were shut down on 20 July 2026):
 *
 * 1. `deno task deploy:check` (offline checks, with the production PUBLIC_URL);
 * 2. `deno deploy create` — a dynamic app running main.ts (skip with `--skip-create`);
 * 3. `deno deploy database provision <kv> --kind denokv` and `database assign` (skip with
 *    `--skip-kv`): without an assigned database, `Deno.openKv()` has nothing to open;
 * 4. `deno deploy env add` for PUBLIC_URL, the owner password, the API keys and every `${VAR}` of
 *    the config, from this shell's environment (`update-value` when the variable exists);
 * 5. `deno deploy --prod`.
 *
 * `--dry-run` prints the commands (secret values masked) and runs nothing. Each command stops
 * the script when it fails; re-run with the `--skip-…` flags of the steps already done.
 */
import { configPath } from "./dev.ts";
import { productionVariables } from "./deploy_check.ts";

/** Options of {@linkcode deployPlan}. */
export interface DeployOptions {
  org: string;
  app: string;
  /** Default `https://<app>.<org>.deno.net`. */
  publicUrl?: string;
  /** Name of the Deno KV database instance; default `<app>-kv`. */
  kv?: string;
  skipCreate?: boolean;
  skipKv?: boolean;
}

/** One `deno` command of the plan. */
export interface DeployStep {
  title: string;
  args: string[];
  /** Run instead when `args` fails (an `env add` of a variable that exists). */
  fallback?: string[];
  /** Index in `args`/`fallback` of a secret value (masked when printed). */
  secretAt?: number;
}

/** Variables with their values, or the names that have no value in this shell. */
export function deployVariables(
  raw: unknown,
  local: (name: string) => string | undefined,
  publicUrl: string,
): { values: { name: string; value: string; secret: boolean }[]; missing: string[] } {
  const values: { name: string; value: string; secret: boolean }[] = [];
  const missing: string[] = [];
  const vars = productionVariables(raw, local);
  if (local("GATEWAY_API_KEY")) {
    vars.push({ name: "GATEWAY_API_KEY", secret: true, why: "API keys", placeholder: false });
  }
  for (const v of vars) {
    const value = v.name === "PUBLIC_URL" ? publicUrl : local(v.name);
    if (value === undefined) missing.push(v.name);
    else values.push({ name: v.name, value, secret: v.secret });
  }
  return { values, missing };
}

/** The commands, in order, to deploy this gateway as `options.app` in `options.org`. */
export function deployPlan(
  options: DeployOptions,
  variables: { name: string; value: string; secret: boolean }[],
): DeployStep[] {
  const target = ["--org", options.org, "--app", options.app];
  const kv = options.kv ?? `${options.app}-kv`;
  const steps: DeployStep[] = [
    { title: "offline checks", args: ["task", "deploy:check"] },
  ];
  if (!options.skipCreate) {
    steps.push({
      title: `create the app ${options.app}`,
      args: [
        "deploy",
        "create",
        ...target,
        "--source",
        "local",
        "--runtime-mode",
        "dynamic",
        "--entrypoint",
        "main.ts",
        "--install-command",
        "deno install --entrypoint main.ts",
        "--build-timeout",
        "5",
        "--build-memory-limit",
        "1024",
        "--region",
        "global",
        "--no-wait",
      ],
    });
  }
  if (!options.skipKv) {
    steps.push(
      {
        title: `provision the Deno KV database ${kv}`,
        args: ["deploy", "database", "provision", kv, "--kind", "denokv", "--org", options.org],
      },
      {
        title: `assign ${kv} to ${options.app}`,
        args: ["deploy", "database", "assign", kv, ...target],
      },
    );
  }
  for (const v of variables) {
    const secret = v.secret ? ["--secret"] : [];
    steps.push({
      title: `set ${v.name}`,
      args: ["deploy", "env", "add", v.name, v.value, ...secret, ...target],
      fallback: ["deploy", "env", "update-value", v.name, v.value, ...target],
      ...(v.secret ? { secretAt: 4 } : {}),
    });
  }
  steps.push({ title: "deploy to production", args: ["deploy", ...target, "--prod"] });
  return steps;
}

/** A step's command line for people: `deno …`, secret values masked. */
export function showCommand(args: string[], secretAt?: number): string {
  const shown = args.map((a, i) => i === secretAt ? "********" : /[\s"'$]/.test(a) ? `"${a}"` : a);
  return `deno ${shown.join(" ")}`;
}

function parseArgs(args: string[]): DeployOptions & { dryRun: boolean } {
  const value = (flag: string) => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const org = value("--org");
  const app = value("--app");
  if (!org || !app) {
    console.error(
      "usage: deno task deploy --org <org> --app <app> [--public-url <https://…>] " +
        "[--kv <database>] [--skip-create] [--skip-kv] [--dry-run]",
    );
    Deno.exit(2);
  }
  return {
    org,
    app,
    publicUrl: value("--public-url"),
    kv: value("--kv"),
    skipCreate: args.includes("--skip-create"),
    skipKv: args.includes("--skip-kv"),
    dryRun: args.includes("--dry-run"),
  };
}

/** Runs `deno <args>` with this terminal (the CLI may ask to sign in); true on success. */
async function run(args: string[], env: Record<string, string> = {}): Promise<boolean> {
  const child = new Deno.Command(Deno.execPath(), { args, env, stdin: "inherit" }).spawn();
  return (await child.status).success;
}

if (import.meta.main) {
  const options = parseArgs(Deno.args);
  const local = (name: string) => Deno.env.get(name) || undefined;
  const publicUrl = options.publicUrl ?? `https://${options.app}.${options.org}.deno.net`;
  const path = configPath(local);
  const raw = JSON.parse(await Deno.readTextFile(path));
  const { values, missing } = deployVariables(raw, local, publicUrl);
  if (missing.length > 0) {
    console.error(`error: export these variables first (their values go to Deno Deploy):`);
    for (const name of missing) console.error(`  ${name}`);
    Deno.exit(1);
  }
  const plan = deployPlan(options, values);
  for (const step of plan) {
    console.error(`\n# ${step.title}\n${showCommand(step.args, step.secretAt)}`);
    if (options.dryRun) continue;
    // deploy:check checks the URL the app will have.
    const env: Record<string, string> = step.args[0] === "task" ? { PUBLIC_URL: publicUrl } : {};
    const ok = await run(step.args, env) ||
      (step.fallback !== undefined && await run(step.fallback));
    if (!ok) {
      console.error(
        `\nerror: "${step.title}" failed; fix it, then run again (skip what is done ` +
          "with --skip-create / --skip-kv)",
      );
      Deno.exit(1);
    }
  }
  if (!options.dryRun) {
    console.error(`\ndeployed: ${publicUrl}/ (connect clients to ${publicUrl}/mcp)`);
  }
}
