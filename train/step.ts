/**
 * The loss of one training step on one tfjs backend, for a whole batch or a worker's share of
 * it. The trainer (in the calling thread) and each gradient worker call the same function, so
 * the two paths compute the same network on the same inputs.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { nchwToHwc } from "../lib/image.ts";
import { learnedRangeEnds, type Prediction } from "../lib/parameterization.ts";
import type { Rng } from "../lib/rng.ts";
import type { Schedule } from "../lib/schedule.ts";
import type { UNetConfig } from "./network.ts";
import { type ParamTensors, unetApply } from "./tfjs_ops.ts";

/** An NCHW batch shape. */
export type BatchShape = readonly [number, number, number, number];

/**
 * Everything random about a step, drawn on the CPU from the run's `Rng` before the batch is
 * split: the images, their timesteps and noise, the dropout seed and the class indices.
 */
export interface StepInputs {
  /** NCHW images in [-1, 1]. */
  readonly x0: Float32Array;
  readonly shape: BatchShape;
  /** 0-based timestep per example. */
  readonly t: Int32Array;
  /** eps ~ N(0, I), NCHW like `x0`. */
  readonly noise: Float32Array;
  readonly dropoutSeed: number;
  /** Embedding rows of a conditional network (the "no class" row included); else absent. */
  readonly classes?: Int32Array;
  /** Index of the first example in the whole batch (dropout masks are drawn per example). */
  readonly exampleOffset: number;
  /**
   * Importance weights, one per example, when the timesteps were not drawn uniformly
   * ({@linkcode drawTimesteps}): each example's loss, both parts, is multiplied by its weight,
   * so the batch mean stays an unbiased estimate of the uniform-t objective. Absent: all 1.
   */
  readonly weights?: Float32Array;
}

/** What the loss needs that does not change during a run. */
export interface LossSetup {
  readonly config: UNetConfig;
  readonly prediction: Prediction;
  /** `sqrt(abar_t)` and `sqrt(1 - abar_t)` per 0-based timestep, as float32. */
  readonly sqrtAbar: Float32Array;
  readonly sqrtOneMinusAbar: Float32Array;
  /** The variational-bound term's constants; present exactly when the network learns its variance. */
  readonly vb?: VbTables;
}

/**
 * Per-timestep constants of the learned-variance term `L_vlb` (Improved DDPM sec. 3.1), as
 * float32, 0-based timestep index. Built once in float64 by {@linkcode vbTables}.
 */
export interface VbTables {
  /**
   * The model's mean as `mu_theta = meanCoefXt_t x_t + meanCoefPrediction_t prediction`: the
   * posterior mean (eq. 7) of the `x_0` the prediction implies, without clipping.
   */
  readonly meanCoefXt: Float32Array;
  readonly meanCoefPrediction: Float32Array;
  /** `q(x_{t-1} | x_t, x_0)`'s mean coefficients (eq. 7). */
  readonly posteriorMeanCoef1: Float32Array;
  readonly posteriorMeanCoef2: Float32Array;
  /** The learned range's ends: `log beta_tilde_t` (clipped at index 0) and `log beta_t`. */
  readonly minLog: Float32Array;
  readonly maxLog: Float32Array;
  /**
   * `lambda T`, by default with Improved DDPM's `lambda = 1/1000` (eq. 16): `L_vlb = sum_t L_t`
   * is estimated by `T L_t` at the sampled t, so the objective adds `lambda T L_t`, by default
   * `(T / 1000) L_t` (improved-diffusion's `RESCALED_MSE` scaling of the `vb` term).
   */
  readonly weight: number;
}

/** Improved DDPM's weight of `L_vlb` in the hybrid objective (eq. 16), the default `lambda`. */
export const VB_LAMBDA = 0.001;

/**
 * The {@linkcode VbTables} of a schedule and prediction type, in float64 before rounding. The
 * mean's coefficients fold `x_0`'s reconstruction into the posterior mean:
 * eps: `x_0 = sqrt(1 / abar) x_t - sqrt(1 / abar - 1) eps`; x0: itself;
 * v: `x_0 = sqrt(abar) x_t - sqrt(1 - abar) v`. `lambda` weighs `L_vlb` against `L_simple`.
 */
export function vbTables(
  schedule: Schedule,
  prediction: Prediction,
  lambda: number = VB_LAMBDA,
): VbTables {
  const c1 = schedule.posteriorMeanCoef1, c2 = schedule.posteriorMeanCoef2;
  let xtInX0: Float64Array, predictionInX0: Float64Array;
  switch (prediction) {
    case "eps":
      xtInX0 = schedule.sqrtRecipAlphasCumprod;
      predictionInX0 = schedule.sqrtRecipm1AlphasCumprod.map((k) => -k);
      break;
    case "x0":
      xtInX0 = new Float64Array(schedule.timesteps);
      predictionInX0 = new Float64Array(schedule.timesteps).fill(1);
      break;
    case "v":
      xtInX0 = schedule.sqrtAlphasCumprod;
      predictionInX0 = schedule.sqrtOneMinusAlphasCumprod.map((k) => -k);
      break;
    default: {
      const unknown: never = prediction;
      throw new RangeError(`prediction must be eps, x0 or v, got ${unknown}`);
    }
  }
  const perT = (f: (i: number) => number) =>
    Float32Array.from({ length: schedule.timesteps }, (_, i) => f(i));
  return {
    meanCoefXt: perT((i) => c1[i] * xtInX0[i] + c2[i]),
    meanCoefPrediction: perT((i) => c1[i] * predictionInX0[i]),
    posteriorMeanCoef1: Float32Array.from(c1),
    posteriorMeanCoef2: Float32Array.from(c2),
    minLog: perT((i) => learnedRangeEnds(schedule, i).minLog),
    maxLog: perT((i) => learnedRangeEnds(schedule, i).maxLog),
    weight: lambda * schedule.timesteps,
  };
}

/** Examples `[start, end)` of a step's inputs, with their offset in the whole batch. */
export function sliceInputs(inputs: StepInputs, start: number, end: number): StepInputs {
  const [, c, h, w] = inputs.shape;
  const size = c * h * w;
  return {
    x0: inputs.x0.slice(start * size, end * size),
    shape: [end - start, c, h, w],
    t: inputs.t.slice(start, end),
    noise: inputs.noise.slice(start * size, end * size),
    dropoutSeed: inputs.dropoutSeed,
    classes: inputs.classes?.slice(start, end),
    exampleOffset: inputs.exampleOffset + start,
    ...(inputs.weights ? { weights: inputs.weights.slice(start, end) } : {}),
  };
}

/**
 * The proposal the vb term's extra timesteps come from: `r(t) = (1 / (t + 1)) / H_T` on
 * `0..T-1` (`H_T` the harmonic number). The bound's terms fall off roughly as `1 / t` (on MNIST
 * the decoder `L_0` alone is over half of it and `L_1..L_9` a fifth), while a uniform draw
 * reaches t = 0 once in T examples, so the terms that make most of the bound get the fewest
 * samples. `r` gives each decade of t about the same share. Float64.
 */
export function smallTimestepProposal(timesteps: number): Float64Array {
  let harmonic = 0;
  for (let t = 0; t < timesteps; t++) harmonic += 1 / (t + 1);
  return Float64Array.from({ length: timesteps }, (_, t) => 1 / (t + 1) / harmonic);
}

/**
 * A step's timesteps. With `share` 0 (the default): uniform on `0..T-1`, one
 * `rng.integers` call, as every run before importance sampling drew them. With `share` in
 * (0, 1] (`--vb-importance`): the last `m = round(share n)` examples draw theirs from
 * {@linkcode smallTimestepProposal} `r` instead, and every example gets the weight
 * `w(t) = (1 / T) / q(t)` with `q = (1 - m / n) uniform + (m / n) r` the mixture the batch was
 * drawn from (the balance heuristic of multiple importance sampling). The batch mean of
 * `w(t_i) f(t_i)` is then unbiased for `f`'s mean over uniform t for any f, so the hybrid
 * objective (`L_simple` and `L_t` alike) keeps its meaning while the small t that hold most of
 * the bound are seen far more often: with `share` 0.25, `L_0` in 3.4% of examples, not 0.1%.
 */
export function drawTimesteps(
  rng: Rng,
  n: number,
  timesteps: number,
  share = 0,
): { t: Int32Array; weights?: Float32Array } {
  if (!(share >= 0 && share <= 1)) {
    throw new RangeError(`the importance share must be in [0, 1], got ${share}`);
  }
  const m = Math.round(share * n);
  if (m === 0) return { t: rng.integers(n, timesteps) };
  const { proposal, cumulative } = _proposalTables(timesteps);
  const t = new Int32Array(n);
  t.set(rng.integers(n - m, timesteps));
  for (let i = n - m; i < n; i++) {
    // The first t whose cumulative probability passes u (the last, should rounding leave u above).
    const u = rng.nextFloat64();
    let lo = 0, hi = timesteps - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid] > u) hi = mid;
      else lo = mid + 1;
    }
    t[i] = lo;
  }
  const uniformShare = (n - m) / n, proposalShare = m / n;
  const weights = Float32Array.from(
    t,
    (ti) => 1 / timesteps / (uniformShare / timesteps + proposalShare * proposal[ti]),
  );
  return { t, weights };
}

/** The proposal and its running sum per T, built once rather than at every step. */
const _proposals = new Map<number, { proposal: Float64Array; cumulative: Float64Array }>();

function _proposalTables(timesteps: number): { proposal: Float64Array; cumulative: Float64Array } {
  let tables = _proposals.get(timesteps);
  if (!tables) {
    const proposal = smallTimestepProposal(timesteps);
    const cumulative = new Float64Array(timesteps);
    let sum = 0;
    proposal.forEach((p, i) => cumulative[i] = sum += p);
    tables = { proposal, cumulative };
    _proposals.set(timesteps, tables);
  }
  return tables;
}

/** A step's loss as numbers: `L_simple`, and the vb term of a learned variance (bits/dim). */
export interface LossValues {
  readonly loss: number;
  readonly vb?: number;
}

/** A step's loss as tensors: what is minimised, and its parts as the metrics report them. */
export interface LossTerms {
  /** The objective the gradients are of: `mse`, plus `weight vb` when the variance is learned. */
  readonly objective: tf.Scalar;
  /** `L_simple`: the mean squared error of the prediction (its channels only). */
  readonly mse: tf.Scalar;
  /** Mean over the batch of `L_t` in bits/dim (learned variance only). */
  readonly vb?: tf.Scalar;
}

/**
 * The loss of the inputs. `L_simple`: the mean squared error between the network's prediction
 * on `x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps` (eq. 4) and the target of the prediction
 * type (eq. 14). A network that learns its variance is trained on Improved DDPM's hybrid
 * objective `L_simple + lambda T L_t` (sec. 3.1, `lambda` 1/1000 unless the run sets another;
 * {@linkcode variationalBoundTerms}), whose
 * second part trains only the `v` channels. `training` turns dropout on. With importance
 * `weights`, each example's MSE and `L_t` are weighted before the batch mean (both the
 * objective and the reported parts). Call inside `tf.tidy` or `tf.variableGrads`.
 */
export function batchLoss(
  params: ParamTensors,
  setup: LossSetup,
  inputs: StepInputs & { training: boolean },
): LossTerms {
  const [n, c, h, w] = inputs.shape;
  const nhwc: [number, number, number, number] = [n, h, w, c];
  const x0 = tf.tensor4d(nchwToHwc(inputs.x0, inputs.shape), nhwc);
  const eps = tf.tensor4d(nchwToHwc(inputs.noise, inputs.shape), nhwc);
  const a = _perExample(setup.sqrtAbar, inputs.t);
  const s = _perExample(setup.sqrtOneMinusAbar, inputs.t);
  const xt = tf.add(tf.mul(a, x0), tf.mul(s, eps));
  let target: tf.Tensor;
  switch (setup.prediction) {
    case "eps":
      target = eps;
      break;
    case "x0":
      target = x0;
      break;
    case "v":
      target = tf.sub(tf.mul(a, eps), tf.mul(s, x0)); // v = sqrt(abar) eps - sqrt(1 - abar) x0
      break;
    default: {
      const unknown: never = setup.prediction;
      throw new RangeError(`prediction must be eps, x0 or v, got ${unknown}`);
    }
  }
  const y = inputs.classes && tf.tensor1d(inputs.classes, "int32");
  const out = unetApply(params, setup.config, xt, tf.tensor1d(Float32Array.from(inputs.t)), {
    training: inputs.training,
    dropoutSeed: inputs.dropoutSeed,
    exampleOffset: inputs.exampleOffset,
  }, y);
  const weights = inputs.weights && tf.tensor1d(inputs.weights);
  // Unweighted, the plain mean over every element (the float32 sums of every run before
  // importance weights); weighted, the mean of each example's weighted mean.
  const meanSquaredError = (prediction: tf.Tensor) =>
    (weights
      ? tf.mean(tf.mul(weights, tf.mean(tf.squaredDifference(prediction, target), [1, 2, 3])))
      : tf.mean(tf.squaredDifference(prediction, target))) as tf.Scalar;
  if (!setup.config.learnVariance) {
    const mse = meanSquaredError(out);
    return { objective: mse, mse };
  }
  if (!setup.vb) throw new RangeError("a network that learns its variance needs LossSetup.vb");
  // NHWC [n, h, w, 2c]: the prediction's channels, then v's.
  const mse = meanSquaredError(tf.slice(out, [0, 0, 0, 0], [n, h, w, c]));
  const terms = variationalBoundTerms(out, { x0, xt, t: inputs.t, tables: setup.vb });
  const vb = tf.mean(weights ? tf.mul(weights, terms) : terms);
  const objective = tf.add(mse, tf.mul(vb, setup.vb.weight)) as tf.Scalar;
  return { objective, mse, vb: vb as tf.Scalar };
}

/**
 * The variational-bound term `L_t` of each example at its timestep, in bits/dim, for a network
 * output `[n, h, w, 2c]` (NHWC: the prediction's channels, then `v`'s), Improved DDPM sec. 3.1:
 * 1. `p_theta(x_{t-1} | x_t)`: the mean from a stop-gradient of the prediction (so this term
 *    trains only `v`), no clipping; `log sigma^2 = frac log beta_t + (1 - frac) log beta_tilde_t`
 *    with `frac = (v + 1) / 2` (eq. 15, the range clipped at index 0).
 * 2. t > 0: `KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))` (eq. 6, 7), averaged over the
 *    elements and divided by `ln 2`.
 * 3. t = 0: the discretized Gaussian decoder's negative log-likelihood of `x_0` (DDPM eq. 13),
 *    averaged and in bits likewise.
 *
 * The decoder's normal CDF is the tanh approximation `Phi(z) = (1 + tanh(sqrt(2 / pi)
 * (z + 0.044715 z^3))) / 2` of improved-diffusion (within 2e-4 of the exact CDF), written as the
 * equal `sigmoid(2 sqrt(2 / pi) (z + 0.044715 z^3))`, which keeps its relative precision in the
 * lower tail in float32; each bin's probability is taken in the lower tail (the bin is symmetric
 * about `x_0`, so `|x_0 - mu|` serves), and clamped at 1e-12 before the log as the official
 * code does. Every op here has a kernel on the cpu, wasm and webgpu backends.
 */
export function variationalBoundTerms(
  output: tf.Tensor,
  inputs: { x0: tf.Tensor; xt: tf.Tensor; t: Int32Array; tables: VbTables },
): tf.Tensor1D {
  const { x0, xt, t, tables } = inputs;
  const [n, h, w, twoC] = output.shape as [number, number, number, number];
  const c = twoC / 2;
  if (!Number.isInteger(c) || x0.shape[3] !== c) {
    throw new RangeError(
      `the output has ${twoC} channels; a learned variance needs twice the image's ${x0.shape[3]}`,
    );
  }
  // 1. p_theta's mean and log-variance.
  const prediction = stopGradient(tf.slice(output, [0, 0, 0, 0], [n, h, w, c]));
  const v = tf.slice(output, [0, 0, 0, c], [n, h, w, c]);
  const minLog = _perExample(tables.minLog, t);
  const maxLog = _perExample(tables.maxLog, t);
  const meanP = tf.add(
    tf.mul(_perExample(tables.meanCoefXt, t), xt),
    tf.mul(_perExample(tables.meanCoefPrediction, t), prediction),
  );
  const frac = tf.mul(tf.add(v, 1), 0.5);
  const logVarP = tf.add(minLog, tf.mul(frac, tf.sub(maxLog, minLog)));
  // 2. KL(N(meanQ, exp(minLog)) || N(meanP, exp(logVarP))) in nats, then bits/dim.
  const meanQ = tf.add(
    tf.mul(_perExample(tables.posteriorMeanCoef1, t), x0),
    tf.mul(_perExample(tables.posteriorMeanCoef2, t), xt),
  );
  const kl = tf.mul(
    tf.add(
      tf.add(tf.sub(logVarP, minLog), tf.exp(tf.sub(minLog, logVarP))),
      tf.sub(tf.mul(tf.squaredDifference(meanQ, meanP), tf.exp(tf.neg(logVarP))), 1),
    ),
    0.5,
  );
  const klBits = tf.div(tf.mean(kl, [1, 2, 3]), Math.LN2) as tf.Tensor1D;
  if (!t.includes(0)) return klBits;
  // 3. The decoder's negative log-likelihood of the 8-bit x_0, for the examples at t = 0.
  const invStd = tf.exp(tf.mul(logVarP, -0.5));
  const centred = tf.sub(x0, meanP);
  const halfBin = 1 / 255;
  const inner = tf.sub(
    _approxStandardNormalCdf(tf.mul(tf.sub(halfBin, tf.abs(centred)), invStd)),
    _approxStandardNormalCdf(tf.mul(tf.neg(tf.add(tf.abs(centred), halfBin)), invStd)),
  );
  // The edge bins reach to -inf and +inf (the official thresholds pick them out).
  const lowest = tf.cast(tf.less(x0, -0.999), "float32");
  const highest = tf.cast(tf.greater(x0, 0.999), "float32");
  const below = _approxStandardNormalCdf(tf.mul(tf.add(centred, halfBin), invStd));
  const above = _approxStandardNormalCdf(tf.mul(tf.sub(halfBin, centred), invStd));
  const probability = tf.add(
    tf.add(tf.mul(lowest, below), tf.mul(highest, above)),
    tf.mul(tf.sub(1, tf.add(lowest, highest)), inner),
  );
  const nll = tf.neg(tf.log(tf.maximum(probability, 1e-12)));
  const nllBits = tf.div(tf.mean(nll, [1, 2, 3]), Math.LN2);
  const atZero = tf.tensor1d(Float32Array.from(t, (ti) => (ti === 0 ? 1 : 0)));
  return tf.add(tf.mul(atZero, nllBits), tf.mul(tf.sub(1, atZero), klBits)) as tf.Tensor1D;
}

/**
 * `x` forwards, with a zero gradient: tfjs has no public stop-gradient op, and a custom
 * gradient that returns zeros is one.
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  const op = tf.customGrad((xIn) => ({
    value: tf.clone(xIn as tf.Tensor),
    gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
  }));
  return op(x) as T;
}

/** `Phi(z)`'s tanh approximation, as a sigmoid (see {@linkcode variationalBoundTerms}). */
function _approxStandardNormalCdf(z: tf.Tensor): tf.Tensor {
  const cubic = tf.add(z, tf.mul(tf.mul(tf.square(z), z), 0.044715));
  return tf.sigmoid(tf.mul(cubic, 2 * Math.sqrt(2 / Math.PI)));
}

/** A per-timestep constant for each example, `[n, 1, 1, 1]` to broadcast over NHWC. */
function _perExample(table: Float32Array, t: Int32Array): tf.Tensor4D {
  return tf.tensor4d(Float32Array.from(t, (i) => table[i]), [t.length, 1, 1, 1]);
}

/**
 * The loss of the inputs and its gradients with respect to `variables` (whose tensors `params`
 * holds): the objective's gradients, the MSE and vb parts as tensors the caller disposes.
 */
export function lossGradients(
  params: ParamTensors,
  variables: tf.Variable[],
  setup: LossSetup,
  inputs: StepInputs & { training: boolean },
): { mse: tf.Scalar; vb?: tf.Scalar; grads: tf.NamedTensorMap } {
  let parts: { mse: tf.Scalar; vb?: tf.Scalar } | undefined;
  const { value, grads } = tf.variableGrads(() => {
    const terms = batchLoss(params, setup, inputs);
    // Kept past variableGrads' scope, which disposes everything but the objective.
    parts = { mse: tf.keep(terms.mse), vb: terms.vb && tf.keep(terms.vb) };
    return terms.objective;
  }, variables);
  const { mse, vb } = parts as { mse: tf.Scalar; vb?: tf.Scalar };
  if (value !== mse) value.dispose();
  return { mse, vb, grads };
}
