/**
 * A real headless Chromium for the page tests, driven by playwright-core. Needs
 * /usr/bin/chromium (`apt-get install -y chromium`; `.ci/run` installs it): without it the
 * tests that need it FAIL, they are never skipped.
 */
import { type Browser, chromium } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";

/** Launches headless Chromium with no background networking (only loopback pages are loaded). */
export async function launchChromium(): Promise<Browser> {
  await Deno.stat(CHROMIUM).catch(() => {
    throw new Error(`${CHROMIUM} is missing: install it with "apt-get install -y chromium".`);
  });
  return await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--headless",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
}
