import {
  checkFetchUrl,
  classifyIp,
  type DnsResolver,
  type IpClass,
  parseIpv4,
  parseIpv6,
  SsrfError,
} from "../lib/infra/ssrf_guard.ts";
import { assertEquals, assertMatch, assertRejects } from "./_assert.ts";

/** A resolver with fixed answers that records what it was asked (no network). */
function fakeDns(answers: Record<string, { A?: string[]; AAAA?: string[] }>) {
  const asked: string[] = [];
  const resolve: DnsResolver = (host, type) => {
    asked.push(`${host}/${type}`);
    const a = answers[host]?.[type];
    return a ? Promise.resolve(a) : Promise.reject(new Deno.errors.NotFound("no record"));
  };
  return { resolve, asked };
}

Deno.test("parseIpv4 / parseIpv6", async (t) => {
  await t.step("accepts dotted quads only", () => {
    assertEquals(parseIpv4("192.168.1.255"), new Uint8Array([192, 168, 1, 255]));
    for (
      const bad of ["256.0.0.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "0x7f.0.0.1", "", "a.b.c.d"]
    ) {
      assertEquals(parseIpv4(bad), null, bad);
    }
  });
  await t.step("accepts RFC 4291 §2.2 text forms", () => {
    assertEquals(parseIpv6("::1")?.[15], 1);
    assertEquals(parseIpv6("[::1]")?.[15], 1);
    assertEquals(
      Array.from(parseIpv6("::ffff:127.0.0.1")!.slice(10)),
      [0xff, 0xff, 127, 0, 0, 1],
    );
    assertEquals(parseIpv6("2001:db8:0:0:0:0:0:1"), parseIpv6("2001:db8::1"));
    for (const bad of ["1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "g::1", "1:2:3:4:5:6:7", ":::"]) {
      assertEquals(parseIpv6(bad), null, bad);
    }
  });
});

Deno.test("classifyIp: RFC 6890 special-purpose registries", async (t) => {
  const cases: [string, IpClass][] = [
    // IPv4
    ["8.8.8.8", "public"],
    ["1.1.1.1", "public"],
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "reserved"],
    ["10.0.0.1", "private"],
    ["10.255.255.255", "private"],
    ["100.63.255.255", "public"],
    ["100.64.0.1", "shared"],
    ["100.127.255.255", "shared"],
    ["100.128.0.0", "public"],
    ["127.0.0.1", "loopback"],
    ["127.255.255.254", "loopback"],
    ["169.254.169.254", "link_local"],
    ["172.15.255.255", "public"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["172.32.0.0", "public"],
    ["192.0.0.8", "reserved"],
    ["192.0.2.1", "documentation"],
    ["192.88.99.1", "reserved"],
    ["192.167.255.255", "public"],
    ["192.168.0.1", "private"],
    ["198.17.255.255", "public"],
    ["198.18.0.1", "benchmarking"],
    ["198.19.255.255", "benchmarking"],
    ["198.20.0.0", "public"],
    ["198.51.100.7", "documentation"],
    ["203.0.113.9", "documentation"],
    ["223.255.255.255", "public"],
    ["224.0.0.1", "multicast"],
    ["239.255.255.255", "multicast"],
    ["240.0.0.1", "reserved"],
    ["255.255.255.255", "broadcast"],
    // IPv6
    ["2606:4700:4700::1111", "public"],
    ["[2a00:1450:4001:81b::200e]", "public"],
    ["::", "unspecified"],
    ["::1", "loopback"],
    ["[::1]", "loopback"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["::ffff:10.0.0.1", "private"],
    ["::ffff:169.254.169.254", "link_local"],
    ["::ffff:8.8.8.8", "public"],
    ["::127.0.0.1", "reserved"],
    ["64:ff9b::a9fe:a9fe", "link_local"],
    ["64:ff9b::808:808", "public"],
    ["64:ff9b:1::1", "private"],
    ["2002:7f00:1::", "loopback"],
    ["2002:0808:0808::1", "public"],
    ["100::1", "reserved"],
    ["2001::1", "reserved"],
    ["2001:db8::1", "documentation"],
    ["3fff::1", "documentation"],
    ["5f00::1", "reserved"],
    ["fc00::1", "private"],
    ["fd12:3456::1", "private"],
    ["fe80::1", "link_local"],
    ["febf::1", "link_local"],
    ["fec0::1", "private"],
    ["ff02::1", "multicast"],
    ["4000::1", "reserved"],
    ["1::1", "reserved"],
  ];
  for (const [ip, kind] of cases) {
    await t.step(`${ip} is ${kind}`, () => assertEquals(classifyIp(ip), kind));
  }
  await t.step("a host name is not an IP literal", () => {
    assertEquals(classifyIp("example.com"), null);
    assertEquals(classifyIp("127.0.0.1.nip.io"), null);
  });
});

Deno.test("checkFetchUrl", async (t) => {
  const never: DnsResolver = () => Promise.reject(new Error("DNS must not be used"));

  await t.step("refuses special-purpose literal IPs (RFC 6890)", async () => {
    for (
      const url of [
        "https://127.0.0.1/a",
        "https://10.0.0.1/a",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/a",
        "https://[::ffff:127.0.0.1]/a",
        "https://[fd00::1]/a",
        "https://0.0.0.0/a",
        "https://2130706433/a", // WHATWG URL turns this into 127.0.0.1
        "https://0x7f.1/a",
      ]
    ) {
      const e = await assertRejects(
        () => checkFetchUrl(url, { resolveDns: never }),
        SsrfError,
      );
      assertMatch(e.message, /resolves to a/, url);
    }
  });

  await t.step("refuses localhost names without asking DNS (RFC 6761 §6.3)", async () => {
    const e = await assertRejects(
      () => checkFetchUrl("https://localhost/a", { resolveDns: never }),
      SsrfError,
    );
    assertMatch(e.message, /loopback/);
    await assertRejects(
      () => checkFetchUrl("https://app.localhost/a", { resolveDns: never }),
      SsrfError,
    );
  });

  await t.step("refuses special-use domains", async () => {
    const e = await assertRejects(
      () => checkFetchUrl("https://printer.local/a", { resolveDns: never }),
      SsrfError,
    );
    assertMatch(e.message, /special-use/);
  });

  await t.step("refuses http, other schemes and userinfo", async () => {
    for (const url of ["http://8.8.8.8/a", "ftp://8.8.8.8/a", "file:///etc/passwd"]) {
      const e = await assertRejects(() => checkFetchUrl(url, { resolveDns: never }), SsrfError);
      assertMatch(e.message, /https/, url);
    }
    const e = await assertRejects(
      () => checkFetchUrl("https://u:p@8.8.8.8/a", { resolveDns: never }),
      SsrfError,
    );
    assertMatch(e.message, /userinfo/);
  });

  await t.step("accepts a public literal IP", async () => {
    const r = await checkFetchUrl("https://8.8.8.8/a", { resolveDns: never });
    assertEquals(r.addresses, ["8.8.8.8"]);
  });

  await t.step("judges every A and AAAA answer", async () => {
    const dns = fakeDns({
      "good.example": { A: ["93.184.216.34"], AAAA: ["2606:2800:220:1::1"] },
      "mixed.example": { A: ["93.184.216.34", "10.1.2.3"] },
      "v6.example": { AAAA: ["fe80::1"] },
      "mapped.example": { AAAA: ["::ffff:169.254.169.254"] },
    });
    const r = await checkFetchUrl("https://good.example/x", { resolveDns: dns.resolve });
    assertEquals(r.addresses, ["93.184.216.34", "2606:2800:220:1::1"]);
    assertEquals(dns.asked, ["good.example/A", "good.example/AAAA"]);
    for (
      const [host, kind] of [["mixed", "private"], ["v6", "link-local"], ["mapped", "link-local"]]
    ) {
      const e = await assertRejects(
        () => checkFetchUrl(`https://${host}.example/x`, { resolveDns: dns.resolve }),
        SsrfError,
      );
      assertEquals(e.message, `host ${host}.example resolves to a ${kind} address`);
    }
  });

  await t.step("refuses a name that does not resolve", async () => {
    const dns = fakeDns({});
    const e = await assertRejects(
      () => checkFetchUrl("https://nowhere.example/x", { resolveDns: dns.resolve }),
      SsrfError,
    );
    assertMatch(e.message, /does not resolve/);
  });

  await t.step("allowLoopback lets loopback (http or https) through, nothing else", async () => {
    const opts = { allowLoopback: true, resolveDns: never };
    assertEquals((await checkFetchUrl("http://127.0.0.1:8080/a", opts)).addresses, ["127.0.0.1"]);
    assertEquals((await checkFetchUrl("https://[::1]/a", opts)).addresses, ["::1"]);
    assertEquals((await checkFetchUrl("http://localhost/a", opts)).addresses, ["127.0.0.1", "::1"]);
    for (const url of ["https://10.0.0.1/a", "https://169.254.169.254/a", "http://192.168.1.1/a"]) {
      await assertRejects(() => checkFetchUrl(url, opts), SsrfError);
    }
    const e = await assertRejects(() => checkFetchUrl("http://8.8.8.8/a", opts), SsrfError);
    assertMatch(e.message, /http is allowed only on loopback/);
  });
});
