import assert from "node:assert/strict";
import type { Denoiser } from "../lib/samplers.ts";
import { batchedDenoiser, type NetworkCall } from "../model/batcher.ts";
import { createApp } from "../serve/app.ts";
import { browserDenoiser, type BrowserModel } from "../serve/browser/local.ts";
import { fromBase64 } from "../serve/images.ts";
import { chooseProvider } from "../serve/provider.ts";
import { servedModel } from "../serve/registry.ts";
import { card, TINY_CONDITIONAL } from "./_models.ts";
import { pngBase64, postJson, randomImage, readEvents } from "./serve_helpers.ts";

// A learned-range model served end to end, with networks written here (the exporter of
// learned-variance ONNX graphs is not part of this change). Each network is batched across
// requests by model/batcher.ts as the server batches onnxruntime's, and its eps is an affine
// function of x and the class, so every endpoint has something non-trivial to compute:
// - `fixed`: fixedlarge, the image's channels out;
// - `learned`: learned-range, the same eps and then v = +1 (which is fixedlarge's variance at
//   every step that adds noise), so it must serve `fixed`'s bytes for every sampler;
// - `varied`: learned-range with v = tanh(x) per element, which DDPM follows and the ODE
//   samplers and x0 reconstructions ignore.

const wasm = await chooseProvider("wasm");

/** eps of the test networks: affine in x, moved by the class (3: "no class"). */
function eps(x: number, t: number, label: number): number {
  return 0.4 * x + 0.1 * (label - 1.5) + 1e-4 * t;
}

/** A network of the tiny conditional shape; `v` given: a learned-range one (prediction, then v). */
function network(v?: (x: number) => number): NetworkCall {
  return (x, t, labels, shape) => {
    const n = shape[0];
    const per = x.length / n;
    const rows = v ? 2 : 1;
    const out = new Float32Array(rows * x.length);
    // Output NCHW [n, c, h, w], or [n, 2c, h, w]: each row's eps, then its v.
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < per; j++) {
        const value = x[i * per + j];
        out[rows * i * per + j] = eps(value, t[i], labels[i]);
        if (v) out[(2 * i + 1) * per + j] = v(value);
      }
    }
    return Promise.resolve(out);
  };
}

const fixedCard = card(TINY_CONDITIONAL);
const learnedCard = {
  ...fixedCard,
  variance: "learned-range",
  config: { ...TINY_CONDITIONAL, learnVariance: true },
};
const served = (name: string, modelCard: unknown, call: NetworkCall) =>
  servedModel(name, modelCard, batchedDenoiser(call, { nullLabel: 3 }));
const registry = {
  provider: wasm,
  models: [
    served("fixed", fixedCard, network()),
    served("learned", learnedCard, network(() => 1)),
    served("varied", learnedCard, network(Math.tanh)),
  ],
};
const { app } = createApp({ registry });

/** A 200 response's bytes. */
async function bytesOf(path: string, body: Record<string, unknown>): Promise<Uint8Array> {
  const response = await postJson(app, path, body);
  assert.equal(response.status, 200, await response.clone().text());
  return new Uint8Array(await response.arrayBuffer());
}

Deno.test("a learned-range model with v = +1 serves fixedlarge's samples, for every sampler, guided or not", async () => {
  for (const sampler of ["ddpm", "ddim", "dpmpp-2m", "unipc"]) {
    for (const extra of [{}, { label: "square", guidance: 2 }]) {
      const body = { n: 3, sampler, steps: 6, seed: 11, ...extra };
      const fixed = await bytesOf("/v1/samples", { model: "fixed", ...body });
      const learned = await bytesOf("/v1/samples", { model: "learned", ...body });
      assert.deepEqual(learned, fixed, `${sampler} ${JSON.stringify(extra)}`);
    }
  }
});

Deno.test("a per-element learned variance moves DDPM's samples and leaves the ODE samplers' alone", async () => {
  const body = { n: 2, steps: 8, seed: 3 };
  const ask = (model: string, sampler: string) =>
    bytesOf("/v1/samples", { model, sampler, ...body });
  assert.notDeepEqual(await ask("varied", "ddpm"), await ask("fixed", "ddpm"));
  for (const sampler of ["ddim", "dpmpp-2m", "unipc"]) {
    assert.deepEqual(await ask("varied", sampler), await ask("fixed", sampler), sampler);
  }
});

Deno.test("a learned-range model streams its steps and ends with its /v1/samples grid", async () => {
  const body = { model: "varied", n: 2, sampler: "ddpm", steps: 3, seed: 4, label: "cross" };
  const response = await postJson(app, "/v1/samples/stream", body);
  assert.equal(response.status, 200);
  const events = [];
  for await (const event of readEvents(response)) events.push(event);
  assert.deepEqual(events.map((e) => e.event), ["start", "step", "step", "step", "done"]);
  assert.deepEqual(fromBase64(events.at(-1)?.data.png, "png"), await bytesOf("/v1/samples", body));
});

Deno.test("a learned-range model reconstructs x_0 from its prediction half and interpolates", async () => {
  const image = pngBase64(randomImage(8, 8, 1, 7));
  const noise = { image, timesteps: [100, 600], seed: 3, reconstruct: true, format: "json" };
  const ask = async (model: string) =>
    await (await postJson(app, "/v1/noise", { model, label: "circle", ...noise })).json();
  const fixed = await ask("fixed");
  assert.deepEqual(await ask("varied"), { ...fixed, model: "varied" });
  // Interpolation decodes with DDPM by default: v = +1 gives fixedlarge's decode.
  const mix = {
    a: image,
    b: pngBase64(randomImage(8, 8, 1, 8)),
    t: 30,
    count: 3,
    steps: 4,
    seed: 6,
  };
  assert.deepEqual(
    await bytesOf("/v1/interpolate", { model: "learned", ...mix }),
    await bytesOf("/v1/interpolate", { model: "fixed", ...mix }),
  );
});

Deno.test("servedModel() refuses a card whose variance does not match whether its network learns one", () => {
  const zero: Denoiser = (x) => new Float32Array(2 * x.length);
  assert.equal(servedModel("l", learnedCard, zero).variance, "learned-range");
  assert.throws(
    () => servedModel("l", { ...learnedCard, variance: "fixedlarge" }, zero),
    new TypeError(
      "model l: its card's variance is fixedlarge but its network learns its variance " +
        "(config.learnVariance): expected learned-range",
    ),
  );
  assert.throws(
    () => servedModel("f", { ...fixedCard, variance: "learned-range" }, zero),
    /model f: its card's variance is learned-range but its network does not learn its variance/,
  );
});

Deno.test("the playground's browserDenoiser places a learned network's 2x rows across its 64-row splits", async () => {
  // A stand-in for an onnxruntime-web session: its Tensor keeps the data, its run answers with
  // the learned network above (v = tanh x). 70 rows: runs of 64 and 6.
  class Tensor {
    constructor(readonly type: string, readonly data: unknown, readonly dims: number[]) {}
  }
  const call = network(Math.tanh);
  const runs: number[] = [];
  const session = {
    run: async (feeds: Record<string, Tensor>) => {
      const { x, t, y } = feeds;
      runs.push(x.dims[0]);
      const labels = Int32Array.from(y.data as BigInt64Array, Number);
      const shape = x.dims as unknown as readonly [number, number, number, number];
      const data = await call(x.data as Float32Array, t.data as Float32Array, labels, shape);
      return { out: { data, dispose: () => {} } };
    },
  };
  const model = {
    name: "varied",
    card: learnedCard,
    session,
    ort: { Tensor },
    provider: "wasm",
  } as unknown as BrowserModel;
  const n = 70, per = 64;
  const x = Float32Array.from({ length: n * per }, (_, i) => Math.sin(i));
  const t = Float32Array.from({ length: n }, (_, i) => i);
  const labels = Int32Array.from({ length: n }, (_, i) => i % 4);
  const out = await browserDenoiser(model)(x, t, [n, 1, 8, 8], labels);
  assert.deepEqual(runs, [64, 6]);
  assert.deepEqual(out, await call(x, t, labels, [n, 1, 8, 8]));
});
