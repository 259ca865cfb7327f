/**
 * Training throughput of the U-Net, with PyTorch on the same machine as the peer, from one run.
 * Prints a Markdown table: for each worker count, the toolkit's steps/s and, beside it, the same
 * U-Net and step in PyTorch (`bench/train_peer.py`, Debian's `python3-torch`) on as many threads,
 * with the ratio. The peer's parameter count is checked against `describeUNet` first, so the two
 * rows train the same network.
 *
 * GFLOP/s counts a training step as 3 forward passes (forward, input gradient, weight gradient)
 * of the FLOPs `describeUNet` counts (convolutions, dense layers, attention). Below the table,
 * the yardsticks a step is compared with: the forward pass alone and one 3x3 convolution alone,
 * both on this thread's WebAssembly backend.
 *
 *   deno task bench:train [--preset mnist] [--ch 16] [--batch 64] [--steps 3] [--workers 0,2]
 *                         [--backends wasm] [--peer auto|off]
 *
 * `--workers 0` is the in-thread trainer (one core, the optimizer as tfjs kernels); N > 0 is N
 * gradient workers with the fused optimizer. `--backends webgpu` adds the WebGPU backend
 * (in-thread; on a machine without a GPU its software adapter runs at about 1 GFLOP/s).
 */

import * as tf from "@tensorflow/tfjs";
import { parseArgs } from "node:util";
import { createRng } from "../lib/rng.ts";
import { makeSchedule } from "../lib/schedule.ts";
import { findWebGpuAdapter } from "../model/webgpu.ts";
import { type BackendChoice, initBackend } from "../train/backend.ts";
import { imagesAt, loadMnist } from "../train/data.ts";
import { countParameters, describeUNet, PRESETS, validateConfig } from "../train/network.ts";
import { Trainer } from "../train/trainer.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    preset: { type: "string", default: "mnist" },
    ch: { type: "string" },
    batch: { type: "string", default: "64" },
    steps: { type: "string", default: "3" },
    workers: { type: "string", default: `0,${navigator.hardwareConcurrency}` },
    backends: { type: "string", default: "wasm" },
    peer: { type: "string", default: "auto" },
  },
});
const named = PRESETS[values.preset as keyof typeof PRESETS];
if (!named) throw new RangeError(`--preset must be one of ${Object.keys(PRESETS).join(", ")}`);
// `--ch` widens or narrows the preset as `deno task train --ch` does.
const preset = values.ch === undefined ? named : { ...named, ch: Number(values.ch) };
validateConfig(preset);
const batch = Number(values.batch), steps = Number(values.steps);
const workerCounts = values.workers.split(",").map(Number);
for (const w of workerCounts) {
  if (!Number.isInteger(w) || w < 0) throw new RangeError(`--workers: bad count ${w}`);
}
const { params, flopsPerImage } = describeUNet(preset);
const parameterCount = countParameters(params);
// MNIST digits resized to the preset's size and channels; the step's cost does not depend on
// the pixels, only on the shape.
const { train } = await loadMnist({
  imageSize: preset.imageSize,
  channels: preset.channels as 1 | 3,
});
const x = imagesAt(train, Array.from({ length: batch }, (_, i) => i % train.length));
const shape = [batch, preset.channels, preset.imageSize, preset.imageSize] as const;

/** Steps per second of the toolkit's trainer, after one untimed step (compilation, buffers). */
async function toolkitStepsPerSecond(workers: number): Promise<number> {
  const trainer = await Trainer.create({ config: preset, schedule: makeSchedule(), workers }, 0);
  const rng = createRng(0);
  try {
    await trainer.trainStep(x, shape, rng);
    const start = performance.now();
    for (let i = 0; i < steps; i++) await trainer.trainStep(x, shape, rng);
    return steps / ((performance.now() - start) / 1000);
  } finally {
    trainer.dispose();
  }
}

/** The PyTorch peer's steps/s on `threads` threads, or why there is none. */
async function peerStepsPerSecond(threads: number): Promise<number | string> {
  if (values.peer === "off") return "not run (--peer off)";
  const script = new URL("./train_peer.py", import.meta.url).pathname;
  // Debian's interpreter has python3-torch; a python3 earlier on the PATH may not.
  for (const python of ["/usr/bin/python3", "python3"]) {
    let output;
    try {
      output = await new Deno.Command(python, {
        args: [script, "--config", JSON.stringify(preset), "--threads", String(threads)].concat(
          ["--batch", String(batch), "--steps", String(steps)],
        ),
        stdout: "piped",
        stderr: "piped",
        // OpenMP threads that spin while waiting steal the other thread's core.
        env: { OMP_WAIT_POLICY: "PASSIVE" },
      }).output();
    } catch {
      continue; // no such interpreter
    }
    const stderr = new TextDecoder().decode(output.stderr);
    if (!output.success) {
      if (/No module named 'torch'/.test(stderr)) continue;
      return `PyTorch failed: ${stderr.trim().split("\n").pop()}`;
    }
    const result = JSON.parse(new TextDecoder().decode(output.stdout));
    if (result.params !== parameterCount) {
      return `PyTorch's copy has ${result.params} parameters, describeUNet ${parameterCount}`;
    }
    return result.steps_per_s;
  }
  return "PyTorch not installed (apt-get install python3-torch)";
}

/** One 3x3, 32-to-32-channel convolution of 64 images of 28x28, best of three (GFLOP/s). */
async function convThroughput(): Promise<number> {
  const input = tf.randomNormal([64, 28, 28, 32]) as tf.Tensor4D;
  const w = tf.randomNormal([3, 3, 32, 32]) as tf.Tensor4D;
  let best = Infinity;
  for (let i = 0; i < 4; i++) {
    const start = performance.now();
    const y = tf.conv2d(input, w, 1, "same");
    await y.data();
    y.dispose();
    if (i > 0) best = Math.min(best, performance.now() - start); // the first compiles
  }
  tf.dispose([input, w]);
  return (2 * 64 * 28 * 28 * 32 * 32 * 9) / (best / 1000) / 1e9;
}

/** The forward pass alone, evaluation mode, same batch, on this thread (GFLOP/s). */
async function forwardThroughput(): Promise<number> {
  const trainer = await Trainer.create({ config: preset, schedule: makeSchedule() }, 0);
  try {
    const denoiser = trainer.emaDenoiser();
    const t = new Float32Array(batch).fill(500);
    await denoiser(x, t, shape);
    const start = performance.now();
    await denoiser(x, t, shape);
    return (flopsPerImage * batch) / ((performance.now() - start) / 1000) / 1e9;
  } finally {
    trainer.dispose();
  }
}

const gflops = (stepsPerSecond: number) => (3 * flopsPerImage * batch * stepsPerSecond) / 1e9;
const rows: string[] = [];
const row = (cells: (string | number)[]) => {
  rows.push(`| ${cells.join(" | ")} |`);
  console.error(rows.at(-1));
};
let yardsticks = "";
for (const name of values.backends.split(",") as BackendChoice[]) {
  if (name === "webgpu" && !(await findWebGpuAdapter())) {
    row(["tfjs webgpu", "-", "-", "-", "-", "-", "-", "no adapter"]);
    continue;
  }
  const info = await initBackend(name);
  for (const workers of name === "wasm" ? workerCounts : [0]) {
    const threads = Math.max(workers, 1);
    let ours: number | string;
    try {
      ours = await toolkitStepsPerSecond(workers);
    } catch (error) {
      ours = `cannot train: ${(error as Error).message.split("\n")[0]}`;
    }
    const peer = name === "webgpu" ? "CPU peer not comparable" : await peerStepsPerSecond(threads);
    const what = workers > 0 ? `${workers} gradient workers` : "in the main thread";
    const f = (v: number | string, digits: number) =>
      typeof v === "number" ? v.toFixed(digits) : "-";
    row([
      `tfjs ${name}, ${what}`,
      threads,
      f(ours, 3),
      typeof ours === "number" ? (ours * batch).toFixed(1) : "-",
      typeof ours === "number" ? gflops(ours).toFixed(1) : "-",
      f(peer, 3),
      typeof ours === "number" && typeof peer === "number" ? `${(peer / ours).toFixed(2)}x` : "-",
      [
        workers > 0 ? `${info.summary} in each worker` : info.summary,
        typeof ours === "string" ? ours : "",
        typeof peer === "string" ? peer : "",
      ]
        .filter(Boolean).join("; "),
    ]);
  }
  if (name === "wasm") {
    yardsticks = `yardsticks on this thread's wasm backend: forward pass ${
      (await forwardThroughput()).toFixed(1)
    } GFLOP/s, one 3x3 convolution ${(await convThroughput()).toFixed(1)} GFLOP/s`;
  }
}
console.log(
  `\n${values.preset} preset (${parameterCount.toLocaleString("en-US")} parameters), batch ` +
    `${batch}, ${steps} timed steps after warm-up; PyTorch on as many threads as the row's ` +
    `cores\n`,
);
console.log(
  "| trainer | cores | steps/s | images/s | GFLOP/s | PyTorch steps/s | PyTorch / ours | notes |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
for (const r of rows) console.log(r);
if (yardsticks) console.log(`\n${yardsticks}`);
