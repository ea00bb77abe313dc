/**
 * SSRF guard: decides whether the gateway may fetch a URL that a client chose (a Client ID
 * Metadata Document, draft-ietf-oauth-client-id-metadata-document §6.5 "Server Side Request
 * Forgery"; MCP 2025-11-25 Security Best Practices §Server-Side Request Forgery).
 *
 * Rules: `https` only (`http` only with `allowLoopback` and a loopback host); no userinfo; the
 * host — a literal IP, or every A and AAAA address it resolves to — must be globally reachable:
 * nothing in the IANA special-purpose address registries (RFC 6890 and its updates) that is not
 * global: loopback, private (RFC 1918, fc00::/7), link-local, shared/CGNAT (RFC 6598),
 * multicast, unspecified, broadcast, documentation, benchmarking, reserved; IPv4-mapped,
 * NAT64 (RFC 6052) and 6to4 (RFC 3056) IPv6 addresses are judged by the IPv4 address they embed.
 * `allowLoopback` (development and tests only) lets loopback addresses through, nothing else.
 *
 * DNS rebinding: the guard resolves the name itself (`Deno.resolveDns`, which ignores
 * /etc/hosts) and returns the addresses it judged; a `fetch` of the URL would resolve the name
 * again, and a hostile DNS server could then answer a private address (TTL 0). So the caller must
 * connect to one of the returned addresses, never to the name: metadata documents are fetched
 * with lib/infra/pinned_fetch.ts (`Deno.connect` to the checked address, TLS verified against
 * the URL's host name). Callers never follow redirects, cap the size and the time, and never
 * echo a fetched body back.
 * @module
 */

/** Why an address is refused; `public` is the only class that may be fetched. */
export type IpClass =
  | "public"
  | "unspecified"
  | "loopback"
  | "private"
  | "link_local"
  | "shared"
  | "multicast"
  | "broadcast"
  | "documentation"
  | "benchmarking"
  | "reserved";

/** Resolves a host name to addresses of one record type (the shape of `Deno.resolveDns`). */
export type DnsResolver = (hostname: string, type: "A" | "AAAA") => Promise<string[]>;

/** Options of {@linkcode checkFetchUrl}. */
export interface SsrfGuardOptions {
  /** Development/tests only: allow `http` and loopback addresses (nothing else). */
  allowLoopback?: boolean;
  /** DNS resolver; defaults to `Deno.resolveDns`. Tests inject one (no network). */
  resolveDns?: DnsResolver;
}

/** The outcome of a successful check: the parsed URL and the addresses that were judged. */
export interface SsrfCheck {
  url: URL;
  addresses: string[];
}

/** A URL the guard refuses; `message` is safe to show (it names the rule, not secrets). */
export class SsrfError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SsrfError";
  }
}

/** Parses a dotted-quad IPv4 address (four decimal octets, no leading zeros). */
export function parseIpv4(text: string): Uint8Array | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

/** Parses an IPv6 address (RFC 4291 §2.2 text forms, with `::` and a trailing dotted IPv4). */
export function parseIpv6(text: string): Uint8Array | null {
  if (text.startsWith("[") && text.endsWith("]")) text = text.slice(1, -1);
  if (text.length === 0 || text.length > 45 || /[^0-9a-fA-F:.]/.test(text)) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groups = (s: string): number[] | null => {
    if (s === "") return [];
    const out: number[] = [];
    const parts = s.split(":");
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes(".")) {
        const v4 = parseIpv4(p);
        if (!v4) return null;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return null;
        out.push(parseInt(p, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return null;
  if (halves.length === 1 && head.length !== 8) return null;
  if (halves.length === 2 && head.length + tail.length > 7) return null;
  const all = [...head, ...new Array(8 - head.length - tail.length).fill(0), ...tail];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

interface Range {
  bytes: Uint8Array;
  prefix: number;
  kind: IpClass;
}

function range(cidr: string, kind: IpClass): Range {
  const [addr, len] = cidr.split("/") as [string, string];
  const bytes = addr.includes(":") ? parseIpv6(addr) : parseIpv4(addr);
  if (!bytes) throw new Error(`bad CIDR ${cidr}`);
  return { bytes, prefix: Number(len), kind };
}

function inRange(ip: Uint8Array, r: Range): boolean {
  if (ip.length !== r.bytes.length) return false;
  let bits = r.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((ip[i]! & mask) !== (r.bytes[i]! & mask)) return false;
  }
  return true;
}

/**
 * IPv4 special-purpose ranges that are not globally reachable (IANA IPv4 Special-Purpose
 * Address Registry, RFC 6890 §2.2.2 and updates), most specific first.
 */
const IPV4_RANGES: readonly Range[] = [
  range("255.255.255.255/32", "broadcast"), // RFC 919 §7
  range("0.0.0.0/32", "unspecified"), // RFC 1122 §3.2.1.3
  range("0.0.0.0/8", "reserved"), // "this network", RFC 791
  range("10.0.0.0/8", "private"), // RFC 1918
  range("100.64.0.0/10", "shared"), // CGNAT, RFC 6598
  range("127.0.0.0/8", "loopback"), // RFC 1122 §3.2.1.3
  range("169.254.0.0/16", "link_local"), // RFC 3927 (cloud metadata lives here)
  range("172.16.0.0/12", "private"), // RFC 1918
  range("192.0.0.0/24", "reserved"), // IETF protocol assignments, RFC 6890
  range("192.0.2.0/24", "documentation"), // TEST-NET-1, RFC 5737
  range("192.88.99.0/24", "reserved"), // 6to4 relay anycast, RFC 7526
  range("192.168.0.0/16", "private"), // RFC 1918
  range("198.18.0.0/15", "benchmarking"), // RFC 2544
  range("198.51.100.0/24", "documentation"), // TEST-NET-2, RFC 5737
  range("203.0.113.0/24", "documentation"), // TEST-NET-3, RFC 5737
  range("224.0.0.0/4", "multicast"), // RFC 5771
  range("240.0.0.0/4", "reserved"), // RFC 1112 §4
];

/**
 * IPv6 special-purpose ranges (IANA IPv6 Special-Purpose Address Registry, RFC 6890 §2.2.3 and
 * updates). Anything outside 2000::/3 (the only global unicast allocation) is also refused.
 */
const IPV6_RANGES: readonly Range[] = [
  range("::/128", "unspecified"), // RFC 4291
  range("::1/128", "loopback"), // RFC 4291
  range("64:ff9b:1::/48", "private"), // local-use NAT64, RFC 8215
  range("100::/64", "reserved"), // discard-only, RFC 6666
  range("2001:db8::/32", "documentation"), // RFC 3849
  range("2001::/23", "reserved"), // IETF protocol assignments (Teredo, ORCHID…), RFC 2928
  range("3fff::/20", "documentation"), // RFC 9637
  range("5f00::/16", "reserved"), // SRv6 SIDs, RFC 9602
  range("fc00::/7", "private"), // unique local, RFC 4193
  range("fe80::/10", "link_local"), // RFC 4291
  range("fec0::/10", "private"), // deprecated site-local, RFC 3879
  range("ff00::/8", "multicast"), // RFC 4291
];

const IPV4_MAPPED = range("::ffff:0:0/96", "reserved"); // RFC 4291 §2.5.5.2
const IPV4_COMPATIBLE = range("::/96", "reserved"); // deprecated, RFC 4291 §2.5.5.1
const NAT64 = range("64:ff9b::/96", "reserved"); // RFC 6052
const SIX_TO_FOUR = range("2002::/16", "reserved"); // RFC 3056
const GLOBAL_UNICAST = range("2000::/3", "public");

/** Classifies the 4 bytes of an IPv4 address. */
export function classifyIpv4Bytes(ip: Uint8Array): IpClass {
  return IPV4_RANGES.find((r) => inRange(ip, r))?.kind ?? "public";
}

/** Classifies the 16 bytes of an IPv6 address, judging embedded IPv4 addresses by their own class. */
export function classifyIpv6Bytes(ip: Uint8Array): IpClass {
  if (inRange(ip, IPV4_MAPPED) || inRange(ip, NAT64)) return classifyIpv4Bytes(ip.slice(12, 16));
  if (inRange(ip, SIX_TO_FOUR)) return classifyIpv4Bytes(ip.slice(2, 6));
  const special = IPV6_RANGES.find((r) => inRange(ip, r));
  if (special) return special.kind;
  if (inRange(ip, IPV4_COMPATIBLE)) return "reserved";
  return inRange(ip, GLOBAL_UNICAST) ? "public" : "reserved";
}

/**
 * Classifies a literal IP address (IPv4 dotted quad, or IPv6 with or without brackets).
 * Returns `null` when `text` is not an IP literal.
 */
export function classifyIp(text: string): IpClass | null {
  const v4 = parseIpv4(text);
  if (v4) return classifyIpv4Bytes(v4);
  const v6 = parseIpv6(text);
  return v6 ? classifyIpv6Bytes(v6) : null;
}

/** Whether an address class may be fetched under the given options. */
export function isAllowedClass(kind: IpClass, allowLoopback = false): boolean {
  return kind === "public" || (allowLoopback && kind === "loopback");
}

/** Special-use domain names (RFC 6761, RFC 6762, RFC 8375, RFC 7686) never resolved publicly. */
const SPECIAL_SUFFIXES = [".local", ".internal", ".home.arpa", ".invalid", ".onion", ".lan"];

function isLocalhostName(host: string): boolean {
  return host === "localhost" || host.endsWith(".localhost"); // RFC 6761 §6.3
}

async function resolveAll(host: string, resolve: DnsResolver): Promise<string[]> {
  const results = await Promise.allSettled([resolve(host, "A"), resolve(host, "AAAA")]);
  const addresses: string[] = [];
  for (const r of results) if (r.status === "fulfilled") addresses.push(...r.value);
  return addresses;
}

const denoResolver: DnsResolver = (host, type) => Deno.resolveDns(host, type);

/**
 * Checks that `input` may be fetched and returns the addresses it checked: connect to one of
 * them (lib/infra/pinned_fetch.ts), not to the name, and follow no redirect (it would skip the
 * check). Never performs a connection itself.
 * @throws {SsrfError} naming the rule broken.
 */
export async function checkFetchUrl(
  input: string | URL,
  options: SsrfGuardOptions = {},
): Promise<SsrfCheck> {
  const allowLoopback = options.allowLoopback ?? false;
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new SsrfError("is not an absolute URL");
  }
  if (url.username || url.password) throw new SsrfError("must not contain userinfo");
  if (url.protocol !== "https:" && !(url.protocol === "http:" && allowLoopback)) {
    throw new SsrfError("must use https");
  }
  const host = url.hostname.toLowerCase().replace(/\.$/, "");
  if (host === "") throw new SsrfError("has no host");
  let addresses: string[];
  if (classifyIp(host) !== null) {
    addresses = [host.replace(/^\[|\]$/g, "")];
  } else if (isLocalhostName(host)) {
    addresses = ["127.0.0.1", "::1"];
  } else if (SPECIAL_SUFFIXES.some((s) => host.endsWith(s))) {
    throw new SsrfError(`host ${host} is a special-use domain name`);
  } else {
    addresses = await resolveAll(host, options.resolveDns ?? denoResolver);
    if (addresses.length === 0) throw new SsrfError(`host ${host} does not resolve`);
  }
  for (const address of addresses) {
    const kind = classifyIp(address) ?? "reserved";
    if (!isAllowedClass(kind, allowLoopback)) {
      throw new SsrfError(`host ${host} resolves to a ${kind.replace("_", "-")} address`);
    }
  }
  if (url.protocol === "http:" && !addresses.every((a) => classifyIp(a) === "loopback")) {
    throw new SsrfError("must use https (http is allowed only on loopback in development)");
  }
  return { url, addresses };
}
