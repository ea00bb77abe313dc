/**
 * Reversible rewriting of resource URIs (and URI templates) of the aggregated `/mcp` endpoint.
 *
 * Scheme: `mcpgw-<backend>+<original URI>`, e.g. `file:///notes.txt` of backend `alpha`
 * becomes `mcpgw-alpha+file:///notes.txt`. The prefix is a valid RFC 3986 §3.1 scheme prefix
 * (letters, digits, `-`, `+`), backend names are `[a-z0-9-]` and never contain `+`, so the
 * original URI is everything after the first `+`: the mapping is exact in both directions, two
 * backends with the same URI never collide, and a URI template keeps its `{variables}` (RFC 6570)
 * untouched, so a client expands `mcpgw-alpha+file:///{path}` into a URI that unwraps to the
 * backend's own expansion.
 */

const PREFIX = "mcpgw-";

/** The URI (or URI template) exposed for `uri` of `backend`. */
export function wrapUri(backend: string, uri: string): string {
  return `${PREFIX}${backend}+${uri}`;
}

/** The backend and original URI of an exposed URI, or `null` when it is not one of ours. */
export function unwrapUri(exposed: string): { backend: string; uri: string } | null {
  if (!exposed.toLowerCase().startsWith(PREFIX)) return null;
  const plus = exposed.indexOf("+", PREFIX.length);
  if (plus <= PREFIX.length) return null;
  const backend = exposed.slice(PREFIX.length, plus).toLowerCase();
  const uri = exposed.slice(plus + 1);
  if (uri === "") return null;
  return { backend, uri };
}

/**
 * Rewrites the URIs inside content blocks of a backend result (`resource_link` and embedded
 * `resource` blocks, MCP 2025-11-25 Server/Tools §Tool Result) so that a client can read them
 * back through the gateway.
 */
export function wrapContentUris<T>(backend: string, content: T): T {
  if (!Array.isArray(content)) return content;
  return content.map((block) => {
    if (!block || typeof block !== "object") return block;
    if (block.type === "resource_link" && typeof block.uri === "string") {
      return { ...block, uri: wrapUri(backend, block.uri) };
    }
    if (block.type === "resource" && block.resource && typeof block.resource.uri === "string") {
      return {
        ...block,
        resource: { ...block.resource, uri: wrapUri(backend, block.resource.uri) },
      };
    }
    return block;
  }) as T;
}
