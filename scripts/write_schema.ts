/** Writes gateway.config.schema.json from the zod schema (`deno task schema`). */
import { z } from "zod";
import { configSchema } from "../lib/config.ts";

/** The JSON Schema text published for editors. */
export function configJsonSchema(): string {
  const schema = z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" });
  return JSON.stringify({ title: "MCP edge gateway configuration", ...schema }, null, 2) + "\n";
}

if (import.meta.main) {
  await Deno.writeTextFile("gateway.config.schema.json", configJsonSchema());
  console.log("wrote gateway.config.schema.json");
}
