/**
 * Fixtures of the team sign-in suites: panva's oidc-provider as "Corp SSO" with a few accounts,
 * two real MCP backends (alpha: legacy v1 SDK, beta: modern v2 SDK), the gateway served on a
 * real port with access rules over them, and the steps of a sign-in driven by an
 * {@linkcode HttpBrowser}: authorize → sign-in page → provider → consent → code → tokens.
 */
import { Client } from "@modelcontextprotocol/client";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { z } from "zod";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { assertEquals, assertMatch } from "./_assert.ts";
import { legacyBackend, modernBackend, type TestBackend } from "./_aggregate_backends.ts";
import { type ServedGateway, serveGateway } from "./_helpers.ts";
import { field, HttpBrowser, type Page, providerHref, signInAtIdp } from "./_http_browser.ts";
import { oidcProviderConfig, startIdp, type TestAccount, type TestIdp } from "./_idp.ts";
import { authorizeUrl, pkcePair, registerClient } from "./_oauth_flow.ts";

/** The accounts of the test provider (the login typed at the provider is the `sub`). */
export const ACCOUNTS: Record<string, TestAccount> = {
  ana: { email: "ana@example.com", email_verified: true, name: "Ana Lima" },
  bob: { email: "bob@example.com", email_verified: true, name: "Bob Stone" },
  eve: { email: "eve@elsewhere.org", email_verified: true, name: "Eve Moss" },
  gus: {
    email: "gus@other.org",
    email_verified: true,
    name: "Gus Hale",
    groups: ["all-staff", "mcp-users"],
  },
  uma: { email: "uma@example.com", email_verified: false, name: "Uma Reyes" },
};

/** The access rules over those accounts. */
export const ACCESS = [
  { emails: ["ana@example.com"], scopes: ["mcp"], admin: true },
  { domains: ["example.com"], scopes: ["mcp:beta"] },
  { groups: ["mcp-users"], scopes: ["mcp"] },
];

/** A running sign-in setup. */
export interface SignInSetup {
  idp: TestIdp;
  gw: ServedGateway;
  alpha: TestBackend;
  beta: TestBackend;
  /** The raw config (to derive changed configs from). */
  config: Record<string, unknown>;
  close(): Promise<void>;
}

/** Starts the provider, the backends and the gateway; `providerExtra` tweaks the provider. */
export async function startSignInSetup(
  options: {
    providerExtra?: Record<string, unknown>;
    /** More `login.providers` entries (given the test provider). */
    moreProviders?: (idp: TestIdp) => Record<string, unknown>[];
    env?: Record<string, string>;
  } = {},
): Promise<SignInSetup> {
  const idp = await startIdp(ACCOUNTS);
  const alpha = legacyBackend("alpha", (s) => {
    s.registerTool("echo", { inputSchema: { text: z.string() } }, ({ text }: { text: string }) => ({
      content: [{ type: "text", text: `alpha:${text}` }],
    }));
  });
  const beta = modernBackend("beta", (s) => {
    s.registerTool("echo", { inputSchema: z.object({ text: z.string() }) }, ({ text }) => ({
      content: [{ type: "text", text: `beta:${text}` }],
    }));
  });
  const config = {
    backends: [{ name: "alpha", url: alpha.url }, { name: "beta", url: beta.url }],
    login: {
      providers: [
        oidcProviderConfig(idp, options.providerExtra),
        ...options.moreProviders?.(idp) ?? [],
      ],
      access: ACCESS,
    },
  };
  const gw = await serveGateway({ config, env: options.env });
  idp.register(`${gw.url}/login/corp/callback`);
  return {
    idp,
    gw,
    alpha,
    beta,
    config,
    async close() {
      await closeAggregate(gw.deps);
      await gw.close();
      await alpha.close();
      await beta.close();
      await idp.close();
    },
  };
}

/** The redirect URI of the test MCP client (never loaded: the browser stops there). */
export const CLIENT_CALLBACK = "http://127.0.0.1:3000/callback";
const atClient = (u: URL) => u.href.startsWith(CLIENT_CALLBACK);

/** An authorization in progress: the client, its PKCE verifier and the page reached. */
export interface Authorization {
  clientId: string;
  verifier: string;
  page: Page;
}

/**
 * Opens `/authorize` for a new client in `browser` and, unless the browser is signed in,
 * clicks "Continue with Corp SSO" and signs in at the provider as `login`. Returns the page
 * reached: the consent page, or an error / access denied page.
 */
export async function authorizeWithProvider(
  s: SignInSetup,
  browser: HttpBrowser,
  login: string,
  options: {
    scope?: string;
    resource?: string;
    /** Stop before loading a URL (e.g. the gateway's callback, to deliver it by hand). */
    stop?: (u: URL) => boolean;
  } = {},
): Promise<Authorization> {
  const client = await registerClient((r) => fetch(r), {}, s.gw.url);
  const pkce = await pkcePair();
  let page = await browser.navigate(authorizeUrl({
    baseUrl: s.gw.url,
    clientId: client.client_id,
    redirectUri: CLIENT_CALLBACK,
    codeChallenge: pkce.challenge,
    scope: options.scope,
    resource: options.resource ?? `${s.gw.url}/mcp`,
    state: "client-state",
  }));
  if (page.html.includes("Continue with Corp SSO")) {
    page = await browser.navigate(providerHref(page.html, "Corp SSO"));
    page = await signInAtIdp(browser, page, login, options.stop);
  }
  return { clientId: client.client_id, verifier: pkce.verifier, page };
}

/** Clicks Approve on the consent page; returns the code the client receives. */
export async function approve(browser: HttpBrowser, consent: Page): Promise<string> {
  return (await approveToCallback(browser, consent)).searchParams.get("code")!;
}

/** Clicks Approve on the consent page; returns the client callback URL (code, state, iss). */
export async function approveToCallback(browser: HttpBrowser, consent: Page): Promise<URL> {
  const action = consent.html.match(/<form method="post" action="([^"]*)"/)![1]!;
  const landed = await browser.submit(action, {
    request_id: field(consent.html, "request_id"),
    csrf_token: field(consent.html, "csrf_token"),
    decision: "approve",
  }, atClient);
  assertEquals(landed.status, 303, landed.html.slice(0, 300));
  assertEquals(landed.url.searchParams.get("state"), "client-state");
  return landed.url;
}

/** Redeems a code at `/token` (RFC 6749 §4.1.3); asserts 200 JSON. */
export async function redeem(
  s: SignInSetup,
  a: Authorization,
  code: string,
): Promise<{ access_token: string; refresh_token: string; scope: string }> {
  const res = await fetch(`${s.gw.url}/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: CLIENT_CALLBACK,
      client_id: a.clientId,
      code_verifier: a.verifier,
    }),
  });
  assertEquals(res.status, 200);
  assertMatch(res.headers.get("content-type") ?? "", /^application\/json/);
  return await res.json();
}

/** Tool names listed on `/mcp` with `token` (a modern v2 SDK client). */
export async function listTools(s: SignInSetup, token: string): Promise<string[]> {
  const client = new Client({ name: "sign-in test", version: "1.0.0" }, {
    versionNegotiation: { mode: "auto" },
  });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${s.gw.url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  try {
    return (await client.listTools()).tools.map((t) => t.name).sort();
  } finally {
    await client.close();
  }
}

/** Every KV entry under `prefix` (to assert what was, or was not, stored). */
export async function entries(kv: Deno.Kv, prefix: Deno.KvKey): Promise<Deno.KvEntry<unknown>[]> {
  const out: Deno.KvEntry<unknown>[] = [];
  for await (const e of kv.list({ prefix })) out.push(e);
  return out;
}
