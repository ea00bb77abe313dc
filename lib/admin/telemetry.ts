/**
 * OpenTelemetry for the gateway, on Deno's built-in OpenTelemetry (`OTEL_DENO=true` and the
 * standard `OTEL_EXPORTER_OTLP_*` variables; Deno Deploy turns it on itself). Deno already traces
 * `Deno.serve` and `fetch` and exports runtime metrics; this module adds, through
 * `npm:@opentelemetry/api` (whose global providers Deno sets), what the OpenTelemetry semantic
 * conventions for MCP describe (open-telemetry/semantic-conventions-genai, docs/gen-ai/mcp.md):
 *
 * - a SERVER span per MCP request, `{mcp.method.name} {target}` (lib/admin/mcp_operation.ts),
 *   and a CLIENT span per backend call in the same trace, whose context travels to the backend
 *   as the HTTP `traceparent` header (Deno's fetch instrumentation) and in `params._meta`
 *   (`traceparent`, `tracestate`; {@linkcode propagateTraceContext});
 * - the histograms `mcp.server.operation.duration` and `mcp.client.operation.duration` (s, the
 *   conventions' bucket boundaries) and the counter `mcp.gateway.auth.failures`.
 *
 * When OpenTelemetry is off, every hook is skipped after one boolean test.
 */
import {
  type Attributes,
  type Context,
  context,
  type Counter,
  type Histogram,
  metrics,
  propagation,
  ProxyTracerProvider,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import { sha256HexSync } from "../infra/crypto.ts";
import { kvSecretBytes } from "../infra/kv_secret.ts";

/** Instrumentation scope of the gateway's own spans and metrics. */
export const INSTRUMENTATION_SCOPE = "mcp-edge-gateway";

/** Bucket boundaries (s) of the MCP duration histograms (MCP semantic conventions §Metrics). */
export const DURATION_BUCKETS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300];

/** KV key of the salt of hashed user ids (see lib/store.ts). */
export const USER_SALT_KEY: Deno.KvKey = ["secret", "telemetry_user_salt"];

/**
 * Whether the runtime exports telemetry: Deno installs its global tracer provider when
 * OpenTelemetry is on (`OTEL_DENO=true`, or Deno Deploy); otherwise the API's no-op proxy stays.
 */
export function telemetryActive(): boolean {
  return !(trace.getTracerProvider() instanceof ProxyTracerProvider);
}

/** The gateway's tracer, instruments and user-id hashing. */
export class Telemetry {
  readonly enabled: boolean;
  readonly tracer: Tracer;
  readonly serverDuration: Histogram;
  readonly clientDuration: Histogram;
  readonly authFailures: Counter;
  #salt: string;
  #hashes = new Map<string, string>();

  constructor(options: { enabled: boolean; userSalt?: string }) {
    this.enabled = options.enabled;
    this.#salt = options.userSalt ?? "";
    this.tracer = trace.getTracer(INSTRUMENTATION_SCOPE);
    const meter = metrics.getMeter(INSTRUMENTATION_SCOPE);
    const advice = { explicitBucketBoundaries: DURATION_BUCKETS };
    this.serverDuration = meter.createHistogram("mcp.server.operation.duration", {
      unit: "s",
      description: "Duration of the MCP request as the gateway served it.",
      advice,
    });
    this.clientDuration = meter.createHistogram("mcp.client.operation.duration", {
      unit: "s",
      description: "Duration of the MCP request the gateway sent to a backend.",
      advice,
    });
    this.authFailures = meter.createCounter("mcp.gateway.auth.failures", {
      description: "Requests refused for missing, invalid or insufficient credentials.",
    });
  }

  /**
   * A pseudonymous user id: SHA-256 of the deployment's salt and the user's `sub`, 16 hex
   * characters (the same user hashes alike in every isolate; without the salt, which stays in KV,
   * a `sub` such as `github:583231` cannot be guessed back from it).
   */
  userHash(sub: string): string {
    let hash = this.#hashes.get(sub);
    if (hash === undefined) {
      hash = sha256HexSync(`${this.#salt}:${sub}`).slice(0, 16);
      if (this.#hashes.size >= 10_000) this.#hashes.clear();
      this.#hashes.set(sub, hash);
    }
    return hash;
  }

  /**
   * Counts a refused request (401, or 403 on an MCP route): `mcp.gateway.auth.failures` with the
   * route, the status and the RFC 6750 §3 `error` of its `WWW-Authenticate`, if any.
   */
  authFailure(route: string, res: Response): void {
    if (!this.enabled || (res.status !== 401 && res.status !== 403)) return;
    const challenge = res.headers.get("www-authenticate") ?? "";
    const error = /error="([^"]*)"/.exec(challenge)?.[1] ??
      (res.status === 401 ? "invalid_token" : "forbidden");
    this.authFailures.add(1, {
      "mcp.gateway.route": route,
      "http.response.status_code": res.status,
      "error.type": error,
    });
  }
}

let disabled: Telemetry | undefined;

/** The disabled instance (tests, tools, and processes without OpenTelemetry). */
export function noTelemetry(): Telemetry {
  return disabled ??= new Telemetry({ enabled: false });
}

/** The telemetry of this process: enabled when the runtime exports it (salt read from KV). */
export async function buildTelemetry(kv: Deno.Kv): Promise<Telemetry> {
  if (!telemetryActive()) return noTelemetry();
  const salt = await kvSecretBytes(kv, USER_SALT_KEY, 16);
  return new Telemetry({
    enabled: true,
    userSalt: Array.from(salt, (b) => b.toString(16).padStart(2, "0")).join(""),
  });
}

/** The W3C trace context of `ctx` (`traceparent`, `tracestate`), for `params._meta`. */
export function traceMeta(ctx: Context): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  const out: Record<string, string> = {};
  if (carrier.traceparent) out.traceparent = carrier.traceparent;
  if (carrier.tracestate) out.tracestate = carrier.tracestate;
  return out;
}

/** The parent context a request's `params._meta` carries (`traceparent`), if any. */
export function contextFromMeta(meta: unknown): Context | undefined {
  if (!meta || typeof meta !== "object") return undefined;
  const m = meta as Record<string, unknown>;
  if (typeof m.traceparent !== "string") return undefined;
  const carrier: Record<string, string> = { traceparent: m.traceparent };
  if (typeof m.tracestate === "string") carrier.tracestate = m.tracestate;
  const extracted = propagation.extract(context.active(), carrier);
  return trace.getSpanContext(extracted) ? extracted : undefined;
}

interface SendingTransport {
  send: (message: any, options?: any) => Promise<void>;
}

/**
 * Makes an MCP client transport add the active trace context to the `params._meta` of every
 * request and notification it sends (MCP semantic conventions §Context propagation; SEP-414 keys
 * `traceparent`/`tracestate`, unprefixed). A no-op when telemetry is off.
 */
export function propagateTraceContext(transport: SendingTransport): void {
  if (!telemetryActive()) return;
  const send = transport.send.bind(transport);
  transport.send = (message, options) => {
    if (message && typeof message.method === "string") {
      const meta = traceMeta(context.active());
      if (meta.traceparent) {
        const params = message.params ?? {};
        message = { ...message, params: { ...params, _meta: { ...params._meta, ...meta } } };
      }
    }
    return send(message, options);
  };
}

/** Span attributes without the `undefined` ones. */
export function definedAttributes(attrs: Record<string, unknown>): Attributes {
  const out: Attributes = {};
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") out[k] = v;
  }
  return out;
}
