/**
 * The clients the gateway knows, for the operator: pre-registered (config `clients`),
 * dynamically registered (RFC 7591, `["client", id]`), and those identified by a Client ID
 * Metadata Document that hold grants (`["cimd", url]` while cached).
 */
import { cimdKey } from "../oauth/client_id_metadata.ts";
import { clientKey, type ClientRecord, getLive, type GrantRecord } from "../store.ts";
import { type AdminDeps, iso } from "./admin_deps.ts";

/** One client, as `clients list --json` prints it. */
export interface ClientView {
  clientId: string;
  clientName: string | null;
  kind: "preregistered" | "registered" | "metadata_document";
  redirectUris: string[];
  /** Registration time (`client_id_issued_at`); `null` for config and metadata-document clients. */
  createdAt: string | null;
  /** Registered clients: last use (refreshed at most daily). */
  lastUsedAt: string | null;
  /** Live grants of this client. */
  grants: number;
}

const isUrl = (id: string) => id.startsWith("https://") || id.startsWith("http://");

/**
 * A display name per client id, looked up once per id: the config's `clientName`, the
 * registered record's, or the metadata document's (its host when it names none); `null` when
 * the client is unknown (e.g. a registration that expired).
 */
export function clientNameLookup(deps: AdminDeps): (clientId: string) => Promise<string | null> {
  const cache = new Map<string, Promise<string | null>>();
  const lookup = async (clientId: string): Promise<string | null> => {
    const configured = deps.config?.clients.find((c) => c.clientId === clientId);
    if (configured) return configured.clientName ?? null;
    const registered = (await deps.kv.get<ClientRecord>(clientKey(clientId))).value;
    if (registered) return registered.clientName ?? null;
    if (!isUrl(clientId)) return null;
    const doc = await getLive<{ client: ClientRecord; expiresAt: number }>(
      deps.kv,
      cimdKey(clientId),
      deps.now(),
    );
    return doc?.value.client.clientName ?? new URL(clientId).host;
  };
  return (clientId) => {
    let name = cache.get(clientId);
    if (!name) cache.set(clientId, name = lookup(clientId));
    return name;
  };
}

/** Live grants per client id (one scan of `["grant"]`). */
async function grantsPerClient(deps: AdminDeps): Promise<Map<string, number>> {
  const now = deps.now();
  const counts = new Map<string, number>();
  for await (const entry of deps.kv.list<GrantRecord>({ prefix: ["grant"] })) {
    if (entry.value.expiresAt <= now) continue;
    counts.set(entry.value.clientId, (counts.get(entry.value.clientId) ?? 0) + 1);
  }
  return counts;
}

/** Every client: config ones first (config order), then registered ones, then by metadata document. */
export async function listClients(deps: AdminDeps): Promise<ClientView[]> {
  const grants = await grantsPerClient(deps);
  const out: ClientView[] = [];
  const seen = new Set<string>();
  for (const c of deps.config?.clients ?? []) {
    seen.add(c.clientId);
    out.push({
      clientId: c.clientId,
      clientName: c.clientName ?? null,
      kind: "preregistered",
      redirectUris: [...c.redirectUris],
      createdAt: null,
      lastUsedAt: null,
      grants: grants.get(c.clientId) ?? 0,
    });
  }
  for await (const entry of deps.kv.list<ClientRecord>({ prefix: ["client"] })) {
    const c = entry.value;
    if (seen.has(c.clientId)) continue;
    seen.add(c.clientId);
    out.push({
      clientId: c.clientId,
      clientName: c.clientName ?? null,
      kind: "registered",
      redirectUris: [...c.redirectUris],
      createdAt: c.clientIdIssuedAt ? iso(c.clientIdIssuedAt * 1000) : null,
      lastUsedAt: iso(c.lastUsedAt),
      grants: grants.get(c.clientId) ?? 0,
    });
  }
  const name = clientNameLookup(deps);
  for (const [clientId, count] of grants) {
    if (seen.has(clientId) || !isUrl(clientId)) continue;
    seen.add(clientId);
    out.push({
      clientId,
      clientName: await name(clientId),
      kind: "metadata_document",
      redirectUris: [],
      createdAt: null,
      lastUsedAt: null,
      grants: count,
    });
  }
  return out;
}
