/**
 * What the network predicts, and how its output becomes the reverse step `p(x_{t-1} | x_t)`.
 *
 * - `eps` (the DDPM paper's choice): the noise that was added.
 * - `x0`: the clean image directly.
 * - `v` (Salimans & Ho 2022): `v = sqrt(abar) eps - sqrt(1 - abar) x_0`.
 *
 * @module
 */

import { checkTensor, combinePerExample, type Shape } from "./forward.ts";
import type { Schedule } from "./schedule.ts";

/** The quantity a network is trained to output. */
export type Prediction = "eps" | "x0" | "v";
/** Every prediction type, for validation and listings. */
export const PREDICTIONS: readonly Prediction[] = ["eps", "x0", "v"];

/**
 * The reverse-process variance. The fixed ones (DDPM sec. 3.2): `fixedsmall` is `beta_tilde_t`
 * (optimal when `x_0` is a point), `fixedlarge` is `beta_t` (optimal for `x_0 ~ N(0, I)`).
 * `learned-range` (Improved DDPM, Nichol & Dhariwal 2021, eq. 15): the network outputs twice the
 * image's channels, its prediction and then a value `v` per element, and
 * `log sigma^2 = (v + 1) / 2 * log beta_t + (1 - (v + 1) / 2) * log beta_tilde_t` (the clipped log).
 */
export type VarianceType = "fixedsmall" | "fixedlarge" | "learned-range";
/** Every variance type, for validation and listings. */
export const VARIANCE_TYPES: readonly VarianceType[] = [
  "fixedsmall",
  "fixedlarge",
  "learned-range",
];

/** Options shared by everything that turns a model output into a reverse step. */
export interface ReverseOptions {
  /** What the network outputs. Default `"eps"`. */
  prediction?: Prediction;
  /** Reverse-process variance. Default `"fixedlarge"` (the paper's CIFAR-10 setting). */
  variance?: VarianceType;
  /**
   * Clip the predicted `x_0` to [-1, 1] before forming the mean, as the official sampler
   * does. Default true.
   */
  clipDenoised?: boolean;
}

/** The reverse step for a batch. */
export interface ReverseStep {
  /** Mean of `p(x_{t-1} | x_t)`. */
  readonly mean: Float32Array;
  /** Variance per example (the same for every element of an example). */
  readonly variance: Float64Array;
  /** The log of `variance`, per example. */
  readonly logVariance: Float64Array;
  /** The model's estimate of `x_0` (clipped if `clipDenoised`). */
  readonly predX0: Float32Array;
  /** The noise consistent with `predX0` and `x_t`. */
  readonly predEps: Float32Array;
}

/** `x0 = sqrt(1/abar) x_t - sqrt(1/abar - 1) eps` (inverse of eq. 4). */
export function predictX0FromEps(
  schedule: Schedule,
  xt: Float32Array,
  t: ArrayLike<number>,
  eps: Float32Array,
  shape: Shape,
): Float32Array {
  return combinePerExample(schedule, xt, eps, t, shape, (s, i) => [
    s.sqrtRecipAlphasCumprod[i],
    -s.sqrtRecipm1AlphasCumprod[i],
  ], ["xt", "eps"]);
}

/** `eps = (sqrt(1/abar) x_t - x0) / sqrt(1/abar - 1)`. */
export function predictEpsFromX0(
  schedule: Schedule,
  xt: Float32Array,
  t: ArrayLike<number>,
  x0: Float32Array,
  shape: Shape,
): Float32Array {
  return combinePerExample(schedule, xt, x0, t, shape, (s, i) => {
    const d = s.sqrtRecipm1AlphasCumprod[i];
    return [s.sqrtRecipAlphasCumprod[i] / d, -1 / d];
  }, ["xt", "x0"]);
}

/** `x0 = sqrt(abar) x_t - sqrt(1 - abar) v`. */
export function predictX0FromV(
  schedule: Schedule,
  xt: Float32Array,
  t: ArrayLike<number>,
  v: Float32Array,
  shape: Shape,
): Float32Array {
  return combinePerExample(schedule, xt, v, t, shape, (s, i) => [
    s.sqrtAlphasCumprod[i],
    -s.sqrtOneMinusAlphasCumprod[i],
  ], ["xt", "v"]);
}

/** `eps = sqrt(1 - abar) x_t + sqrt(abar) v`. */
export function predictEpsFromV(
  schedule: Schedule,
  xt: Float32Array,
  t: ArrayLike<number>,
  v: Float32Array,
  shape: Shape,
): Float32Array {
  return combinePerExample(schedule, xt, v, t, shape, (s, i) => [
    s.sqrtOneMinusAlphasCumprod[i],
    s.sqrtAlphasCumprod[i],
  ], ["xt", "v"]);
}

/** `v = sqrt(abar) eps - sqrt(1 - abar) x0`. */
export function predictV(
  schedule: Schedule,
  x0: Float32Array,
  t: ArrayLike<number>,
  eps: Float32Array,
  shape: Shape,
): Float32Array {
  return combinePerExample(schedule, eps, x0, t, shape, (s, i) => [
    s.sqrtAlphasCumprod[i],
    -s.sqrtOneMinusAlphasCumprod[i],
  ], ["eps", "x0"]);
}

/**
 * The regression target for a training example: `eps`, `x0` or `v` from the clean image and
 * the noise that produced `x_t`.
 */
export function trainingTarget(
  prediction: Prediction,
  schedule: Schedule,
  x0: Float32Array,
  t: ArrayLike<number>,
  eps: Float32Array,
  shape: Shape,
): Float32Array {
  switch (prediction) {
    case "eps":
      checkTensor("eps", eps, shape);
      return eps;
    case "x0":
      checkTensor("x0", x0, shape);
      return x0;
    case "v":
      return predictV(schedule, x0, t, eps, shape);
    default:
      return _unknownPrediction(prediction);
  }
}

/** The model's `x_0` estimate from its raw output, unclipped. */
export function predictX0(
  prediction: Prediction,
  schedule: Schedule,
  xt: Float32Array,
  t: ArrayLike<number>,
  output: Float32Array,
  shape: Shape,
): Float32Array {
  switch (prediction) {
    case "eps":
      return predictX0FromEps(schedule, xt, t, output, shape);
    case "x0":
      checkTensor("model output", output, shape);
      return output.slice();
    case "v":
      return predictX0FromV(schedule, xt, t, output, shape);
    default:
      return _unknownPrediction(prediction);
  }
}

function _unknownPrediction(prediction: never): never {
  throw new RangeError(`prediction must be one of ${PREDICTIONS.join(", ")}, got ${prediction}`);
}

/**
 * The variance of `p(x_{t-1} | x_t)` at 0-based index `t`.
 * `fixedlarge` uses `beta_t`, except at index 0 where it uses `beta_tilde` of index 1 as the
 * official code does: `beta_0` is tiny and would make the decoder term needlessly sharp.
 */
export function reverseVariance(
  schedule: Schedule,
  variance: VarianceType,
  t: number,
): { variance: number; logVariance: number } {
  switch (variance) {
    case "fixedsmall":
      return {
        variance: schedule.posteriorVariance[t],
        logVariance: schedule.posteriorLogVarianceClipped[t],
      };
    case "fixedlarge": {
      const v = t === 0 && schedule.timesteps > 1
        ? schedule.posteriorVariance[1]
        : schedule.betas[t];
      return { variance: v, logVariance: Math.log(v) };
    }
    case "learned-range":
      throw new RangeError("a learned-range variance is read from the network output, not fixed");
    default: {
      const unknown: never = variance;
      throw new RangeError(`variance must be one of ${VARIANCE_TYPES.join(", ")}, got ${unknown}`);
    }
  }
}

/**
 * Mean and variance of the reverse step from a model output (DDPM eq. 11 for eps; the
 * posterior mean `mu_tilde(x0_hat, x_t)` in general, which equals eq. 11 when no clipping
 * happens).
 *
 * 1. Turn the output into `x0_hat` (clipped to [-1, 1] if asked).
 * 2. `mean = c1 x0_hat + c2 x_t` (eq. 7).
 * 3. Variance from the variance type; `eps` recomputed from the (clipped) `x0_hat`.
 */
export function pMeanVariance(
  schedule: Schedule,
  output: Float32Array,
  xt: Float32Array,
  t: ArrayLike<number>,
  shape: Shape,
  options: ReverseOptions = {},
): ReverseStep {
  const prediction = options.prediction ?? "eps";
  const varianceType = options.variance ?? "fixedlarge";
  const clip = options.clipDenoised ?? true;
  checkTensor("model output", output, shape);

  const predX0 = predictX0(prediction, schedule, xt, t, output, shape);
  if (clip) {
    for (let j = 0; j < predX0.length; j++) predX0[j] = Math.min(1, Math.max(-1, predX0[j]));
  }
  const predEps = prediction === "eps" && !clip
    ? output.slice()
    : predictEpsFromX0(schedule, xt, t, predX0, shape);

  const mean = combinePerExample(schedule, predX0, xt, t, shape, (s, i) => [
    s.posteriorMeanCoef1[i],
    s.posteriorMeanCoef2[i],
  ], ["predicted x0", "xt"]);
  const variance = new Float64Array(shape[0]);
  const logVariance = new Float64Array(shape[0]);
  for (let n = 0; n < shape[0]; n++) {
    const v = reverseVariance(schedule, varianceType, t[n]);
    variance[n] = v.variance;
    logVariance[n] = v.logVariance;
  }
  return { mean, variance, logVariance, predX0, predEps };
}
