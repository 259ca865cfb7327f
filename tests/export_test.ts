import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createRng } from "../lib/rng.ts";
import { loadOnnxModel, onnxDenoiser, readModelCard } from "../model/onnx.ts";
import { findWebGpuAdapter } from "../model/webgpu.ts";
import { dataRange } from "../model/scaling.ts";
import { initBackend } from "../train/backend.ts";
import { type Checkpoint, type NamedTensors, saveCheckpoint } from "../train/checkpoint.ts";
import { buildOnnxModel, exportCheckpoint } from "../train/export.ts";
import { PRESETS, type UNetConfig } from "../train/network.ts";
import { tfjsDenoiser } from "../train/tfjs_ops.ts";
import { card, randomWeights, TINY_CONDITIONAL } from "./_models.ts";

async function compare(
  config: UNetConfig,
  provider: "wasm" | "webgpu",
): Promise<{ maxAbs: number; scale: number }> {
  await initBackend("cpu");
  const weights = randomWeights(config, 3);
  const bytes = buildOnnxModel(weights, config, card(config));
  const model = await loadOnnxModel(bytes, provider);
  const n = 3, s = config.imageSize, c = config.channels;
  const shape = [n, c, s, s] as const;
  const x = createRng(8).normal(n * c * s * s);
  const params = new Map(Object.entries(weights).map(([k, v]) => [k, tf.tensor(v.data, v.shape)]));
  let maxAbs = 0, scale = 0;
  try {
    for (const t of [[0, 1, 2], [250, 500, 999], [10, 640, 77]]) {
      const tt = new Float32Array(t);
      // A conditional network gets a class, "no class" and another class.
      const labels = config.numClasses ? Int32Array.of(0, config.numClasses, 1) : undefined;
      const reference = await tfjsDenoiser(params, config)(x, tt, shape, labels);
      const got = await onnxDenoiser(model, { maxBatch: 2 })(x, tt, shape, labels); // 2 + 1: split batches too
      reference.forEach((v, i) => {
        maxAbs = Math.max(maxAbs, Math.abs(v - got[i]));
        scale = Math.max(scale, Math.abs(v));
      });
    }
  } finally {
    params.forEach((p) => p.dispose());
    await model.session.release();
  }
  return { maxAbs, scale };
}

// Bound: both sides compute in float32 with different summation orders (tfjs's conv and
// matmul kernels against onnxruntime's). Rounding errors of relative size ~1e-7 per operation
// grow along the network's ~50 layers and through attention's softmax, so agreement to 1e-4
// of the output's largest magnitude is float32-level; a layout or padding mistake gives
// differences of the output's own size.
const RELATIVE_BOUND = 1e-4;

Deno.test("ONNX export of the tiny U-Net matches tfjs on onnxruntime-web (WebAssembly)", async () => {
  const { maxAbs, scale } = await compare(PRESETS.tiny, "wasm");
  console.log(
    `tiny: max |onnx - tfjs| = ${maxAbs.toExponential(2)}, output scale ${scale.toFixed(3)}`,
  );
  assert.ok(scale > 0.1, "outputs must be non-trivial for the comparison to mean anything");
  assert.ok(maxAbs <= RELATIVE_BOUND * scale, `max abs difference ${maxAbs} for scale ${scale}`);
});

Deno.test("ONNX export of the mnist preset matches tfjs on onnxruntime-web (WebAssembly)", async () => {
  const { maxAbs, scale } = await compare(PRESETS.mnist, "wasm");
  console.log(
    `mnist: max |onnx - tfjs| = ${maxAbs.toExponential(2)}, output scale ${scale.toFixed(3)}`,
  );
  assert.ok(scale > 0.1);
  assert.ok(maxAbs <= RELATIVE_BOUND * scale, `max abs difference ${maxAbs} for scale ${scale}`);
});

Deno.test("ONNX export matches tfjs on the WebGPU execution provider", async (t) => {
  const adapter = await findWebGpuAdapter();
  if (!adapter) {
    console.log("skipped: no WebGPU adapter (install mesa-vulkan-drivers for a software one)");
    await t.step({ name: "skipped: no WebGPU adapter", ignore: true, fn: () => {} });
    return;
  }
  for (
    const [name, config] of [["tiny", PRESETS.tiny], ["tiny, 3 classes", TINY_CONDITIONAL]] as const
  ) {
    const { maxAbs, scale } = await compare(config, "webgpu");
    console.log(
      `${name} on WebGPU (${adapter.description}): max |onnx - tfjs| = ${maxAbs.toExponential(2)}`,
    );
    assert.ok(scale > 0.1, "outputs must be non-trivial for the comparison to mean anything");
    assert.ok(
      maxAbs <= RELATIVE_BOUND * scale,
      `${name}: max abs difference ${maxAbs} for scale ${scale}`,
    );
  }
});

function tinyCheckpoint(): Checkpoint {
  const config = PRESETS.tiny;
  const weights = randomWeights(config, 1);
  const zeros: NamedTensors = Object.fromEntries(
    Object.entries(weights).map((
      [k, v],
    ) => [k, { shape: v.shape, data: new Float32Array(v.data.length) }]),
  );
  return {
    step: 12,
    config: { ...config },
    schedule: { kind: "linear", timesteps: 1000, betaStart: 1e-4, betaEnd: 0.02 },
    prediction: "eps",
    seed: 0,
    params: zeros,
    ema: weights,
    optimizer: {
      kind: "adam",
      step: 12,
      beta1: 0.9,
      beta2: 0.999,
      epsilon: 1e-8,
      m: zeros,
      v: zeros,
    },
    trainingState: { wallSeconds: 3.5 },
    metadata: { dataset: "mnist" },
  };
}

Deno.test("deno task export writes the model and its card; the card is in the model's metadata", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await saveCheckpoint(`${dir}/ckpt-00000012.ddpm`, tinyCheckpoint());
    const result = await exportCheckpoint(`${dir}/ckpt-00000012.ddpm`, `${dir}/out/tiny.onnx`);
    const bytes = await Deno.readFile(result.onnx);
    const fromModel = readModelCard(bytes);
    const fromFile = JSON.parse(await Deno.readTextFile(`${dir}/out/tiny.json`));
    assert.deepEqual(fromModel, fromFile);
    assert.equal(fromModel.trainingSteps, 12);
    assert.equal(fromModel.weights, "ema");
    assert.equal(fromModel.parameters, 44_969);
    assert.equal(fromModel.trainingWallSeconds, 3.5);
    // The pixel range as numbers, and the sentence for a person naming the same range.
    assert.deepEqual(fromModel.pixelRange, [-1, 1]);
    assert.deepEqual(dataRange(fromModel.dataScaling), [-1, 1]);
    assert.deepEqual(fromModel.schedule, {
      kind: "linear",
      timesteps: 1000,
      betaStart: 1e-4,
      betaEnd: 0.02,
    });
    // --raw exports the live weights (all zero here): the model then outputs exactly 0.
    await exportCheckpoint(`${dir}/ckpt-00000012.ddpm`, `${dir}/raw.onnx`, { raw: true });
    const raw = await loadOnnxModel(await Deno.readFile(`${dir}/raw.onnx`));
    const out = await onnxDenoiser(raw)(new Float32Array(64).fill(0.5), new Float32Array([3]), [
      1,
      1,
      8,
      8,
    ]);
    assert.ok(out.every((v) => v === 0));
    assert.equal(raw.card.weights, "raw");
    await raw.session.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a corrupt or truncated checkpoint gives a clear error and writes no ONNX file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const good = `${dir}/ckpt-00000012.ddpm`;
    await saveCheckpoint(good, tinyCheckpoint());
    const bytes = await Deno.readFile(good);
    await Deno.writeFile(`${dir}/truncated.ddpm`, bytes.subarray(0, bytes.length - 100));
    const flipped = bytes.slice();
    flipped[bytes.length - 500] ^= 1;
    await Deno.writeFile(`${dir}/flipped.ddpm`, flipped);
    await Deno.mkdir(`${dir}/weights`);
    await assert.rejects(
      exportCheckpoint(`${dir}/truncated.ddpm`, `${dir}/weights/a.onnx`),
      /truncated/,
    );
    await assert.rejects(
      exportCheckpoint(`${dir}/flipped.ddpm`, `${dir}/weights/b.onnx`),
      /corrupt: SHA-256 mismatch/,
    );
    await assert.rejects(
      exportCheckpoint(good, `${dir}/weights/c.txt`),
      /the output must be a \.onnx file/,
    );
    assert.deepEqual([...Deno.readDirSync(`${dir}/weights`)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("weights that do not fit the config are refused with the tensor's name", () => {
  const config = PRESETS.tiny;
  const weights = randomWeights(config, 2);
  const { ["conv_in.w"]: _dropped, ...missing } = weights;
  assert.throws(() => buildOnnxModel(missing, config, card(config)), /the weights lack conv_in\.w/);
  const reshaped = { ...weights, "conv_in.b": { shape: [9], data: new Float32Array(9) } };
  assert.throws(
    () => buildOnnxModel(reshaped, config, card(config)),
    /conv_in\.b has shape \[9\], the config needs \[8\]/,
  );
  const extra = { ...weights, "bogus.w": { shape: [1], data: new Float32Array(1) } };
  assert.throws(
    () => buildOnnxModel(extra, config, card(config)),
    /tensors the network lacks: bogus\.w/,
  );
});
