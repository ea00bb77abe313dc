/**
 * How to connect each MCP client to this gateway: the data behind `GET /` (HTML and JSON) and
 * the README's "Connecting clients". Only public facts: the gateway's own URLs, never a backend's
 * URL, a credential or a secret.
 */
import type { GatewayConfig } from "../config.ts";
import { isLoopbackHost } from "../oauth/redirect_uri.ts";

/** How one client connects. */
export interface ClientInstructions {
  id: "claude" | "claude-code" | "chatgpt" | "cursor" | "vscode" | "inspector";
  name: string;
  /** What to do, in one or two sentences. */
  steps: string;
  /** Text to paste (a command or a config file), when there is one. */
  snippet?: string;
  /** Where the snippet goes (a file), when it is a file. */
  snippetFile?: string;
  /** The client connects from its vendor's servers: it cannot reach a loopback URL. */
  needsPublicUrl: boolean;
}

/** The connection facts of this gateway. */
export interface ConnectionGuide {
  /** `<PUBLIC_URL>/mcp`: every backend behind one URL. */
  mcpUrl: string;
  /** `<PUBLIC_URL>/mcp/<name>`: one backend, passed through. */
  backends: { name: string; url: string; description?: string }[];
  clients: ClientInstructions[];
  /** `PUBLIC_URL` is a loopback address: web clients need a tunnel (README). */
  loopbackOnly: boolean;
}

/** Builds the connection guide for `publicUrl` and the configured backends. */
export function connectionGuide(publicUrl: string, config: GatewayConfig): ConnectionGuide {
  const mcpUrl = `${publicUrl}/mcp`;
  const name = "gateway";
  const clients: ClientInstructions[] = [
    {
      id: "claude",
      name: "Claude (claude.ai and Claude Desktop)",
      steps: "Settings → Connectors → Add custom connector, paste the URL, then Connect: " +
        "sign in and approve on this gateway's consent page.",
      needsPublicUrl: true,
    },
    {
      id: "claude-code",
      name: "Claude Code",
      steps: "Add the server, then run /mcp in Claude Code and choose it to sign in.",
      snippet: `claude mcp add --transport http ${name} ${mcpUrl}`,
      needsPublicUrl: false,
    },
    {
      id: "chatgpt",
      name: "ChatGPT",
      steps: "Settings → Apps & Connectors → Advanced settings: turn on Developer mode; then " +
        "Create a connector with the URL and OAuth authentication.",
      needsPublicUrl: true,
    },
    {
      id: "cursor",
      name: "Cursor",
      steps: "Add the server to Cursor's MCP config; Cursor opens the sign-in when it connects.",
      snippetFile: "~/.cursor/mcp.json",
      snippet: JSON.stringify({ mcpServers: { [name]: { url: mcpUrl } } }, null, 2),
      needsPublicUrl: false,
    },
    {
      id: "vscode",
      name: "VS Code",
      steps: "Add the server to the workspace's MCP config and start it from there; VS Code " +
        "opens the sign-in.",
      snippetFile: ".vscode/mcp.json",
      snippet: JSON.stringify({ servers: { [name]: { type: "http", url: mcpUrl } } }, null, 2),
      needsPublicUrl: false,
    },
    {
      id: "inspector",
      name: "MCP Inspector",
      steps: "Needs Node.js 22.19 or newer (an older Node silently runs an old Inspector). " +
        "Connect, then follow the OAuth sign-in; with an API key, add " +
        '--header "Authorization: Bearer <key>".',
      snippet: `npx @modelcontextprotocol/inspector --transport http --server-url ${mcpUrl}`,
      needsPublicUrl: false,
    },
  ];
  return {
    mcpUrl,
    backends: config.backends.map((b) => ({
      name: b.name,
      url: `${mcpUrl}/${b.name}`,
      ...(b.description ? { description: b.description } : {}),
    })),
    clients,
    loopbackOnly: isLoopbackHost(new URL(publicUrl).hostname),
  };
}
