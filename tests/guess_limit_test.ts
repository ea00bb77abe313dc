/**
 * Online guessing of the owner password (RFC 6749 §10.10; security review issue 13 §1):
 * failures count per (client, IP), per IP across all clients and globally; an attempt is
 * reserved atomically before the password is compared, so concurrent attempts cannot
 * outnumber the limit; a right password is not counted.
 */
import { checkGuess, type GuessLimits } from "../lib/infra/guess_limit.ts";
import { checkPasswordAttempt } from "../lib/oauth/authorization.ts";
import { createHandler } from "../main.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { makeDeps, serveGateway } from "./_helpers.ts";
import {
  authorizeUrl,
  type ConsentForm,
  DEFAULT_PASSWORD,
  type FetchLike,
  pkcePair,
  postDecision,
  readConsentForm,
  registerClient,
} from "./_oauth_flow.ts";

const BACKENDS = [{ name: "alpha", url: "http://127.0.0.1:9/mcp" }];

/** Opens the consent page of `clientId` and returns its form (cookie included). */
async function consentForm(
  fetchLike: FetchLike,
  clientId: string,
  baseUrl?: string,
): Promise<ConsentForm> {
  const { challenge } = await pkcePair();
  const res = await fetchLike(
    new Request(authorizeUrl({
      baseUrl,
      clientId,
      redirectUri: "http://127.0.0.1:3000/callback",
      codeChallenge: challenge,
    })),
  );
  const html = await res.text();
  assertEquals(res.status, 200, html.slice(0, 200));
  return readConsentForm(html, res);
}

Deno.test("checkGuess: 50 concurrent attempts against a limit of 5 compare 5 times", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const limits: GuessLimits = { perSubjectAndIp: 5, perIp: 10, global: 100 };
    const attempt = { secret: "test", subject: "client", ip: "203.0.113.7" };
    let compared = 0;
    const outcomes = await Promise.all(
      Array.from({ length: 50 }, () =>
        checkGuess({ kv, now: Date.now }, attempt, limits, () => {
          compared++;
          return Promise.resolve(false);
        })),
    );
    assertEquals(compared, 5);
    assertEquals(outcomes.filter((o) => o.result === "wrong").length, 5);
    assertEquals(outcomes.filter((o) => o.result === "blocked").length, 45);
    // The right secret, now: blocked without a comparison.
    const right = await checkGuess({ kv, now: Date.now }, attempt, limits, () => {
      compared++;
      return Promise.resolve(true);
    });
    assertEquals(right.result, "blocked");
    assertEquals(compared, 5);
  } finally {
    kv.close();
  }
});

Deno.test("checkPasswordAttempt: 49 wrong passwords and the right one at once (the review's case)", async () => {
  const deps = await makeDeps({ config: { backends: BACKENDS } });
  try {
    const outcomes = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        checkPasswordAttempt(
          deps,
          "client",
          "203.0.113.7",
          i === 49 ? DEFAULT_PASSWORD : `wrong-${i}`,
        )),
    );
    const count = (r: string) => outcomes.filter((o) => o.result === r).length;
    // Five reservations are compared: five wrong passwords, or four and the right one when it
    // happened to be among them (a right password gives its reservation back, so a fifth wrong
    // one may follow). Everything else is refused without a comparison.
    if (count("ok") === 0) assertEquals(count("wrong"), 5);
    else assert([4, 5].includes(count("wrong")), `wrong: ${count("wrong")}`);
    assertEquals(count("blocked"), 50 - count("ok") - count("wrong"));
  } finally {
    deps.kv.close();
  }
});

Deno.test({
  name: "owner password: 50 concurrent consent posts over HTTP compare exactly 5 times",
  fn: async () => {
    const gw = await serveGateway({ config: { backends: BACKENDS } });
    const fetchLike: FetchLike = (r) => fetch(r, { redirect: "manual" });
    try {
      const client = await registerClient(fetchLike, {}, gw.url);
      const forms: ConsentForm[] = [];
      for (let i = 0; i < 51; i++) {
        forms.push(await consentForm(fetchLike, client.client_id, gw.url));
      }
      // 50 wrong passwords at once: each one compared answers 401, each one refused 429.
      const answers = await Promise.all(
        forms.slice(0, 50).map((form, i) =>
          postDecision(fetchLike, form, "approve", `wrong-${i}`, gw.url)
        ),
      );
      const statuses = answers.map((r) => r.status);
      await Promise.all(answers.map((r) => r.body?.cancel()));
      assertEquals(
        statuses.filter((s) => s === 401).length,
        5,
        `compared exactly passwordFailuresPer15Minutes times: ${statuses.join(",")}`,
      );
      assertEquals(statuses.filter((s) => s === 429).length, 45);
      // The limit is reached: the right password is refused too, until the window ends.
      const right = await postDecision(fetchLike, forms[50]!, "approve", DEFAULT_PASSWORD, gw.url);
      assertEquals(right.status, 429);
      assertEquals(right.headers.get("content-type"), "text/html; charset=utf-8");
      assertStringIncludes(await right.text(), "Too many");
    } finally {
      await gw.close();
    }
  },
});

Deno.test("owner password limits across clients and addresses", async (t) => {
  const deps = await makeDeps({
    config: {
      backends: BACKENDS,
      clientIpHeader: "x-forwarded-for",
      rateLimits: {
        passwordFailuresPer15Minutes: 5,
        passwordFailuresPerIpPer15Minutes: 4,
        passwordFailuresGlobalPer15Minutes: 12,
      },
    },
  });
  const handle = createHandler(deps);
  const from = (ip: string): FetchLike => (req) => {
    req.headers.set("x-forwarded-for", ip);
    return handle(req);
  };
  const attempt = async (ip: string, password: string) => {
    const client = await registerClient(from(ip));
    const form = await consentForm(from(ip), client.client_id);
    return await postDecision(from(ip), form, "approve", password);
  };
  const expectStatus = async (res: Response, status: number) => {
    assertEquals(res.status, status);
    if (status !== 303) {
      assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
    }
    const html = await res.text();
    if (status === 429) {
      assertStringIncludes(html, "Too many");
      assertMatch(res.headers.get("retry-after") ?? "", /^[1-9][0-9]*$/);
    }
  };
  try {
    await t.step("a fresh client buys no fresh guesses: per IP across all clients", async () => {
      for (let i = 0; i < 4; i++) await expectStatus(await attempt("198.51.100.1", "wrong"), 401);
      // A fifth client, from the same address, even with the right password.
      await expectStatus(await attempt("198.51.100.1", DEFAULT_PASSWORD), 429);
      // The same /64 is the same client for IPv6.
      for (let i = 0; i < 4; i++) {
        await expectStatus(await attempt(`2001:db8:5:5::${i + 1}`, "wrong"), 401);
      }
      await expectStatus(await attempt("2001:db8:5:5:abcd::1", DEFAULT_PASSWORD), 429);
    });

    await t.step("a right password is not counted (the reservation is released)", async () => {
      deps.clock.advance(15 * 60_000);
      await expectStatus(await attempt("198.51.100.2", DEFAULT_PASSWORD), 303);
      for (let i = 0; i < 4; i++) await expectStatus(await attempt("198.51.100.2", "wrong"), 401);
      await expectStatus(await attempt("198.51.100.2", "wrong"), 429);
    });

    await t.step("globally: many addresses together stop, with a warning in the log", async () => {
      deps.clock.advance(15 * 60_000);
      for (let i = 0; i < 12; i++) {
        await expectStatus(await attempt(`203.0.113.${i}`, "wrong"), 401);
      }
      await expectStatus(await attempt("203.0.113.200", DEFAULT_PASSWORD), 429);
      const warning = deps.logs.find((l) => l.event === "guess_limit_global");
      assert(warning, "a warning names the global limit");
      assertEquals(warning.level, "warn");
      assertStringIncludes(String(warning.message), "paused for everyone");
      assert(!JSON.stringify(deps.logs).includes(DEFAULT_PASSWORD), "no password in logs");
    });

    await t.step("the next window allows again", async () => {
      deps.clock.advance(15 * 60_000);
      await expectStatus(await attempt("203.0.113.200", DEFAULT_PASSWORD), 303);
    });
  } finally {
    deps.kv.close();
  }
});
