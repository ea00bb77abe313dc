/**
 * Which URI schemes a redirect URI may use besides `https` and loopback `http`.
 *
 * RFC 8252 §7.1 (private-use URI scheme redirection): native apps use a scheme "based on a domain
 * name under their control, expressed in reverse order" (`com.example.app:/cb`), so a redirect
 * URI's scheme must contain a period — unless the operator allows it by name
 * (`allowedPrivateUseSchemes`; by default the schemes of MCP clients that use a bare name).
 *
 * Some schemes hand the URI to a program that does something else with it: run diagnostics
 * (`ms-msdt:`, CVE-2022-30190 "Follina"), search or browse a remote share (`search-ms:`,
 * `file:`), open a document from a URL (the `ms-word:` family), install a package
 * (`ms-appinstaller:`, `itms-services:`), open a URL in another browser outside the default
 * one (`microsoft-edge:`), or run script in the page (`javascript:`). After a consent, the
 * browser is sent to the redirect URI: such a scheme turns the gateway into a launcher for
 * that program. They are refused whatever the configuration says.
 * @module
 */

/** A URI scheme (RFC 3986 §3.1), lowercase, without the colon. */
export const PRIVATE_USE_SCHEME = /^[a-z][a-z0-9+.-]{0,63}$/;

/**
 * Private-use schemes without a period that real MCP clients register, allowed by default:
 * Cursor (`cursor://anysphere.cursor-retrieval/oauth/…/callback`), VS Code and VS Code
 * Insiders (`vscode://…`, `vscode-insiders://…`), Windsurf (`windsurf://…`).
 */
export const DEFAULT_ALLOWED_PRIVATE_USE_SCHEMES: readonly string[] = [
  "cursor",
  "vscode",
  "vscode-insiders",
  "windsurf",
];

/**
 * Schemes never accepted in a redirect URI: they run script, read local or remote files, or
 * hand the URI to a system program (lowercase, without the colon).
 */
export const DANGEROUS_SCHEMES: ReadonlySet<string> = new Set([
  // Script and content in the browser itself.
  "javascript",
  "vbscript",
  "data",
  "blob",
  "filesystem",
  "about",
  "view-source",
  "jar",
  "resource",
  "chrome",
  "chrome-extension",
  "moz-extension",
  "edge",
  "opera",
  // Files and network shares (NTLM hash leaks over SMB), other transfer protocols.
  "file",
  "smb",
  "nfs",
  "ftp",
  "ftps",
  "sftp",
  "ws",
  "wss",
  "ldap",
  "ldaps",
  "telnet",
  // Windows protocol handlers with a record of abuse.
  "ms-msdt", // CVE-2022-30190 "Follina"
  "search-ms", // MS08-075, 2022 search-ms phishing
  "search",
  "ms-search",
  "ms-officecmd", // 2021 Office URI RCE
  "ms-word",
  "ms-excel",
  "ms-powerpoint",
  "ms-visio",
  "ms-access",
  "ms-project",
  "ms-publisher",
  "ms-spd",
  "ms-infopath",
  "onenote",
  "ms-appinstaller", // disabled by Microsoft in 2023 after malware campaigns
  "ms-cxh",
  "ms-cxh-full",
  "ms-settings",
  "ms-windows-store",
  "ms-help",
  "ms-its",
  "its",
  "mk",
  "mhtml",
  "hcp", // CVE-2010-1885
  "shell",
  "res",
  "ms-rd",
  "rdp",
  "microsoft-edge", // opens any URL in Edge, bypassing the default browser
  "microsoft-edge-holographic",
  "ms-browser-extension",
  // macOS, iOS and Android handlers.
  "x-apple.systempreferences",
  "applescript",
  "help",
  "itms-services",
  "intent",
  "android-app",
  "content",
]);

/** Whether a scheme (with or without its colon, any case) is in {@linkcode DANGEROUS_SCHEMES}. */
export function isDangerousScheme(scheme: string): boolean {
  return DANGEROUS_SCHEMES.has(scheme.toLowerCase().replace(/:$/, ""));
}

/**
 * Why a private-use scheme (not http or https) may not be a redirect URI's scheme, or `null`
 * when it may: not dangerous, and containing a period (RFC 8252 §7.1) or allowed by name.
 */
export function privateUseSchemeProblem(
  scheme: string,
  allowed: readonly string[] = DEFAULT_ALLOWED_PRIVATE_USE_SCHEMES,
): string | null {
  const name = scheme.toLowerCase().replace(/:$/, "");
  if (isDangerousScheme(name)) {
    return `must not use the ${name}: scheme (it hands the URI to another program)`;
  }
  if (name.includes(".") || allowed.includes(name)) return null;
  return `uses the private-use scheme ${name}: without a period; RFC 8252 §7.1 asks for a ` +
    `reverse domain name (e.g. com.example.app:), or the operator allows it by name ` +
    `(allowedPrivateUseSchemes)`;
}
