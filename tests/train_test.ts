import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createRng } from "../lib/rng.ts";
import { makeSchedule } from "../lib/schedule.ts";
import { findWebGpuAdapter } from "../model/webgpu.ts";
import { initBackend } from "../train/backend.ts";
import { loadCheckpoint } from "../train/checkpoint.ts";
import { loadMnist } from "../train/data.ts";
import { networkSummary, parseTrainArgs } from "../train/main.ts";
import { countParameters, describeUNet, PRESETS, validateConfig } from "../train/network.ts";
import { runTraining } from "../train/run.ts";
import { tfjsDenoiser } from "../train/tfjs_ops.ts";
import { emaDecayAt, learningRate, Trainer } from "../train/trainer.ts";
import { assertClose } from "./_stats.ts";

const schedule = makeSchedule();
const tiny = PRESETS.tiny;
const shape = [4, 1, 8, 8] as const;
const batch = createRng(5).uniform(4 * 64).map((u) => (u > 0.5 ? 1 : -1));

Deno.test("cifar10 preset has the paper's 35.7M parameters; mnist's is stated", () => {
  // DDPM sec. 4 / App. B: 35.7M for CIFAR-10. 35,746,307 is the exact count of the official
  // TensorFlow model with ch 128, multipliers 1, 2, 2, 2, two blocks, attention at 16.
  assert.equal(countParameters(describeUNet(PRESETS.cifar10).params), 35_746_307);
  assert.equal(countParameters(describeUNet(PRESETS.mnist).params), 686_769);
  assert.match(networkSummary(PRESETS.cifar10), /\*\*total\*\* \| \*\*35,746,307\*\*/);
});

Deno.test("parameter names follow the network path and every block type is present in tiny", () => {
  const names = describeUNet(tiny).params.map((p) => p.name);
  for (
    const expected of [
      "temb.dense0.w",
      "conv_in.w",
      "down.0.res.0.conv1.w",
      "down.1.res.0.skip.w",
      "down.1.attn.0.q.w",
      "down.0.downsample.w",
      "mid.attn.0.proj_out.w",
      "up.1.upsample.w",
      "up.0.res.1.temb_proj.w",
      "conv_out.b",
    ]
  ) assert.ok(names.includes(expected), `missing ${expected}`);
  assert.equal(new Set(names).size, names.length);
});

Deno.test("bad network configs name the field and what it allows", () => {
  assert.throws(
    () => validateConfig({ ...tiny, imageSize: 7 }),
    /imageSize 7 cannot be halved 1 times/,
  );
  assert.throws(
    () => validateConfig({ ...tiny, groups: 3 }),
    /groups \(3\) must divide every channel count, not 8/,
  );
  assert.throws(
    () => validateConfig({ ...tiny, dropout: 1 }),
    /dropout must be in \[0, 1\), got 1/,
  );
});

Deno.test("learning-rate warm-up is linear and EMA decay warms up as (1 + s) / (10 + s)", () => {
  assert.equal(learningRate(0, 2e-4, 1000), 2e-4 / 1000);
  assert.equal(learningRate(499, 2e-4, 1000), 1e-4);
  assert.equal(learningRate(5000, 2e-4, 1000), 2e-4);
  assert.equal(learningRate(0, 2e-4, 0), 2e-4);
  assert.equal(emaDecayAt(0, 0.9999), 0.1);
  assert.equal(emaDecayAt(90, 0.9999), 91 / 100);
  assert.equal(emaDecayAt(1e7, 0.9999), 0.9999);
});

Deno.test("a cool-down decays linearly over the last N steps toward 0 and multiplies a warm-up", () => {
  const cooldown = { steps: 4, end: 10 };
  // Steps 6..9 are the last four of a run of 10: 4/5, 3/5, 2/5, 1/5 of the peak.
  const rates = Array.from({ length: 10 }, (_, s) => learningRate(s, 1, 0, cooldown));
  assert.deepEqual(rates, [1, 1, 1, 1, 1, 1, 4 / 5, 3 / 5, 2 / 5, 1 / 5]);
  assert.equal(learningRate(10, 1, 0, cooldown), 0); // past the end: no step runs there
  assert.equal(learningRate(3, 1, 0, { steps: 0, end: 10 }), 1); // 0 steps: none
  // Overlapping: a warm-up of 8 and a cool-down of the whole run of 8.
  assert.equal(learningRate(3, 1, 8, { steps: 8, end: 8 }), (4 / 8) * (5 / 9));
});

Deno.test("tiny U-Net on the CPU backend: output shape, and a zero-initialised head outputs 0", async () => {
  await initBackend("cpu");
  const trainer = await Trainer.create({ config: tiny, schedule }, 1);
  try {
    const out = await trainer.emaDenoiser()(batch, new Float32Array([0, 10, 500, 999]), shape);
    assert.equal(out.length, batch.length);
    // conv_out starts at zero (as the official code's init_scale 0), so does the output.
    assert.ok(out.every((v) => v === 0));
  } finally {
    trainer.dispose();
  }
});

Deno.test("one step: EMA moves by (1 - decay), Adam's first moment holds the clipped gradient", async () => {
  await initBackend("cpu");
  for (const clip of [1e9, 1e-3]) {
    const trainer = await Trainer.create({
      config: tiny,
      schedule,
      optimizer: { gradClip: clip, warmupSteps: 0 },
    }, 3);
    try {
      const before = await trainer.state();
      const result = await trainer.trainStep(batch, shape, createRng(7));
      const after = await trainer.state();
      // m = (1 - beta1) g, so the global norm of m / (1 - beta1) is the clipped norm.
      let mNorm = 0;
      for (const { data } of Object.values(after.m)) for (const v of data) mNorm += (v / 0.1) ** 2;
      assertClose(
        Math.sqrt(mNorm),
        Math.min(result.gradNorm, clip),
        1e-4 * Math.min(result.gradNorm, clip),
        `clip ${clip}`,
      );
      // ema_1 = d p_0 + (1 - d) p_1 with d = emaDecayAt(0) = 0.1.
      const name = "conv_in.w";
      const d = emaDecayAt(0, 0.9999);
      after.ema[name].data.forEach((e, i) => {
        const expected = d * before.params[name].data[i] + (1 - d) * after.params[name].data[i];
        assertClose(e, expected, 1e-6, `ema[${i}]`);
      });
      assert.equal(after.step, 1);
    } finally {
      trainer.dispose();
    }
  }
});

Deno.test("loss falls on a fixed batch over 30 steps, with no tensor leak", async () => {
  await initBackend("cpu");
  const trainer = await Trainer.create({
    config: tiny,
    schedule,
    optimizer: { lr: 2e-3, warmupSteps: 0 },
  }, 2);
  try {
    // The yardstick: the same t and noise every time (a fixed seed), no dropout.
    const yardstick = () => trainer.evalLoss(batch, shape, createRng(99));
    const start = await yardstick();
    const rng = createRng(4);
    let tensorsAfterStep3 = 0;
    for (let step = 1; step <= 30; step++) {
      await trainer.trainStep(batch, shape, rng);
      if (step === 3) tensorsAfterStep3 = tf.memory().numTensors;
    }
    assert.equal(tf.memory().numTensors, tensorsAfterStep3, "tensors leaked between step 3 and 30");
    const end = await yardstick();
    // The untrained network outputs 0, so the start is E[eps^2] = 1 up to sampling; learning
    // the batch must take a clear bite out of it.
    assert.ok(end < 0.8 * start, `loss ${start} -> ${end}`);
  } finally {
    trainer.dispose();
  }
});

Deno.test("resuming from step 2 gives the same weights at step 4 as an uninterrupted run", async () => {
  await initBackend("cpu");
  const data = await loadMnist({ imageSize: 8, heldOutFraction: 0.1 });
  const dir = await Deno.makeTempDir();
  try {
    const common = {
      config: tiny,
      dataset: "mnist",
      data,
      batch: 4,
      seed: 11,
      optimizer: { warmupSteps: 2 },
      sampleEvery: 0,
      evalEvery: 0,
      report: () => {},
    };
    await runTraining({ ...common, steps: 4, out: `${dir}/straight` });
    const first = await runTraining({ ...common, steps: 2, out: `${dir}/resumed` });
    assert.equal(first.step, 2);
    const second = await runTraining({ ...common, steps: 4, out: `${dir}/resumed`, resume: true });
    assert.equal(second.step, 4);
    const a = await loadCheckpoint(`${dir}/straight/ckpt-00000004.ddpm`);
    const b = await loadCheckpoint(`${dir}/resumed/ckpt-00000004.ddpm`);
    for (const group of ["params", "ema"] as const) {
      for (const [name, tensor] of Object.entries(a[group])) {
        assert.deepEqual(b[group][name].data, tensor.data, `${group} ${name}`);
      }
    }
    assert.deepEqual(b.optimizer.m["conv_out.w"].data, a.optimizer.m["conv_out.w"].data);
    assert.deepEqual(b.trainingState.rng, a.trainingState.rng);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an interrupted run stops after the current step and leaves a checkpoint", async () => {
  await initBackend("cpu");
  const data = await loadMnist({ imageSize: 8 });
  const dir = await Deno.makeTempDir();
  try {
    const stop = new AbortController();
    const result = await runTraining({
      config: tiny,
      dataset: "mnist",
      data,
      batch: 2,
      seed: 1,
      steps: 100,
      out: dir,
      sampleEvery: 0,
      evalEvery: 0,
      logEvery: 1,
      signal: stop.signal,
      report: (event) => {
        if (event.kind === "progress" && event.step === 2) stop.abort();
      },
    });
    assert.deepEqual([result.step, result.interrupted], [2, true]);
    assert.equal((await loadCheckpoint(result.checkpoint)).step, 2);
    const lines = (await Deno.readTextFile(`${dir}/metrics.jsonl`)).trim().split("\n");
    assert.deepEqual(lines.map((l) => JSON.parse(l).step), [1, 2]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("WebGPU: the tiny U-Net's forward pass matches the CPU backend", async (t) => {
  const adapter = await findWebGpuAdapter();
  if (!adapter) {
    console.log("skipped: no WebGPU adapter (install mesa-vulkan-drivers for a software one)");
    t.step({ name: "skipped: no WebGPU adapter", ignore: true, fn: () => {} });
    return;
  }
  // Non-zero weights everywhere, so every block contributes to the output.
  await initBackend("cpu");
  const trainer = await Trainer.create({
    config: tiny,
    schedule,
    optimizer: { lr: 1e-2, warmupSteps: 0 },
  }, 5);
  try {
    for (let i = 0; i < 3; i++) await trainer.trainStep(batch, shape, createRng(i));
    const state = await trainer.state();
    const t4 = new Float32Array([0, 10, 500, 999]);
    const cpu = await trainer.emaDenoiser()(batch, t4, shape);
    await initBackend("webgpu");
    const params = new Map(
      Object.entries(state.ema).map(([k, v]) => [k, tf.tensor(v.data, v.shape)]),
    );
    const gpu = await tfjsDenoiser(params, tiny)(batch, t4, shape);
    params.forEach((p) => p.dispose());
    // float32 evaluation in a different order: agreement to 1e-4 of the output's scale.
    const scale = Math.max(...cpu.map(Math.abs));
    cpu.forEach((v, i) => assertClose(gpu[i], v, 1e-4 * scale + 1e-6, `output[${i}]`));
    console.log(`WebGPU adapter: ${adapter.description}${adapter.software ? " (software)" : ""}`);
  } finally {
    await initBackend("cpu");
    trainer.dispose();
  }
});

Deno.test("train flags: defaults, and bad values named with their range", () => {
  const { options, backend, dryRun } = parseTrainArgs([]);
  assert.equal(options.dataset, "mnist");
  assert.equal(options.steps, 20000);
  assert.equal(options.batch, 64);
  assert.equal(options.optimizer?.lr, 2e-4);
  assert.equal(options.out, "runs/mnist-mnist");
  assert.equal(backend, "auto");
  assert.equal(dryRun, false);
  assert.deepEqual(options.config, PRESETS.mnist);
  assert.deepEqual([options.sampleSampler, options.sampleSteps], ["ddim", 20]);
  assert.equal(
    parseTrainArgs(["--sample-sampler", "dpmpp-2m"]).options.sampleSampler,
    "dpmpp-2m",
  );
  assert.throws(
    () => parseTrainArgs(["--sample-sampler", "euler"]),
    /--sample-sampler must be one of ddpm, ddim, dpmpp-2m, dpmpp-2m-sde, unipc, got euler/,
  );
  assert.equal(
    parseTrainArgs(["--dataset", "folder:data/faces", "--preset", "cifar10"]).options.out,
    "runs/cifar10-faces",
  );
  // A resumed run keeps its saved learning rate unless --lr is given.
  assert.equal(parseTrainArgs(["--resume"]).options.optimizer?.lr, undefined);
  assert.equal(parseTrainArgs(["--resume", "--lr", "1e-4"]).options.optimizer?.lr, 1e-4);
  assert.throws(() => parseTrainArgs(["--batch", "0"]), /--batch must be an integer >= 1, got 0/);
  assert.throws(
    () => parseTrainArgs(["--backend", "cuda"]),
    /--backend must be one of auto, webgpu, wasm, cpu, got cuda/,
  );
  assert.throws(() => parseTrainArgs(["--preset", "cifar10"]), /--preset cifar10 needs --dataset/);
  assert.throws(() => parseTrainArgs(["--nope"]), /Unknown option '--nope'/);
});
