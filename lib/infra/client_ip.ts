/**
 * The client's IP address, for rate limits and logs.
 *
 * Without `clientIpHeader` it is the socket address (`info.remoteAddr`): right on Deno Deploy,
 * whose edge hands the gateway the real client's address, and for a gateway that faces clients
 * directly. Behind a reverse proxy, the socket address is the proxy's, so an operator names the
 * header the proxy writes (`clientIpHeader`) and how many proxies of their own append to it
 * (`clientIpHeaderHops`, default 1). Proxies append the address they received a connection from
 * to the right of `X-Forwarded-For` / `Forwarded` (RFC 7239 §5.2, §7.4): everything left of what
 * the operator's own proxies wrote is whatever the client sent, so the address is the n-th entry
 * from the **right**, never the first one. A missing, short or malformed value falls back to the
 * socket address. Behind Cloudflare, `cf-connecting-ip` holds exactly one address (hops 1).
 *
 * Addresses are normalised (IPv4-mapped IPv6 → IPv4, IPv6 in RFC 5952 form), and
 * {@linkcode ipLimitSubject} groups IPv6 addresses by /64 (the usual size of one subscriber's
 * network, RFC 6177 §3): per-IP limits count a /64 as one client.
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

/** RFC 5952 §4 text of 16 IPv6 bytes: lowercase, no leading zeros, the longest zero run as `::`. */
function formatIpv6(bytes: Uint8Array): string {
  const groups = Array.from({ length: 8 }, (_, i) => (bytes[2 * i]! << 8) | bytes[2 * i + 1]!);
  let best = -1;
  let bestLength = 1; // a single zero group is never shortened (RFC 5952 §4.2.2)
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [best, bestLength] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLength).join(":")}`;
}

/**
 * `text` as a normalised IP address, or `null` if it is not one: IPv4 as is; IPv4-mapped IPv6
 * (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2) as the IPv4 address; other IPv6 in RFC 5952 form, so
 * that `2001:DB8:0:0::1` and `2001:db8::1` are one client.
 */
export function validIp(text: string): string | null {
  if (text.length === 0 || text.length > 64) return null;
  if (parseIpv4(text)) return text;
  const v6 = parseIpv6(text);
  if (!v6) return null;
  const mapped = v6.subarray(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff;
  return mapped ? Array.from(v6.subarray(12)).join(".") : formatIpv6(v6);
}

/** Options of {@linkcode clientIp}: the config's `clientIpHeader` and `clientIpHeaderHops`. */
export interface ClientIpOptions {
  header?: string;
  /** Which entry, counted from the right (1 = the right-most, written by the nearest proxy). */
  hops?: number;
}

/**
 * The client address of a request: the `hops`-th address from the right of the configured
 * header when it has that many entries and that one is valid, else the socket address `remote`
 * (or `"unknown"`). Both are normalised with {@linkcode validIp}.
 */
export function clientIp(
  headers: Headers,
  options: ClientIpOptions,
  remote: string | undefined,
): string {
  const { header, hops = 1 } = options;
  if (header) {
    const value = headers.get(header);
    if (value) {
      const entries = value.split(",");
      const entry = entries.length >= hops ? entries[entries.length - hops] : undefined;
      const ip = entry === undefined ? null : validIp(bareAddress(entry));
      if (ip) return ip;
    }
  }
  if (remote === undefined) return "unknown";
  // Socket addresses repeat (keep-alive, a few proxies): normalised once each, in a small memo.
  let ip = remoteMemo.get(remote);
  if (ip === undefined) {
    ip = validIp(remote) ?? remote;
    if (remoteMemo.size >= 1024) remoteMemo.clear();
    remoteMemo.set(remote, ip);
  }
  return ip;
}

const remoteMemo = new Map<string, string>();

/**
 * The subject of a per-IP limit: an IPv4 address as is, an IPv6 address as its /64 prefix
 * (`2001:db8:1:2::/64`): one subscriber usually holds a whole /64 (RFC 6177 §3) and could
 * otherwise take a fresh address for every request.
 */
export function ipLimitSubject(ip: string): string {
  if (!ip.includes(":")) return ip;
  const v6 = parseIpv6(ip);
  if (!v6) return ip;
  const prefix = new Uint8Array(16);
  prefix.set(v6.subarray(0, 8));
  return `${formatIpv6(prefix)}/64`;
}
