import { assert, assertEquals, assertStringIncludes, assertThrows } from "./_assert.ts";
import { ConfigError, parseConfig } from "../lib/config.ts";
import { OAuthError } from "../lib/oauth/oauth_error.ts";
import {
  buildRedirectUrl,
  redirectUriMatches,
  selectRedirectUri,
  validateRedirectUri,
} from "../lib/oauth/redirect_uri.ts";

Deno.test("validateRedirectUri", async (t) => {
  await t.step("accepts https, loopback http and private-use schemes (RFC 8252 §7.1, §7.3)", () => {
    for (
      const uri of [
        "https://app.example.com/callback",
        "https://app.example.com/cb?x=1",
        "http://127.0.0.1/callback",
        "http://127.0.0.1:33418/callback",
        "http://[::1]:8080/cb",
        "http://localhost:6274/oauth/callback",
        "cursor://anysphere.cursor-retrieval/oauth/user-x/callback",
        "com.example.app:/oauth2redirect",
      ]
    ) assertEquals(validateRedirectUri(uri), uri);
  });
  await t.step("refuses http on other hosts (OAuth 2.1 §2.3.1)", () => {
    for (const uri of ["http://example.com/cb", "http://127.0.0.2/cb", "http://10.0.0.1/cb"]) {
      const e = assertThrows(() => validateRedirectUri(uri), OAuthError);
      assertEquals(e.code, "invalid_redirect_uri");
    }
  });
  await t.step("refuses script, data and file schemes", () => {
    for (
      const uri of [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,hi",
        "vbscript:msgbox",
        "file:///etc/passwd",
        "about:blank",
        "blob:https://a.example/x",
      ]
    ) {
      assertEquals(
        assertThrows(() => validateRedirectUri(uri), OAuthError).code,
        "invalid_redirect_uri",
      );
    }
  });
  await t.step(
    "refuses fragments, wildcards, userinfo, relative and blank URIs (RFC 6749 §3.1.2)",
    () => {
      for (
        const uri of [
          "https://app.example.com/cb#frag",
          "https://app.example.com/cb#",
          "https://*.example.com/cb",
          "https://app.example.com/*",
          "https://user:pw@app.example.com/cb",
          "https://user@app.example.com/cb",
          "/callback",
          "",
          " https://app.example.com/cb",
          "https://app.example.com/c b",
          "https://a.example/" + "x".repeat(2100),
        ]
      ) {
        const e = assertThrows(() => validateRedirectUri(uri), OAuthError);
        assertEquals(e.code, "invalid_redirect_uri", uri);
        assertEquals(e.status, 400);
      }
    },
  );
});

Deno.test("validateRedirectUri: private-use schemes (RFC 8252 §7.1)", async (t) => {
  const refused = (uri: string, allowed?: string[]) => {
    const e = assertThrows(() => validateRedirectUri(uri, allowed), OAuthError);
    assertEquals(e.code, "invalid_redirect_uri", uri);
    return e.message;
  };
  await t.step("schemes that hand the URI to another program are refused", () => {
    for (
      const uri of [
        "microsoft-edge:https://evil.example/cb",
        "MS-MSDT:/id%20PCWDiagnostic%20/skip%20force",
        "search-ms:query=invoice&crumb=location:\\\\evil.example\\share",
        "ms-officecmd:{}",
        "ms-word:ofe|u|https://evil.example/x.docx",
        "ms-appinstaller:?source=https://evil.example/x.msix",
        "file://evil.example/share/x",
        "x-apple.systempreferences:com.apple.preference.security",
        "intent://scan/?S.browser_fallback_url=https://evil.example",
        "itms-services://?action=download-manifest&url=https://evil.example/m.plist",
      ]
    ) assertStringIncludes(refused(uri, ["microsoft-edge", "ms-msdt"]), "must not use");
  });
  await t.step("a scheme needs a period (reverse domain name) unless allowed by name", () => {
    assertStringIncludes(refused("myapp://callback"), "without a period");
    assertStringIncludes(refused("claude://callback", ["cursor"]), "allowedPrivateUseSchemes");
    assertEquals(validateRedirectUri("myapp://callback", ["myapp"]), "myapp://callback");
    assertEquals(validateRedirectUri("com.example.app:/cb", []), "com.example.app:/cb");
  });
  await t.step("MCP clients' bare schemes are allowed by default", () => {
    for (
      const uri of [
        "cursor://anysphere.cursor-retrieval/oauth/user-x/callback",
        "vscode://ms-vscode.mcp/authorize",
        "vscode-insiders://ms-vscode.mcp/authorize",
        "windsurf://extension/callback",
      ]
    ) assertEquals(validateRedirectUri(uri), uri);
  });
  await t.step("the config cannot allow a dangerous scheme by name", () => {
    const e = assertThrows(
      () =>
        parseConfig({
          backends: [{ name: "a", url: "https://a.example/mcp" }],
          allowedPrivateUseSchemes: ["myapp", "ms-msdt"],
        }, () => undefined),
      ConfigError,
    );
    assertStringIncludes(e.message, "allowedPrivateUseSchemes[1]");
  });
});

Deno.test("redirectUriMatches", async (t) => {
  await t.step("exact string match (OAuth 2.1 §4.1.1.3)", () => {
    assert(redirectUriMatches("https://a.example/cb", "https://a.example/cb"));
    assert(!redirectUriMatches("https://a.example/cb", "https://a.example/cb/"));
    assert(!redirectUriMatches("https://a.example/cb", "https://a.example/CB"));
    assert(!redirectUriMatches("https://a.example/cb", "https://a.example/cb?x=1"));
    assert(!redirectUriMatches("https://a.example/cb", "https://a.example:443/cb"));
    assert(!redirectUriMatches("https://a.example/cb", "https://a.example.evil/cb"));
  });
  await t.step("loopback http ignores the port (RFC 8252 §7.3)", () => {
    assert(redirectUriMatches("http://127.0.0.1/cb", "http://127.0.0.1:51234/cb"));
    assert(redirectUriMatches("http://127.0.0.1:3000/cb", "http://127.0.0.1:4000/cb"));
    assert(redirectUriMatches("http://[::1]:1/cb", "http://[::1]:2/cb"));
    assert(redirectUriMatches("http://localhost:6274/cb?x=1", "http://localhost/cb?x=1"));
  });
  await t.step("a loopback port outside 1–65535 matches nothing (RFC 6335 §6)", () => {
    for (const port of ["99999", "65536", "0", "00000"]) {
      assert(!redirectUriMatches("http://localhost/cb", `http://localhost:${port}/cb`), port);
    }
    assert(redirectUriMatches("http://localhost/cb", "http://localhost:65535/cb"));
    assert(redirectUriMatches("http://localhost/cb", "http://localhost:1/cb"));
  });
  await t.step("loopback still matches host, path and query exactly", () => {
    assert(!redirectUriMatches("http://127.0.0.1:3000/cb", "http://localhost:3000/cb"));
    assert(!redirectUriMatches("http://127.0.0.1:3000/cb", "http://127.0.0.1:3000/other"));
    assert(!redirectUriMatches("http://127.0.0.1/cb", "http://127.0.0.1.evil.com/cb"));
    assert(!redirectUriMatches("http://127.0.0.1/cb", "http://127.0.0.1:80@evil.com/cb"));
    assert(!redirectUriMatches("https://127.0.0.1/cb", "https://127.0.0.1:8443/cb"));
  });
  await t.step(
    "redirect_uri may be omitted only when one is registered (RFC 6749 §3.1.2.3)",
    () => {
      assertEquals(selectRedirectUri(["https://a.example/cb"], undefined), "https://a.example/cb");
      assertEquals(
        selectRedirectUri(["https://a.example/1", "https://a.example/2"], undefined),
        null,
      );
      assertEquals(
        selectRedirectUri(["http://127.0.0.1/cb"], "http://127.0.0.1:9/cb"),
        "http://127.0.0.1:9/cb",
      );
      assertEquals(selectRedirectUri(["https://a.example/cb"], "https://b.example/cb"), null);
    },
  );
});

Deno.test("buildRedirectUrl", async (t) => {
  await t.step("keeps the redirect URI's query and appends parameters (RFC 6749 §3.1.2)", () => {
    const url = new URL(
      buildRedirectUrl("https://a.example/cb?tenant=x", {
        code: "c&d",
        state: undefined,
        iss: "i",
      }),
    );
    assertEquals([...url.searchParams], [["tenant", "x"], ["code", "c&d"], ["iss", "i"]]);
  });
});
