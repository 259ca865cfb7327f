import assert from "node:assert/strict";
import { createRng } from "../lib/rng.ts";
import { makeSchedule } from "../lib/schedule.ts";
import { gradientWorkers, initBackend } from "../train/backend.ts";
import { latestCheckpoint, loadCheckpoint } from "../train/checkpoint.ts";
import { loadMnist } from "../train/data.ts";
import { shareBatch } from "../train/gradient_pool.ts";
import { parseTrainArgs } from "../train/main.ts";
import { PRESETS } from "../train/network.ts";
import { runTraining } from "../train/run.ts";
import { dropoutMultipliers } from "../train/tfjs_ops.ts";
import type { TrainerState } from "../train/trainer.ts";
import { threeSteps as threeStepsOf } from "./_three_steps.ts";

const schedule = makeSchedule();
// Dropout on, so the tests cover the masks' independence of the split.
const config = { ...PRESETS.tiny, dropout: 0.1 };
const shape = [8, 1, 8, 8] as const;
const batch = createRng(5).normal(8 * 64).map((z) => Math.tanh(z));

function threeSteps(workers: number) {
  return threeStepsOf(
    { config, schedule, workers, optimizer: { warmupSteps: 0, lr: 1e-3 } },
    batch,
    shape,
  );
}

function assertSameBits(a: TrainerState, b: TrainerState, what: string) {
  for (const group of ["params", "ema", "m", "v"] as const) {
    for (const [name, tensor] of Object.entries(a[group])) {
      assert.deepEqual(b[group][name].data, tensor.data, `${what}: ${group} ${name}`);
    }
  }
}

Deno.test("one gradient worker gives the bits of the in-thread step on WebAssembly", async () => {
  await initBackend("wasm");
  const inThread = await threeSteps(0);
  const oneWorker = await threeSteps(1);
  assert.deepEqual(oneWorker.steps, inThread.steps);
  assertSameBits(inThread.state, oneWorker.state, "1 worker vs in-thread");
  await initBackend("cpu");
});

Deno.test("two and three workers give one worker's step up to float32 summation order", async () => {
  await initBackend("wasm");
  const one = await threeSteps(1);
  for (const workers of [2, 3]) {
    const many = await threeSteps(workers);
    // Splitting the batch only reorders float32 sums (over the batch inside each kernel, and of
    // the shares' gradients). A sum of K terms reordered moves by about sqrt(K) 2^-24 of its
    // size (K <= 8 x 8 x 8 pixels here: 1e-6); 1e-5 leaves a factor of ten. The dropout masks
    // are the same: they are drawn per example, not per share.
    one.steps.forEach((s, i) => {
      const m = many.steps[i];
      assert.ok(Math.abs(m.loss - s.loss) <= 1e-5 * s.loss, `loss ${m.loss} vs ${s.loss}`);
      assert.ok(Math.abs(m.gradNorm - s.gradNorm) <= 1e-5 * s.gradNorm, `step ${i} norm`);
    });
    // Adam moves each weight by about lr a step whatever the gradient's size, so reordering
    // shows in the weights only as float32 rounding of values of size <= 1: a few 2^-24.
    // Three steps of lr 1e-3 that went a different way would differ by ~1e-3.
    for (const [name, tensor] of Object.entries(one.state.params)) {
      const other = many.state.params[name].data;
      const worst = tensor.data.reduce((w, v, i) => Math.max(w, Math.abs(v - other[i])), 0);
      assert.ok(worst <= 1e-5, `${workers} workers, ${name}: ${worst}`);
    }
  }
  await initBackend("cpu");
});

Deno.test("dropout masks depend on the example's index in the batch, not on the split", () => {
  const full = dropoutMultipliers([8, 4, 4, 16], 0.25, { seed: 9, layer: 3 });
  const parts = shareBatch(8, 3).map(({ start, end }) =>
    dropoutMultipliers([end - start, 4, 4, 16], 0.25, { seed: 9, layer: 3, exampleOffset: start })
  );
  const joined = new Float32Array(full.length);
  let at = 0;
  for (const p of parts) joined.set(p, (at += p.length) - p.length);
  assert.deepEqual(joined, full);
  // Values are 0 or 1 / keep; the kept share is 0.75 within 4 standard errors.
  const many = dropoutMultipliers([64, 16, 16, 8], 0.25, { seed: 1, layer: 0 });
  assert.ok(many.every((v) => v === 0 || v === Math.fround(1 / 0.75)));
  const kept = many.filter((v) => v > 0).length / many.length;
  const se = Math.sqrt(0.75 * 0.25 / many.length);
  assert.ok(Math.abs(kept - 0.75) <= 4 * se, `kept ${kept}`);
  // Another layer or seed draws another mask.
  const other = dropoutMultipliers([8, 4, 4, 16], 0.25, { seed: 9, layer: 4 });
  assert.notDeepEqual(other, full);
  assert.deepEqual(shareBatch(7, 3), [{ start: 0, end: 3 }, { start: 3, end: 5 }, {
    start: 5,
    end: 7,
  }]);
});

const common = {
  config,
  dataset: "mnist",
  batch: 6,
  seed: 11,
  optimizer: { warmupSteps: 2 },
  sampleEvery: 0,
  evalEvery: 2,
  logEvery: 1,
  report: () => {},
  workers: 2,
};

Deno.test("a two-worker run resumed from step 2 gives the bits of an uninterrupted one", async () => {
  await initBackend("wasm");
  const data = await loadMnist({ imageSize: 8, heldOutFraction: 0.1 });
  const dir = await Deno.makeTempDir();
  try {
    await runTraining({ ...common, data, steps: 4, out: `${dir}/straight` });
    await runTraining({ ...common, data, steps: 2, out: `${dir}/resumed` });
    const second = await runTraining({
      ...common,
      data,
      steps: 4,
      out: `${dir}/resumed`,
      resume: true,
    });
    assert.equal(second.step, 4);
    const a = await loadCheckpoint(`${dir}/straight/ckpt-00000004.ddpm`);
    const b = await loadCheckpoint(`${dir}/resumed/ckpt-00000004.ddpm`);
    assertSameBits(
      { step: 4, params: a.params, ema: a.ema, m: a.optimizer.m, v: a.optimizer.v },
      { step: 4, params: b.params, ema: b.ema, m: b.optimizer.m, v: b.optimizer.v },
      "resumed vs straight",
    );
    assert.deepEqual(b.trainingState.rng, a.trainingState.rng);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await initBackend("cpu");
  }
});

Deno.test("a worker that dies ends the run naming it, and the newest checkpoint loads", async () => {
  await initBackend("wasm");
  const data = await loadMnist({ imageSize: 8, heldOutFraction: 0.1 });
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      () =>
        runTraining({
          ...common,
          data,
          steps: 6,
          checkpointEvery: 2,
          out: dir,
          workerModule: new URL("./_failing_gradient_worker.ts", import.meta.url),
        }),
      /gradient worker 2 of 2 stopped: .*simulated crash in the worker/,
    );
    const newest = await latestCheckpoint(dir);
    assert.ok(newest?.endsWith("ckpt-00000002.ddpm"), `newest checkpoint ${newest}`);
    assert.equal((await loadCheckpoint(newest as string)).step, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await initBackend("cpu");
  }
});

Deno.test("--workers: one per core on wasm by default, none on WebGPU or cpu, refused elsewhere", () => {
  assert.equal(parseTrainArgs([]).workers, "auto");
  assert.equal(parseTrainArgs(["--workers", "3"]).workers, 3);
  assert.throws(() => parseTrainArgs(["--workers", "two"]), /--workers must be an integer >= 0/);
  assert.equal(gradientWorkers("auto", "wasm"), navigator.hardwareConcurrency);
  assert.equal(gradientWorkers("auto", "webgpu"), 0);
  assert.equal(gradientWorkers("auto", "cpu"), 0);
  assert.equal(gradientWorkers(0, "webgpu"), 0);
  assert.throws(() => gradientWorkers(2, "webgpu"), /--workers 2 needs the wasm backend/);
});
