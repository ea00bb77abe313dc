/**
 * Token fixture: issues real access tokens straight through `lib/oauth/tokens.ts` (`putGrant` +
 * `mintTokens` in one atomic commit), without going through `/authorize` and `/token`.
 */
import type { Deps } from "../lib/deps.ts";
import { mintTokens, putGrant } from "../lib/oauth/tokens.ts";

/** What to issue: `resource` is the audience URL (e.g. `${gateway.url}/mcp/alpha`). */
export interface IssueOptions {
  scope: string;
  resource: string;
  clientId?: string;
  /** Per-user tool globs carried by the grant and its tokens (`GrantRecord.tools`). */
  tools?: string[];
}

/** Stores a grant and mints its tokens; returns the clear access token and the grant id. */
export async function issueAccessToken(
  deps: Deps,
  { scope, resource, clientId = "test-client", tools }: IssueOptions,
): Promise<{ accessToken: string; refreshToken: string; grantId: string }> {
  const now = deps.now();
  const grantId = crypto.randomUUID();
  const grant = {
    grantId,
    clientId,
    scope,
    resource,
    createdAt: now,
    expiresAt: now + deps.config.refreshTokenTtlSeconds * 1000,
    ...(tools ? { tools } : {}),
  };
  const op = deps.kv.atomic();
  putGrant(deps, op, grant);
  const minted = await mintTokens(deps, op, grant);
  const result = await op.commit();
  if (!result.ok) throw new Error("issueAccessToken: commit failed");
  return { accessToken: minted.accessToken, refreshToken: minted.refreshToken, grantId };
}
