/**
 * `deno task deploy:check`: what can be checked offline before `deno deploy --prod`.
 *
 * 1. The config parses with the production environment: every `${VAR}` it references, plus
 *    `PUBLIC_URL` and `GATEWAY_OWNER_PASSWORD`, taken from this shell when exported, else a
 *    placeholder; `DENO_DEPLOYMENT_ID` is set, so the Deploy rules apply. Backends on loopback
 *    (unreachable from Deploy) are errors, and so are `${VAR}` names Deploy refuses to store
 *    (`DENO_*`, `LD_*`, `OTEL_*`, …). Prints the variables to set with `deno deploy env`.
 * 2. `deno check main.ts`: the entry point and everything it imports type-check.
 * 3. No runtime file writes, two ways: a static scan of every local module of main.ts's graph
 *    for filesystem write APIs (it sees rare code paths a run would miss), and main.ts started
 *    without write permission (`--no-prompt`, no `--allow-write`) answering requests on every
 *    kind of route (it sees writes by dependencies, which the scan does not read). Either alone
 *    misses what the other catches.
 */
import { type EnvReference, envReferences, parseConfig } from "../lib/config.ts";
import { readSettings } from "../lib/deps.ts";
import { isLoopbackHost } from "../lib/oauth/redirect_uri.ts";
import { refusedOnDeploy } from "../lib/startup/deno_deploy.ts";
import { startupErrorLines } from "../lib/startup/errors.ts";
import { configPath } from "./dev.ts";

/** A variable the deployment needs. */
export interface ProductionVariable {
  name: string;
  secret: boolean;
  /** Where it is used (config fields), or why it is needed. */
  why: string;
  /** Not exported in this shell: checked with a placeholder. */
  placeholder: boolean;
}

/** Placeholder of an unset variable: long enough for every length rule, never a real value. */
const PLACEHOLDER = "deploy-check-placeholder-0123456789";
/** Placeholder of `PUBLIC_URL`: the shape of a Deno Deploy production URL. */
const PLACEHOLDER_URL = "https://app.org.deno.net";

const SECRET_NAME = /SECRET|TOKEN|PASSWORD|PASSWD|KEY|CREDENTIAL|AUTH/i;

/** The variables a deployment of `raw` (the parsed JSON of the config) needs. */
export function productionVariables(
  raw: unknown,
  local: (name: string) => string | undefined,
): ProductionVariable[] {
  const refs = new Map<string, EnvReference[]>();
  for (const ref of envReferences(raw)) refs.set(ref.name, [...(refs.get(ref.name) ?? []), ref]);
  const providers = (raw as { login?: { providers?: unknown[] } })?.login?.providers ?? [];
  const vars: ProductionVariable[] = [
    {
      name: "PUBLIC_URL",
      secret: false,
      why: "required on Deno Deploy: the app's https URL",
      placeholder: !local("PUBLIC_URL"),
    },
  ];
  if (providers.length === 0 || local("GATEWAY_OWNER_PASSWORD")) {
    vars.push({
      name: "GATEWAY_OWNER_PASSWORD",
      secret: true,
      why: providers.length === 0
        ? "the owner's sign-in (no login.providers configured)"
        : "the owner's sign-in",
      placeholder: !local("GATEWAY_OWNER_PASSWORD"),
    });
  }
  for (const [name, where] of refs) {
    vars.push({
      name,
      secret: SECRET_NAME.test(name),
      why: where.map((r) => r.field).join(", "),
      placeholder: local(name) === undefined,
    });
  }
  return vars;
}

/** Problems (errors) and warnings of a config for Deno Deploy. */
export async function checkConfig(
  raw: unknown,
  source: string,
  local: (name: string) => string | undefined,
): Promise<{ errors: string[]; warnings: string[]; variables: ProductionVariable[] }> {
  const variables = productionVariables(raw, local);
  const values = new Map(
    variables.map((
      v,
    ) => [v.name, local(v.name) ?? (v.name === "PUBLIC_URL" ? PLACEHOLDER_URL : PLACEHOLDER)]),
  );
  const env = (name: string) =>
    name === "DENO_DEPLOYMENT_ID" ? "deploy-check" : values.get(name) ?? local(name);
  const errors: string[] = [];
  const warnings: string[] = [];
  for (const v of variables) {
    const refused = refusedOnDeploy(v.name);
    if (refused) {
      errors.push(
        `${source}: ${v.why}: \${${v.name}} cannot be set on Deno Deploy (${refused}); ` +
          "rename the variable",
      );
    }
  }
  try {
    const settings = await readSettings(env);
    if (!settings.publicUrl.startsWith("https://")) {
      errors.push(`PUBLIC_URL: ${settings.publicUrl} is not https (Deno Deploy serves https)`);
    }
  } catch (e) {
    errors.push(...(startupErrorLines(e) ?? [String(e)]).map((l) => l.replace(/^error: /, "")));
  }
  try {
    const config = parseConfig(raw, env, source);
    config.backends.forEach((b, i) => {
      const url = new URL(b.url);
      if (isLoopbackHost(url.hostname)) {
        errors.push(
          `${source}: backends[${i}].url: ${b.url} is a loopback address, unreachable from ` +
            "Deno Deploy (the shipped example backend is for deno task demo: replace it)",
        );
      } else if (url.protocol === "http:") {
        warnings.push(`${source}: backends[${i}].url: ${b.url} is plain http`);
      }
    });
  } catch (e) {
    errors.push(...(startupErrorLines(e) ?? [String(e)]).map((l) => l.replace(/^error: /, "")));
  }
  return { errors, warnings, variables };
}

/** Filesystem write APIs of Deno and Node, as they appear in source. */
const WRITE_API =
  /\bDeno\.(?:writeFile|writeTextFile|mkdir|makeTempDir|makeTempFile|remove|rename|create|truncate|copyFile|link|symlink|chmod|chown|utime|openSync|open)(?:Sync)?\s*\(|from\s+["'](?:node:)?fs(?:\/promises)?["']/g;

/** One write API found by {@linkcode scanForFileWrites}. */
export interface WriteFinding {
  file: string;
  line: number;
  text: string;
}

/** Source without `//` and `/* *\/` comments (roughly: enough not to flag documentation). */
function stripComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, " "))
    .replace(/(^|[^:"'`\\])\/\/.*$/gm, "$1");
}

/** Every filesystem write API in `files` (paths), with its line. */
export async function scanForFileWrites(files: string[]): Promise<WriteFinding[]> {
  const findings: WriteFinding[] = [];
  for (const file of files) {
    const lines = stripComments(await Deno.readTextFile(file)).split("\n");
    lines.forEach((text, i) => {
      if (new RegExp(WRITE_API.source).test(text)) {
        findings.push({ file, line: i + 1, text: text.trim() });
      }
    });
  }
  return findings;
}

/** The local modules (paths) of `entry`'s module graph, from `deno info --json`. */
export async function localModules(entry: string, cwd: string): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr).trim());
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: { specifier: string }[];
  };
  return info.modules.map((m) => m.specifier).filter((s) => s.startsWith("file:"))
    .map((s) => decodeURIComponent(new URL(s).pathname));
}

/** Requests of the restricted run: every kind of route (pages, discovery, KV writes, MCP). */
const SMOKE_REQUESTS: [string, RequestInit][] = [
  ["/", { headers: { accept: "application/json" } }],
  ["/", { headers: { accept: "text/html" } }],
  ["/healthz", {}],
  ["/.well-known/oauth-authorization-server", {}],
  ["/.well-known/oauth-protected-resource/mcp", {}],
  ["/register", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ redirect_uris: ["http://127.0.0.1:9/cb"], client_name: "deploy check" }),
  }],
  ["/authorize?response_type=code&client_id=unknown", {}],
  ["/mcp", {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: "{}",
  }],
];

/**
 * Starts `entry` without write permission (`--no-prompt`: a write throws instead of asking),
 * sends {@linkcode SMOKE_REQUESTS}, and returns the problems: a 5xx, a permission error in the
 * output, or no start at all.
 */
export async function restrictedRun(
  entry: string,
  cwd: string,
  env: Record<string, string>,
): Promise<string[]> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "--allow-net", "--allow-env", "--allow-read", entry],
    cwd,
    clearEnv: true,
    env: { ...env, PORT: String(port), KV_PATH: ":memory:", NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output: string[] = [];
  const drain = (s: ReadableStream<Uint8Array>) =>
    (async () => {
      for await (const chunk of s.pipeThrough(new TextDecoderStream())) output.push(chunk);
    })();
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const problems: string[] = [];
  const base = `http://127.0.0.1:${port}`;
  try {
    let up = false;
    for (let i = 0; i < 300 && !up; i++) {
      up = await fetch(`${base}/healthz`).then(async (r) => (await r.body?.cancel(), true))
        .catch(() => false);
      if (!up) await new Promise((r) => setTimeout(r, 100));
    }
    if (!up) return [`${entry} did not start without write permission:\n${output.join("")}`];
    for (const [path, init] of SMOKE_REQUESTS) {
      const res = await fetch(`${base}${path}`, { ...init, redirect: "manual" });
      await res.body?.cancel();
      if (res.status >= 500) {
        problems.push(`${init.method ?? "GET"} ${path} answered ${res.status}`);
      }
    }
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await drained;
  }
  const text = output.join("");
  if (/NotCapable|PermissionDenied|Requires write access/.test(text)) {
    problems.push(`a file write was attempted:\n${text.slice(-2000)}`);
  }
  return problems;
}

async function main(): Promise<number> {
  const root = new URL("..", import.meta.url).pathname;
  const local = (name: string) => Deno.env.get(name) || undefined;
  const path = configPath(local);
  let failed = false;
  const fail = (line: string) => {
    failed = true;
    console.error(`  error: ${line}`);
  };

  console.error(`deploy:check  ${path} with the production environment`);
  let raw: unknown;
  try {
    raw = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    fail(`${path}: cannot read it as JSON (${(e as Error).message})`);
  }
  const productionEnv: Record<string, string> = {};
  if (raw !== undefined) {
    const { errors, warnings, variables } = await checkConfig(raw, path, local);
    errors.forEach(fail);
    for (const w of warnings) console.error(`  warning: ${w}`);
    if (errors.length === 0) console.error("  ok     the config and the settings parse");
    console.error("  set on Deno Deploy (deno deploy env add NAME VALUE [--secret]):");
    for (const v of variables) {
      const value = local(v.name) ?? (v.name === "PUBLIC_URL" ? PLACEHOLDER_URL : PLACEHOLDER);
      productionEnv[v.name] = value;
      const mark = v.placeholder ? " (not exported here: checked with a placeholder)" : "";
      console.error(`         ${v.name}${v.secret ? " --secret" : ""}  ${v.why}${mark}`);
    }
  }

  console.error("deploy:check  deno check main.ts");
  const check = await new Deno.Command(Deno.execPath(), {
    args: ["check", "main.ts"],
    cwd: root,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (check.success) console.error("  ok     main.ts and its imports type-check");
  else fail("deno check main.ts failed (above)");

  console.error("deploy:check  no file writes at runtime");
  const modules = await localModules("main.ts", root);
  const findings = await scanForFileWrites(modules);
  for (const f of findings) fail(`${f.file}:${f.line}: filesystem write: ${f.text}`);
  if (findings.length === 0) {
    console.error(`  ok     static scan: ${modules.length} local modules, no filesystem write API`);
  }
  if (raw !== undefined && !failed) {
    const problems = await restrictedRun("main.ts", root, {
      ...productionEnv,
      GATEWAY_CONFIG: path,
      PATH: Deno.env.get("PATH") ?? "",
      HOME: Deno.env.get("HOME") ?? "",
      ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
    });
    problems.forEach(fail);
    if (problems.length === 0) {
      console.error(
        `  ok     without write permission, main.ts answered ${SMOKE_REQUESTS.length} requests`,
      );
    }
  }
  console.error(failed ? "deploy:check failed" : "deploy:check passed");
  return failed ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
