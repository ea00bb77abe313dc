/**
 * The admin console's routes in-process (issue 12 "Admin console"), with real sign-in: the owner
 * password, and users of panva's oidc-provider matched by the access rules (ana: `admin: true`;
 * bob: not an administrator). Who may open it (checked against the current rules on every
 * request), the CSRF checks of its forms, its pages' content and security headers, bad
 * parameters (400 pages, never a 500), revocations (audited with the administrator as actor,
 * refused on `/mcp` at once), the audit trail's filters and cursor, and the JSON Lines export.
 */
import { auditRecord } from "../lib/admin/audit.ts";
import { parseConfig } from "../lib/config.ts";
import type { AuditRecord } from "../lib/store.ts";
import { createHandler } from "../main.ts";
import { closeAggregate } from "../lib/mcp/aggregate/handler.ts";
import { putGrantOf, putUser } from "./_admin_fixtures.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { field, HttpBrowser, type Page, providerHref, signInAtIdp } from "./_http_browser.ts";
import { DEFAULT_PASSWORD } from "./_oauth_flow.ts";
import { ACCESS, entries, listTools, startSignInSetup } from "./_sign_in.ts";

/** Asserts an HTML page of the console: status, content type, then the security headers. */
function htmlPage(res: Response, status: number): void {
  assertEquals(res.status, status);
  assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
  assertStringIncludes(res.headers.get("content-security-policy") ?? "", "frame-ancestors 'none'");
  assertEquals(res.headers.get("x-frame-options"), "DENY");
  assertEquals(res.headers.get("cache-control"), "no-store");
}

/** The page's body as text (tags stripped), for assertions on what a person reads. */
function text(html: string): string {
  const body = html.slice(html.indexOf("<body>"), html.indexOf("</body>"));
  return body.replace(/<[^>]+>/g, " ").replace(/\s+/g, " ");
}

Deno.test({
  name: "admin console (/admin)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const s = await startSignInSetup();
    const url = s.gw.url;
    const deps = s.gw.deps;
    const handler = createHandler(deps);
    const browser = () => new HttpBrowser({ [url]: handler });
    const kv = deps.kv;

    /** Signs `b` in with the owner password through `GET /login?return_to=`. */
    async function signInOwner(b: HttpBrowser, returnTo = "/admin"): Promise<Page> {
      const page = await b.navigate(`${url}/login?return_to=${encodeURIComponent(returnTo)}`);
      return await b.submit(`${url}/login`, {
        signin_id: field(page.html, "signin_id"),
        csrf_token: field(page.html, "csrf_token"),
        return_to: field(page.html, "return_to"),
        password: DEFAULT_PASSWORD,
      });
    }
    /** Signs `b` in at the identity provider as `login`, coming back to `returnTo`. */
    async function signInUser(b: HttpBrowser, login: string, returnTo = "/admin") {
      const entry = await b.navigate(`${url}/login?return_to=${encodeURIComponent(returnTo)}`);
      return await signInAtIdp(b, await b.navigate(providerHref(entry.html, "Corp SSO")), login);
    }
    const csrfOf = (page: Page) => field(page.html, "csrf_token");

    const owner = browser();
    const ana = browser();
    const bob = browser();
    try {
      await t.step(
        "signed out: every page redirects (302) to /login?return_to=<the page>",
        async () => {
          for (
            const path of [
              "/admin",
              "/admin/",
              "/admin/grants?user=corp%3Aana",
              "/admin/clients",
              "/admin/users",
              "/admin/audit?since=1h&tool=alpha__*",
              "/admin/audit.jsonl",
              "/admin/config",
            ]
          ) {
            const res = await handler(new Request(`${url}${path}`));
            assertEquals(res.status, 302, path);
            const location = new URL(res.headers.get("location")!);
            assertEquals(location.origin + location.pathname, `${url}/login`);
            assertEquals(location.searchParams.get("return_to"), path);
          }
        },
      );

      await t.step(
        "signed out: a form post goes to sign-in (303), nothing is revoked",
        async () => {
          const { grant } = await putGrantOf(deps, "corp:zed");
          const res = await handler(
            new Request(`${url}/admin/grants/revoke`, {
              method: "POST",
              headers: { "content-type": "application/x-www-form-urlencoded" },
              body: new URLSearchParams({ grant_id: grant.grantId, csrf_token: "x" }),
            }),
          );
          assertEquals(res.status, 303);
          assertEquals(res.headers.get("location"), `${url}/login?return_to=%2Fadmin%2Fgrants`);
          assert((await kv.get(["grant", grant.grantId])).value, "the grant stays");
        },
      );

      await t.step(
        "the owner password sign-in opens the console at the page asked for",
        async () => {
          const page = await signInOwner(owner, "/admin/users");
          htmlPage(page.res, 200);
          assertEquals(page.url.href, `${url}/admin/users`);
          assertStringIncludes(text(page.html), "Users");
          assertStringIncludes(page.html, 'aria-current="page">Users<');
          assertStringIncludes(text(page.html), "Signed in as Gateway owner");
        },
      );

      await t.step("a user matched by a rule with admin: true opens the console", async () => {
        const page = await signInUser(ana, "ana");
        htmlPage(page.res, 200);
        assertEquals(page.url.href, `${url}/admin`);
        assertStringIncludes(text(page.html), "Signed in as Ana Lima (ana@example.com)");
      });

      await t.step("a signed-in user who is not an administrator gets a 403 page", async () => {
        const page = await signInUser(bob, "bob");
        htmlPage(page.res, 403);
        assertStringIncludes(text(page.html), "Not an administrator");
        assertStringIncludes(text(page.html), "Bob Stone (bob@example.com)");
        assert(!page.html.includes('aria-label="Console"'), "no console navigation");
        assertStringIncludes(page.html, `action="${url}/logout"`, "a way to sign out");
        const revoke = await bob.submit(`${url}/admin/users/revoke`, {
          sub: "corp:ana",
          confirm: "yes",
          csrf_token: csrfOf(page),
        });
        htmlPage(revoke.res, 403);
        assertEquals((await listGrantsOf("corp:ana")).length, 0, "nothing to revoke, nothing was");
      });

      await t.step(
        "admin is checked against the current rules on every request, not only at sign-in",
        async () => {
          const demoted = createHandler({
            ...deps,
            config: parseConfig(
              {
                ...s.config,
                login: {
                  ...s.config.login as object,
                  access: [{ ...ACCESS[0], admin: false }, ...ACCESS.slice(1)],
                },
              },
              () => undefined,
            ),
          });
          const headers = { cookie: ana.cookieHeader(new URL(url)) };
          const res = await demoted(new Request(`${url}/admin`, { headers }));
          htmlPage(res, 403);
          assertStringIncludes(await res.text(), "Not an administrator");
          const still = await handler(new Request(`${url}/admin/config`, { headers }));
          htmlPage(still, 200);
          await still.body?.cancel();
        },
      );

      // Grants of two users, tokens minted for real.
      const anaGrant = await putGrantOf(deps, "corp:ana", { clientId: "client-one" });
      const gusGrant = await putGrantOf(deps, "corp:gus", { clientId: "client-two" });
      await putUser(deps, { sub: "corp:gus", email: "gus@other.org", name: "Gus <b>Hale</b>" });

      await t.step(
        "the grants page: user, client, scopes, created, last used, a revoke form",
        async () => {
          await listTools(s, anaGrant.accessToken);
          await deps.audit.flush();
          const page = await owner.navigate(`${url}/admin/grants`);
          htmlPage(page.res, 200);
          const body = text(page.html);
          for (const v of ["corp:ana", "client-one", "corp:gus", "client-two", "mcp"]) {
            assertStringIncludes(body, v);
          }
          assertMatch(body, /corp:ana .*client-one .*mcp \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \d{4}-/);
          assertStringIncludes(page.html, `action="${url}/admin/grants/revoke"`);
          const filtered = await owner.navigate(`${url}/admin/grants?user=corp%3Agus`);
          htmlPage(filtered.res, 200);
          assert(!filtered.html.includes("client-one"), "only gus's grants");
          assertStringIncludes(filtered.html, "client-two");
        },
      );

      await t.step("every value is escaped (a user's name with markup)", async () => {
        const page = await owner.navigate(`${url}/admin/users`);
        htmlPage(page.res, 200);
        assertStringIncludes(page.html, "Gus &lt;b&gt;Hale&lt;/b&gt;");
        assert(!page.html.includes("<b>Hale</b>"));
      });

      await t.step(
        "CSRF: a forged or missing token, or a foreign Origin → 403, nothing revoked",
        async () => {
          const page = await owner.navigate(`${url}/admin/grants`);
          const token = csrfOf(page);
          const post = (fields: Record<string, string>, origin?: string) =>
            owner.navigate(`${url}/admin/grants/revoke`, {
              method: "POST",
              headers: {
                "content-type": "application/x-www-form-urlencoded",
                ...(origin ? { origin } : {}),
              },
              body: new URLSearchParams(fields),
            });
          const forged = await post({ grant_id: gusGrant.grant.grantId, csrf_token: "forged" });
          htmlPage(forged.res, 403);
          assertStringIncludes(text(forged.html), "CSRF check failed");
          const missing = await post({ grant_id: gusGrant.grant.grantId });
          htmlPage(missing.res, 403);
          const anaToken = csrfOf(await ana.navigate(`${url}/admin/grants`));
          const otherSession = await post({
            grant_id: gusGrant.grant.grantId,
            csrf_token: anaToken,
          });
          htmlPage(otherSession.res, 403);
          const foreign = await post(
            { grant_id: gusGrant.grant.grantId, csrf_token: token },
            "https://evil.example",
          );
          htmlPage(foreign.res, 403);
          const notAForm = await owner.navigate(`${url}/admin/grants/revoke`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ grant_id: gusGrant.grant.grantId, csrf_token: token }),
          });
          htmlPage(notAForm.res, 400);
          assert((await kv.get(["grant", gusGrant.grant.grantId])).value, "the grant stays");
        },
      );

      await t.step(
        "revoking a grant: 303 back, the token refused on /mcp at once, audited with the admin",
        async () => {
          const page = await owner.navigate(`${url}/admin/grants?user=corp%3Aana`);
          const res = await owner.send(`${url}/admin/grants/revoke`, {
            method: "POST",
            headers: { "content-type": "application/x-www-form-urlencoded", origin: "null" },
            body: new URLSearchParams({
              grant_id: anaGrant.grant.grantId,
              csrf_token: csrfOf(page),
              return_to: field(
                page.html.slice(page.html.indexOf("/admin/grants/revoke")),
                "return_to",
              ),
            }),
          });
          assertEquals(res.status, 303);
          const back = new URL(res.headers.get("location")!);
          assertEquals(back.pathname, "/admin/grants");
          assertEquals(back.searchParams.get("user"), "corp:ana");
          assertEquals(back.searchParams.get("revoked"), anaGrant.grant.grantId);
          const shown = await owner.navigate(back);
          htmlPage(shown.res, 200);
          assertStringIncludes(text(shown.html), `Grant ${anaGrant.grant.grantId} revoked`);
          const mcp = await fetch(`${url}/mcp`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${anaGrant.accessToken}`,
              "content-type": "application/json",
              accept: "application/json, text/event-stream",
            },
            body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
          });
          assertEquals(mcp.status, 401);
          assertEquals((await mcp.json()).error, "invalid_token");
          await deps.audit.flush();
          const record = (await audit()).findLast((r) => r.event === "revocation");
          assertEquals([record?.grantId, record?.method, record?.actor, record?.user], [
            anaGrant.grant.grantId,
            "admin",
            "owner",
            "corp:ana",
          ]);
        },
      );

      await t.step("revoking a grant that is gone: 404 page", async () => {
        const page = await owner.navigate(`${url}/admin/grants`);
        const again = await owner.submit(`${url}/admin/grants/revoke`, {
          grant_id: anaGrant.grant.grantId,
          csrf_token: csrfOf(page),
        });
        htmlPage(again.res, 404);
        assertStringIncludes(text(again.html), "no live grant");
      });

      await t.step(
        "after a revocation the browser goes back only to a grants listing",
        async () => {
          const page = await owner.navigate(`${url}/admin/grants`);
          for (const returnTo of ["//evil.example/admin/grants", "/admin/grantsx", "/login"]) {
            const { grant } = await putGrantOf(deps, "corp:zed");
            const res = await owner.send(`${url}/admin/grants/revoke`, {
              method: "POST",
              headers: { "content-type": "application/x-www-form-urlencoded" },
              body: new URLSearchParams({
                grant_id: grant.grantId,
                csrf_token: csrfOf(page),
                return_to: returnTo,
              }),
            });
            assertEquals(res.status, 303);
            assertEquals(
              res.headers.get("location"),
              `${url}/admin/grants?revoked=${grant.grantId}`,
            );
          }
        },
      );

      await t.step(
        "revoke everything of a user: grants, tokens, browser sessions; audited",
        async () => {
          const before = await ana.navigate(`${url}/admin`);
          htmlPage(before.res, 200);
          const page = await owner.navigate(`${url}/admin/users`);
          const unconfirmed = await owner.submit(`${url}/admin/users/revoke`, {
            sub: "corp:ana",
            csrf_token: csrfOf(page),
          });
          htmlPage(unconfirmed.res, 400);
          assertStringIncludes(text(unconfirmed.html), "tick the box to confirm");
          const second = await putGrantOf(deps, "corp:ana", { clientId: "client-three" });
          const res = await owner.send(`${url}/admin/users/revoke`, {
            method: "POST",
            headers: { "content-type": "application/x-www-form-urlencoded" },
            body: new URLSearchParams({
              sub: "corp:ana",
              confirm: "yes",
              csrf_token: csrfOf(page),
            }),
          });
          assertEquals(res.status, 303);
          const done = await owner.navigate(res.headers.get("location")!);
          htmlPage(done.res, 200);
          assertStringIncludes(text(done.html), "Revoked everything of corp:ana : 1 grant(s)");
          assertStringIncludes(text(done.html), "1 browser session(s)");
          assertEquals(await listGrantsOf("corp:ana"), []);
          assertEquals((await kv.get(["grant", second.grant.grantId])).value, null);
          const signedOut = await ana.send(`${url}/admin`);
          assertEquals(signedOut.status, 302, "ana's browser session ended");
          await deps.audit.flush();
          const records = (await audit()).filter((r) => r.event === "revocation" && r.actor);
          assertEquals(records.slice(-2).map((r) => [r.method, r.user, r.actor]), [
            ["admin", "corp:ana", "owner"],
            ["admin_user", "corp:ana", "owner"],
          ]);
        },
      );

      await t.step("the clients and configuration pages (no secret shown)", async () => {
        const clients = await owner.navigate(`${url}/admin/clients`);
        htmlPage(clients.res, 200);
        assertStringIncludes(text(clients.html), "Clients");
        const config = await owner.navigate(`${url}/admin/config`);
        htmlPage(config.res, 200);
        assertStringIncludes(config.html, "[redacted]");
        assert(!config.html.includes(s.idp.clientSecret), "the provider's client secret is hidden");
        assert(!config.html.includes(DEFAULT_PASSWORD), "the owner password is hidden");
        assertStringIncludes(text(config.html), "Owner password (GATEWAY_OWNER_PASSWORD) set");
      });

      // A trail to page through: 60 records in one millisecond, 60 in the one before.
      const t0 = deps.now() - 60_000;
      for (let i = 0; i < 120; i++) {
        deps.audit.record(auditRecord(i < 60 ? t0 : t0 - 1, "mcp", {
          user: "corp:pager",
          backend: i % 2 ? "alpha" : "beta",
          method: "tools/call",
          tool: i % 2 ? "alpha__echo" : "beta__echo",
          outcome: i % 3 ? "ok" : "-32602",
          latencyMs: i,
        }, `req-${i}`));
      }
      await deps.audit.flush();

      await t.step("audit trail: filters by user, backend, tool, outcome and time", async () => {
        const page = await owner.navigate(
          `${url}/admin/audit?user=corp%3Apager&backend=alpha&tool=alpha__*&outcome=error&since=1h`,
        );
        htmlPage(page.res, 200);
        const rows = page.html.match(/<tr>/g)!.length - 1;
        assertEquals(rows, 20, "odd i (alpha) with i % 3 === 0: 20 of 120");
        assert(!page.html.includes("beta__echo"));
        const none = await owner.navigate(`${url}/admin/audit?user=corp%3Apager&until=2h`);
        htmlPage(none.res, 200);
        assertStringIncludes(text(none.html), "No record matches.");
      });

      await t.step(
        "audit trail: the cursor pages through records of one millisecond exactly",
        async () => {
          const seen: string[] = [];
          let next: string | undefined = `${url}/admin/audit?user=corp%3Apager`;
          for (let i = 0; next && i < 5; i++) {
            const page: Page = await owner.navigate(next);
            htmlPage(page.res, 200);
            seen.push(...[...page.html.matchAll(/>(req-\d+)</g)].map((m) => m[1]!));
            const older = page.html.match(/<a href="([^"]+)" rel="next">Older/);
            next = older ? older[1]!.replaceAll("&amp;", "&") : undefined;
          }
          assertEquals(seen.length, 120);
          assertEquals(new Set(seen).size, 120, "no record twice, none left out");
        },
      );

      await t.step(
        "the backends page: health, p50/p95 latency and error rate of the last hour, tool count",
        async () => {
          const page = await owner.navigate(`${url}/admin`);
          htmlPage(page.res, 200);
          // The trail above: alpha has the odd i (latency i ms), beta the even; a third failed.
          // Each backend has one tool (echo). Nearest-rank p50 of 60 values: the 30th.
          const row = (name: string, p50: number, p95: number) =>
            new RegExp(`${name} up checked \\d+ s ago \\d+ ms 60 ${p50} ms ${p95} ms 33 % 0 1 `);
          assertMatch(text(page.html), row("alpha", 59, 113));
          assertMatch(text(page.html), row("beta", 58, 112));
          assertStringIncludes(text(page.html), "2 of 2 up");
        },
      );

      await t.step("bad filters and parameters → a 400 page naming them, never a 500", async () => {
        const cases: [string, string][] = [
          ["/admin/audit?since=yesterday", '"since"'],
          ["/admin/audit?event=nope", '"event"'],
          ["/admin/audit?outcome=%3Cscript%3E", '"outcome"'],
          ["/admin/audit?user=a&user=b", '"user" is repeated'],
          ["/admin/audit?colour=red", 'unknown parameter "colour"'],
          ["/admin/audit?since=1h&until=2h", '"since" is after "until"'],
          ["/admin/audit?before=-1", '"before"'],
          ["/admin/audit.jsonl?until=tomorrow", '"until"'],
          ["/admin/grants?page=0", '"page"'],
          ["/admin/grants?revoked=%2F..%2F", '"revoked"'],
          ["/admin/users?page=two", '"page"'],
          ["/admin/clients?x=1", 'unknown parameter "x"'],
        ];
        for (const [path, message] of cases) {
          const page = await owner.navigate(`${url}${path}`);
          htmlPage(page.res, 400);
          assertStringIncludes(page.html, message.replaceAll('"', "&quot;"), path);
        }
      });

      await t.step("the JSON Lines export: the same filters, an attachment", async () => {
        const res = await owner.send(
          `${url}/admin/audit.jsonl?user=corp%3Apager&backend=beta&outcome=ok`,
        );
        assertEquals(res.status, 200);
        assertEquals(res.headers.get("content-type"), "application/x-ndjson");
        assertMatch(
          res.headers.get("content-disposition") ?? "",
          /^attachment; filename="audit-\d{8}T\d{6}Z\.jsonl"$/,
        );
        assertEquals(res.headers.get("cache-control"), "no-store");
        const lines = (await res.text()).split("\n");
        assertEquals(lines.pop(), "", "every line ends with a newline");
        const records = lines.map((l) => JSON.parse(l) as AuditRecord);
        assertEquals(records.length, 40, "even i (beta) with i % 3 !== 0");
        assert(records.every((r) => r.backend === "beta" && r.outcome === "ok"));
        assert(Date.parse(records[0]!.time) >= Date.parse(records.at(-1)!.time), "newest first");
      });

      await t.step("a method the route does not take: 405 with Allow", async () => {
        const res = await owner.send(`${url}/admin/grants/revoke`);
        assertEquals(res.status, 405);
        assertEquals(res.headers.get("allow"), "POST");
        await res.body?.cancel();
      });
    } finally {
      await closeAggregate(deps);
      await s.close();
    }

    async function audit(): Promise<AuditRecord[]> {
      return (await entries(kv, ["audit"])).map((e) => e.value as AuditRecord);
    }
    async function listGrantsOf(sub: string) {
      return await entries(kv, ["user_grant", sub]);
    }
  },
});
