/**
 * Errors that stop the start, and how they are shown: one line per problem (`<file>: <field>:
 * <message>` for the config file, `<VARIABLE>: <message>` for the environment), no stack trace.
 */
import { ConfigError } from "../config.ts";

/** An environment variable cannot be used; the message starts with the variable's name. */
export class SettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SettingsError";
  }
}

/**
 * The lines to print for an error that stopped the start, or `undefined` when it is not a
 * config or settings problem (a bug: let it surface with its stack).
 */
export function startupErrorLines(error: unknown): string[] | undefined {
  if (error instanceof ConfigError) return error.problems.map((p) => `error: ${p}`);
  if (error instanceof SettingsError) return [`error: ${error.message}`];
  if (error instanceof AggregateError) {
    const parts = error.errors.map(startupErrorLines);
    return parts.every((p) => p !== undefined) ? parts.flat() as string[] : undefined;
  }
  return undefined;
}

/**
 * Prints a start-up error's lines to stderr and exits with code 1; an error that is not a
 * config or settings problem is rethrown (with its stack: it is a bug).
 */
export function exitOnStartupError(error: unknown): never {
  const lines = startupErrorLines(error);
  if (!lines) throw error;
  for (const line of lines) console.error(line);
  Deno.exit(1);
}
