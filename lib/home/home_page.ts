/**
 * `GET /` (the `service_documentation` of the authorization server metadata, RFC 8414 §2): what
 * this service is, the URLs to paste into each client, and the public status of each backend.
 * One document, rendered as JSON or HTML. Nothing secret, no backend URL.
 */
import type { GatewayConfig } from "../config.ts";
import { escapeHtml } from "../infra/http.ts";
import { layout } from "../oauth/consent_page.ts";
import type { BackendStatus } from "./backend_status.ts";
import { type ClientInstructions, connectionGuide } from "./client_guide.ts";

/** What `GET /` says, as JSON (`Accept: application/json`) and as the HTML page. */
export interface HomeDocument {
  name: string;
  description: string;
  version: string;
  /** The aggregated endpoint: every backend behind one URL. */
  mcp: string;
  backends: {
    name: string;
    url: string;
    description?: string;
    status: "up" | "down" | "unknown";
    /** ISO time of the last probe. */
    checkedAt?: string;
  }[];
  /** RFC 8414 metadata, for clients and people who want the details. */
  authorizationServerMetadata: string;
  clients: ClientInstructions[];
  /** `PUBLIC_URL` is a loopback address: claude.ai and ChatGPT need a tunnel. */
  loopbackOnly: boolean;
}

const DESCRIPTION = "An MCP gateway: several MCP servers behind one authenticated URL. " +
  "Clients sign in with OAuth 2.1 (discovered from the first 401) or use an API key.";

/** Builds the document from the public URL, the config and the cached probe results. */
export function homeDocument(
  publicUrl: string,
  config: GatewayConfig,
  statuses: BackendStatus[],
  version: string,
): HomeDocument {
  const guide = connectionGuide(publicUrl, config);
  const byName = new Map(statuses.map((s) => [s.backend.name, s]));
  return {
    name: config.serverName,
    description: DESCRIPTION,
    version,
    mcp: guide.mcpUrl,
    backends: guide.backends.map((b) => {
      const s = byName.get(b.name);
      return {
        ...b,
        status: s?.health?.status ?? "unknown",
        ...(s?.checkedAt !== undefined ? { checkedAt: new Date(s.checkedAt).toISOString() } : {}),
      };
    }),
    authorizationServerMetadata: `${publicUrl}/.well-known/oauth-authorization-server`,
    clients: guide.clients,
    loopbackOnly: guide.loopbackOnly,
  };
}

const PAGE_STYLE = `<style>
main{max-width:760px}
.url{display:block;font:600 1.1rem ui-monospace,SFMono-Regular,Menlo,monospace;
  background:#eef2ff;color:#1e3a8a;border-radius:8px;padding:8px 12px;margin:6px 0;
  word-break:break-all}
h2{font-size:1.05rem;margin:24px 0 6px}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e5e7eb;vertical-align:top}
td code{word-break:break-all}
.up{color:#166534;font-weight:600}.down{color:#991b1b;font-weight:600}
.unknown{color:#6b7280}
pre{background:#f9fafb;border:1px solid #e5e7eb;border-radius:8px;padding:8px 12px;
  overflow-x:auto;font-size:.85rem;margin:6px 0}
section.howto{margin:14px 0}
h3{font-size:.95rem;margin:0 0 4px}
section.howto p{margin:4px 0}
</style>`;

function clientSection(c: ClientInstructions, loopbackOnly: boolean): string {
  const unreachable = c.needsPublicUrl && loopbackOnly
    ? `<p class="warning">${
      escapeHtml(c.name)
    } connects from its own servers: it cannot reach this localhost address. Expose the gateway ` +
      "through an https tunnel and set PUBLIC_URL to the tunnel's address (see the README).</p>"
    : "";
  const file = c.snippetFile
    ? `<p class="note">In <code>${escapeHtml(c.snippetFile)}</code>:</p>`
    : "";
  const snippet = c.snippet ? `${file}<pre><code>${escapeHtml(c.snippet)}</code></pre>` : "";
  return `<section class="howto" id="${escapeHtml(c.id)}"><h3>${escapeHtml(c.name)}</h3>` +
    `<p>${escapeHtml(c.steps)}</p>${snippet}${unreachable}</section>`;
}

/** The HTML page of {@linkcode HomeDocument} (every value escaped). */
export function renderHomePage(doc: HomeDocument): string {
  const rows = doc.backends.map((b) =>
    `<tr><td>${escapeHtml(b.name)}</td><td><code>${escapeHtml(b.url)}</code>${
      b.description ? `<span class="fine">${escapeHtml(b.description)}</span>` : ""
    }</td><td class="${b.status}">${b.status}</td></tr>`
  ).join("");
  const body = `${PAGE_STYLE}
<h1>${escapeHtml(doc.name)}</h1>
<p class="sub">${escapeHtml(doc.description)}</p>
<h2>The URL to add to your MCP client</h2>
<code class="url">${escapeHtml(doc.mcp)}</code>
<p class="note">Every backend at once, after one sign-in. Each backend also has its own URL:</p>
<table><thead><tr><th>backend</th><th>URL</th><th>status</th></tr></thead>
<tbody>${rows}</tbody></table>
<h2>Connecting a client</h2>
${doc.clients.map((c) => clientSection(c, doc.loopbackOnly)).join("\n")}
<p class="note">Version ${escapeHtml(doc.version)} · <a href="${
    escapeHtml(doc.authorizationServerMetadata)
  }">authorization server metadata</a> · this page as JSON: <code>Accept: application/json</code></p>`;
  return layout(doc.name, body);
}
