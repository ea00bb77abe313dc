/**
 * A real OAuth-protected MCP backend for the per-user credential suites ("notes"):
 *
 * - its authorization server: panva's `oidc-provider` on `127.0.0.1:<port 0>` with resource
 *   indicators (RFC 8707) issuing JWT access tokens (RFC 9068) for the backend's URL, refresh
 *   tokens that rotate, dynamic registration (RFC 7591), revocation (RFC 7009), PKCE required,
 *   and optionally Client ID Metadata Documents (fetched through `cimdFetch`);
 * - the backend: the official MCP SDK (`createMcpHandler`, both eras) behind bearer validation
 *   of those JWTs with jose (the provider's JWKS, `iss`, `aud` = the backend, `typ` at+jwt),
 *   serving its own RFC 9728 metadata and a 401 `WWW-Authenticate` naming it. Its tools act on
 *   the account the token was issued for: `whoami`, `note_add`, `notes`; resource `notes://mine`;
 *   prompt `recap`.
 *
 * `revokeAll()` makes the backend refuse every token it has seen (revoked at its side); `down`
 * makes the authorization server answer 503; `seen` lists the requests it received.
 */
import { createServer, type ServerResponse } from "node:http";
import Provider from "oidc-provider";
import { createMcpHandler, McpServer } from "@modelcontextprotocol/server";
import { createRemoteJWKSet, exportJWK, generateKeyPair, jwtVerify } from "jose";
import { z } from "zod";

/** A running notes backend and its authorization server. */
export interface NotesBackend {
  /** The MCP endpoint. */
  url: string;
  /** The authorization server's issuer. */
  issuer: string;
  /** What the authorization server saw: "METHOD /path", and "grant <type>[ error <code>]". */
  seen: string[];
  /** Calls the backend served: the account (`sub`) and the token's `jti`, in order. */
  calls: { sub: string; jti: string }[];
  /** Requests the backend refused with 401. */
  refused: number;
  /** Tokens the backend refuses from now on (revoked at its side). */
  revokeAll(): void;
  /** While true, the authorization server answers 503 to everything. */
  down: boolean;
  /** Paths of the authorization server left unanswered until `close`. */
  hang: Set<string>;
  close(): Promise<void>;
}

/** Options of {@linkcode startNotesBackend}. */
export interface NotesBackendOptions {
  /** Access-token lifetime in seconds (default 300). */
  accessTokenTtl?: number;
  /** Advertise and accept Client ID Metadata Documents. */
  cimd?: boolean;
  /** Whether a metadata-document client is accepted on `route` (default: everywhere). */
  cimdAllowed?: (route: string) => boolean;
  /** The `fetch` the provider uses for metadata documents (e.g. to reach an in-process gateway). */
  cimdFetch?: (url: string | URL, init?: RequestInit) => Promise<Response>;
  /** Clients registered by hand. */
  clients?: Record<string, unknown>[];
  /** Leave `resource_metadata` out of the 401 (clients then try the well-known URIs). */
  quiet401?: boolean;
}

const SCOPES = "notes:read notes:write";

function notesServer(sub: string, notes: Map<string, string[]>): McpServer {
  const server = new McpServer({ name: "notes", version: "1.0.0" });
  const mine = () => notes.get(sub) ?? [];
  const text = (t: string) => ({ content: [{ type: "text" as const, text: t }] });
  server.registerTool(
    "whoami",
    { description: "The account you act as" },
    () => text(`account:${sub}`),
  );
  server.registerTool(
    "note_add",
    { description: "Adds a note", inputSchema: z.object({ text: z.string() }) },
    ({ text: t }) => {
      notes.set(sub, [...mine(), t]);
      return text(`added for ${sub}`);
    },
  );
  server.registerTool("notes", { description: "Your notes" }, () => text(mine().join("\n")));
  server.registerResource(
    "mine",
    "notes://mine",
    { mimeType: "text/plain" },
    (uri) => ({ contents: [{ uri: uri.href, text: `${sub}: ${mine().join(", ")}` }] }),
  );
  server.registerPrompt(
    "recap",
    { description: "Recap of your notes" },
    () => ({
      messages: [{ role: "user", content: { type: "text", text: `Notes of ${sub}` } }],
    }),
  );
  return server;
}

/** Starts the authorization server and the backend. */
export async function startNotesBackend(options: NotesBackendOptions = {}): Promise<NotesBackend> {
  const asServer = createServer();
  await new Promise<void>((resolve) => asServer.listen(0, "127.0.0.1", () => resolve()));
  const issuer = `http://127.0.0.1:${(asServer.address() as { port: number }).port}`;
  const seen: string[] = [];
  const hung: ServerResponse[] = [];
  const hang = new Set<string>();
  const notes = new Map<string, string[]>();
  const calls: { sub: string; jti: string }[] = [];
  const revoked = new Set<string>();
  const state = { down: false, refused: 0 };

  const mcp = createMcpHandler((ctx) => {
    const extra = ctx.authInfo?.extra as { sub: string };
    return notesServer(extra.sub, notes);
  }, { keepAliveMs: 0 });
  const http: Deno.HttpServer<Deno.NetAddr> = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: () => {},
  }, async (req): Promise<Response> => {
    const path = new URL(req.url).pathname;
    if (path.startsWith("/.well-known/oauth-protected-resource")) {
      return Response.json({
        resource: url,
        authorization_servers: [issuer],
        scopes_supported: SCOPES.split(" "),
        bearer_methods_supported: ["header"],
      });
    }
    if (path !== "/mcp") return new Response("not found", { status: 404 });
    const challenge = (error?: string): Response => {
      state.refused++;
      const parts = [
        ...(options.quiet401 ? [] : [`resource_metadata="${metadataUrl}"`]),
        `scope="${SCOPES}"`,
        ...(error ? [`error="${error}"`] : []),
      ];
      return new Response(JSON.stringify({ error: error ?? "unauthorized" }), {
        status: 401,
        headers: { "www-authenticate": `Bearer ${parts.join(", ")}` },
      });
    };
    const token = /^Bearer (.+)$/.exec(req.headers.get("authorization") ?? "")?.[1];
    if (!token) return challenge();
    let sub: string, jti: string;
    try {
      const { payload } = await jwtVerify(token, jwks, {
        issuer,
        audience: url,
        typ: "at+jwt",
      });
      sub = String(payload.sub);
      jti = String(payload.jti);
    } catch {
      return challenge("invalid_token");
    }
    if (revoked.has(jti)) return challenge("invalid_token");
    calls.push({ sub, jti });
    return await mcp.fetch(req, {
      authInfo: { token: "", clientId: "", scopes: [], extra: { sub } },
    });
  });
  const url: string = `http://127.0.0.1:${http.addr.port}/mcp`;
  const metadataUrl: string =
    `http://127.0.0.1:${http.addr.port}/.well-known/oauth-protected-resource/mcp`;

  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const jwk = { ...await exportJWK(privateKey), kid: "notes-key", alg: "RS256", use: "sig" };
  const jwks = createRemoteJWKSet(new URL(`${issuer}/jwks`));
  const provider = new Provider(issuer, {
    clients: options.clients ?? [],
    jwks: { keys: [jwk] },
    findAccount: (_ctx: unknown, sub: string) => ({ accountId: sub, claims: () => ({ sub }) }),
    features: {
      devInteractions: { enabled: true },
      registration: { enabled: true },
      revocation: { enabled: true, allowedPolicy: () => true },
      clientIdMetadataDocument: {
        enabled: options.cimd === true,
        allowClient: (ctx: any) => options.cimdAllowed?.(String(ctx?.oidc?.route)) ?? true,
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => url,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx: unknown, resource: string) => {
          if (resource !== url) throw new Error(`unknown resource ${resource}`);
          return {
            scope: SCOPES,
            audience: url,
            accessTokenTTL: options.accessTokenTtl ?? 300,
            accessTokenFormat: "jwt",
            jwt: { sign: { alg: "RS256" } },
          };
        },
      },
    },
    ...(options.cimdFetch ? { fetch: options.cimdFetch } : {}),
    issueRefreshToken: (_ctx: unknown, client: { grantTypeAllowed(t: string): boolean }) =>
      client.grantTypeAllowed("refresh_token"),
    rotateRefreshToken: true,
    pkce: { required: () => true },
    ttl: {
      AccessToken: options.accessTokenTtl ?? 300,
      Grant: 86_400,
      IdToken: 600,
      Interaction: 600,
      RefreshToken: 86_400,
      Session: 86_400,
    },
    cookies: {
      keys: ["notes-cookie-key-0123456789"],
      names: {
        session: "_notes_session",
        interaction: "_notes_interaction",
        resume: "_notes_resume",
      },
    },
  });
  const grantType = (ctx: any) => String(ctx.oidc?.params?.grant_type ?? "");
  provider.on("grant.success", (ctx: any) => seen.push(`grant ${grantType(ctx)}`));
  provider.on(
    "grant.error",
    (ctx: any, error: any) => seen.push(`grant ${grantType(ctx)} error ${error?.error}`),
  );
  const callback = provider.callback();
  asServer.on("request", (req, res) => {
    const path = new URL(req.url ?? "/", issuer).pathname;
    seen.push(`${req.method} ${path}`);
    if (hang.has(path)) return void hung.push(res);
    if (state.down) {
      res.writeHead(503, { "content-type": "text/plain" });
      return void res.end("down");
    }
    callback(req, res);
  });

  return {
    url,
    issuer,
    seen,
    calls,
    get refused() {
      return state.refused;
    },
    revokeAll() {
      for (const c of calls) revoked.add(c.jti);
    },
    get down() {
      return state.down;
    },
    set down(value: boolean) {
      state.down = value;
    },
    hang,
    async close() {
      for (const res of hung) res.destroy();
      await mcp.close();
      await http.shutdown();
      await new Promise<void>((resolve) => asServer.close(() => resolve()));
    },
  };
}
