/** Names for the naming suites. */

/**
 * Two tool names whose SHA-256 share the first 10 hex digits (a 40-bit clash, found by searching
 * about a million candidates) and their first 62 characters: in any backend they shorten to one
 * exposed name (lib/mcp/aggregate/naming.ts keeps at most 49 characters of the name).
 */
export const CLASHING = [
  "search_repositories_by_topic_language_and_star_count_variant_34615",
  "search_repositories_by_topic_language_and_star_count_variant_971256",
] as const;
