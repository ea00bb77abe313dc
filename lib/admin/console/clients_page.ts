/**
 * The console's clients page: every client the gateway knows — pre-registered (config),
 * registered (RFC 7591) and identified by a metadata document — with its redirect URIs, when it
 * registered, when it was last used and how many live grants it holds (lib/admin/clients_view.ts,
 * as `deno task admin clients list`), paged.
 */
import { z } from "zod";
import type { ClientView } from "../clients_view.ts";
import { consoleUrl, html, when } from "./html.ts";
import {
  type Column,
  consolePage,
  filterLink,
  pageOf,
  pager,
  SECTIONS,
  table,
  type Viewer,
} from "./layout.ts";
import { pageParam } from "./params.ts";

/** The clients page's query parameters. */
export const clientsQuery = z.strictObject({ page: pageParam });

const KINDS: Record<ClientView["kind"], string> = {
  preregistered: "pre-registered",
  registered: "registered (RFC 7591)",
  metadata_document: "metadata document",
};

/** The clients page. */
export function clientsPage(viewer: Viewer, page: number, clients: ClientView[]): Response {
  const p = pageOf(clients, page);
  const columns: Column<ClientView>[] = [
    {
      label: "Client",
      cell: (c) => html`${c.clientName ?? ""}<div class="mono">${c.clientId}</div>`,
    },
    { label: "Kind", cell: (c) => KINDS[c.kind] },
    {
      label: "Redirect URIs",
      cell: (c) => html`${c.redirectUris.map((u) => html`<div class="mono">${u}</div>`)}`,
    },
    { label: "Registered", cell: (c) => when(c.createdAt), nowrap: true },
    { label: "Last used", cell: (c) => when(c.lastUsedAt), nowrap: true },
    {
      label: "Grants",
      cell: (c) =>
        c.grants === 0
          ? "0"
          : filterLink(viewer, "grants", { client: c.clientId }, String(c.grants)),
      numeric: true,
    },
  ];
  const link = (n: number) => consoleUrl(viewer.publicUrl, SECTIONS.clients.path, { page: n });
  const body = html`<h1>Clients</h1>
<p class="sub">Applications that may ask for consent. A registered client's last use is refreshed
at most once a day; a grant's last use is on the grants page.</p>
${table(columns, p.items, "No client yet.")}${pager(p, link)}`;
  return consolePage({ title: "Clients", section: "clients", viewer, body });
}
