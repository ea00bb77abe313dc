/**
 * A real upstream OpenID Provider for the team sign-in tests: panva's `oidc-provider` (a
 * certified OpenID Provider) on `127.0.0.1:<port 0>`, with its development login form (any
 * login; the account's claims come from `accounts`) and consent prompt. Its signing key is
 * generated here, so that fault tests can sign ID tokens with wrong claims as a broken or
 * hostile provider would. `hang` leaves requests to a path unanswered (a slow provider).
 */
import { createServer, type ServerResponse } from "node:http";
import Provider from "oidc-provider";
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from "jose";

/** Claims of a test account (the login typed on the form is its `sub`). */
export interface TestAccount {
  email?: string;
  email_verified?: boolean;
  name?: string;
  preferred_username?: string;
  groups?: string[];
}

/** A running test OpenID Provider. */
export interface TestIdp {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Registers the gateway's callback URL (call once the gateway's URL is known). */
  register(redirectUri: string): void;
  /** Signs a JWT with the provider's own key (to forge ID tokens with wrong claims). */
  sign(payload: JWTPayload): Promise<string>;
  /** Paths (e.g. "/token") whose requests are left unanswered until `close`. */
  hang: Set<string>;
  /** Requests received, as "METHOD /path". */
  seen: string[];
  close(): Promise<void>;
}

/** Starts the provider; `register()` the gateway's callback before the first sign-in. */
export async function startIdp(accounts: Record<string, TestAccount>): Promise<TestIdp> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const issuer = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const jwk = { ...await exportJWK(privateKey), kid: "test-key", alg: "RS256", use: "sig" };
  const clientId = "mcp-gateway";
  const clientSecret = "idp-client-secret-0123456789";
  const hung: ServerResponse[] = [];
  const hang = new Set<string>();
  const seen: string[] = [];
  let provider: Provider | undefined;

  server.on("request", (req, res) => {
    const path = new URL(req.url ?? "/", issuer).pathname;
    seen.push(`${req.method} ${path}`);
    if (hang.has(path) || !provider) return void hung.push(res);
    provider.callback()(req, res);
  });

  return {
    issuer,
    clientId,
    clientSecret,
    hang,
    seen,
    register(redirectUri) {
      provider = new Provider(issuer, {
        clients: [{
          client_id: clientId,
          client_secret: clientSecret,
          redirect_uris: [redirectUri],
        }],
        jwks: { keys: [jwk] },
        findAccount: (_ctx: unknown, sub: string) => ({
          accountId: sub,
          claims: () => ({ sub, ...accounts[sub] }),
        }),
        claims: {
          openid: ["sub"],
          email: ["email", "email_verified"],
          profile: ["name", "preferred_username"],
          groups: ["groups"],
        },
        scopes: ["openid", "email", "profile", "groups"],
        features: { devInteractions: { enabled: true } },
        pkce: { required: () => true },
        cookies: { keys: ["test-cookie-key-0123456789"] },
        // Explicit lifetimes: the defaults print a NOTICE each, noise in the test output.
        ttl: {
          AccessToken: 600,
          AuthorizationCode: 60,
          Grant: 3600,
          IdToken: 600,
          Interaction: 600,
          Session: 3600,
        },
      });
    },
    sign: (payload) =>
      new SignJWT(payload).setProtectedHeader({ alg: "RS256", kid: "test-key" }).sign(privateKey),
    async close() {
      for (const res of hung) res.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The `login.providers[]` entry of a test IdP. */
export function oidcProviderConfig(idp: TestIdp, extra: Record<string, unknown> = {}) {
  return {
    id: "corp",
    type: "oidc",
    name: "Corp SSO",
    issuer: idp.issuer,
    clientId: idp.clientId,
    clientSecret: idp.clientSecret,
    scopes: ["openid", "email", "profile", "groups"],
    groupsClaim: "groups",
    ...extra,
  };
}
