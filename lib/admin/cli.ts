/**
 * The admin CLI (`deno task admin <command>`): the operator's view from a terminal, against the
 * same Deno KV as the gateway (`KV_PATH`: a file, or a KV Connect URL with
 * `DENO_KV_ACCESS_TOKEN`; default `./.data/gateway.kv`, as `deno task dev` and `start`).
 *
 * Every list prints a table, or with `--json` JSON Lines only on stdout (one object per line,
 * the fields of lib/admin/*_view.ts). Messages and errors go to stderr. Exit codes: 0 done,
 * 1 failed (storage, not found), 2 usage error.
 */
import { ConfigError, type GatewayConfig, loadConfigFile } from "../config.ts";
import type { Logger } from "../infra/log.ts";
import { TokenCache } from "../oauth/token_cache.ts";
import type { AuditRecord } from "../store.ts";
import type { AdminDeps } from "./admin_deps.ts";
import { AuditWriter } from "./audit.ts";
import { type AuditFilter, parseSince, queryAudit } from "./audit_query.ts";
import { backendStats } from "./backend_stats.ts";
import { listClients } from "./clients_view.ts";
import { listGrants, revokeGrantAsAdmin, revokeUserAsAdmin } from "./grants_view.ts";
import { listUsers } from "./users_view.ts";

/** Where the CLI writes: stdout (results only) and stderr (messages). */
export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
}

/** Exit codes. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** The `actor` of revocations made with the CLI (the audit trail's record of who revoked). */
export const CLI_ACTOR = "cli";

/** Default KV file of `deno task dev` and `deno task start`. */
export const DEFAULT_KV_PATH = "./.data/gateway.kv";

class UsageError extends Error {}

interface Command {
  usage: string;
  summary: string;
  /** Flags it takes (`json` and `help` are always allowed). */
  flags: string[];
  /** Positional arguments it needs. */
  args: string[];
  run: (ctx: RunContext) => Promise<number>;
}

interface RunContext {
  deps: AdminDeps;
  args: string[];
  flags: Map<string, string | true>;
  io: CliIo;
}

const json = (ctx: RunContext) => ctx.flags.has("json");

function stringFlag(ctx: RunContext, name: string): string | undefined {
  const v = ctx.flags.get(name);
  if (v === true) throw new UsageError(`--${name} needs a value`);
  return v;
}

/** Prints rows as JSON Lines (`--json`) or as an aligned table. */
function print<T extends object>(
  ctx: RunContext,
  rows: T[],
  columns: [header: string, cell: (row: T) => unknown][],
): void {
  if (json(ctx)) {
    for (const row of rows) ctx.io.out(JSON.stringify(row));
    return;
  }
  if (rows.length === 0) {
    ctx.io.err("(none)");
    return;
  }
  const text = (v: unknown) => {
    const s = v === null || v === undefined ? "-" : Array.isArray(v) ? v.join(" ") : String(v);
    return s.length > 48 ? `${s.slice(0, 47)}…` : s;
  };
  const table = [columns.map(([h]) => h), ...rows.map((r) => columns.map(([, c]) => text(c(r))))];
  const widths = columns.map((_, i) => Math.max(...table.map((line) => line[i]!.length)));
  for (const line of table) {
    ctx.io.out(line.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd());
  }
}

function auditLine(r: AuditRecord): string {
  return [
    r.time,
    r.event,
    r.user ?? "-",
    r.clientId ?? "-",
    r.backend ?? "-",
    r.method ?? "-",
    r.tool ?? "-",
    r.outcome,
    r.latencyMs === null ? "-" : `${r.latencyMs}ms`,
    r.requestId ?? "-",
  ].join("  ");
}

const COMMANDS: Record<string, Command> = {
  "grants list": {
    usage: "grants list [--user <sub>] [--json]",
    summary: "Grants: id, user, client, scopes, created, last used (newest first).",
    flags: ["user"],
    args: [],
    run: async (ctx) => {
      const grants = await listGrants(ctx.deps, { user: stringFlag(ctx, "user") });
      print(ctx, grants, [
        ["ID", (g) => g.id],
        ["USER", (g) => g.user],
        ["CLIENT", (g) => g.clientName ?? g.clientId],
        ["SCOPES", (g) => g.scopes],
        ["CREATED", (g) => g.createdAt],
        ["LAST USED", (g) => g.lastUsedAt],
      ]);
      return EXIT.ok;
    },
  },
  "grants revoke": {
    usage: "grants revoke <grant id>",
    summary: "Revokes a grant and all its tokens (running gateways refuse them within 1 s).",
    flags: [],
    args: ["grant id"],
    run: async (ctx) => {
      const grant = await revokeGrantAsAdmin(ctx.deps, ctx.args[0]!, CLI_ACTOR);
      if (!grant) {
        ctx.io.err(`error: no live grant ${ctx.args[0]}`);
        return EXIT.failed;
      }
      ctx.io.err(`revoked grant ${grant.grantId} (client ${grant.clientId})`);
      return EXIT.ok;
    },
  },
  "users list": {
    usage: "users list [--json]",
    summary: "Users who signed in: sub, email, login, admin, first and last seen, grants.",
    flags: [],
    args: [],
    run: async (ctx) => {
      print(ctx, await listUsers(ctx.deps), [
        ["SUB", (u) => u.sub],
        ["EMAIL", (u) => u.email],
        ["LOGIN", (u) => u.login],
        ["ADMIN", (u) => (u.admin ? "yes" : "no")],
        ["LAST SEEN", (u) => u.lastSeenAt],
        ["GRANTS", (u) => u.grants],
      ]);
      return EXIT.ok;
    },
  },
  "user revoke": {
    usage: "user revoke <sub>",
    summary: "Revokes every grant (and token) and browser session of a user.",
    flags: [],
    args: ["sub"],
    run: async (ctx) => {
      const done = await revokeUserAsAdmin(ctx.deps, ctx.args[0]!, CLI_ACTOR);
      ctx.io.err(
        `revoked ${done.grants} grant(s) and ${done.browserSessions} browser session(s) of ` +
          ctx.args[0],
      );
      return EXIT.ok;
    },
  },
  "clients list": {
    usage: "clients list [--json]",
    summary: "Clients: pre-registered, registered (RFC 7591), by metadata document.",
    flags: [],
    args: [],
    run: async (ctx) => {
      print(ctx, await listClients(ctx.deps), [
        ["CLIENT ID", (c) => c.clientId],
        ["NAME", (c) => c.clientName],
        ["KIND", (c) => c.kind],
        ["GRANTS", (c) => c.grants],
        ["LAST USED", (c) => c.lastUsedAt],
      ]);
      return EXIT.ok;
    },
  },
  "audit tail": {
    usage:
      "audit tail [--since 1h|30m|7d|<ISO date>] [--user <sub>] [--backend <name>] [--tool <glob>] " +
      "[--outcome ok|denied|error|<code>] [--limit 100] [--json]",
    summary: "The newest audit records (oldest of them first), filtered.",
    flags: ["since", "user", "backend", "tool", "outcome", "limit"],
    args: [],
    run: async (ctx) => {
      const filter: AuditFilter = {
        user: stringFlag(ctx, "user"),
        backend: stringFlag(ctx, "backend"),
        tool: stringFlag(ctx, "tool"),
        outcome: stringFlag(ctx, "outcome"),
        limit: 100,
      };
      const since = stringFlag(ctx, "since");
      if (since !== undefined) {
        const at = parseSince(since, ctx.deps.now());
        if (at === null) {
          throw new UsageError(`--since: "${since}" is not 45s, 30m, 1h, 7d or a date`);
        }
        filter.since = at;
      }
      const limit = stringFlag(ctx, "limit");
      if (limit !== undefined) {
        if (!/^[1-9]\d{0,6}$/.test(limit)) throw new UsageError("--limit must be 1 to 9999999");
        filter.limit = Number(limit);
      }
      const records = (await Array.fromAsync(queryAudit(ctx.deps, filter))).reverse();
      for (const r of records) ctx.io.out(json(ctx) ? JSON.stringify(r) : auditLine(r));
      if (!json(ctx) && records.length === 0) ctx.io.err("(none)");
      return EXIT.ok;
    },
  },
  "backends stats": {
    usage: "backends stats [--json]",
    summary: "Each backend over the last hour: calls, p50/p95 latency, error rate.",
    flags: [],
    args: [],
    run: async (ctx) => {
      const report = await backendStats(ctx.deps);
      if (report.sampled) ctx.io.err("note: more records than read; figures of the newest");
      print(ctx, report.backends, [
        ["BACKEND", (b) => b.backend],
        ["CALLS", (b) => b.calls],
        ["P50 MS", (b) => b.p50Ms],
        ["P95 MS", (b) => b.p95Ms],
        ["ERROR RATE", (b) => (b.errorRate === null ? null : `${(b.errorRate * 100).toFixed(1)}%`)],
        ["TOOL ERRORS", (b) => b.toolErrors],
      ]);
      return EXIT.ok;
    },
  },
};

/** The CLI's help text. */
export function helpText(): string {
  const lines = [
    "Usage: deno task admin <command> [options]",
    "",
    "Commands:",
    ...Object.values(COMMANDS).map((c) => `  ${c.usage}\n      ${c.summary}`),
    "",
    "Every list takes --json: JSON Lines only on stdout. --help on any command.",
    `KV: KV_PATH (a file, or a KV Connect URL with DENO_KV_ACCESS_TOKEN), default ${DEFAULT_KV_PATH}.`,
    "Config (client names, audit retention): GATEWAY_CONFIG, default ./gateway.config.json.",
    "Exit codes: 0 done, 1 failed, 2 usage error.",
  ];
  return lines.join("\n");
}

/** Splits `argv` into the command, its positional arguments and its flags. */
function parseArgs(argv: string[]): { words: string[]; flags: Map<string, string | true> } {
  const words: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--")) {
      words.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    if (eq > 0) flags.set(name, a.slice(eq + 1));
    else if (name === "json" || name === "help") flags.set(name, true);
    else if (i + 1 < argv.length && !argv[i + 1]!.startsWith("--")) flags.set(name, argv[++i]!);
    else flags.set(name, true);
  }
  return { words, flags };
}

/** What the CLI needs from its environment. */
export interface CliEnv {
  env: (name: string) => string | undefined;
  /** Whether a file exists (the default KV path is not created by mistake). */
  exists: (path: string) => boolean;
}

/** Opens the gateway's KV (see the module doc). @throws {Error} with the message to print. */
export async function openGatewayKv(cli: CliEnv): Promise<Deno.Kv> {
  const configured = cli.env("KV_PATH");
  const path = configured || DEFAULT_KV_PATH;
  if (/^https?:\/\//.test(path)) {
    if (!cli.env("DENO_KV_ACCESS_TOKEN")) {
      throw new Error("KV_PATH is a KV Connect URL: set DENO_KV_ACCESS_TOKEN to its access token");
    }
  } else if (path !== ":memory:" && !cli.exists(path)) {
    throw new Error(
      configured
        ? `KV_PATH: no database at ${path}`
        : `no database at ${DEFAULT_KV_PATH}: set KV_PATH to the gateway's KV (a file, or a KV Connect URL)`,
    );
  }
  try {
    return await Deno.openKv(path);
  } catch (e) {
    throw new Error(`cannot open the KV at ${path}: ${(e as Error).message}`);
  }
}

/** The gateway's config when it loads (else `undefined`, with a note on stderr). */
async function loadConfig(cli: CliEnv, io: CliIo): Promise<GatewayConfig | undefined> {
  const path = cli.env("GATEWAY_CONFIG") ?? "./gateway.config.json";
  if (!cli.exists(path)) return undefined;
  try {
    return await loadConfigFile(path, cli.env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    io.err(
      `note: config not loaded (${e.message.split("\n")[0]}); client names and audit ` +
        "retention of the config are not known",
    );
    return undefined;
  }
}

/** Runs the CLI; resolves with the exit code. */
export async function runAdminCli(argv: string[], cli: CliEnv, io: CliIo): Promise<number> {
  const { words, flags } = parseArgs(argv);
  if (words.length === 0 || words[0] === "help") {
    (words.length === 0 && !flags.has("help") ? io.err : io.out)(helpText());
    return words.length === 0 && !flags.has("help") ? EXIT.usage : EXIT.ok;
  }
  const name = words.slice(0, 2).join(" ").replace(/^users revoke$/, "user revoke");
  const command = COMMANDS[name];
  if (!command) {
    io.err(`error: unknown command "${words.slice(0, 2).join(" ")}"\n\n${helpText()}`);
    return EXIT.usage;
  }
  if (flags.has("help")) {
    io.out(`Usage: deno task admin ${command.usage}\n\n${command.summary}`);
    return EXIT.ok;
  }
  const args = words.slice(2);
  const unknown = [...flags.keys()].filter((f) =>
    f !== "json" && f !== "help" && !command.flags.includes(f)
  );
  const usageError = unknown.length
    ? `unknown option --${unknown[0]}`
    : args.length !== command.args.length
    ? `expected ${command.args.map((a) => `<${a}>`).join(" ") || "no arguments"}`
    : null;
  if (usageError) {
    io.err(`error: ${usageError}\nUsage: deno task admin ${command.usage}`);
    return EXIT.usage;
  }
  let kv: Deno.Kv;
  try {
    kv = await openGatewayKv(cli);
  } catch (e) {
    io.err(`error: ${(e as Error).message}`);
    return EXIT.failed;
  }
  const silent: Logger = () => {};
  try {
    const config = await loadConfig(cli, io);
    const now = Date.now;
    const audit = new AuditWriter({
      kv,
      log: silent,
      now,
      enabled: config?.audit.enabled ?? true,
      retentionMs: (config?.audit.retentionDays ?? 30) * 86_400_000,
      grantUsedTtlMs: (config?.refreshTokenTtlSeconds ?? 2_592_000) * 1000,
      flushIntervalMs: 0,
    });
    const deps: AdminDeps = { kv, now, tokenCache: new TokenCache({ ttlMs: 0 }), config, audit };
    try {
      return await command.run({ deps, args, flags, io });
    } finally {
      await audit.close();
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`error: ${e.message}\nUsage: deno task admin ${command.usage}`);
      return EXIT.usage;
    }
    io.err(`error: ${(e as Error).message ?? e}`);
    return EXIT.failed;
  } finally {
    kv.close();
  }
}
