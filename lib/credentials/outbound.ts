/**
 * The gateway's requests to a backend's OAuth side (discovery, registration, token, revocation):
 * every URL passes the SSRF guard (lib/infra/ssrf_guard.ts) — https only, no special-use
 * addresses — except that a backend whose own URL is on loopback (development and tests) may have
 * its authorization server on loopback too, over http. The request then goes to the address the
 * guard checked (lib/infra/pinned_fetch.ts: no second DNS lookup, so DNS rebinding gains nothing;
 * TLS verified against the URL's host). Redirects are never followed, the whole exchange is
 * bounded in time, and at most {@linkcode MAX_RESPONSE_BYTES} are read. Failures become a
 * {@linkcode BackendAuthError} whose message is safe to show.
 */
import type { BackendConfig } from "../config.ts";
import { pinnedRequest } from "../infra/pinned_fetch.ts";
import { checkFetchUrl, SsrfError } from "../infra/ssrf_guard.ts";
import { isLoopbackHost } from "../oauth/redirect_uri.ts";

/** Largest response read from an authorization server or a metadata URL. */
export const MAX_RESPONSE_BYTES = 64 * 1024;
/** Time allowed for one exchange with an authorization server. */
export const OUTBOUND_TIMEOUT_MS = 10_000;

/**
 * Something on the backend's OAuth side went wrong; `message` names what, never a secret.
 * `unreachable`: the server could not be reached or answered 5xx (an outage, worth a retry).
 */
export class BackendAuthError extends Error {
  constructor(message: string, readonly unreachable = false) {
    super(message);
    this.name = "BackendAuthError";
  }
}

/** What an exchange returned: status, headers and the body as text. */
export interface OutboundResponse {
  status: number;
  headers: Headers;
  text: string;
}

/** Whether the backend runs on loopback (development, tests): its OAuth side may too. */
export function allowsLoopback(backend: BackendConfig): boolean {
  return isLoopbackHost(new URL(backend.url).hostname);
}

/**
 * One guarded request. `what` names the target in errors ("the token endpoint of X").
 * @throws {BackendAuthError} refused URL, timeout, network failure, oversized body
 */
export async function outboundRequest(
  backend: BackendConfig,
  url: string,
  init: { method?: "GET" | "POST"; headers?: HeadersInit; body?: string },
  what: string,
): Promise<OutboundResponse> {
  let addresses: string[];
  try {
    addresses = (await checkFetchUrl(url, { allowLoopback: allowsLoopback(backend) })).addresses;
  } catch (e) {
    if (e instanceof SsrfError) throw new BackendAuthError(`${what} (${url}) ${e.message}`);
    throw e;
  }
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), OUTBOUND_TIMEOUT_MS);
  try {
    const res = await pinnedRequest({
      url: new URL(url),
      addresses,
      method: init.method ?? "GET",
      headers: Object.fromEntries(new Headers(init.headers)),
      ...(init.body !== undefined ? { body: init.body } : {}),
      maxBodyBytes: MAX_RESPONSE_BYTES,
      signal: controller.signal,
    });
    if (res.body === null) {
      throw new BackendAuthError(`${what} answered more than ${MAX_RESPONSE_BYTES} bytes`);
    }
    return { status: res.status, headers: res.headers, text: new TextDecoder().decode(res.body) };
  } catch (e) {
    if (e instanceof BackendAuthError) throw e;
    const why = controller.signal.aborted
      ? `did not answer within ${OUTBOUND_TIMEOUT_MS} ms`
      : "is unreachable";
    throw new BackendAuthError(`${what} ${why}`, true);
  } finally {
    clearTimeout(timer);
  }
}

/** Parses a JSON object body, or `null`. */
export function jsonObject(text: string): Record<string, unknown> | null {
  try {
    const value = JSON.parse(text);
    return value !== null && typeof value === "object" && !Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}
