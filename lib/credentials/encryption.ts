/**
 * Encryption of the per-user backend credentials kept in Deno KV: AES-256-GCM (NIST SP 800-38D)
 * under `GATEWAY_ENCRYPTION_KEY`, a fresh 96-bit IV per value, and the KV key of the row bound in
 * as additional authenticated data. A value copied to another row (another user's, another
 * backend's) or altered in any bit fails to open: {@linkcode CredentialIntegrityError}.
 */
import { base64url } from "jose";
import type { SealedValue } from "../store.ts";

/** An encrypted value as stored in KV: version, 96-bit IV, ciphertext with its 128-bit tag. */
export type Sealed = SealedValue;

/** A sealed value that does not open: wrong key, another row's value, or altered bytes. */
export class CredentialIntegrityError extends Error {
  constructor() {
    super("stored credential failed its integrity check");
    this.name = "CredentialIntegrityError";
  }
}

const encoder = new TextEncoder();

/** The additional data of a row: its KV key, as unambiguous text. */
function additionalData(kvKey: Deno.KvKey): Uint8Array<ArrayBuffer> {
  return encoder.encode(`mcpgw-credential-v1\n${JSON.stringify(kvKey.map(String))}`);
}

/**
 * Parses `GATEWAY_ENCRYPTION_KEY`: 32 bytes in base64 (standard or URL-safe, padding optional).
 * @throws {Error} naming the variable.
 */
export async function parseEncryptionKey(text: string): Promise<CryptoKey> {
  const problem = "GATEWAY_ENCRYPTION_KEY: must be 32 random bytes in base64 " +
    "(openssl rand -base64 32)";
  let raw: Uint8Array<ArrayBuffer>;
  try {
    const urlSafe = text.trim().replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    if (!/^[A-Za-z0-9_-]*$/.test(urlSafe)) throw new Error();
    raw = base64url.decode(urlSafe) as Uint8Array<ArrayBuffer>;
  } catch {
    throw new Error(`${problem}; it is not base64`);
  }
  if (raw.length !== 32) throw new Error(`${problem}; it decodes to ${raw.length} bytes`);
  return await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
}

/** Encrypts `value` (JSON) for the row `kvKey`. */
export async function seal(key: CryptoKey, kvKey: Deno.KvKey, value: unknown): Promise<Sealed> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ct = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: additionalData(kvKey) },
    key,
    encoder.encode(JSON.stringify(value)),
  );
  return { v: 1, iv, ct: new Uint8Array(ct) };
}

/**
 * Decrypts a value sealed for the row `kvKey`.
 * @throws {CredentialIntegrityError}
 */
export async function unseal<T>(key: CryptoKey, kvKey: Deno.KvKey, sealed: Sealed): Promise<T> {
  try {
    if (sealed?.v !== 1 || !(sealed.iv instanceof Uint8Array) || sealed.iv.length !== 12) {
      throw new Error("malformed");
    }
    const plain = await crypto.subtle.decrypt(
      {
        name: "AES-GCM",
        iv: sealed.iv as Uint8Array<ArrayBuffer>,
        additionalData: additionalData(kvKey),
      },
      key,
      sealed.ct as Uint8Array<ArrayBuffer>,
    );
    return JSON.parse(new TextDecoder().decode(plain)) as T;
  } catch {
    throw new CredentialIntegrityError();
  }
}
