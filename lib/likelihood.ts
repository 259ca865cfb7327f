/**
 * The training loss and the likelihood: `L_simple` (eq. 14), the Gaussian KL, the discretized
 * Gaussian decoder (eq. 13), the prior term, and the full variational bound in bits/dim as the
 * official evaluation (`calc_bpd_loop`) computes it.
 *
 * The normal CDF here is exact to float64 (an erfc series and continued fraction, in log
 * space in the tails), not the tanh approximation of the official code; the two differ by
 * less than 2e-4 in probability, and the exact one never needs the official `1e-12` clamps.
 *
 * @module
 */

import { checkTensor, qPosterior, qSample, type Shape, shapeSize } from "./forward.ts";
import { outputFactor, pMeanVariance, type ReverseOptions } from "./parameterization.ts";
import { createRng, type Rng } from "./rng.ts";
import type { Denoiser } from "./samplers.ts";
import type { Schedule } from "./schedule.ts";

/**
 * `L_simple`: the mean squared error between the target and the model output (eq. 14, with
 * the eps target; the same form serves x0 and v targets).
 */
export function lSimple(target: Float32Array, output: Float32Array): number {
  if (target.length !== output.length || target.length === 0) {
    throw new RangeError(
      `lSimple needs two non-empty arrays of one length, got ${target.length} and ${output.length}`,
    );
  }
  let sum = 0;
  for (let i = 0; i < target.length; i++) {
    const d = target[i] - output[i];
    sum += d * d;
  }
  return sum / target.length;
}

/**
 * `KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2)))` in nats, elementwise:
 * `0.5 (-1 + logvar2 - logvar1 + exp(logvar1 - logvar2) + (mean1 - mean2)^2 exp(-logvar2))`.
 *
 * @example
 * ```ts
 * import { normalKl } from "./likelihood.ts";
 * console.assert(normalKl(0, 0, 0, 0) === 0);
 * ```
 */
export function normalKl(mean1: number, logvar1: number, mean2: number, logvar2: number): number {
  const d = mean1 - mean2;
  return 0.5 * (-1 + logvar2 - logvar1 + Math.exp(logvar1 - logvar2) + d * d * Math.exp(-logvar2));
}

const SQRT1_2 = Math.SQRT1_2;
const LOG_SQRT_PI = 0.5 * Math.log(Math.PI);
const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI);

/**
 * `log erfc(u)` to float64 accuracy for every real u, without underflow in the upper tail.
 * `u < 2`: `erf` from the positive series `e^{-u^2} sum 2^n u^{2n+1} / (2n+1)!!` (no
 * cancellation). `u >= 2`: the continued fraction
 * `erfc(u) = e^{-u^2} / sqrt(pi) / (u + 1/2 / (u + 1 / (u + 3/2 / (u + ...))))`, in logs.
 */
export function logErfc(u: number): number {
  if (Number.isNaN(u)) return NaN;
  if (u < 0) return Math.log(2 - Math.exp(logErfc(-u)));
  if (u < 2) return Math.log1p(-_erfSeries(u));
  if (u === Infinity) return -Infinity;
  // Modified Lentz evaluation of b0 + a1/(b1 + a2/(b2 + ...)), b = u, a_n = n/2.
  const tiny = 1e-300;
  let f = u;
  let c = u;
  let d = 0;
  for (let n = 1; n < 500; n++) {
    const a = n / 2;
    d = u + a * d;
    d = 1 / (d === 0 ? tiny : d);
    c = u + a / (c === 0 ? tiny : c);
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return -u * u - LOG_SQRT_PI - Math.log(f);
}

function _erfSeries(u: number): number {
  const u2 = u * u;
  let term = u;
  let sum = u;
  for (let n = 1; n < 200; n++) {
    term *= (2 * u2) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return TWO_OVER_SQRT_PI * Math.exp(-u2) * sum;
}

/** `log Phi(z)`, the log of the standard normal CDF, accurate far into both tails. */
export function logStandardNormalCdf(z: number): number {
  return logErfc(-z * SQRT1_2) - Math.LN2;
}

/** `log(exp(a) - exp(b))` for `a >= b`, without forming the difference of two small numbers. */
function _logDiffExp(a: number, b: number): number {
  if (b === -Infinity) return a;
  return a + Math.log1p(-Math.exp(b - a));
}

/**
 * Log-likelihood (natural log) of an 8-bit value under a Gaussian discretized to its bin
 * (DDPM eq. 13): `x` is on the 256-level grid scaled to [-1, 1], each value owns
 * `[x - 1/255, x + 1/255]`, and the lowest and highest bins extend to -inf and +inf, so the
 * 256 probabilities sum to 1. `logScale` is the log standard deviation.
 *
 * @example
 * ```ts
 * import { discretizedGaussianLogLikelihood } from "./likelihood.ts";
 * let total = 0;
 * for (let k = 0; k < 256; k++) {
 *   total += Math.exp(discretizedGaussianLogLikelihood(k / 127.5 - 1, 0.1, Math.log(0.3)));
 * }
 * console.assert(Math.abs(total - 1) < 1e-12);
 * ```
 */
export function discretizedGaussianLogLikelihood(
  x: number,
  mean: number,
  logScale: number,
): number {
  const invStd = Math.exp(-logScale);
  const upper = (x - mean + 1 / 255) * invStd;
  const lower = (x - mean - 1 / 255) * invStd;
  if (isEdgeBin(x)) return x < 0 ? logStandardNormalCdf(upper) : logStandardNormalCdf(-lower);
  // Take the difference on the side of the mean where the CDF is small, so it stays exact.
  return lower > 0
    ? _logDiffExp(logStandardNormalCdf(-lower), logStandardNormalCdf(-upper))
    : _logDiffExp(logStandardNormalCdf(upper), logStandardNormalCdf(lower));
}

/**
 * Whether a pixel scaled to [-1, 1] is in one of the two edge bins (8-bit 0 or 255), whose
 * decoder mass runs to minus or plus infinity. The official thresholds, -0.999 and 0.999, sit
 * well inside the neighbouring bins' half-width of 1/255.
 */
export function isEdgeBin(x: number): boolean {
  return x < -0.999 || x > 0.999;
}

/**
 * The prior term `L_T = KL(q(x_T | x_0) || N(0, I))` per example, in bits/dim. With the
 * paper's linear schedule it is about 1e-5.
 */
export function priorBitsPerDim(schedule: Schedule, x0: Float32Array, shape: Shape): Float64Array {
  const per = checkTensor("x0", x0, shape);
  const last = schedule.timesteps - 1;
  const a = schedule.sqrtAlphasCumprod[last];
  const logVar = schedule.logOneMinusAlphasCumprod[last];
  const out = new Float64Array(shape[0]);
  for (let n = 0; n < shape[0]; n++) {
    let sum = 0;
    for (let j = n * per, end = j + per; j < end; j++) sum += normalKl(a * x0[j], logVar, 0, 0);
    out[n] = sum / per / Math.LN2;
  }
  return out;
}

/** Options of {@linkcode variationalBound}. */
export interface VariationalBoundOptions extends ReverseOptions {
  /** The noise schedule the network was trained with. */
  schedule: Schedule;
  /** Images on the 8-bit grid scaled to [-1, 1], NCHW. */
  x0: Float32Array;
  /** Shape NCHW `[n, c, h, w]` of `x0`. */
  shape: Shape;
  /** Seed of the noise used to draw each `x_t`. Default 0. Ignored when `rng` is given. */
  seed?: number;
  /** A generator to draw from instead of one made from `seed`. */
  rng?: Rng;
  /** Called after each timestep with the number done and the total. */
  onProgress?: (done: number, total: number) => void | Promise<void>;
  /** Aborting stops the computation before the next network evaluation. */
  signal?: AbortSignal;
}

/** The variational bound of a batch, every term in bits/dim. */
export interface VariationalBound {
  /** Total bound per example: prior + every KL term + decoder NLL. */
  readonly bitsPerDim: Float64Array;
  /** Mean of `bitsPerDim` over the batch. */
  readonly meanBitsPerDim: number;
  /** `L_T` per example. */
  readonly priorBitsPerDim: Float64Array;
  /**
   * Per example and 0-based timestep, `[n * T + t]`: `L_{t}` for t > 0 (the KL between the
   * true posterior and the model's reverse step) and the decoder NLL `L_0` at t = 0.
   */
  readonly terms: Float64Array;
  /** Mean squared error of the predicted `x_0` per example and timestep, `[n * T + t]`. */
  readonly x0Mse: Float64Array;
  /**
   * The part of each example's decoder NLL `L_0` spent on its pixels in the two edge bins (8-bit
   * 0 and 255, whose bins reach to infinity), in bits per dimension of the whole image, so that
   * the rest of `L_0` is the interior pixels'. Digits are mostly black or white, and there the
   * decoder's cost is set by its standard deviation alone once the mean is on the right side.
   */
  readonly decoderEdgeBitsPerDim: Float64Array;
}

/**
 * The negative variational bound (an upper bound on the NLL) of 8-bit images in bits/dim,
 * with every term evaluated as the official `calc_bpd_loop` does: for each t, draw `x_t` from
 * `q(x_t | x_0)`, compare the model's reverse step with the true posterior, and add the prior
 * term. One network call per timestep for the whole batch; the result is a one-sample Monte
 * Carlo estimate over `x_t` of each term.
 *
 * Dequantisation: none is needed; the decoder assigns each 8-bit value the Gaussian mass of
 * its bin, so the bound is a discrete log-likelihood.
 *
 * With `variance: "learned-range"` the denoiser returns twice the values of `x_t` (the
 * prediction, then `v`), and every KL term and the decoder use the variance of each element
 * (Improved DDPM's `L_vlb`).
 */
export async function variationalBound(
  denoiser: Denoiser,
  options: VariationalBoundOptions,
): Promise<VariationalBound> {
  const { schedule, x0, shape } = options;
  const per = checkTensor("x0", x0, shape);
  const size = shapeSize(shape);
  const n = shape[0];
  const T = schedule.timesteps;
  const rng = options.rng ?? createRng(options.seed ?? 0);
  const variance = options.variance ?? "fixedlarge";
  const outputLength = outputFactor(variance) * size;
  const terms = new Float64Array(n * T);
  const x0Mse = new Float64Array(n * T);
  const decoderEdge = new Float64Array(n);

  for (let t = T - 1; t >= 0; t--) {
    options.signal?.throwIfAborted();
    const index = new Array<number>(n).fill(t);
    const xt = qSample(schedule, x0, index, rng.normal(size), shape);
    const output = await denoiser(xt, new Float32Array(n).fill(schedule.modelTimesteps[t]), shape);
    if (!(output instanceof Float32Array) || output.length !== outputLength) {
      throw new RangeError(
        `denoiser must return a Float32Array of ${outputLength} values${
          outputLength === size ? "" : ` (2 x ${size}: the prediction, then v)`
        }, got ${
          output instanceof Float32Array ? output.length : typeof output
        } (variance ${variance})`,
      );
    }
    const model = pMeanVariance(schedule, output, xt, index, shape, options);
    const truth = qPosterior(schedule, x0, xt, index, shape);
    for (let i = 0; i < n; i++) {
      let sum = 0;
      let edge = 0;
      let mse = 0;
      for (let j = i * per, end = j + per; j < end; j++) {
        // The model's log variance is per element (a learned one varies), the posterior's
        // per example.
        const logVar = model.logVariance[j];
        if (t === 0) {
          const nats = -discretizedGaussianLogLikelihood(x0[j], model.mean[j], 0.5 * logVar);
          sum += nats;
          if (isEdgeBin(x0[j])) edge += nats;
        } else {
          sum += normalKl(truth.mean[j], truth.logVariance[i], model.mean[j], logVar);
        }
        const e = model.predX0[j] - x0[j];
        mse += e * e;
      }
      terms[i * T + t] = sum / per / Math.LN2;
      if (t === 0) decoderEdge[i] = edge / per / Math.LN2;
      x0Mse[i * T + t] = mse / per;
    }
    await options.onProgress?.(T - t, T);
  }

  const prior = priorBitsPerDim(schedule, x0, shape);
  const bitsPerDim = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let total = prior[i];
    for (let t = 0; t < T; t++) total += terms[i * T + t];
    bitsPerDim[i] = total;
  }
  const meanBitsPerDim = bitsPerDim.reduce((a, b) => a + b, 0) / n;
  return {
    bitsPerDim,
    meanBitsPerDim,
    priorBitsPerDim: prior,
    terms,
    x0Mse,
    decoderEdgeBitsPerDim: decoderEdge,
  };
}
