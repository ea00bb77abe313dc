/**
 * Small cryptographic helpers on the Web Crypto API (JSR's @std/crypto is unreachable here).
 */
import { createHash } from "node:crypto";
import { base64url } from "jose";

const encoder = new TextEncoder();

/** A random URL-safe string carrying `bytes` bytes of entropy (default 32 = 256 bits). */
export function randomToken(bytes = 32): string {
  return base64url.encode(crypto.getRandomValues(new Uint8Array(bytes)));
}

/**
 * Lower-case hex SHA-256 of a string: the only form in which secrets are stored. Synchronous
 * (node:crypto, available on Deno and Deno Deploy): on the hot path of every MCP request it
 * costs about a microsecond, where an awaited `crypto.subtle.digest` costs tens.
 */
export function sha256HexSync(value: string): string {
  return createHash("sha256").update(value).digest("hex");
}

/** {@linkcode sha256HexSync} behind a Promise, for callers written against Web Crypto. */
export function sha256Hex(value: string): Promise<string> {
  return Promise.resolve(sha256HexSync(value));
}

/** PKCE S256 transform: BASE64URL(SHA256(ASCII(code_verifier))) (RFC 7636 §4.2). */
export async function s256(verifier: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(verifier));
  return base64url.encode(new Uint8Array(digest));
}

/**
 * Compares two strings in time independent of where they differ (length leaks only).
 * Used for API keys, CSRF tokens and hashes.
 */
export function timingSafeEqual(a: string, b: string): boolean {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  let diff = x.length ^ y.length;
  const n = Math.max(x.length, y.length);
  for (let i = 0; i < n; i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/**
 * The entry of `knownHashes` equal to `hash`, compared in constant time against every entry
 * (no early exit: timing does not tell which, or whether any, matched).
 */
export function findHash(hash: string, knownHashes: readonly string[]): string | undefined {
  let found: string | undefined;
  for (const known of knownHashes) {
    if (timingSafeEqual(hash, known)) found = known;
  }
  return found;
}
