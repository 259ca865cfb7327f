/**
 * What the network predicts, and how its output becomes the reverse step `p(x_{t-1} | x_t)`.
 *
 * - `eps` (the DDPM paper's choice): the noise that was added.
 * - `x0`: the clean image directly.
 * - `v` (Salimans & Ho 2022): `v = sqrt(abar) eps - sqrt(1 - abar) x_0`.
 *
 * @module
 */

import {
  checkTensor,
  checkTimesteps,
  combinePerExample,
  type Shape,
  shapeSize,
} from "./forward.ts";
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

/**
 * The reverse step for a batch. Every field is per element, NCHW `[n, c, h, w]` like `x_t`:
 * a fixed variance repeats one value over each example's elements, a learned one varies.
 */
export interface ReverseStep {
  /** Mean of `p(x_{t-1} | x_t)`. */
  readonly mean: Float32Array;
  /** Variance of `p(x_{t-1} | x_t)`, per element. */
  readonly variance: Float64Array;
  /** The log of `variance`, per element (for a learned variance, computed first). */
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
 * A `learned-range` variance depends on the network's output: {@linkcode learnedRangeLogVariance}.
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
 * How many values per example a network outputs for a variance type, as a multiple of the
 * image's: 2 for `learned-range` (the prediction, then `v`), 1 for a fixed variance.
 *
 * @example
 * ```ts
 * import { outputFactor } from "./parameterization.ts";
 * console.assert(outputFactor("learned-range") === 2 && outputFactor("fixedlarge") === 1);
 * ```
 */
export function outputFactor(variance: VarianceType): 1 | 2 {
  switch (variance) {
    case "fixedsmall":
    case "fixedlarge":
      return 1;
    case "learned-range":
      return 2;
    default: {
      const unknown: never = variance;
      throw new RangeError(`variance must be one of ${VARIANCE_TYPES.join(", ")}, got ${unknown}`);
    }
  }
}

/** A network output split into its halves ({@linkcode splitModelOutput}). */
export interface ModelOutput {
  /** The prediction (eps, x0 or v as the card says), NCHW `[n, c, h, w]` like `x_t`. */
  readonly prediction: Float32Array;
  /** Learned-range `v` per element, NCHW like `prediction`; null for a fixed variance. */
  readonly varianceValues: Float32Array | null;
}

/**
 * Splits a network output for images of `shape` into the prediction and, for `learned-range`,
 * the variance values `v`. A learned-range network outputs NCHW `[n, 2c, h, w]`: per example,
 * the `c*h*w` prediction values and then `c*h*w` values of `v` (improved-diffusion splits its
 * output along the channel axis the same way). Throws a `RangeError` naming the expected and
 * the actual length when the output's is not the one `variance` needs.
 *
 * @example
 * ```ts
 * import { splitModelOutput } from "./parameterization.ts";
 * // Two 1x1x1 examples: [eps_0, v_0, eps_1, v_1].
 * const { prediction, varianceValues } = splitModelOutput(
 *   Float32Array.of(0.1, -1, 0.2, 1), [2, 1, 1, 1], "learned-range",
 * );
 * console.assert(prediction.join() === Float32Array.of(0.1, 0.2).join());
 * console.assert(varianceValues?.join() === "-1,1");
 * ```
 */
export function splitModelOutput(
  output: Float32Array,
  shape: Shape,
  variance: VarianceType,
): ModelOutput {
  const factor = outputFactor(variance);
  const size = shapeSize(shape);
  if (output.length !== factor * size) {
    const expected = factor === 2
      ? `2 x ${size} = ${2 * size} values (the prediction, then v)`
      : `${size} values`;
    const hint = factor === 1 && output.length === 2 * size
      ? " (twice the image: a network that learns its variance needs variance learned-range)"
      : "";
    throw new RangeError(
      `model output must have ${expected} for shape [${shape.join(", ")}] with variance ` +
        `${variance}, got ${output.length}${hint}`,
    );
  }
  if (factor === 1) return { prediction: output, varianceValues: null };
  const n = shape[0];
  const per = size / n;
  const prediction = new Float32Array(size);
  const varianceValues = new Float32Array(size);
  // Output NCHW [n, 2c, h, w]: example i's prediction at [2i per, (2i + 1) per), its v after.
  for (let i = 0; i < n; i++) {
    prediction.set(output.subarray(2 * i * per, (2 * i + 1) * per), i * per);
    varianceValues.set(output.subarray((2 * i + 1) * per, (2 * i + 2) * per), i * per);
  }
  return { prediction, varianceValues };
}

/**
 * The two ends of the learned range at 0-based index `t` of `schedule`: `minLog` the clipped
 * `log beta_tilde_t` (`v = -1`, `beta_tilde[1]` at index 0) and `maxLog` the plain `log beta_t`
 * (`v = 1`, also at index 0, unlike `fixedlarge`). The sampler, the bound, the training loss
 * and the analytic reference all read the range from here.
 *
 * @example
 * ```ts
 * import { learnedRangeEnds, makeSchedule } from "../mod.ts";
 * const schedule = makeSchedule();
 * const { minLog, maxLog } = learnedRangeEnds(schedule, 500);
 * console.assert(minLog < maxLog && maxLog === Math.log(schedule.betas[500]));
 * ```
 */
export function learnedRangeEnds(
  schedule: Schedule,
  t: number,
): { minLog: number; maxLog: number } {
  return { minLog: schedule.posteriorLogVarianceClipped[t], maxLog: Math.log(schedule.betas[t]) };
}

/**
 * The learned-range log variance per element (Improved DDPM eq. 15, improved-diffusion's
 * `LEARNED_RANGE`): `frac = (v + 1) / 2` (the paper's `v`, which the official network outputs
 * scaled to [-1, 1]) and `log sigma^2 = frac log beta_t + (1 - frac) log beta_tilde_t`, with
 * the clipped `log beta_tilde` (`beta_tilde[1]` at index 0) and the plain `beta_t` (also at
 * index 0, unlike `fixedlarge`). `v = 1` gives `beta_t`, `v = -1` the clipped `beta_tilde_t`; `v` outside
 * [-1, 1] extrapolates, as the official code does. `t` holds 0-based indices of `schedule`: of
 * a respaced schedule, its own betas are the range.
 *
 * @example
 * ```ts
 * import { learnedRangeLogVariance, makeSchedule } from "../mod.ts";
 * const schedule = makeSchedule();
 * const [large, small] = learnedRangeLogVariance(
 *   schedule, Float32Array.of(1, -1), [500], [1, 1, 1, 2],
 * );
 * console.assert(large === Math.log(schedule.betas[500]));
 * console.assert(small === schedule.posteriorLogVarianceClipped[500]);
 * ```
 */
export function learnedRangeLogVariance(
  schedule: Schedule,
  varianceValues: Float32Array,
  t: ArrayLike<number>,
  shape: Shape,
): Float64Array {
  const per = checkTensor("variance values", varianceValues, shape);
  checkTimesteps(schedule, t, shape[0]);
  const out = new Float64Array(varianceValues.length);
  for (let n = 0; n < shape[0]; n++) {
    const { minLog, maxLog } = learnedRangeEnds(schedule, t[n]);
    for (let j = n * per, end = j + per; j < end; j++) {
      const frac = (varianceValues[j] + 1) / 2;
      out[j] = frac * maxLog + (1 - frac) * minLog;
    }
  }
  return out;
}

/**
 * Mean and variance of the reverse step from a model output (DDPM eq. 11 for eps; the
 * posterior mean `mu_tilde(x0_hat, x_t)` in general, which equals eq. 11 when no clipping
 * happens).
 *
 * 1. Split the output: the prediction, and for `learned-range` the values `v` after it
 *    ({@linkcode splitModelOutput}: twice the values of `x_t`).
 * 2. Turn the prediction into `x0_hat` (clipped to [-1, 1] if asked).
 * 3. `mean = c1 x0_hat + c2 x_t` (eq. 7).
 * 4. Variance per element: fixed from the variance type, or learned from `v`
 *    ({@linkcode learnedRangeLogVariance}); `eps` recomputed from the (clipped) `x0_hat`.
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
  const per = checkTensor("xt", xt, shape);

  // 1. The halves.
  const { prediction: predicted, varianceValues } = splitModelOutput(output, shape, varianceType);
  // 2. x0_hat.
  const predX0 = predictX0(prediction, schedule, xt, t, predicted, shape);
  if (clip) {
    for (let j = 0; j < predX0.length; j++) predX0[j] = Math.min(1, Math.max(-1, predX0[j]));
  }
  const predEps = prediction === "eps" && !clip
    ? predicted.slice()
    : predictEpsFromX0(schedule, xt, t, predX0, shape);

  // 3. The mean.
  const mean = combinePerExample(schedule, predX0, xt, t, shape, (s, i) => [
    s.posteriorMeanCoef1[i],
    s.posteriorMeanCoef2[i],
  ], ["predicted x0", "xt"]);
  // 4. The variance.
  if (varianceValues) {
    const logVariance = learnedRangeLogVariance(schedule, varianceValues, t, shape);
    return { mean, variance: logVariance.map((l) => Math.exp(l)), logVariance, predX0, predEps };
  }
  const variance = new Float64Array(xt.length);
  const logVariance = new Float64Array(xt.length);
  for (let n = 0; n < shape[0]; n++) {
    const v = reverseVariance(schedule, varianceType, t[n]);
    variance.fill(v.variance, n * per, (n + 1) * per);
    logVariance.fill(v.logVariance, n * per, (n + 1) * per);
  }
  return { mean, variance, logVariance, predX0, predEps };
}
