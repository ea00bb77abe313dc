/**
 * HTML of the admin console built so that nothing goes out unescaped by mistake: the
 * {@linkcode html} template escapes every interpolated value (lib/infra/http.ts `escapeHtml`)
 * except fragments that {@linkcode html} itself produced. Arrays are joined; `null`,
 * `undefined` and `false` render nothing.
 */
import { escapeHtml } from "../../infra/http.ts";

/** A fragment of trusted HTML (only {@linkcode html} and {@linkcode trustedHtml} make one). */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

function render(value: unknown): string {
  if (value instanceof Html) return value.value;
  if (value === null || value === undefined || value === false) return "";
  if (Array.isArray(value)) return value.map(render).join("");
  return escapeHtml(String(value));
}

/** HTML whose interpolated values are escaped (text and attribute values alike). */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]!;
  return new Html(out);
}

/** Markup the console writes itself (its style sheet): never for a value from outside. */
export function trustedHtml(markup: string): Html {
  return new Html(markup);
}

/** A gateway URL `path` (under `PUBLIC_URL`) with the given query parameters (empty ones left out). */
export function consoleUrl(
  publicUrl: string,
  path: string,
  params: Record<string, string | number | undefined> = {},
): string {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== "") query.set(k, String(v));
  }
  const q = query.toString();
  return `${publicUrl}${path}${q ? `?${q}` : ""}`;
}

/** A time as the console shows it: ISO 8601 UTC to the second (`2026-07-01 12:00:05Z`), or "—". */
export function when(iso: string | null | undefined): string {
  if (!iso) return "—";
  return iso.replace("T", " ").replace(/\.\d+Z$/, "Z");
}
