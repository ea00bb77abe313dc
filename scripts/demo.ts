/**
 * `deno task demo`: the gateway with a local example MCP server, offline. Starts
 * `examples/example_server.ts` at the URL of the config's `example` backend (loopback only), runs
 * the gateway as `deno task dev` does (watch mode, KV in `./.data/` unless `KV_PATH` is set),
 * and prints what to do next. An owner password and an API key are generated for the run when
 * `GATEWAY_OWNER_PASSWORD` / `GATEWAY_API_KEY` are unset.
 */
import { base64url } from "jose";
import { loadConfigFile } from "../lib/config.ts";
import { readSettings } from "../lib/deps.ts";
import { isLoopbackHost } from "../lib/oauth/redirect_uri.ts";
import { exitOnStartupError } from "../lib/startup/errors.ts";
import { serveExample } from "../examples/example_server.ts";
import { configPath, devArgs, runDeno } from "./dev.ts";

/** The config backend the demo serves. */
export const EXAMPLE_BACKEND = "example";

const secret = (prefix: string) =>
  `${prefix}${base64url.encode(crypto.getRandomValues(new Uint8Array(18)))}`;

/** What to do once the demo runs (printed to stderr). */
export function nextSteps(o: {
  publicUrl: string;
  exampleUrl: string;
  password: { value: string; generated: boolean };
  apiKey: { value: string; generated: boolean };
}): string[] {
  const mcp = `${o.publicUrl}/mcp`;
  const shown = (s: { value: string; generated: boolean }, name: string) =>
    s.generated ? `${s.value}  (generated for this run; set ${name} to choose one)` : `(${name})`;
  const key = o.apiKey.generated ? o.apiKey.value : "$GATEWAY_API_KEY";
  return [
    "",
    "demo ready",
    `  gateway         ${mcp}  (guide: ${o.publicUrl}/)`,
    `  example server  ${o.exampleUrl}  (its tools appear as ${EXAMPLE_BACKEND}__echo, ` +
    `${EXAMPLE_BACKEND}__add, ${EXAMPLE_BACKEND}__time)`,
    `  owner password  ${shown(o.password, "GATEWAY_OWNER_PASSWORD")}`,
    `  API key         ${shown(o.apiKey, "GATEWAY_API_KEY")}`,
    "next",
    `  Claude Code:    claude mcp add --transport http demo ${mcp}`,
    "                  then /mcp in Claude Code, sign in with the owner password",
    "  MCP Inspector (Node.js 22.19 or newer):",
    `                  npx @modelcontextprotocol/inspector --transport http --server-url ${mcp}`,
    "  list the tools with the API key:",
    `                  npx @modelcontextprotocol/inspector --cli ${mcp} --transport http ` +
    `--method tools/list --header "Authorization: Bearer ${key}"`,
    "  claude.ai and ChatGPT cannot reach localhost: see the README, " +
    '"Web clients and a tunnel".',
    "  edit gateway.config.json to add your own backends (the gateway restarts by itself).",
    "stop with Ctrl-C",
  ];
}

/** Polls `url` until it answers 200 (at most `tries` × 100 ms, or until `signal` aborts). */
async function until200(
  url: string,
  signal: AbortSignal,
  init: RequestInit = {},
  tries = 300,
): Promise<Response> {
  for (let i = 0; i < tries && !signal.aborted; i++) {
    try {
      const res = await fetch(url, init);
      if (res.status === 200) return res;
      await res.body?.cancel();
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer`);
}

if (import.meta.main) {
  const given = (name: string) => Deno.env.get(name) || undefined;
  const password = given("GATEWAY_OWNER_PASSWORD");
  const apiKey = given("GATEWAY_API_KEY");
  const generated: Record<string, string> = {};
  if (!password) generated.GATEWAY_OWNER_PASSWORD = secret("");
  if (!apiKey) generated.GATEWAY_API_KEY = secret("demo-");
  const env = (name: string) => generated[name] ?? given(name);

  const path = configPath(env);
  const [config, settings] = await Promise.all([
    loadConfigFile(path, env),
    readSettings(env),
  ]).catch(exitOnStartupError);
  const backend = config.backends.find((b) => b.name === EXAMPLE_BACKEND);
  const url = backend ? new URL(backend.url) : undefined;
  if (!url || url.protocol !== "http:" || !isLoopbackHost(url.hostname)) {
    console.error(
      `error: ${path}: the demo serves the backend named "${EXAMPLE_BACKEND}" on loopback; ` +
        `add { "name": "${EXAMPLE_BACKEND}", "url": "http://127.0.0.1:8001/mcp" } to backends`,
    );
    Deno.exit(1);
  }
  const example = serveExample({
    hostname: url.hostname.replace(/^\[|\]$/g, ""),
    port: Number(url.port || 80),
    path: url.pathname,
  });
  if (!env("KV_PATH")) await Deno.mkdir("./.data", { recursive: true });
  const gateway = runDeno(devArgs(env), generated);
  const local = `http://127.0.0.1:${settings.port}`;
  const stopped = new AbortController();
  const ready = (async () => {
    await until200(`${local}/healthz`, stopped.signal);
    // Once GET / knows the example backend's status, the banner (same probe) is printed.
    for (let i = 0; i < 100 && !stopped.signal.aborted; i++) {
      const res = await until200(`${local}/`, stopped.signal, {
        headers: { accept: "application/json" },
      });
      const doc = await res.json();
      const status = doc.backends.find((b: { name: string }) => b.name === EXAMPLE_BACKEND)
        ?.status;
      if (status !== "unknown") break;
      await new Promise((r) => setTimeout(r, 100));
    }
    for (
      const line of nextSteps({
        publicUrl: settings.publicUrl,
        exampleUrl: example.url,
        password: { value: env("GATEWAY_OWNER_PASSWORD")!, generated: !password },
        apiKey: { value: env("GATEWAY_API_KEY")!, generated: !apiKey },
      })
    ) console.error(line);
  })().catch((e) => {
    if (!stopped.signal.aborted) console.error(`demo: the gateway did not come up (${e.message})`);
  });
  const code = await gateway;
  stopped.abort();
  await ready;
  await example.close();
  Deno.exit(code);
}
