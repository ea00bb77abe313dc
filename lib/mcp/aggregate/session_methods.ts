/**
 * The session methods of a 2025-era client on the aggregated `/mcp`:
 * `resources/subscribe` / `resources/unsubscribe` (MCP 2025-11-25 Server/Resources
 * §Subscriptions), routed by the gateway URI to the owning backend (subscriptions.ts), and
 * `logging/setLevel` (Server/Utilities/Logging), fanned out to the backends of the session's
 * scope (relay_hub.ts). 2026-07-28 removed these methods (its clients use `subscriptions/listen`
 * and a per-request `logLevel`), so they exist only on the legacy leg, where a session is known.
 */
import {
  ProtocolError,
  ProtocolErrorCode,
  type Server,
  type ServerCapabilities,
} from "@modelcontextprotocol/server";
import type { BackendConfig } from "../../config.ts";
import { backendRules } from "../curation.ts";
import { isLogLevel } from "./log_relay.ts";
import type { RelayHub, RelaySession } from "./relay_hub.ts";
import { unwrapUri } from "./uri.ts";

/** What the session methods need to know about their request. */
export interface SessionMethodsRequest {
  backends: readonly BackendConfig[];
  session?: RelaySession;
}

/** Registers the session methods on a per-request server (when it has a session). */
export function registerSessionMethods(
  server: Server,
  hub: RelayHub,
  request: SessionMethodsRequest,
  caps: ServerCapabilities,
): void {
  const session = request.session;
  if (!session) return;
  const route = (uri: string) => {
    const target = unwrapUri(uri);
    const owner = target && request.backends.find((b) => b.name === target.backend);
    // A resource curation denies (config `resources`) cannot be subscribed either.
    if (!target || !owner || !backendRules(owner).resourceAllowed(target.uri)) {
      throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Resource not found: ${uri}`);
    }
    return target;
  };
  if (caps.resources?.subscribe) {
    server.setRequestHandler("resources/subscribe", async (req) => {
      await hub.subscriptions.subscribe(session, req.params.uri, route(req.params.uri));
      return {};
    });
    server.setRequestHandler("resources/unsubscribe", async (req) => {
      const target = unwrapUri(req.params.uri);
      if (target) await hub.subscriptions.unsubscribe(session, req.params.uri, target);
      return {};
    });
  }
  if (caps.logging) {
    server.setRequestHandler("logging/setLevel", async (req) => {
      const level = req.params.level;
      if (!isLogLevel(level)) {
        throw new ProtocolError(ProtocolErrorCode.InvalidParams, "Invalid log level");
      }
      await hub.setLevel(session, level, request.backends);
      return {};
    });
  }
}
