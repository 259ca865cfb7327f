/**
 * `deno task build:browser`: bundles the playground's "run in this browser" module
 * (`serve/browser/local.ts`) with `lib/` and its npm dependencies into
 * `serve/browser/local.bundle.js`, the file the server serves at `/browser/local.js`.
 *
 * The bundle is committed, so `deno task serve` needs no build step and no network; a test
 * rebuilds it and fails when it is stale (after a change to `lib/`, say), naming this command.
 *
 * @module
 */

import { bundle } from "./_bundle.ts";

/** Where the committed bundle lives. */
export const BROWSER_BUNDLE: URL = new URL("../serve/browser/local.bundle.js", import.meta.url);

/** Bundles `serve/browser/local.ts` into `out` (default the committed bundle). */
export async function buildBrowserBundle(out: string = BROWSER_BUNDLE.pathname): Promise<void> {
  await bundle(new URL("../serve/browser/local.ts", import.meta.url).pathname, out);
}

if (import.meta.main) {
  await buildBrowserBundle(Deno.args[0]);
  console.log(`wrote ${Deno.args[0] ?? BROWSER_BUNDLE.pathname}`);
}
