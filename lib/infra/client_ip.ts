/**
 * The client's IP address, for rate limits and logs. Behind a reverse proxy the socket address
 * is the proxy's, so an operator may name the header the proxy writes (`clientIpHeader`, e.g.
 * `x-forwarded-for`): its first address is the client (RFC 7239 §5.2 order, the de-facto
 * X-Forwarded-For convention). A missing or malformed value falls back to the socket address.
 * Only set `clientIpHeader` behind a proxy that overwrites the header: a client can forge it.
 * @module
 */
import { parseIpv4, parseIpv6 } from "./ssrf_guard.ts";

/** Strips RFC 7239 `for=` syntax, quotes, brackets and a port from one list element. */
function bareAddress(element: string): string {
  let s = element.trim();
  const forPair = /(?:^|;)\s*for=([^;]*)/i.exec(s);
  if (forPair) s = forPair[1]!.trim();
  s = s.replace(/^"|"$/g, "");
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(s);
  if (bracketed) return bracketed[1]!;
  const v4WithPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(s);
  if (v4WithPort) return v4WithPort[1]!;
  return s;
}

/** `text` if it is a valid IPv4 or IPv6 address, else `null`. */
export function validIp(text: string): string | null {
  if (text.length === 0 || text.length > 64) return null;
  return parseIpv4(text) || parseIpv6(text) ? text.toLowerCase() : null;
}

/**
 * The client address of a request: the first address of `header` when configured and valid,
 * else the socket address `remote` (or `"unknown"`).
 */
export function clientIp(
  headers: Headers,
  header: string | undefined,
  remote: string | undefined,
): string {
  if (header) {
    const value = headers.get(header);
    if (value) {
      const first = value.split(",")[0] ?? "";
      const ip = validIp(bareAddress(first));
      if (ip) return ip;
    }
  }
  return remote ?? "unknown";
}
