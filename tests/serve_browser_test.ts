import assert from "node:assert/strict";
import { BROWSER_BUNDLE, buildBrowserBundle } from "../build/browser.ts";
import { fromBase64 } from "../serve/images.ts";
import { PRESETS } from "../train/network.ts";
import { hasChromium, openPage } from "./_chromium.ts";
import { randomOnnxModel, TINY_CONDITIONAL } from "./_models.ts";
import { startMainServer, stop } from "./serve_helpers.ts";

Deno.test("the committed browser bundle is what deno task build:browser makes of lib/ today", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ddpm-bundle-" });
  try {
    await buildBrowserBundle(`${dir}/local.bundle.js`);
    const fresh = await Deno.readTextFile(`${dir}/local.bundle.js`);
    assert.ok(
      fresh === await Deno.readTextFile(BROWSER_BUNDLE),
      "serve/browser/local.bundle.js is stale: run deno task build:browser and commit it",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The runs compared: the page's "run in this browser" against POST /v1/samples. */
const RUNS = [
  { model: "tiny", sampler: "ddim", steps: 4, n: 4, seed: 42, eta: 0 },
  { model: "tiny", sampler: "ddpm", steps: 6, n: 3, seed: 7 },
  // Fresh noise at every step, from the seed, in the page as on the server.
  { model: "tiny", sampler: "dpmpp-2m-sde", steps: 5, n: 3, seed: 8 },
  { model: "tiny_cond", sampler: "ddim", steps: 5, n: 4, seed: 9, eta: 0.5, label: 1, guidance: 2 },
  // No label: both draw each image's class from the seed, and guide it.
  { model: "tiny_cond", sampler: "dpmpp-2m", steps: 4, n: 6, seed: 12, guidance: 1.5 },
  { model: "tiny_cond", sampler: "ddim", steps: 3, n: 2, seed: 5, label: null },
  // Drawn classes and no weight: unguided on both.
  { model: "tiny_cond", sampler: "unipc", steps: 4, n: 5, seed: 17 },
  // A class and no weight: both guide with the sampler's default, w = 1 over timesteps 80-470.
  { model: "tiny_cond", sampler: "ddim", steps: 6, n: 3, seed: 14, label: 2 },
  // The same under the stochastic samplers: their own defaults, w = 0.5 over 80-330 (the SDE
  // solver) and 0.5 over 80-470 (DDPM's ancestral steps).
  { model: "tiny_cond", sampler: "dpmpp-2m-sde", steps: 6, n: 3, seed: 14, label: 2 },
  { model: "tiny_cond", sampler: "ddpm", steps: 6, n: 3, seed: 14, label: 2 },
] as const;

Deno.test("run in this browser: headless Chromium on WebAssembly draws POST /v1/samples's PNG byte for byte", async (t) => {
  if (!(await hasChromium())) {
    console.log("skipped: no Chromium (apt-get install chromium, or set CHROMIUM)");
    await t.step({ name: "skipped: Chromium is not installed", ignore: true, fn: () => {} });
    return;
  }
  const weights = await Deno.makeTempDir({ prefix: "ddpm-weights-" });
  await Deno.writeFile(`${weights}/tiny.onnx`, randomOnnxModel(PRESETS.tiny));
  await Deno.writeFile(`${weights}/tiny_cond.onnx`, randomOnnxModel(TINY_CONDITIONAL, 3));
  const { child: server, started } = await startMainServer(weights);
  let page;
  try {
    // 1. The static files: the bundle, onnxruntime-web's files as typed, the model bytes, and
    // nothing else of the package.
    const get = (path: string) => fetch(`${started.base}${path}`);
    for (
      const [path, type] of [
        ["/browser/local.js", "text/javascript; charset=utf-8"],
        ["/browser/ort/ort.wasm.bundle.min.mjs", "text/javascript; charset=utf-8"],
        ["/browser/ort/ort-wasm-simd-threaded.wasm", "application/wasm"],
        ["/browser/models/tiny.onnx", "application/octet-stream"],
      ]
    ) {
      const response = await get(path);
      await response.body?.cancel();
      assert.equal(response.status, 200, path);
      assert.equal(response.headers.get("content-type"), type, path);
    }
    assert.deepEqual(
      new Uint8Array(await (await get("/browser/models/tiny.onnx")).arrayBuffer()),
      await Deno.readFile(`${weights}/tiny.onnx`),
    );
    for (const path of ["/browser/ort/package.json", "/browser/models/nope.onnx"]) {
      const response = await get(path);
      assert.equal(response.status, 404, path);
      assert.match((await response.json()).detail, /^no /);
    }

    // 2. The page samples each run on WebAssembly; the server samples the same request.
    page = await openPage(`${started.base}/`);
    const p = page;
    await p.waitFor(`document.getElementById("model").options.length === 2`, "the model list");
    for (const run of RUNS) {
      const { model, sampler, steps, n, seed } = run;
      // A label, null (no class: the picker's "none") or none sent (drawn: the picker's "").
      const label = "label" in run ? run.label : undefined;
      const guidance = "guidance" in run ? run.guidance : undefined;
      const eta = "eta" in run ? run.eta : undefined;
      const body = {
        model,
        sampler,
        steps,
        n,
        seed,
        ...(eta === undefined ? {} : { eta }),
        ...(label === undefined ? {} : { label }),
        ...(guidance === undefined ? {} : { guidance }),
      };
      const response = await fetch(`${started.base}/v1/samples`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      assert.equal(response.status, 200);
      if (typeof label === "number" && guidance === undefined) {
        // The sampler's default, which the page must apply as well for the bytes to match.
        const [weight, interval] =
          ({ "dpmpp-2m-sde": ["0.5", "80-330"], ddpm: ["0.5", "80-470"] } as Record<
            string,
            [string, string]
          >)[sampler] ?? ["1", "80-470"];
        assert.equal(response.headers.get("x-guidance"), weight, sampler);
        assert.equal(response.headers.get("x-guidance-interval"), interval, sampler);
      }
      const served = new Uint8Array(await response.arrayBuffer());

      await p.evaluate(`(() => {
        const set = (id, value) => {
          const e = document.getElementById(id);
          e.value = value;
          e.dispatchEvent(new Event("change"));
          e.dispatchEvent(new Event("input"));
        };
        set("model", ${JSON.stringify(model)});
        set("label", ${
        JSON.stringify(label === undefined ? "" : label === null ? "none" : String(label))
      });
        ${guidance === undefined ? "" : `set("guidance", "${guidance}");`}
        set("sampler", "${sampler}");
        set("steps", "${steps}");
        set("n", "${n}");
        set("seed", "${seed}");
        set("eta", "${eta ?? 0}");
        set("local-provider", "wasm");
        document.getElementById("local-button").click();
      })()`);
      await p.waitFor(
        `document.getElementById("local-image").dataset.seed === "${seed}" ||
          document.getElementById("local-status").classList.contains("error")`,
        `the page's ${model} samples`,
      );
      assert.match(
        await p.evaluate(`document.getElementById("local-status").textContent`) as string,
        new RegExp(`^Done in .* in this browser on WebAssembly, seed ${seed}\\.$`),
      );
      const drawn = fromBase64(
        await p.evaluate(`(async () => {
          const image = document.getElementById("local-image");
          const bytes = new Uint8Array(await (await fetch(image.src)).arrayBuffer());
          let text = "";
          for (const b of bytes) text += String.fromCharCode(b);
          return btoa(text);
        })()`) as string,
        "page PNG",
      );
      assert.equal(
        await p.evaluate(`document.getElementById("local-image").dataset.provider`),
        "wasm",
      );
      assert.deepEqual(drawn, served, `${JSON.stringify(body)}: the page's PNG differs`);
      // Reset the marker so the next run waits for its own result.
      await p.evaluate(`delete document.getElementById("local-image").dataset.seed`);
    }
    assert.deepEqual(p.exceptions, [], "the page threw");
  } finally {
    await page?.close();
    await stop(server, started);
    await Deno.remove(weights, { recursive: true });
  }
});
