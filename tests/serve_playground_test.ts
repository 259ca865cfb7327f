import assert from "node:assert/strict";
import { decodePng } from "../lib/png.ts";
import { SAMPLERS } from "../lib/samplers.ts";
import { fromBase64 } from "../serve/images.ts";
import { DEFAULT_SAMPLER } from "../serve/schemas.ts";
import { PRESETS } from "../train/network.ts";
import { randomOnnxModel, TINY_CLASSES, TINY_CONDITIONAL } from "./_models.ts";
import { startMainServer, stop } from "./serve_helpers.ts";

const CHROMIUM = Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium";

/** A minimal DevTools-protocol client over Deno's WebSocket. */
class DevTools {
  #socket: WebSocket;
  #next = 1;
  #pending = new Map<number, PromiseWithResolvers<Record<string, unknown>>>();
  /** Uncaught exceptions the page reported. */
  readonly exceptions: string[] = [];

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.method === "Runtime.exceptionThrown") {
        const details = data.params.exceptionDetails;
        this.exceptions.push(details.exception?.description ?? details.text);
      }
      const waiter = this.#pending.get(data.id);
      if (!waiter) return;
      this.#pending.delete(data.id);
      if (data.error) waiter.reject(new Error(`${data.error.message} (${data.error.code})`));
      else waiter.resolve(data.result);
    };
  }

  static async connect(url: string): Promise<DevTools> {
    const socket = new WebSocket(url);
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = () => reject(new Error(`cannot connect to ${url}`));
    });
    return new DevTools(socket);
  }

  send(
    method: string,
    params: Record<string, unknown> = {},
    sessionId?: string,
    // deno-lint-ignore no-explicit-any -- protocol results differ per method.
  ): Promise<any> {
    const id = this.#next++;
    const waiter = Promise.withResolvers<Record<string, unknown>>();
    this.#pending.set(id, waiter);
    this.#socket.send(JSON.stringify({ id, method, params, sessionId }));
    return waiter.promise;
  }

  async close(): Promise<void> {
    if (this.#socket.readyState === WebSocket.CLOSED) return;
    const closed = new Promise((resolve) => this.#socket.onclose = resolve);
    this.#socket.close();
    await closed;
  }
}

Deno.test("the playground in headless Chromium: generate, stream, noise, interpolate, and a class picker", async (t) => {
  if (!(await Deno.stat(CHROMIUM).catch(() => null))) {
    console.log(`skipped: no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM)`);
    await t.step({ name: "skipped: Chromium is not installed", ignore: true, fn: () => {} });
    return;
  }
  // The page is served by serve/main.ts as `deno task serve` runs it, on a test-exported model.
  const weights = await Deno.makeTempDir({ prefix: "ddpm-weights-" });
  await Deno.writeFile(`${weights}/tiny.onnx`, randomOnnxModel(PRESETS.tiny));
  // A conditional model second (files load sorted by name, and "_" sorts after "."), so the
  // page starts on the unconditional one.
  await Deno.writeFile(`${weights}/tiny_cond.onnx`, randomOnnxModel(TINY_CONDITIONAL, 3));
  const { child: server, started } = await startMainServer(weights);
  const profile = await Deno.makeTempDir({ prefix: "ddpm-chromium-" });
  const artefacts = await Deno.makeTempDir({ prefix: "ddpm-playground-" });
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
      "--window-size=1100,1500",
      "about:blank",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // Chromium announces its DevTools endpoint on stderr; the rest of stderr is drained so the
  // pipe never fills.
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
  let devtools: DevTools | undefined;
  try {
    assert.ok(endpoint, `Chromium did not start:\n${log}`);
    devtools = await DevTools.connect(endpoint);
    const page = devtools;
    const url = `${started.base}/`;
    const { targetId } = await page.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await page.send("Target.attachToTarget", { targetId, flatten: true });
    await page.send("Runtime.enable", {}, sessionId);
    await page.send("Page.navigate", { url }, sessionId);

    /** Evaluates an expression in the page and returns its value. */
    const evaluate = async (expression: string) => {
      const { result, exceptionDetails } = await page.send("Runtime.evaluate", {
        expression,
        returnByValue: true,
        awaitPromise: true,
      }, sessionId);
      if (exceptionDetails) throw new Error(`page error: ${JSON.stringify(exceptionDetails)}`);
      return result.value;
    };
    /** Polls an expression until it is truthy, for at most 20 s. */
    const waitFor = async (expression: string, what: string) => {
      const end = performance.now() + 20_000;
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
    const image = (id: string) =>
      evaluate(`(() => { const i = document.getElementById("${id}");
        return { hidden: i.hidden, width: i.naturalWidth, height: i.naturalHeight,
                 seed: i.dataset.seed ?? null }; })()`);

    // 1. The page loads the model list, and the noising preview draws itself.
    await waitFor(
      `document.getElementById("model-info").textContent.startsWith("Model tiny")`,
      "the model list",
    );
    await waitFor(`document.getElementById("noise-image").naturalWidth > 0`, "the noising preview");
    assert.deepEqual(await image("noise-image"), {
      hidden: false,
      width: 12,
      height: 12,
      seed: null,
    });

    // 2. The sampler picker is lib's table, starting on the server's default; picking a sampler
    // sets its default step count and shows eta only where it applies.
    assert.deepEqual(
      await evaluate(`[...document.getElementById("sampler").options].map((o) => o.value)`),
      [...SAMPLERS],
    );
    assert.equal(await evaluate(`document.getElementById("sampler").value`), DEFAULT_SAMPLER);
    const pick = (name: string) =>
      evaluate(`(() => {
        const select = document.getElementById("sampler");
        select.value = "${name}";
        select.dispatchEvent(new Event("change"));
        return [document.getElementById("steps").value,
                document.getElementById("eta-field").hidden];
      })()`);
    assert.deepEqual(await pick("ddim"), ["50", false]);
    assert.deepEqual(await pick("ddpm"), ["1000", true]);
    assert.deepEqual(await pick("unipc"), ["15", true]);

    // 3. Generate a grid with a chosen seed (UniPC, picked above).
    await evaluate(`(() => {
      document.getElementById("steps").value = "4";
      document.getElementById("n").value = "4";
      document.getElementById("seed").value = "42";
      document.getElementById("generate-button").click();
    })()`);
    await waitFor(`document.getElementById("samples").dataset.seed === "42"`, "the samples");
    assert.deepEqual(await image("samples"), { hidden: false, width: 22, height: 22, seed: "42" });

    // 4. Watch a streamed run to the end.
    await evaluate(`(() => {
      document.getElementById("seed").value = "43";
      document.getElementById("stream-button").click();
    })()`);
    await waitFor(
      `document.getElementById("generate-status").textContent.startsWith("Done")`,
      "the stream to finish",
    );
    assert.equal((await image("samples")).seed, "43");

    // 5. Move the t slider: a new frame arrives.
    await evaluate(`(() => {
      const slider = document.getElementById("noise-t");
      slider.value = "900";
      slider.dispatchEvent(new Event("input"));
    })()`);
    await waitFor(`document.getElementById("noise-t-value").textContent === "900"`, "the slider");

    // 6. Interpolate between the two drawing pads.
    await evaluate(`(() => {
      document.getElementById("interp-t").value = "30";
      document.getElementById("interp-steps").value = "4";
      document.getElementById("interp-count").value = "3";
      document.getElementById("interp-button").click();
    })()`);
    await waitFor(`document.getElementById("interp-image").naturalWidth > 0`, "the interpolation");
    assert.deepEqual(await image("interp-image"), {
      hidden: false,
      width: 32,
      height: 12,
      seed: null,
    });
    assert.match(
      await evaluate(`document.getElementById("interp-status").textContent`),
      /^Seed \d+/,
    );

    // 7. The unconditional model has no class picker; the conditional one fills it from
    // /v1/models, and a picked class and guidance go with every request.
    const hidden = () =>
      evaluate(`["class-field", "guidance-field"].map((id) => document.getElementById(id).hidden)`);
    assert.deepEqual(await hidden(), [true, true]);
    await evaluate(`(() => {
      const select = document.getElementById("model");
      select.value = "tiny_cond";
      select.dispatchEvent(new Event("change"));
    })()`);
    assert.deepEqual(await hidden(), [false, false]);
    assert.deepEqual(
      await evaluate(`[...document.getElementById("label").options].map((o) => o.text)`),
      ["any / no class", ...TINY_CLASSES],
    );
    assert.equal(await evaluate(`document.getElementById("guidance").disabled`), true);
    await evaluate(`(() => {
      const picker = document.getElementById("label");
      picker.value = "1";
      picker.dispatchEvent(new Event("change"));
      const slider = document.getElementById("guidance");
      slider.value = "2.5";
      slider.dispatchEvent(new Event("input"));
      document.getElementById("seed").value = "44";
      document.getElementById("generate-button").click();
    })()`);
    assert.equal(await evaluate(`document.getElementById("guidance-value").textContent`), "2.5");
    await waitFor(`document.getElementById("samples").dataset.seed === "44"`, "the class samples");
    assert.match(
      await evaluate(`document.getElementById("generate-status").textContent`),
      /^Done in .* seed 44, class square \(guidance 2\.5\)\.$/,
    );
    await evaluate(`document.getElementById("interp-button").click()`);
    await waitFor(
      `document.getElementById("interp-status").textContent.includes("class square")`,
      "the class interpolation",
    );

    // 8. A screenshot as the test's artefact.
    const { data } = await page.send("Page.captureScreenshot", { format: "png" }, sessionId);
    const screenshot = fromBase64(data, "screenshot");
    const path = `${artefacts}/playground.png`;
    await Deno.writeFile(path, screenshot);
    const shot = decodePng(screenshot);
    console.log(`playground screenshot (${shot.width}x${shot.height}): ${path}`);
    assert.deepEqual(page.exceptions, [], "the page threw");
    await page.send("Browser.close").catch(() => {});
  } finally {
    await devtools?.close();
    const exited = await Promise.race([
      browser.status.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5000)),
    ]);
    if (!exited) browser.kill("SIGKILL");
    await browser.status;
    await drained;
    await stop(server, started);
    await Deno.remove(profile, { recursive: true }).catch(() => {});
    await Deno.remove(weights, { recursive: true });
  }
});
