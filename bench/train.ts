/**
 * Training throughput of the U-Net on each tfjs backend this machine has. Prints a Markdown
 * table. GFLOP/s counts a training step as 3 forward passes (forward, input gradient, weight
 * gradient) of the FLOPs `describeUNet` counts (convolutions, dense layers, attention);
 * "forward GFLOP/s" is the same network's forward pass alone, and "conv GFLOP/s" one typical
 * 3x3 convolution alone: the yardsticks a training step is compared with.
 *
 *   deno task bench:train [--preset mnist] [--batch 64] [--steps 3] [--backends webgpu,wasm,cpu]
 */

import * as tf from "@tensorflow/tfjs";
import { parseArgs } from "node:util";
import { createRng } from "../lib/rng.ts";
import { makeSchedule } from "../lib/schedule.ts";
import { type BackendChoice, findWebGpuAdapter, initBackend } from "../train/backend.ts";
import { imagesAt, loadMnist } from "../train/data.ts";
import { describeUNet, PRESETS } from "../train/network.ts";
import { Trainer } from "../train/trainer.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    preset: { type: "string", default: "mnist" },
    batch: { type: "string", default: "64" },
    steps: { type: "string", default: "3" },
    backends: { type: "string", default: "webgpu,wasm,cpu" },
  },
});
const preset = PRESETS[values.preset as keyof typeof PRESETS];
if (!preset) throw new RangeError(`--preset must be one of ${Object.keys(PRESETS).join(", ")}`);
const batch = Number(values.batch), steps = Number(values.steps);
const { flopsPerImage } = describeUNet(preset);
const { train } = await loadMnist({ imageSize: preset.imageSize, channels: preset.channels as 1 });
const x = imagesAt(train, Array.from({ length: batch }, (_, i) => i));
const shape = [batch, preset.channels, preset.imageSize, preset.imageSize] as const;

/**
 * The backend's forward-convolution throughput: a 3x3, 32-to-32-channel convolution of a batch
 * of 64 images of 28x28, the kind of layer the network is made of, best of three.
 */
async function convThroughput(): Promise<number> {
  const x = tf.randomNormal([64, 28, 28, 32]) as tf.Tensor4D;
  const w = tf.randomNormal([3, 3, 32, 32]) as tf.Tensor4D;
  let best = Infinity;
  for (let i = 0; i < 4; i++) {
    const start = performance.now();
    const y = tf.conv2d(x, w, 1, "same");
    await y.data();
    y.dispose();
    if (i > 0) best = Math.min(best, performance.now() - start); // the first compiles
  }
  tf.dispose([x, w]);
  return (2 * 64 * 28 * 28 * 32 * 32 * 9) / (best / 1000) / 1e9;
}

const rows: string[] = [];
for (const name of values.backends.split(",") as BackendChoice[]) {
  if (name === "webgpu" && !(await findWebGpuAdapter())) {
    rows.push(`| webgpu | - | - | - | - | - | no adapter |`);
    continue;
  }
  const info = await initBackend(name);
  const trainer = await Trainer.create({ config: preset, schedule: makeSchedule() }, 0);
  const rng = createRng(0);
  try {
    await trainer.trainStep(x, shape, rng); // warm-up: kernel compilation, allocation
    const start = performance.now();
    for (let i = 0; i < steps; i++) await trainer.trainStep(x, shape, rng);
    const stepsPerSecond = steps / ((performance.now() - start) / 1000);
    const gflops = (3 * flopsPerImage * batch * stepsPerSecond) / 1e9;
    // The yardstick: the same network's forward pass alone (evaluation mode, same batch).
    const denoiser = trainer.emaDenoiser();
    const t = new Float32Array(batch).fill(500);
    await denoiser(x, t, shape);
    const forwardStart = performance.now();
    await denoiser(x, t, shape);
    const forwardSeconds = (performance.now() - forwardStart) / 1000;
    const forwardGflops = (flopsPerImage * batch) / forwardSeconds / 1e9;
    const cells = [
      stepsPerSecond.toFixed(4),
      (stepsPerSecond * batch).toFixed(2),
      gflops.toFixed(2),
      forwardGflops.toFixed(2),
      (await convThroughput()).toFixed(2),
    ];
    rows.push(`| ${name} | ${cells.join(" | ")} | ${info.summary} |`);
  } catch (error) {
    rows.push(
      `| ${name} | - | - | - | - | - | cannot train: ${(error as Error).message.split("\n")[0]} |`,
    );
  } finally {
    trainer.dispose();
  }
  console.error(rows.at(-1));
}
console.log(
  `\n${values.preset} preset, batch ${batch}, ${steps} timed steps after one warm-up step\n`,
);
console.log("| backend | steps/s | images/s | GFLOP/s | forward GFLOP/s | conv GFLOP/s | notes |");
console.log("| --- | --- | --- | --- | --- | --- | --- |");
for (const row of rows) console.log(row);
