/**
 * A browser over plain HTTP for the sign-in tests: a cookie jar per host (as browsers keep
 * them: ports share cookies), redirects followed by hand, and forms posted with the page's
 * cookies. Requests to the gateway may go to its in-process handler, the rest (the identity
 * provider) over the network. Also the steps of panva's development login and consent forms.
 */
import { assertEquals } from "./_assert.ts";

/** Anything that answers a Request. */
export type Route = (req: Request) => Promise<Response>;

/** A page the browser landed on. */
export interface Page {
  url: URL;
  status: number;
  html: string;
  res: Response;
}

export class HttpBrowser {
  /** host → cookie name → value */
  readonly jar = new Map<string, Map<string, string>>();

  /** `routes`: origin → handler (e.g. an in-process gateway); others go through `fetch`. */
  constructor(readonly routes: Record<string, Route> = {}) {}

  cookieHeader(url: URL): string {
    return [...(this.jar.get(url.hostname) ?? new Map())].map(([k, v]) => `${k}=${v}`).join("; ");
  }

  /** Cookie `name` of `url`'s host. */
  cookie(url: string, name: string): string | undefined {
    return this.jar.get(new URL(url).hostname)?.get(name);
  }

  /** One request with the jar's cookies; `Set-Cookie` stored (Max-Age=0 deletes). */
  async send(url: string | URL, init: RequestInit = {}): Promise<Response> {
    const u = new URL(url);
    const headers = new Headers(init.headers);
    const cookies = this.cookieHeader(u);
    if (cookies) headers.set("cookie", cookies);
    const req = new Request(u, { ...init, headers, redirect: "manual" });
    const route = this.routes[u.origin];
    const res = route ? await route(req) : await fetch(req);
    const jar = this.jar.get(u.hostname) ?? new Map<string, string>();
    this.jar.set(u.hostname, jar);
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(";");
      const eq = pair!.indexOf("=");
      const name = pair!.slice(0, eq).trim();
      if (/;\s*max-age=0/i.test(c) || /expires=Thu, 01 Jan 1970/i.test(c)) jar.delete(name);
      else jar.set(name, pair!.slice(eq + 1).trim());
    }
    return res;
  }

  /**
   * Follows redirects from `url` until a page answers, or until `stop(url)` says a redirect
   * target is not to be loaded (e.g. the MCP client's callback); then returns that URL.
   */
  async navigate(
    url: string | URL,
    init: RequestInit = {},
    stop: (u: URL) => boolean = () => false,
  ): Promise<Page> {
    let res = await this.send(url, init);
    let at = new URL(url);
    for (let i = 0; i < 20 && [301, 302, 303, 307].includes(res.status); i++) {
      await res.body?.cancel();
      at = new URL(res.headers.get("location")!, at);
      if (stop(at)) return { url: at, status: res.status, html: "", res };
      res = await this.send(at);
    }
    return { url: at, status: res.status, html: await res.text(), res };
  }

  /** Posts a form (urlencoded) and follows the redirects. */
  submit(
    action: string | URL,
    fields: Record<string, string>,
    stop?: (u: URL) => boolean,
  ): Promise<Page> {
    return this.navigate(action, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(fields),
    }, stop);
  }
}

/** The value of hidden input `name` of a page. */
export function field(html: string, name: string): string {
  const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`));
  if (!m) throw new Error(`the page has no "${name}" field: ${html.slice(0, 400)}`);
  return m[1]!.replaceAll("&amp;", "&");
}

/** The `href` of the sign-in button of `label` on a gateway page. */
export function providerHref(html: string, label: string): string {
  const m = html.match(new RegExp(`href="([^"]*)">Continue with ${label}<`));
  if (!m) throw new Error(`no "Continue with ${label}" button: ${html.slice(0, 400)}`);
  return m[1]!.replaceAll("&amp;", "&");
}

/**
 * Goes through panva's development interactions: the login form (as `login`, any password),
 * then the consent prompt, until the provider redirects to `leaveAt`'s origin and path.
 * Returns the page reached after (by default the browser keeps following into the gateway).
 */
export async function signInAtIdp(
  browser: HttpBrowser,
  page: Page,
  login: string,
  stop?: (u: URL) => boolean,
): Promise<Page> {
  for (let i = 0; i < 4 && page.url.pathname.startsWith("/interaction/"); i++) {
    assertEquals(page.status, 200, `interaction page: ${page.html.slice(0, 200)}`);
    const action = page.html.match(/action="([^"]+)"/)![1]!;
    const prompt = field(page.html, "prompt");
    page = await browser.submit(
      new URL(action, page.url),
      prompt === "login" ? { prompt, login, password: "any" } : { prompt },
      stop,
    );
  }
  return page;
}
