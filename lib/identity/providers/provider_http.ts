/**
 * Requests to identity providers: every one bounded by the provider's `timeoutMs`, responses
 * read up to a size limit, failures turned into a {@linkcode ProviderError} whose message is
 * fit for the user (it never holds a code, token or secret).
 */
import type { Deps } from "../../deps.ts";
import { BodyTooLargeError, readBodyText } from "../../infra/http.ts";

/** The provider could not be reached, answered too slowly, or answered something unusable. */
export class ProviderError extends Error {
  constructor(
    message: string,
    /** Short machine-readable reason, for the log line. */
    readonly reason: string,
  ) {
    super(message);
    this.name = "ProviderError";
  }
}

/** Largest provider response read (discovery documents, tokens, user data). */
const RESPONSE_LIMIT = 256 * 1024;

/** A provider and what requests to it need. */
export interface ProviderCall {
  deps: Pick<Deps, "fetch">;
  /** The provider's label, for messages. */
  label: string;
  timeoutMs: number;
}

/**
 * Fetches `url` within the timeout and parses a JSON body. Returns the status and the body
 * (`undefined` when it is not JSON).
 * @throws {ProviderError} on a network failure, a timeout or an over-long body.
 */
export async function fetchJson(
  call: ProviderCall,
  url: string | URL,
  init: RequestInit = {},
): Promise<{ status: number; body: unknown }> {
  let res: Response;
  let text: string;
  try {
    res = await call.deps.fetch(url, { ...init, signal: AbortSignal.timeout(call.timeoutMs) });
    text = await readBodyText(res, RESPONSE_LIMIT);
  } catch (e) {
    if (e instanceof BodyTooLargeError) {
      throw new ProviderError(`${call.label} sent a response that is too large.`, "too_large");
    }
    const timeout = e instanceof DOMException && e.name === "TimeoutError";
    throw new ProviderError(
      timeout
        ? `${call.label} did not answer in time. Try again in a moment.`
        : `${call.label} cannot be reached. Try again in a moment.`,
      timeout ? "timeout" : "unreachable",
    );
  }
  try {
    return { status: res.status, body: JSON.parse(text) };
  } catch {
    return { status: res.status, body: undefined };
  }
}

/** `fetchJson` that insists on a 200 JSON object. @throws {ProviderError} */
export async function fetchJsonObject(
  call: ProviderCall,
  url: string | URL,
  what: string,
  init: RequestInit = {},
): Promise<Record<string, unknown>> {
  const { status, body } = await fetchJson(call, url, init);
  if (status !== 200 || !body || typeof body !== "object" || Array.isArray(body)) {
    throw new ProviderError(
      `${call.label} did not return ${what}.`,
      `${what.replaceAll(" ", "_")}_${status}`,
    );
  }
  return body as Record<string, unknown>;
}
