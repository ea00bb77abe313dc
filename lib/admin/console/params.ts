/**
 * The query parameters of a console page, validated with zod at the boundary: a parameter given
 * twice, an unknown one or a bad value is refused with a message that names it (the page then
 * answers 400). Blank values (a form's empty fields) count as absent.
 */
import { z } from "zod";
import { uniqueParams } from "../../infra/http.ts";
import { OAuthError } from "../../oauth/oauth_error.ts";

/** A page number of a paged list (from 1). */
export const pageParam = z.coerce.number().int().min(1).max(1_000_000).optional();

/** The result of {@linkcode parseQuery}. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

/** The first problem of a failed parse, naming the parameter. */
function describe(error: z.ZodError): string {
  const issue = error.issues[0]!;
  if (issue.code === "unrecognized_keys") {
    return `unknown parameter ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
  }
  const name = issue.path.join(".");
  return name ? `"${name}": ${issue.message}` : issue.message;
}

/** Parses `params` with `schema` (a strict object of the page's parameters). */
export function parseQuery<T>(params: URLSearchParams, schema: z.ZodType<T>): Parsed<T> {
  let map;
  try {
    map = uniqueParams(params);
  } catch (e) {
    if (!(e instanceof OAuthError)) throw e;
    return { ok: false, message: e.message };
  }
  const raw = Object.fromEntries([...map].filter(([, v]) => v.trim() !== ""));
  const parsed = schema.safeParse(raw);
  return parsed.success
    ? { ok: true, value: parsed.data }
    : { ok: false, message: describe(parsed.error) };
}

/** Parses a form's fields (already read, CSRF-checked) with `schema`. */
export function parseForm<T>(form: Map<string, string>, schema: z.ZodType<T>): Parsed<T> {
  const parsed = schema.safeParse(Object.fromEntries(form));
  return parsed.success
    ? { ok: true, value: parsed.data }
    : { ok: false, message: describe(parsed.error) };
}
