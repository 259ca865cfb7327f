import assert from "node:assert/strict";
import { decodePng } from "../lib/png.ts";
import { SAMPLERS } from "../lib/samplers.ts";
import { DEFAULT_SAMPLER } from "../serve/schemas.ts";
import { PRESETS } from "../train/network.ts";
import { randomOnnxModel, TINY_CLASSES, TINY_CONDITIONAL } from "./_models.ts";
import { CHROMIUM, type ChromiumPage, hasChromium, openPage } from "./_chromium.ts";
import { startMainServer, stop } from "./serve_helpers.ts";

Deno.test("the playground in headless Chromium: generate, stream, noise, interpolate, and a class picker", async (t) => {
  if (!(await hasChromium())) {
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
  const artefacts = await Deno.makeTempDir({ prefix: "ddpm-playground-" });
  let page: ChromiumPage | undefined;
  try {
    page = await openPage(`${started.base}/`, { windowSize: "1100,1500" });
    const browser = page;
    // deno-lint-ignore no-explicit-any -- the page's values are checked where they are used.
    const evaluate = (expression: string): Promise<any> => browser.evaluate(expression);
    /** Polls an expression until it is truthy, for at most 20 s. */
    const waitFor = (expression: string, what: string) => browser.waitFor(expression, what, 20_000);
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
      ["any", "no class", ...TINY_CLASSES],
    );
    // "any" samples drawn classes, which guidance applies to; "no class" has none to guide.
    // Untouched, the slider sends no weight, so sampling gets the API's default guidance.
    assert.equal(await evaluate(`document.getElementById("guidance").disabled`), false);
    assert.equal(
      await evaluate(`document.getElementById("guidance-value").textContent`),
      "default",
    );
    await evaluate(`(() => {
      document.getElementById("seed").value = "45";
      document.getElementById("generate-button").click();
    })()`);
    await waitFor(`document.getElementById("samples").dataset.seed === "45"`, "the drawn samples");
    assert.match(
      await evaluate(`document.getElementById("generate-status").textContent`),
      /^Done in .* seed 45, class drawn at random \(guidance 0\)\.$/,
    );
    await evaluate(`(() => {
      const picker = document.getElementById("label");
      picker.value = "none";
      picker.dispatchEvent(new Event("change"));
    })()`);
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
    const screenshot = await page.screenshot();
    const path = `${artefacts}/playground.png`;
    await Deno.writeFile(path, screenshot);
    const shot = decodePng(screenshot);
    console.log(`playground screenshot (${shot.width}x${shot.height}): ${path}`);
    assert.deepEqual(page.exceptions, [], "the page threw");
  } finally {
    await page?.close();
    await stop(server, started);
    await Deno.remove(weights, { recursive: true });
  }
});
