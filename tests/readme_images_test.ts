/**
 * The README's images are what the API draws: each one, requested from `serve/main.ts` on the
 * shipped models with the body the README gives, comes back byte for byte as committed in
 * `weights/`. A change anywhere between the model files and the PNG encoder (the card, the
 * adapter, the samplers, the routes) that moves one pixel fails here; a retrained model must
 * come with its regenerated images.
 *
 * @module
 */

import assert from "node:assert/strict";
import { postJson, startMainServer, stop } from "./serve_helpers.ts";

const ROOT = new URL("..", import.meta.url);

/** The digits 0..9 twice, as the README's labelled grids ask for them. */
const TWICE = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
const grid = (model: string, guidance: number) => ({
  model,
  n: 20,
  label: TWICE,
  guidance,
  columns: 10,
  sampler: "ddim",
  steps: 50,
  seed: 1,
});

/** Each committed image and the request body that draws it (README, top and "Shipped models"). */
const IMAGES: [string, Record<string, unknown>][] = [
  ["mnist-samples.png", { model: "mnist", n: 16, sampler: "ddim", steps: 50, seed: 1 }],
  ["mnist-denoising.png", {
    model: "mnist",
    n: 4,
    sampler: "ddim",
    steps: 50,
    seed: 1,
    format: "apng",
    every: 2,
  }],
  ["mnist-cond-guidance-0.png", grid("mnist-cond", 0)],
  ["mnist-cond-guidance-1.png", grid("mnist-cond", 1)],
  ["mnist-cond-guidance-3.png", grid("mnist-cond", 3)],
  ["fashion-cond-samples.png", grid("fashion-cond", 3)],
  // The API's defaults: sampler, steps and guidance left out.
  ["mnist-cond-defaults.png", { model: "mnist-cond", n: 20, label: TWICE, columns: 10, seed: 1 }],
  ["fashion-cond-defaults.png", {
    model: "fashion-cond",
    n: 20,
    label: TWICE,
    columns: 10,
    seed: 1,
  }],
];

Deno.test("the README's images come back byte for byte from the API on the shipped models", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  // The README states the requests in prose; these are the ones it names.
  for (
    const text of [
      `{"model": "mnist", "n": 16, "sampler": "ddim", "steps": 50, "seed": 1}`,
      `"n": 4, "format": "apng", "every": 2`,
      `{"model": "mnist-cond", "n": 20, "label": [0, 1, ..., 9, 0, 1, ..., 9], "guidance": 3,`,
      `{"model": "mnist-cond", "n": 20, "label": [0, 1, ..., 9, 0, 1, ..., 9], "columns": 10, "seed": 1}`,
    ]
  ) assert.ok(readme.includes(text), `the README no longer says ${text}`);
  // WebAssembly on two threads, as `deno task serve --provider wasm` ran on the 2-core machine
  // that drew them (native onnxruntime rounds differently in the last bits).
  const { child, started } = await startMainServer("weights", ["--threads", "2"]);
  try {
    const app = { request: (path: string, init?: RequestInit) => fetch(started.base + path, init) };
    for (const [file, body] of IMAGES) {
      const response = await postJson(app, "/v1/samples", body);
      assert.equal(response.status, 200, `${file}: ${await response.clone().text()}`);
      const drawn = new Uint8Array(await response.arrayBuffer());
      const committed = await Deno.readFile(new URL(`weights/${file}`, ROOT));
      assert.ok(
        drawn.length === committed.length && drawn.every((b, i) => b === committed[i]),
        `${file}: the API drew ${drawn.length} bytes that differ from the committed ${committed.length}`,
      );
    }
  } finally {
    await stop(child, started);
  }
});
