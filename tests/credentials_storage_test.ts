/**
 * Storage of per-user backend credentials: `GATEWAY_ENCRYPTION_KEY` (required when a backend uses
 * per-user credentials; a missing or short key fails the start naming it), AES-GCM with the KV
 * row's key as additional data (a tampered or moved value is refused, deleted and logged), and
 * nothing stored or logged in clear. Also the `backends[].auth` config rules.
 */
import { parseConfig } from "../lib/config.ts";
import { requireEncryptionKey } from "../lib/credentials/auth_config.ts";
import { loadConnection, saveSecretConnection } from "../lib/credentials/connections.ts";
import {
  CredentialIntegrityError,
  parseEncryptionKey,
  seal,
  unseal,
} from "../lib/credentials/encryption.ts";
import { readSettings } from "../lib/deps.ts";
import { renderBanner } from "../lib/startup/banner.ts";
import { backendConnectionKey, type BackendConnectionRecord } from "../lib/store.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "./_assert.ts";
import { ENCRYPTION_KEY } from "./_credentials.ts";
import { makeDeps } from "./_helpers.ts";

const KEY_BYTES = Uint8Array.from({ length: 32 }, (_, i) => 255 - i);
const b64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));

/** Every byte stored in a KV, as text (to search it for secrets). */
async function dump(kv: Deno.Kv): Promise<string> {
  const decoder = new TextDecoder("latin1");
  let out = "";
  for await (const e of kv.list({ prefix: [] })) {
    out += JSON.stringify(e.key) +
      JSON.stringify(e.value, (_k, v) => v instanceof Uint8Array ? decoder.decode(v) : v);
  }
  return out;
}

Deno.test("GATEWAY_ENCRYPTION_KEY", async (t) => {
  await t.step("32 bytes in base64, standard or URL-safe, padded or not", async () => {
    for (
      const text of [
        b64(KEY_BYTES),
        b64(KEY_BYTES).replace(/=+$/, ""),
        b64(KEY_BYTES).replace(/\+/g, "-").replace(/\//g, "_"),
      ]
    ) {
      const key = await parseEncryptionKey(text);
      assertEquals(key.algorithm.name, "AES-GCM");
      assertEquals(key.extractable, false);
    }
  });

  await t.step("a short key or a non-base64 value is refused, naming the variable", async () => {
    await assertStringIncludes(
      (await assertRejects(() => parseEncryptionKey(b64(KEY_BYTES.slice(0, 16))), Error)).message,
      "GATEWAY_ENCRYPTION_KEY: must be 32 random bytes",
    );
    await assertStringIncludes(
      (await assertRejects(() => parseEncryptionKey("not base64!"), Error)).message,
      "GATEWAY_ENCRYPTION_KEY",
    );
    await assertStringIncludes(
      (await assertRejects(
        () => readSettings((n) => n === "GATEWAY_ENCRYPTION_KEY" ? "c2hvcnQ=" : undefined),
        Error,
      )).message,
      "decodes to 5 bytes",
    );
  });

  await t.step("required when a backend uses per-user credentials (checked at start)", async () => {
    const config = parseConfig({
      backends: [
        { name: "plain", url: "http://127.0.0.1:9/mcp" },
        { name: "notes", url: "http://127.0.0.1:9/mcp", auth: { type: "oauth" } },
      ],
    }, () => undefined);
    const error = (() => {
      try {
        requireEncryptionKey(config, {});
      } catch (e) {
        return e as Error;
      }
    })();
    assertMatch(error!.message, /^GATEWAY_ENCRYPTION_KEY: required because backend\(s\) notes use/);
    requireEncryptionKey(config, { encryptionKey: await parseEncryptionKey(ENCRYPTION_KEY) });
    requireEncryptionKey(
      parseConfig(
        { backends: [{ name: "plain", url: "http://127.0.0.1:9/mcp" }] },
        () => undefined,
      ),
      {},
    );
  });

  await t.step("the gateway does not start without it, and says why", async () => {
    const dir = await Deno.makeTempDir();
    try {
      const configPath = `${dir}/gateway.config.json`;
      await Deno.writeTextFile(
        configPath,
        JSON.stringify({
          backends: [{ name: "notes", url: "https://notes.example/mcp", auth: { type: "oauth" } }],
        }),
      );
      for (
        const [key, expected] of [[
          undefined,
          /GATEWAY_ENCRYPTION_KEY: required because backend\(s\) notes/,
        ], ["c2hvcnQ=", /GATEWAY_ENCRYPTION_KEY: must be 32 random bytes/]] as const
      ) {
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["run", "--allow-all", "main.ts"],
          env: {
            GATEWAY_CONFIG: configPath,
            KV_PATH: ":memory:",
            PORT: "0",
            ...(key ? { GATEWAY_ENCRYPTION_KEY: key } : {}),
            NO_COLOR: "1",
          },
          stdout: "piped",
          stderr: "piped",
        }).output();
        assertEquals(out.success, false);
        assertMatch(new TextDecoder().decode(out.stderr), expected);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("sealed values (AES-GCM, the KV key as additional data)", async (t) => {
  const key = await parseEncryptionKey(b64(KEY_BYTES));
  const row = ["backend_connection", "corp:ana", "notes"];

  await t.step("open with the same key and row", async () => {
    const sealed = await seal(key, row, { secret: "s3cr3t" });
    assertEquals(sealed.iv.length, 12);
    assertEquals(await unseal(key, row, sealed), { secret: "s3cr3t" });
  });

  await t.step(
    "refused for another row, another key, or a changed bit (NIST SP 800-38D tag)",
    async () => {
      const sealed = await seal(key, row, { secret: "s3cr3t" });
      await assertRejects(
        () => unseal(key, ["backend_connection", "corp:bob", "notes"], sealed),
        CredentialIntegrityError,
      );
      await assertRejects(
        async () => unseal(await parseEncryptionKey(ENCRYPTION_KEY), row, sealed),
        CredentialIntegrityError,
      );
      const flipped = { ...sealed, ct: sealed.ct.slice() };
      flipped.ct[3]! ^= 1;
      await assertRejects(() => unseal(key, row, flipped), CredentialIntegrityError);
    },
  );
});

Deno.test("stored connections", async (t) => {
  const deps = await makeDeps({
    config: {
      backends: [{
        name: "search",
        url: "http://127.0.0.1:9/mcp",
        auth: { type: "user-secret", label: "Search API key" },
      }],
    },
    env: { GATEWAY_ENCRYPTION_KEY: ENCRYPTION_KEY },
  });
  try {
    await t.step(
      "a secret is stored sealed: not in clear anywhere in KV, nor in the logs",
      async () => {
        await saveSecretConnection(deps, "corp:ana", "search", "sk-live-ana-0123456789");
        assertEquals(
          ((await loadConnection(deps, "corp:ana", "search"))!.secrets as { secret: string })
            .secret,
          "sk-live-ana-0123456789",
        );
        assert(!(await dump(deps.kv)).includes("sk-live-ana"), "the secret is not in clear in KV");
        assert(!JSON.stringify(deps.logs).includes("sk-live-ana"));
      },
    );

    await t.step(
      "a tampered ciphertext in KV is refused: deleted, logged, the user asked to connect again",
      async () => {
        const rowKey = backendConnectionKey("corp:ana", "search");
        const entry = await deps.kv.get<BackendConnectionRecord>(rowKey);
        const ct = entry.value!.sealed.ct.slice();
        ct[0]! ^= 0x80;
        await deps.kv.set(rowKey, { ...entry.value!, sealed: { ...entry.value!.sealed, ct } });
        assertEquals(await loadConnection(deps, "corp:ana", "search"), null);
        assertEquals((await deps.kv.get(rowKey)).value, null);
        assert(
          deps.logs.some((l) =>
            l.event === "backend_connection_dropped" && l.reason === "integrity" &&
            l.user === "corp:ana"
          ),
        );
      },
    );

    await t.step(
      "a value copied to another user's row is refused (AAD binds it to its row)",
      async () => {
        await saveSecretConnection(deps, "corp:ana", "search", "sk-live-ana-0123456789");
        const stolen =
          (await deps.kv.get<BackendConnectionRecord>(backendConnectionKey("corp:ana", "search")))
            .value!;
        await deps.kv.set(backendConnectionKey("corp:mallory", "search"), stolen);
        assertEquals(await loadConnection(deps, "corp:mallory", "search"), null);
        assertEquals(
          ((await loadConnection(deps, "corp:ana", "search"))!.secrets as { secret: string })
            .secret,
          "sk-live-ana-0123456789",
        );
      },
    );
  } finally {
    deps.kv.close();
  }
});

Deno.test("backends[].auth config", async (t) => {
  const parse = (auth: unknown, headers: Record<string, string> = {}) =>
    parseConfig(
      { backends: [{ name: "b", url: "https://b.example/mcp", auth, headers }] },
      (n) => n === "SECRET" ? "from-env" : undefined,
      "gateway.config.json",
    );
  const fails = (auth: unknown, pattern: RegExp, headers?: Record<string, string>) => {
    try {
      parse(auth, headers);
    } catch (e) {
      assertMatch((e as Error).message, pattern);
      return;
    }
    throw new Error("accepted");
  };

  await t.step(
    "oauth: scopes, a configured client (secret from the environment), an authorization server",
    () => {
      const c = parse({
        type: "oauth",
        scopes: ["read", "write"],
        clientId: "Iv1.x",
        clientSecret: "${SECRET}",
        authorizationServer: "https://github.com/login/oauth",
      });
      assertEquals(c.backends[0]!.auth, {
        type: "oauth",
        scopes: ["read", "write"],
        clientId: "Iv1.x",
        clientSecret: "from-env",
        authorizationServer: "https://github.com/login/oauth",
      });
    },
  );

  await t.step(
    "user-secret: label, header and template default to Authorization: Bearer {secret}",
    () => {
      const c = parse({ type: "user-secret", label: "Search API key" });
      assertEquals(c.backends[0]!.auth, {
        type: "user-secret",
        label: "Search API key",
        header: "Authorization",
        template: "Bearer {secret}",
      });
    },
  );

  await t.step("bad values fail the start naming file and field", () => {
    fails(
      { type: "oauth", clientSecret: "x" },
      /gateway\.config\.json: backends\[0\]\.auth\.clientSecret: needs auth\.clientId/,
    );
    fails(
      { type: "oauth", clientId: "a", tokenEndpointAuthMethod: "client_secret_post" },
      /backends\[0\]\.auth\.clientSecret: is required/,
    );
    fails(
      { type: "user-secret", label: "k", template: "Token" },
      /backends\[0\]\.auth\.template: must contain "\{secret\}"/,
    );
    fails(
      { type: "user-secret", label: "k", header: "Content-Type" },
      /backends\[0\]\.auth\.header: this header cannot carry a secret/,
    );
    fails({ type: "oauth" }, /backends\[0\]\.headers\.Authorization: must not be set/, {
      Authorization: "Bearer shared",
    });
    fails({ type: "saml" }, /backends\[0\]\.auth\.type/);
  });
});

Deno.test("start banner: per-user backends", () => {
  const backends = parseConfig({
    backends: [
      { name: "docs", url: "https://docs.example/mcp" },
      { name: "gh", url: "https://gh.example/mcp", auth: { type: "oauth" } },
      {
        name: "search",
        url: "https://search.example/mcp",
        auth: { type: "user-secret", label: "Search API key" },
      },
    ],
  }, () => undefined).backends;
  const lines = renderBanner({
    version: "1.0.0",
    denoVersion: "2.9.6",
    listen: "http://0.0.0.0:8000",
    publicUrl: "https://gw.example",
    publicUrlSet: true,
    backends: backends.map((backend) => ({ backend })),
    kv: { kind: "memory" },
    signIn: [],
    apiKeys: 0,
    externalIssuers: [],
  });
  const from = lines.findIndex((l) => l.startsWith("  per-user"));
  assertEquals(lines.slice(from, from + 3), [
    "  per-user    https://gw.example/connections  where each user connects their own account",
    "              gh      oauth: redirect URI https://gw.example/connect/gh/callback",
    "              search  user-secret: Search API key",
  ]);
});
