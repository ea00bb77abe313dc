/**
 * Authorization throughput over HTTP, driven like a client and a user would: registrations
 * (RFC 7591), complete code flows (GET /authorize consent page → POST /authorize approval →
 * POST /token with PKCE) and refreshes (rotation). Closed loops: `concurrency` workers, each
 * bounded in time and in count.
 */
import { randomToken, s256 } from "../lib/infra/crypto.ts";
import { median } from "./load.ts";

/** The figures of one closed-loop measurement. */
export interface OpsResult {
  ops: number;
  opsPerS: number;
  p50Ms: number;
  p99Ms: number;
  failures: number;
  firstError?: string;
}

const MAX_OPS_PER_WORKER = 100_000;

/** Runs `op` in `concurrency` loops for `durationS` seconds. `op(worker)` throws on failure. */
export async function closedLoop(
  durationS: number,
  concurrency: number,
  op: (worker: number) => Promise<void>,
): Promise<OpsResult> {
  const latencies: number[] = [];
  let failures = 0;
  let firstError: string | undefined;
  const started = performance.now();
  const until = started + durationS * 1000;
  await Promise.all(Array.from({ length: concurrency }, async (_, w) => {
    for (let i = 0; i < MAX_OPS_PER_WORKER && performance.now() < until; i++) {
      const t0 = performance.now();
      try {
        await op(w);
        latencies.push(performance.now() - t0);
      } catch (e) {
        failures++;
        firstError ??= (e as Error).message.slice(0, 300);
        if (failures > 50 && latencies.length === 0) break;
      }
    }
  }));
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
  return {
    ops: latencies.length,
    opsPerS: latencies.length / elapsed,
    p50Ms: pct(50),
    p99Ms: pct(99),
    failures,
    firstError,
  };
}

/** Median over rounds of a closed-loop measurement (after one short warm-up). */
export async function closedLoopRounds(
  rounds: number,
  durationS: number,
  concurrency: number,
  op: (worker: number) => Promise<void>,
): Promise<OpsResult & { rounds: OpsResult[] }> {
  await closedLoop(Math.min(1, durationS), concurrency, op);
  const all: OpsResult[] = [];
  for (let i = 0; i < rounds; i++) all.push(await closedLoop(durationS, concurrency, op));
  return {
    ops: median(all.map((r) => r.ops)),
    opsPerS: median(all.map((r) => r.opsPerS)),
    p50Ms: median(all.map((r) => r.p50Ms)),
    p99Ms: median(all.map((r) => r.p99Ms)),
    failures: all.reduce((a, r) => a + r.failures, 0),
    firstError: all.find((r) => r.firstError)?.firstError,
    rounds: all,
  };
}

const REDIRECT_URI = "http://127.0.0.1:3000/callback";

/** Registers a public client; returns its id. @throws on anything but 201. */
export async function register(base: string, name = "bench client"): Promise<string> {
  const res = await fetch(`${base}/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      client_name: name,
      redirect_uris: [REDIRECT_URI],
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
    }),
  });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`POST /register: ${res.status} ${text.slice(0, 200)}`);
  return JSON.parse(text).client_id;
}

function formField(html: string, name: string): string {
  const m = new RegExp(`name="${name}"[^>]*value="([^"]*)"`).exec(html);
  if (!m) throw new Error(`consent page has no "${name}" field`);
  return m[1]!.replaceAll("&amp;", "&");
}

/** One complete authorization-code flow; returns the token response. */
export async function codeFlow(
  base: string,
  clientId: string,
  password: string,
): Promise<{ access_token: string; refresh_token: string }> {
  const verifier = randomToken(32);
  const url = new URL(`${base}/authorize`);
  const q = url.searchParams;
  q.set("response_type", "code");
  q.set("client_id", clientId);
  q.set("redirect_uri", REDIRECT_URI);
  q.set("code_challenge", await s256(verifier));
  q.set("code_challenge_method", "S256");
  q.set("scope", "mcp");
  q.set("resource", `${base}/mcp`);
  q.set("state", randomToken(8));
  const page = await fetch(url, { redirect: "manual" });
  const html = await page.text();
  if (page.status !== 200) throw new Error(`GET /authorize: ${page.status} ${html.slice(0, 200)}`);
  const cookie = page.headers.get("set-cookie")?.split(";")[0];
  if (!cookie) throw new Error("consent page set no cookie");
  const action = /<form method="post" action="([^"]*)"/.exec(html)?.[1]?.replaceAll("&amp;", "&");
  const form = new URLSearchParams({
    request_id: formField(html, "request_id"),
    csrf_token: formField(html, "csrf_token"),
    password,
    decision: "approve",
  });
  const decided = await fetch(new URL(action ?? "/authorize", base), {
    method: "POST",
    redirect: "manual",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      cookie,
      origin: new URL(base).origin,
    },
    body: form,
  });
  await decided.body?.cancel();
  const location = decided.headers.get("location");
  const code = location ? new URL(location).searchParams.get("code") : null;
  if (!code) throw new Error(`POST /authorize: ${decided.status} ${location ?? ""}`);
  const res = await fetch(`${base}/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: REDIRECT_URI,
      client_id: clientId,
      code_verifier: verifier,
      resource: `${base}/mcp`,
    }),
  });
  const text = await res.text();
  if (res.status !== 200) {
    throw new Error(`POST /token (code): ${res.status} ${text.slice(0, 200)}`);
  }
  return JSON.parse(text);
}

/** One refresh (RFC 6749 §6); returns the rotated refresh token. */
export async function refresh(
  base: string,
  clientId: string,
  refreshToken: string,
): Promise<string> {
  const res = await fetch(`${base}/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "refresh_token",
      refresh_token: refreshToken,
      client_id: clientId,
    }),
  });
  const text = await res.text();
  if (res.status !== 200) {
    throw new Error(`POST /token (refresh): ${res.status} ${text.slice(0, 200)}`);
  }
  return JSON.parse(text).refresh_token;
}
