import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createRng } from "../lib/rng.ts";
import { makeSchedule } from "../lib/schedule.ts";
import { initBackend } from "../train/backend.ts";
import { loadCheckpoint } from "../train/checkpoint.ts";
import { loadMnist } from "../train/data.ts";
import { parseTrainArgs } from "../train/main.ts";
import { describeUNet, initParameters, PRESETS } from "../train/network.ts";
import { runTraining } from "../train/run.ts";
import {
  batchLoss,
  drawTimesteps,
  sliceInputs,
  smallTimestepProposal,
  VB_LAMBDA,
  vbTables,
} from "../train/step.ts";
import { Trainer } from "../train/trainer.ts";
import { threeSteps } from "./_three_steps.ts";

const T = 1000;

Deno.test("share 0 draws the timesteps exactly as before importance sampling, unweighted", () => {
  const a = createRng(4), b = createRng(4);
  const drawn = drawTimesteps(a, 64, T);
  assert.deepEqual(drawn.t, b.integers(64, T));
  assert.equal(drawn.weights, undefined);
  // So does a share too small to move one example of the batch.
  assert.equal(drawTimesteps(createRng(4), 3, T, 0.1).weights, undefined);
  assert.throws(() => drawTimesteps(createRng(4), 8, T, 1.5), /share must be in \[0, 1\], got 1.5/);
});

Deno.test("the proposal is 1/(t+1) normalised, and the weights make q's mixture uniform", () => {
  const r = smallTimestepProposal(T);
  assert.ok(Math.abs(r.reduce((s, p) => s + p, 0) - 1) < 1e-12);
  assert.ok(Math.abs(r[0] / r[9] - 10) < 1e-12);
  // For the mixture of 48 uniform and 16 proposal draws, q(t) w(t) = 1 / T at every t: the
  // weights are the likelihood ratio to the uniform draw, whatever t the sample lands on.
  const { t, weights } = drawTimesteps(createRng(1), 64, T, 0.25);
  assert.ok(weights);
  t.forEach((ti, i) => {
    const q = 0.75 / T + 0.25 * r[ti];
    assert.ok(Math.abs(q * weights[i] - 1 / T) < 1e-6 / T, `t ${ti}`);
  });
  assert.ok(t.subarray(0, 48).every((ti) => ti >= 0 && ti < T));
  assert.ok(t.subarray(48).every((ti) => ti >= 0 && ti < T));
});

Deno.test("importance-weighted batches estimate a 1/t-shaped bound without bias and with less noise", () => {
  // A stand-in for the bound's profile (about half of it in L_0, falling off as 1 / t): the
  // quantity the vb term's batch mean estimates is its mean over uniform t.
  const f = (t: number) => (t === 0 ? 500 : 1 / t);
  let exact = 0;
  for (let t = 0; t < T; t++) exact += f(t) / T;
  const batches = 4000, n = 64;
  const estimate = (share: number, seed: number) => {
    const rng = createRng(seed);
    const means: number[] = [];
    let zeros = 0;
    for (let b = 0; b < batches; b++) {
      const { t, weights } = drawTimesteps(rng, n, T, share);
      let sum = 0;
      t.forEach((ti, i) => {
        sum += (weights?.[i] ?? 1) * f(ti);
        if (ti === 0) zeros++;
      });
      means.push(sum / n);
    }
    const mean = means.reduce((s, m) => s + m, 0) / batches;
    const sd = Math.sqrt(means.reduce((s, m) => s + (m - mean) ** 2, 0) / (batches - 1));
    return { mean, sd, standardError: sd / Math.sqrt(batches), zeroShare: zeros / (batches * n) };
  };
  const uniform = estimate(0, 2), weighted = estimate(0.25, 3);
  for (const { mean, standardError } of [uniform, weighted]) {
    // Unbiased: within 4 standard errors of the exact mean (a false alarm 6e-5 of the time).
    assert.ok(
      Math.abs(mean - exact) < 4 * standardError,
      `${mean} vs ${exact} +- ${standardError}`,
    );
  }
  // The batch-to-batch spread falls several-fold: t = 0 is 3.4% of examples, not 0.1%.
  assert.ok(weighted.sd < uniform.sd / 3, `sd ${weighted.sd} against ${uniform.sd}`);
  const q0 = 0.75 / T + 0.25 * smallTimestepProposal(T)[0];
  assert.ok(Math.abs(weighted.zeroShare - q0) < 4 * Math.sqrt(q0 / (batches * n)));
});

Deno.test("weighted, the loss is the mean of each example's weighted MSE and L_t", async () => {
  await initBackend("cpu");
  const schedule = makeSchedule();
  const config = { ...PRESETS.tiny, learnVariance: true };
  const initial = initParameters(describeUNet(config).params, 1);
  // A random head instead of the zero one, so v and the prediction both vary.
  const head = initial.get("conv_out.w") as { shape: number[]; data: Float32Array };
  head.data = createRng(9).normal(head.data.length).map((z) => 0.05 * z);
  const params = new Map([...initial].map(([name, p]) => [name, tf.tensor(p.data, p.shape)]));
  const setup = {
    config,
    prediction: "eps" as const,
    sqrtAbar: Float32Array.from(schedule.sqrtAlphasCumprod),
    sqrtOneMinusAbar: Float32Array.from(schedule.sqrtOneMinusAlphasCumprod),
    vb: vbTables(schedule, "eps"),
  };
  const x0 = Float32Array.from(
    createRng(4).uniform(4 * 64),
    (u) => Math.floor(u * 256) / 127.5 - 1,
  );
  const inputs = {
    x0,
    shape: [4, 1, 8, 8] as const,
    t: Int32Array.from([0, 3, 400, 999]),
    noise: createRng(5).normal(4 * 64),
    dropoutSeed: 0,
    exampleOffset: 0,
    training: false,
  };
  const read = (terms: ReturnType<typeof batchLoss>) => ({
    objective: terms.objective.dataSync()[0],
    mse: terms.mse.dataSync()[0],
    vb: (terms.vb as tf.Scalar).dataSync()[0],
  });
  try {
    const weights = Float32Array.of(0.03, 0.5, 1.1, 1.3);
    const weighted = tf.tidy(() => read(batchLoss(params, setup, { ...inputs, weights })));
    const ones = tf.tidy(() =>
      read(batchLoss(params, setup, { ...inputs, weights: new Float32Array(4).fill(1) }))
    );
    const plain = tf.tidy(() => read(batchLoss(params, setup, inputs)));
    const each = [0, 1, 2, 3].map((i) =>
      tf.tidy(() =>
        read(batchLoss(params, setup, { ...sliceInputs(inputs, i, i + 1), training: false }))
      )
    );
    // Float32 sums in another order: 1e-6 of the value.
    const close = (a: number, b: number, what: string) =>
      assert.ok(Math.abs(a - b) <= 1e-6 * Math.abs(b), `${what}: ${a} against ${b}`);
    for (const part of ["objective", "mse", "vb"] as const) {
      close(ones[part], plain[part], `weights of 1, ${part}`);
      const reference = each.reduce((s, e, i) => s + weights[i] * e[part], 0) / 4;
      close(weighted[part], reference, `weighted ${part}`);
    }
    assert.ok(each[0].vb > 10 * each[3].vb, "the decoder's term dominates, as on real digits");
    // lambda = 0.01: the same parts, the vb term weighed ten times as much (lambda T = 10).
    const heavier = { ...setup, vb: vbTables(schedule, "eps", 0.01) };
    assert.equal(setup.vb.weight, VB_LAMBDA * 1000);
    assert.equal(heavier.vb.weight, 10);
    const tenfold = tf.tidy(() => read(batchLoss(params, heavier, inputs)));
    close(tenfold.mse, plain.mse, "lambda leaves the MSE");
    close(tenfold.vb, plain.vb, "lambda leaves the vb term");
    close(tenfold.objective, plain.mse + 10 * plain.vb, "objective = MSE + lambda T vb");
  } finally {
    params.forEach((p) => p.dispose());
  }
});

Deno.test("an importance-sampled step: one worker gives the in-thread bits, and a fixed variance refuses it", async () => {
  await initBackend("wasm");
  const config = { ...PRESETS.tiny, learnVariance: true };
  const batch = Float32Array.from(
    createRng(5).uniform(16 * 64),
    (u) => Math.floor(u * 256) / 127.5 - 1,
  );
  const shape = [16, 1, 8, 8] as const;
  const run = (workers: number) =>
    threeSteps(
      {
        config,
        schedule: makeSchedule(),
        workers,
        vbImportance: 0.5,
        optimizer: { warmupSteps: 0, lr: 1e-3 },
      },
      batch,
      shape,
    );

  try {
    const inThread = await run(0);
    const oneWorker = await run(1);
    assert.deepEqual(oneWorker.steps, inThread.steps);
    for (const [name, tensor] of Object.entries(inThread.state.params)) {
      assert.deepEqual(oneWorker.state.params[name].data, tensor.data, name);
    }
  } finally {
    await initBackend("cpu");
  }
  await assert.rejects(
    Trainer.create({ config: PRESETS.tiny, schedule: makeSchedule(), vbImportance: 0.25 }, 1),
    /a vb importance share of 0.25 needs a network that learns its variance \(--learn-variance\)/,
  );
  await assert.rejects(
    Trainer.create({ config, schedule: makeSchedule(), vbImportance: 1 }, 1),
    /the vb importance share must be in \[0, 1\), got 1/,
  );
  await assert.rejects(
    Trainer.create({ config: PRESETS.tiny, schedule: makeSchedule(), vbLambda: 0.01 }, 1),
    /a vb weight lambda of 0.01 needs a network that learns its variance \(--learn-variance\)/,
  );
  await assert.rejects(
    Trainer.create({ config, schedule: makeSchedule(), vbLambda: 0 }, 1),
    /the vb weight lambda must be in \(0, 1\], got 0/,
  );
});

Deno.test("--vb-importance and --vb-lambda reach the run, its checkpoint keeps them, and a resume continues bit-exactly", async () => {
  assert.equal(parseTrainArgs(["--vb-importance", "0.25"]).options.vbImportance, 0.25);
  assert.equal(parseTrainArgs([]).options.vbImportance, 0);
  assert.equal(parseTrainArgs(["--vb-lambda", "0.01"]).options.vbLambda, 0.01);
  assert.equal(parseTrainArgs([]).options.vbLambda, VB_LAMBDA);
  assert.throws(
    () => parseTrainArgs(["--vb-lambda", "0"]),
    /--vb-lambda must be in \(0, 1\], got 0/,
  );
  assert.throws(
    () => parseTrainArgs(["--vb-importance", "1"]),
    /--vb-importance must be in \[0, 1\), got 1/,
  );
  await initBackend("cpu");
  const data = await loadMnist({ imageSize: 8, heldOutFraction: 0.1 });
  const dir = await Deno.makeTempDir();
  const notices: string[] = [];
  try {
    const common = {
      config: PRESETS.tiny,
      learnVariance: true,
      vbImportance: 0.5,
      vbLambda: 0.01,
      dataset: "mnist",
      data,
      batch: 4,
      seed: 11,
      optimizer: { warmupSteps: 2 },
      sampleEvery: 0,
      evalEvery: 0,
      report: (event: { kind: string; message?: string }) => {
        if (event.kind === "notice" && event.message) notices.push(event.message);
      },
    };
    const straight = await runTraining({ ...common, steps: 3, out: `${dir}/straight` });
    await runTraining({ ...common, steps: 1, out: `${dir}/resumed` });
    // The resume keeps the checkpoint's share whatever the options say.
    const resumed = await runTraining({
      ...common,
      vbImportance: 0,
      vbLambda: VB_LAMBDA,
      steps: 3,
      out: `${dir}/resumed`,
      resume: true,
    });
    assert.match(
      notices[0],
      /; 0\.5 of each batch at small t \(importance-weighted\); L_vlb weighted by lambda = 0\.01;/,
    );
    const a = await loadCheckpoint(straight.checkpoint);
    const b = await loadCheckpoint(resumed.checkpoint);
    assert.equal(a.trainingState.vbImportance, 0.5);
    assert.equal(b.trainingState.vbImportance, 0.5);
    assert.equal(a.trainingState.vbLambda, 0.01);
    assert.equal(b.trainingState.vbLambda, 0.01);
    for (const [name, tensor] of Object.entries(a.params)) {
      assert.deepEqual(b.params[name].data, tensor.data, name);
    }
    const uniform = await runTraining({
      ...common,
      vbImportance: 0,
      vbLambda: undefined,
      steps: 1,
      out: `${dir}/u`,
    });
    const plainState = (await loadCheckpoint(uniform.checkpoint)).trainingState;
    assert.equal(plainState.vbImportance, undefined);
    assert.equal(plainState.vbLambda, undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
