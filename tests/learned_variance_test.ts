import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { qPosterior, qSample, type Shape } from "../lib/forward.ts";
import { hwcToNchw, nchwToHwc } from "../lib/image.ts";
import { discretizedGaussianLogLikelihood, normalKl } from "../lib/likelihood.ts";
import type { Prediction } from "../lib/parameterization.ts";
import { createRng } from "../lib/rng.ts";
import { makeSchedule, type Schedule } from "../lib/schedule.ts";
import { loadOnnxModel, onnxNetworkCall } from "../model/onnx.ts";
import { createApp } from "../serve/app.ts";
import { chooseProvider } from "../serve/provider.ts";
import { loadRegistry } from "../serve/registry.ts";
import { initBackend } from "../train/backend.ts";
import { loadCheckpoint } from "../train/checkpoint.ts";
import { loadMnist } from "../train/data.ts";
import { exportCheckpoint } from "../train/export.ts";
import { parseTrainArgs } from "../train/main.ts";
import { runTraining } from "../train/run.ts";
import { tfjsDenoiser } from "../train/tfjs_ops.ts";
import {
  countParameters,
  describeUNet,
  initParameters,
  PRESETS,
  type UNetConfig,
} from "../train/network.ts";
import { batchLoss, variationalBoundTerms, vbTables } from "../train/step.ts";
import { unetApply } from "../train/tfjs_ops.ts";
import { Trainer, widenOutputForVariance } from "../train/trainer.ts";
import { threeSteps } from "./_three_steps.ts";
import { runTinyTraining } from "./_tiny_run.ts";

const schedule = makeSchedule();
const shape: Shape = [4, 1, 4, 4];
const [n, c, h, w] = shape;
const size = c * h * w;
// t = 0 (the decoder), 1 (the smallest KL variance), a middle and the last step.
const t = Int32Array.from([0, 1, 500, 999]);

/** Fixed inputs: 8-bit images with both edge values, noise, and a network output near the truth. */
function fixedInputs(prediction: Prediction) {
  const rng = createRng(3);
  const x0 = Float32Array.from(rng.uniform(n * size), (u) => Math.floor(u * 256) / 127.5 - 1);
  x0[0] = -1;
  x0[1] = 1;
  const noise = rng.normal(n * size);
  const xt = qSample(schedule, x0, t, noise, shape);
  // The prediction: its target plus a perturbation that moves the implied x_0 by about 0.003 at
  // t = 0, a fraction of the decoder's standard deviation (0.007 to 0.01), so no bin of the
  // example is improbable; v anywhere in [-1.5, 1.5], beyond the range too.
  const target = Float32Array.from({ length: n * size }, (_, i) => {
    const e = Math.floor(i / size);
    const a = schedule.sqrtAlphasCumprod[t[e]], s = schedule.sqrtOneMinusAlphasCumprod[t[e]];
    return prediction === "eps" ? noise[i] : prediction === "x0" ? x0[i] : a * noise[i] - s * x0[i];
  });
  const perturb = rng.normal(n * size);
  const scale = prediction === "x0" ? 0.003 : 0.3;
  const pred = Float32Array.from(target, (v, i) => v + scale * perturb[i]);
  const v = Float32Array.from(rng.uniform(n * size), (u) => 3 * u - 1.5);
  return { x0, xt, pred, v };
}

/** The output tensor NHWC `[n, h, w, 2c]` of a prediction and v, both NCHW. */
function outputTensor(pred: Float32Array, v: Float32Array): tf.Tensor4D {
  return tf.concat([
    tf.tensor4d(nchwToHwc(pred, shape), [n, h, w, c]),
    tf.tensor4d(nchwToHwc(v, shape), [n, h, w, c]),
  ], 3);
}

/** `L_t` per example in bits/dim, in float64 from `lib/` (the exact normal CDF). */
function referenceTerms(
  s: Schedule,
  prediction: Prediction,
  inputs: ReturnType<typeof fixedInputs>,
): { terms: number[]; minBinProbability: number[] } {
  const { x0, xt, pred, v } = inputs;
  const posterior = qPosterior(s, x0, xt, t, shape);
  const terms: number[] = [], minBinProbability: number[] = [];
  for (let e = 0; e < n; e++) {
    const ti = t[e];
    const a = s.sqrtAlphasCumprod[ti], sig = s.sqrtOneMinusAlphasCumprod[ti];
    let sum = 0, minP = 1;
    for (let j = e * size; j < (e + 1) * size; j++) {
      const x0Pred = prediction === "eps"
        ? (xt[j] - sig * pred[j]) / a
        : prediction === "x0"
        ? pred[j]
        : a * xt[j] - sig * pred[j];
      const meanP = s.posteriorMeanCoef1[ti] * x0Pred + s.posteriorMeanCoef2[ti] * xt[j];
      const frac = (v[j] + 1) / 2;
      const minLog = s.posteriorLogVarianceClipped[ti], maxLog = Math.log(s.betas[ti]);
      const logVarP = frac * maxLog + (1 - frac) * minLog;
      if (ti === 0) {
        const ll = discretizedGaussianLogLikelihood(x0[j], meanP, 0.5 * logVarP);
        minP = Math.min(minP, Math.exp(ll));
        sum -= ll;
      } else {
        sum += normalKl(posterior.mean[j], posterior.logVariance[e], meanP, logVarP);
      }
    }
    terms.push(sum / size / Math.LN2);
    minBinProbability.push(minP);
  }
  return { terms, minBinProbability };
}

for (const prediction of ["eps", "x0", "v"] as const) {
  Deno.test(`the vb term (${prediction}) matches the float64 KL and decoder NLL of lib/`, async () => {
    await initBackend("cpu");
    const inputs = fixedInputs(prediction);
    const got = tf.tidy(() =>
      variationalBoundTerms(outputTensor(inputs.pred, inputs.v), {
        x0: tf.tensor4d(nchwToHwc(inputs.x0, shape), [n, h, w, c]),
        xt: tf.tensor4d(nchwToHwc(inputs.xt, shape), [n, h, w, c]),
        t,
        tables: vbTables(schedule, prediction),
      }).arraySync()
    );
    const { terms, minBinProbability } = referenceTerms(schedule, prediction, inputs);
    for (let e = 0; e < n; e++) {
      // t > 0: float32 means (rounding ~1e-7 of values ~1) against differences of about one
      // standard deviation (>= 0.007), squared: relative error well under 1e-4; 1e-3 allowed.
      // The variance part `logvar ratio - 1 + exp(-ratio)` nearly cancels to 0 when v is near
      // the posterior's end; in float32 its terms of size 1 leave ~1e-7 nats: 1e-6 bits more.
      // t = 0: the tanh CDF is within 2e-4 of the exact one, so a bin's probability p moves by
      // at most 4e-4 and its log by 4e-4 / p; bounded with the smallest p of the example.
      const tolerance = t[e] === 0
        ? 4e-4 / minBinProbability[e] / Math.LN2
        : 1e-3 * Math.abs(terms[e]) + 1e-6;
      assert.ok(
        Math.abs(got[e] - terms[e]) <= tolerance,
        `t = ${t[e]}: tfjs ${got[e]}, float64 ${terms[e]}, tolerance ${tolerance}`,
      );
    }
    assert.ok(minBinProbability[0] > 0.01, `the t = 0 bins are not tiny: ${minBinProbability[0]}`);
  });
}

Deno.test("the vb term's gradient is zero on the prediction channels and not on v", async () => {
  for (const backend of ["cpu", "wasm"] as const) {
    await initBackend(backend);
    const inputs = fixedInputs("eps");
    const [dPred, dV] = tf.tidy(() => {
      const x0 = tf.tensor4d(nchwToHwc(inputs.x0, shape), [n, h, w, c]);
      const xt = tf.tensor4d(nchwToHwc(inputs.xt, shape), [n, h, w, c]);
      const tables = vbTables(schedule, "eps");
      const grad = tf.grad((out) => tf.sum(variationalBoundTerms(out, { x0, xt, t, tables })))(
        outputTensor(inputs.pred, inputs.v),
      );
      return [
        tf.slice(grad, [0, 0, 0, 0], [n, h, w, c]).dataSync(),
        tf.slice(grad, [0, 0, 0, c], [n, h, w, c]).dataSync(),
      ];
    });
    assert.ok(dPred.every((g) => g === 0), `${backend}: a non-zero gradient on the prediction`);
    // Every element's term depends on its own v, the t = 0 decoder's included.
    assert.ok(dV.every((g) => g !== 0 && Number.isFinite(g)), `${backend}: v's gradient ${dV}`);
  }
  await initBackend("cpu");
});

Deno.test("the hybrid objective is the prediction's MSE plus (T / 1000) times the mean vb", async () => {
  await initBackend("cpu");
  const config = { ...PRESETS.tiny, learnVariance: true };
  const specs = describeUNet(config).params;
  const initial = initParameters(specs, 1);
  // A random head instead of the zero one, so both halves of the output vary.
  const head = initial.get("conv_out.w") as { shape: number[]; data: Float32Array };
  head.data = createRng(9).normal(head.data.length).map((z) => 0.05 * z);
  const params = new Map([...initial].map(([name, p]) => [name, tf.tensor(p.data, p.shape)]));
  const x0 = Float32Array.from(
    createRng(4).uniform(4 * 64),
    (u) => Math.floor(u * 256) / 127.5 - 1,
  );
  const noise = createRng(5).normal(4 * 64);
  const tt = Int32Array.from([0, 3, 400, 999]);
  const shape8 = [4, 1, 8, 8] as const;
  const sqrtAbar = Float32Array.from(schedule.sqrtAlphasCumprod);
  const sqrtOneMinusAbar = Float32Array.from(schedule.sqrtOneMinusAlphasCumprod);
  const setup = {
    config,
    prediction: "eps" as const,
    sqrtAbar,
    sqrtOneMinusAbar,
    vb: vbTables(schedule, "eps"),
  };
  const inputs = { x0, shape: shape8, t: tt, noise, dropoutSeed: 0, exampleOffset: 0 };
  const { objective, mse, vb, out } = tf.tidy(() => {
    const terms = batchLoss(params, setup, { ...inputs, training: false });
    // x_t as batchLoss forms it, in float32: sqrt(abar) x0 + sqrt(1 - abar) eps.
    const xt = Float32Array.from(x0, (v, i) => {
      const e = tt[Math.floor(i / 64)];
      return Math.fround(
        Math.fround(sqrtAbar[e] * v) + Math.fround(sqrtOneMinusAbar[e] * noise[i]),
      );
    });
    const output = unetApply(params, config, tf.tensor4d(xt, [4, 8, 8, 1]), tf.tensor1d(tt));
    return {
      objective: terms.objective.dataSync()[0],
      mse: terms.mse.dataSync()[0],
      vb: (terms.vb as tf.Scalar).dataSync()[0],
      out: { xt, data: hwcToNchw(output.dataSync() as Float32Array, [4, 2, 8, 8]) },
    };
  });
  tf.dispose([...params.values()]);
  // The reference from the network's output read back: MSE on channel 0 against eps, vb from lib/.
  const pred = new Float32Array(4 * 64), v = new Float32Array(4 * 64);
  for (let e = 0; e < 4; e++) {
    pred.set(out.data.subarray(e * 128, e * 128 + 64), e * 64);
    v.set(out.data.subarray(e * 128 + 64, e * 128 + 128), e * 64);
  }
  let sq = 0;
  for (let i = 0; i < pred.length; i++) sq += (pred[i] - noise[i]) ** 2;
  const mseRef = sq / pred.length;
  assert.ok(Math.abs(mse - mseRef) <= 1e-5 * mseRef, `mse ${mse} against ${mseRef}`);
  assert.ok(Math.abs(objective - (mse + vb)) <= 1e-6 * objective, "T = 1000: weight 1");
  assert.ok(vb > 0 && Number.isFinite(vb));
  assert.ok(v.some((x) => x !== 0), "the head is random, so v varies");
  assert.equal(
    countParameters(specs),
    countParameters(describeUNet(PRESETS.tiny).params) + 9 * 8 + 1,
  );
});

Deno.test("widening a fixed-variance head keeps the prediction and gives v = 0", async () => {
  await initBackend("cpu");
  const fixed = await Trainer.create({ config: PRESETS.tiny, schedule }, 3);
  const state = await fixed.state();
  fixed.dispose();
  const head = state.params["conv_out.w"];
  head.data = createRng(2).normal(head.data.length).map((z) => 0.1 * z);
  state.params["conv_out.b"].data[0] = 0.25;
  const config = { ...PRESETS.tiny, learnVariance: true };
  const wide = widenOutputForVariance(state, config);
  assert.deepEqual(wide.params["conv_out.w"].shape, [3, 3, 8, 2]);
  assert.deepEqual(wide.ema["conv_out.b"].shape, [2]);
  const x = createRng(6).normal(2 * 64);
  const run = (p: typeof state.params, cfg: UNetConfig) =>
    tf.tidy(() => {
      const tensors = new Map(Object.entries(p).map(([k, v]) => [k, tf.tensor(v.data, v.shape)]));
      return unetApply(tensors, cfg, tf.tensor4d(x, [2, 8, 8, 1]), tf.tensor1d([5, 700]))
        .dataSync() as Float32Array;
    });
  const before = run(state.params, PRESETS.tiny);
  const after = run(wide.params, config); // NHWC: channel 0 the prediction, channel 1 v
  assert.deepEqual(after.filter((_, i) => i % 2 === 0), before);
  assert.ok(after.filter((_, i) => i % 2 === 1).every((v) => v === 0));
});

Deno.test("a gradient worker on WebAssembly computes the hybrid step bit for bit as the thread does", async () => {
  await initBackend("wasm");
  const config = { ...PRESETS.tiny, learnVariance: true };
  // T = 10 and 16 images a step: some t = 0 in most steps (1 - 0.9^16 = 81%), so the decoder's
  // term runs in the workers too.
  const small = makeSchedule({ timesteps: 10 });
  const batch = Float32Array.from(
    createRng(5).uniform(16 * 64),
    (u) => Math.floor(u * 256) / 127.5 - 1,
  );
  const shape8 = [16, 1, 8, 8] as const;
  const run = (workers: number) =>
    threeSteps(
      {
        config,
        schedule: small,
        workers,
        optimizer: { warmupSteps: 0, lr: 1e-3 },
      },
      batch,
      shape8,
    );

  const inThread = await run(0);
  const oneWorker = await run(1);
  assert.deepEqual(oneWorker.steps, inThread.steps);
  for (const step of inThread.steps) {
    assert.ok(step.vb !== undefined && Number.isFinite(step.vb) && step.vb > 0, `vb ${step.vb}`);
  }
  for (const [name, tensor] of Object.entries(inThread.state.params)) {
    assert.deepEqual(oneWorker.state.params[name].data, tensor.data, name);
  }
  // The v channels' weights moved (the head starts at zero); the hybrid loss reaches them.
  const head = inThread.state.params["conv_out.w"].data;
  assert.ok(head.some((x, i) => i % 2 === 1 && x !== 0));
  await initBackend("cpu");
});

Deno.test("a --learn-variance run trains, resumes bit-exactly, refuses a change on resume, and exports [N, 2C, H, W]", async () => {
  await initBackend("cpu");
  const data = await loadMnist({ imageSize: 8, heldOutFraction: 0.1 });
  const dir = await Deno.makeTempDir();
  try {
    const common = {
      config: PRESETS.tiny,
      learnVariance: true,
      dataset: "mnist",
      data,
      batch: 4,
      seed: 11,
      optimizer: { warmupSteps: 2 },
      sampleEvery: 0,
      evalEvery: 2,
      logEvery: 1,
      report: () => {},
    };
    await runTraining({ ...common, steps: 4, out: `${dir}/straight` });
    await runTraining({ ...common, steps: 2, out: `${dir}/resumed` });
    const second = await runTraining({ ...common, steps: 4, out: `${dir}/resumed`, resume: true });
    assert.equal(second.step, 4);
    const a = await loadCheckpoint(`${dir}/straight/ckpt-00000004.ddpm`);
    const b = await loadCheckpoint(second.checkpoint);
    assert.equal(a.config.learnVariance, true);
    assert.deepEqual(a.params["conv_out.w"].shape, [3, 3, 8, 2]);
    for (const group of ["params", "ema"] as const) {
      for (const [name, tensor] of Object.entries(a[group])) {
        assert.deepEqual(b[group][name].data, tensor.data, `${group} ${name}`);
      }
    }
    assert.deepEqual(b.optimizer.m["conv_out.w"].data, a.optimizer.m["conv_out.w"].data);
    // Metrics: the MSE as loss, the vb term beside it, both for training and held out.
    const lines = (await Deno.readTextFile(`${dir}/straight/metrics.jsonl`)).trim().split("\n")
      .map((line) => JSON.parse(line));
    assert.ok(lines.every((r) => Number.isFinite(r.loss) && Number.isFinite(r.vb)));
    const held = lines.filter((r) => r.heldOutLoss !== undefined);
    assert.deepEqual(held.map((r) => r.step), [2, 4]);
    assert.ok(held.every((r) => Number.isFinite(r.heldOutVb) && r.heldOutVb > 0));
    // A resume cannot switch the learned variance off, nor on for a fixed-variance run.
    await assert.rejects(
      runTraining({
        ...common,
        learnVariance: false,
        steps: 5,
        out: `${dir}/resumed`,
        resume: true,
      }),
      /learns its variance, and a resume cannot turn that off/,
    );
    await runTraining({ ...common, learnVariance: undefined, steps: 1, out: `${dir}/fixed` });
    await assert.rejects(
      runTraining({ ...common, steps: 2, out: `${dir}/fixed`, resume: true }),
      /has a fixed variance, and a resume cannot make it learn one \(--learn-variance\); start a new run from its checkpoint instead: --init-from .*ckpt-00000001\.ddpm --learn-variance/,
    );

    // The export: the card says learned-range, and ONNX outputs all 2C channels as tfjs does.
    const exported = await exportCheckpoint(second.checkpoint, `${dir}/lv.onnx`);
    assert.equal(exported.modelCard.variance, "learned-range");
    assert.match(
      exported.modelCard.output,
      /float32 \[N, 2C, H, W\]: per image, channels 0\.\.C-1/,
    );
    assert.equal(exported.modelCard.parameters, 44_969 + 9 * 8 + 1);
    const model = await loadOnnxModel(await Deno.readFile(`${dir}/lv.onnx`));
    const params = new Map(Object.entries(b.ema).map(([k, v]) => [k, tf.tensor(v.data, v.shape)]));
    try {
      const x = createRng(8).normal(3 * 64);
      const tt = new Float32Array([0, 500, 999]);
      const got = await onnxNetworkCall(model)(x, tt, new Int32Array(3), [3, 1, 8, 8]);
      const reference = await tfjsDenoiser(params, b.config as UNetConfig)(x, tt, [3, 1, 8, 8]);
      assert.equal(got.length, 3 * 2 * 64, "[N, 2C, H, W]");
      assert.equal(reference.length, got.length);
      let maxAbs = 0, scale = 0, vScale = 0;
      reference.forEach((v, i) => {
        maxAbs = Math.max(maxAbs, Math.abs(v - got[i]));
        scale = Math.max(scale, Math.abs(v));
        if (i % 128 >= 64) vScale = Math.max(vScale, Math.abs(v)); // NCHW: channel 1 is v
      });
      assert.ok(vScale > 0, "four steps moved the v channels off zero");
      // As tests/export_test.ts: float32 with different summation orders, 1e-4 of the scale.
      assert.ok(maxAbs <= 1e-4 * scale, `max |onnx - tfjs| ${maxAbs} for scale ${scale}`);
    } finally {
      params.forEach((p) => p.dispose());
      await model.session.release();
    }

    // The exported file served over the API: DDPM reads v, the ODE solver ignores it.
    const registry = await loadRegistry(
      [{ name: "lv", bytes: await Deno.readFile(`${dir}/lv.onnx`) }],
      await chooseProvider("wasm"),
    );
    const { app } = createApp({ registry });
    for (const sampler of ["ddpm", "dpmpp-2m"]) {
      const response = await app.request("/v1/samples", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ n: 3, steps: 4, seed: 5, sampler }),
      });
      assert.equal(response.status, 200, `${sampler}: ${await response.clone().text()}`);
      assert.equal(response.headers.get("content-type"), "image/png");
      const png = new Uint8Array(await response.arrayBuffer());
      assert.deepEqual([...png.subarray(1, 4)], [80, 78, 71], `${sampler}: a PNG`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--init-from a fixed-variance checkpoint with --learn-variance keeps its predictions and starts at v = 0", async () => {
  await initBackend("cpu");
  const data = await loadMnist({ imageSize: 8, heldOutFraction: 0.1 });
  const dir = await Deno.makeTempDir();
  try {
    const common = {
      config: PRESETS.tiny,
      dataset: "mnist",
      data,
      batch: 4,
      seed: 2,
      sampleEvery: 0,
      evalEvery: 0,
      report: () => {},
    };
    const fixedRun = await runTraining({ ...common, steps: 3, out: `${dir}/fixed` });
    const fixed = await loadCheckpoint(fixedRun.checkpoint);
    // The trainer the run builds, at step 0: the source's weights, the head grown.
    const config = { ...PRESETS.tiny, learnVariance: true };
    const trainer = await Trainer.create({ config, schedule }, 2, fixed);
    const x = createRng(3).normal(2 * 64);
    const tt = new Float32Array([4, 900]);
    const shape2 = [2, 1, 8, 8] as const;
    try {
      const state = await trainer.state();
      for (const group of ["params", "ema"] as const) {
        for (const [name, tensor] of Object.entries(fixed[group])) {
          if (name.startsWith("conv_out.")) continue;
          assert.deepEqual(state[group][name].data, tensor.data, `${group} ${name}`);
        }
      }
      const source = new Map(
        Object.entries(fixed.ema).map(([k, v]) => [k, tf.tensor(v.data, v.shape)]),
      );
      const before = await tfjsDenoiser(source, PRESETS.tiny)(x, tt, shape2);
      tf.dispose([...source.values()]);
      const after = await trainer.emaDenoiser()(x, tt, shape2); // NCHW [2, 2, 8, 8]
      for (let e = 0; e < 2; e++) {
        assert.deepEqual(
          after.subarray(e * 128, e * 128 + 64),
          before.subarray(e * 64, (e + 1) * 64),
        );
        assert.ok(after.subarray(e * 128 + 64, (e + 1) * 128).every((v) => v === 0), "v = 0");
      }
    } finally {
      trainer.dispose();
    }
    // And the run itself: a new learned-variance run from it trains and records its origin.
    const tuned = await runTraining({
      ...common,
      learnVariance: true,
      initFrom: fixedRun.checkpoint,
      steps: 1,
      out: `${dir}/tuned`,
    });
    const ckpt = await loadCheckpoint(tuned.checkpoint);
    assert.equal(ckpt.config.learnVariance, true);
    assert.deepEqual(ckpt.ema["conv_out.b"].shape, [2]);
    assert.deepEqual(ckpt.metadata.initializedFrom, { path: fixedRun.checkpoint, step: 3 });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train flags: --learn-variance reaches the run options", () => {
  assert.equal(parseTrainArgs(["--learn-variance"]).options.learnVariance, true);
  assert.equal(parseTrainArgs([]).options.learnVariance, undefined);
});

Deno.test("a learned-variance run draws its sample grids with the variance it learns", async () => {
  await initBackend("cpu");
  const dir = await Deno.makeTempDir();
  try {
    const result = await runTinyTraining(`${dir}/run`, {
      learnVariance: true,
      steps: 2,
      sampleEvery: 2,
      sampleSampler: "ddpm",
      sampleSteps: 2,
      sampleCount: 2,
    });
    assert.equal(result.step, 2);
    const png = await Deno.readFile(`${dir}/run/samples/step-00000002.png`);
    assert.deepEqual([...png.subarray(1, 4)], [80, 78, 71], "a PNG");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a fixed-variance network refuses learned-variance weights, naming the flag", async () => {
  await initBackend("cpu");
  const learned = await Trainer.create({
    config: { ...PRESETS.tiny, learnVariance: true },
    schedule,
  }, 1);
  const state = await learned.state();
  learned.dispose();
  await assert.rejects(
    Trainer.create({ config: PRESETS.tiny, schedule }, 1, state),
    /conv_out\.w has shape \[3,3,8,2\], this network needs \[3,3,8,1\] \(the weights learn their variance: add --learn-variance\)/,
  );
});
