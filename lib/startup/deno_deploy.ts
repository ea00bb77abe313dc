/**
 * What the start needs to know about Deno Deploy (today's platform), from its reference
 * "Environment Variables and Contexts": the variables it predefines, and the variable names it
 * refuses to store (so a deployment can never receive them).
 */

/** Whether this process runs on Deno Deploy: the platform sets `DENO_DEPLOYMENT_ID`. */
export function onDenoDeploy(env: (name: string) => string | undefined): boolean {
  return Boolean(env("DENO_DEPLOYMENT_ID"));
}

/**
 * The URL Deno Deploy gives an app's production timeline, `https://<app>.<org>.deno.net`. A
 * running app gets the slugs as `DENO_DEPLOY_APPLICATION_SLUG` and
 * `DENO_DEPLOY_ORGANIZATION_SLUG`; a build gets them as `DENO_DEPLOY_APP_SLUG` and
 * `DENO_DEPLOY_ORG_SLUG`. Both are read; `<app>`/`<org>` stand in for a missing one.
 */
export function deployProductionUrl(env: (name: string) => string | undefined): string {
  const app = env("DENO_DEPLOY_APPLICATION_SLUG") || env("DENO_DEPLOY_APP_SLUG") || "<app>";
  const org = env("DENO_DEPLOY_ORGANIZATION_SLUG") || env("DENO_DEPLOY_ORG_SLUG") || "<org>";
  return `https://${app}.${org}.deno.net`;
}

/** The `DENO_` variables Deno Deploy lets an app set; every other `DENO_` name is refused. */
const ALLOWED_DENO_NAMES = new Set([
  "DENO_AUTH_TOKENS",
  "DENO_COMPAT",
  "DENO_CONDITIONS",
  "DENO_DEPLOY_ENDPOINT",
  "DENO_DEPLOY_TOKEN",
]);

/** Names Deno Deploy keeps for its Cloud Connections. */
const CLOUD_CONNECTION_NAMES = new Set([
  "AWS_ROLE_ARN",
  "AWS_WEB_IDENTITY_TOKEN_FILE",
  "GCP_WORKLOAD_PROVIDER_ID",
  "GCP_SERVICE_ACCOUNT_EMAIL",
  "GCP_PROJECT_ID",
  "AZURE_CLIENT_ID",
  "AZURE_TENANT_ID",
  "AZURE_FEDERATED_TOKEN_FILE",
]);

/**
 * Why Deno Deploy refuses an environment variable of this name, or `undefined` when it accepts
 * it: names over 128 bytes, names starting with `DENO_` (but for five), `LD_` or `OTEL_`, and
 * the Cloud Connection names.
 */
export function refusedOnDeploy(name: string): string | undefined {
  if (new TextEncoder().encode(name).byteLength > 128) return "names are at most 128 bytes";
  if (name.startsWith("DENO_") && !ALLOWED_DENO_NAMES.has(name)) {
    return "names starting with DENO_ are reserved to the platform";
  }
  for (const prefix of ["LD_", "OTEL_"]) {
    if (name.startsWith(prefix)) return `names starting with ${prefix} are reserved`;
  }
  if (CLOUD_CONNECTION_NAMES.has(name)) return "the name is reserved for Cloud Connections";
  return undefined;
}
