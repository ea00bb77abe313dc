/**
 * Two gateway instances behind one URL, as two isolates of a deployment: one KV database (a temp
 * file both open), each with its own backend connections, caches and relay state; they reach each
 * other only through KV and BroadcastChannel, like isolates do. A front server on a real loopback
 * port hands every request to the instance `route` picks, so a test decides which instance serves
 * which request (e.g. a client's answer at the other instance than the call waiting for it).
 */
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { createHandler } from "../main.ts";
import { makeDeps } from "./_helpers.ts";

type TestDeps = Awaited<ReturnType<typeof makeDeps>>;

/** Picks the instance (0 or 1) of a request; `body` is its parsed JSON body, if any. */
export type Route = (req: Request, body: unknown) => 0 | 1;

/** Two running instances. */
export interface InstancePair {
  url: string;
  deps: [TestDeps, TestDeps];
  /** Requests each instance served, in order (`method` and JSON-RPC method or "-"). */
  served: [string[], string[]];
  close: () => Promise<void>;
}

/** Starts two instances with `config` behind one front; `route` picks per request. */
export async function serveInstancePair(
  config: Record<string, unknown>,
  route: Route,
): Promise<InstancePair> {
  const dir = await Deno.makeTempDir({ prefix: "gateway-pair-" });
  const kvPath = `${dir}/gateway.kv`;
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const url = `http://127.0.0.1:${port}`;
  const env = { PUBLIC_URL: url };
  const deps: [TestDeps, TestDeps] = [
    await makeDeps({ config, kvPath, env }),
    await makeDeps({ config, kvPath, env }),
  ];
  const handlers = deps.map((d) => createHandler(d));
  const served: [string[], string[]] = [[], []];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port, onListen: () => {} },
    async (req, info) => {
      let body: unknown;
      if (req.method === "POST") {
        try {
          body = await req.clone().json();
        } catch {
          body = undefined;
        }
      }
      const i = route(req, body);
      const method = body && typeof body === "object" && "method" in body
        ? String(body.method)
        : "-";
      served[i].push(`${req.method} ${method}`);
      return await handlers[i]!(req, info);
    },
  );
  return {
    url,
    deps,
    served,
    close: async () => {
      for (const d of deps) await closeAggregate(d);
      await server.shutdown();
      for (const d of deps) d.kv.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Whether `body` is a JSON-RPC response (a client's answer to the gateway's request). */
export const isAnswer = (body: unknown): boolean =>
  !!body && typeof body === "object" && !("method" in body) && "id" in body;
