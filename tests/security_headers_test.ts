/**
 * Security headers of every HTML page (issue 5; MCP 2025-11-25 Security Best Practices
 * §Consent: no framing): CSP with `frame-ancestors 'none'`, `X-Frame-Options: DENY` (RFC 7034),
 * `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, `no-store`. Pages checked:
 * the consent page, the wrong-password page, an error page and the 429 page; the 429 also
 * shows that the configured client IP header decides whose attempts are counted.
 */
import { createHandler } from "../main.ts";
import { assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { makeDeps } from "./_helpers.ts";
import {
  authorizeUrl,
  pkcePair,
  postDecision,
  readConsentForm,
  registerClient,
} from "./_oauth_flow.ts";

function expectHtmlPage(res: Response, status: number): void {
  assertEquals(res.status, status);
  assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
  const csp = res.headers.get("content-security-policy") ?? "";
  assertStringIncludes(csp, "frame-ancestors 'none'");
  assertStringIncludes(csp, "default-src 'none'");
  assertEquals(res.headers.get("x-frame-options"), "DENY");
  assertEquals(res.headers.get("x-content-type-options"), "nosniff");
  assertEquals(res.headers.get("referrer-policy"), "no-referrer");
  assertEquals(res.headers.get("cache-control"), "no-store");
}

Deno.test("HTML pages carry the security headers", async (t) => {
  const deps = await makeDeps({
    config: {
      backends: [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }],
      clientIpHeader: "x-forwarded-for",
      rateLimits: { passwordFailuresPer15Minutes: 2 },
    },
  });
  const handle = createHandler(deps);
  const from = (ip: string) => (req: Request) => {
    req.headers.set("x-forwarded-for", ip);
    return handle(req);
  };
  try {
    const client = await registerClient(handle);
    const { challenge } = await pkcePair();
    const url = authorizeUrl({
      clientId: client.client_id,
      redirectUri: client.redirect_uris[0]!,
      codeChallenge: challenge,
    });
    const consent = async (ip: string) => {
      const page = await from(ip)(new Request(url));
      const html = await page.text();
      return { page, form: readConsentForm(html, page), html };
    };

    await t.step("the consent page", async () => {
      const { page, html } = await consent("203.0.113.7");
      expectHtmlPage(page, 200);
      assertStringIncludes(html, "<form");
    });

    await t.step("an error page (unknown client, never redirected)", async () => {
      const bad = new URL(url);
      bad.searchParams.set("client_id", "no-such-client");
      const res = await handle(new Request(bad));
      expectHtmlPage(res, 400);
      await res.body?.cancel();
    });

    await t.step("the wrong-password page, then the 429 page with Retry-After", async () => {
      let last: Response | undefined;
      for (let i = 0; i < 10; i++) {
        const { form } = await consent("203.0.113.7");
        last = await postDecision(from("203.0.113.7"), form, "approve", "wrong password");
        if (last.status === 429) break;
        expectHtmlPage(last, 401);
        await last.body?.cancel();
      }
      expectHtmlPage(last!, 429);
      assertMatch(last!.headers.get("retry-after") ?? "", /^[1-9][0-9]*$/);
      assertStringIncludes(await last!.text(), "Too many");
    });

    await t.step("another client IP (from X-Forwarded-For) has its own budget", async () => {
      const { form } = await consent("198.51.100.9");
      const res = await postDecision(from("198.51.100.9"), form, "approve", "wrong password");
      expectHtmlPage(res, 401);
      await res.body?.cancel();
    });
  } finally {
    deps.kv.close();
  }
});
