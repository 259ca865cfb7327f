/**
 * Headless Chromium driven over the DevTools protocol with Deno's WebSocket: start it, open a
 * page, evaluate expressions in it, take a screenshot, and close everything. Used by the
 * playground and browser-sampling tests.
 *
 * @module
 */

import assert from "node:assert/strict";

/** Where Chromium is; `CHROMIUM` overrides the Debian path. */
export const CHROMIUM: string = Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium";

/** Whether Chromium is installed. */
export async function hasChromium(): Promise<boolean> {
  return (await Deno.stat(CHROMIUM).catch(() => null)) !== null;
}

/** A page in a headless Chromium. */
export interface ChromiumPage {
  /** Evaluates `expression` in the page (promises awaited) and returns its value. */
  evaluate(expression: string): Promise<unknown>;
  /** Polls `expression` until it is truthy; throws after `ms` (default 60 s) with `what`. */
  waitFor(expression: string, what: string, ms?: number): Promise<void>;
  /** The page as a PNG. */
  screenshot(): Promise<Uint8Array>;
  /** Uncaught exceptions the page reported. */
  readonly exceptions: string[];
  /** Closes the browser and removes its profile. */
  close(): Promise<void>;
}

/** Starts Chromium headless on a fresh profile and opens `url` (`windowSize` like "1100,1500"). */
export async function openPage(
  url: string,
  options: { windowSize?: string } = {},
): Promise<ChromiumPage> {
  const profile = await Deno.makeTempDir({ prefix: "ddpm-chromium-" });
  const browser = new Deno.Command(CHROMIUM, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--user-data-dir=${profile}`,
      "--remote-debugging-port=0",
      ...(options.windowSize ? [`--window-size=${options.windowSize}`] : []),
      "about:blank",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // Chromium announces its DevTools endpoint on stderr; the rest is drained so the pipe never
  // fills.
  const lines = browser.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "";
  let endpoint: string | undefined;
  while (!endpoint) {
    const { done, value } = await lines.read();
    if (done) break;
    log += value;
    endpoint = /DevTools listening on (ws:\/\/\S+)/.exec(log)?.[1];
  }
  const drained = (async () => {
    while (!(await lines.read()).done);
  })();
  let socket: WebSocket | undefined;
  const close = async () => {
    const open = socket;
    if (open && open.readyState !== WebSocket.CLOSED) {
      const closed = new Promise((resolve) => open.onclose = resolve);
      open.close();
      await closed;
    }
    browser.kill("SIGTERM");
    const exited = await Promise.race([
      browser.status.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5000)),
    ]);
    if (!exited) browser.kill("SIGKILL");
    await browser.status;
    await drained;
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  };
  try {
    assert.ok(endpoint, `Chromium did not start:\n${log}`);
    socket = new WebSocket(endpoint);
    const ws = socket;
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error(`cannot connect to ${endpoint}`));
    });
    const exceptions: string[] = [];
    const pending = new Map<number, PromiseWithResolvers<Record<string, unknown>>>();
    let next = 1;
    ws.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.method === "Runtime.exceptionThrown") {
        const details = data.params.exceptionDetails;
        exceptions.push(details.exception?.description ?? details.text);
      }
      const waiter = pending.get(data.id);
      if (!waiter) return;
      pending.delete(data.id);
      if (data.error) waiter.reject(new Error(`${data.error.message} (${data.error.code})`));
      else waiter.resolve(data.result);
    };
    // deno-lint-ignore no-explicit-any -- protocol results differ per method.
    const send = (method: string, params: object = {}, sessionId?: string): Promise<any> => {
      const id = next++;
      const waiter = Promise.withResolvers<Record<string, unknown>>();
      pending.set(id, waiter);
      ws.send(JSON.stringify({ id, method, params, sessionId }));
      return waiter.promise;
    };
    const { targetId } = await send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
    await send("Runtime.enable", {}, sessionId);
    await send("Page.navigate", { url }, sessionId);
    const evaluate = async (expression: string) => {
      const { result, exceptionDetails } = await send("Runtime.evaluate", {
        expression,
        returnByValue: true,
        awaitPromise: true,
      }, sessionId);
      if (exceptionDetails) throw new Error(`page error: ${JSON.stringify(exceptionDetails)}`);
      return result.value;
    };
    const waitFor = async (expression: string, what: string, ms = 60_000) => {
      const end = performance.now() + ms;
      while (!(await evaluate(expression).catch(() => false))) {
        if (performance.now() > end) {
          const status = await evaluate(
            "[...document.querySelectorAll('.status')].map((e) => e.textContent).join(' | ')",
          ).catch(() => "");
          throw new Error(`timed out waiting for ${what}; page status: ${status}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    const screenshot = async () => {
      const { data } = await send("Page.captureScreenshot", { format: "png" }, sessionId);
      return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    };
    return { evaluate, waitFor, screenshot, exceptions, close };
  } catch (error) {
    await close();
    throw error;
  }
}
