/**
 * Exact denoisers for data whose optimal prediction is known in closed form. They let the
 * samplers and the likelihood code be checked against theory with no trained network.
 *
 * @module
 */

import { learnedRangeEnds, type Prediction } from "./parameterization.ts";
import type { Denoiser } from "./samplers.ts";
import type { Schedule } from "./schedule.ts";

/** Options of {@linkcode gaussianDenoiser}. */
export interface GaussianDataOptions {
  /** Mean of every data dimension. */
  mean: number;
  /** Standard deviation of every data dimension, > 0. */
  std: number;
  /** What the denoiser returns. Default `"eps"`. */
  prediction?: Prediction;
  /**
   * Also return the optimal learned-range `v` after each example's prediction (output NCHW
   * `[n, 2c, h, w]`, for `variance: "learned-range"`). Default false.
   */
  learnVariance?: boolean;
}

/**
 * The ideal network for data `x_0 ~ N(mean, std^2)` per dimension. Since
 * `x_t ~ N(sqrt(abar) mean, abar std^2 + 1 - abar)` jointly Gaussian with `eps`,
 * `E[eps | x_t] = sqrt(1 - abar) (x_t - sqrt(abar) mean) / (abar std^2 + 1 - abar)`, and the
 * ideal x0 and v predictions follow from `x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps`.
 * `t` is read as the 0-based timestep of `schedule`.
 *
 * With `learnVariance`, the `v` of every element is the one whose learned-range variance is the
 * true reverse variance `Var(x_{t-1} | x_t) = beta_tilde_t + c1_t^2 Var(x_0 | x_t)`, with
 * `Var(x_0 | x_t) = std^2 (1 - abar) / (abar std^2 + 1 - abar)` (law of total variance over
 * the posterior of eq. 7): the variance that minimises each KL term of the bound given the
 * exact mean. It is `beta_t` when `std = 1` and tends to `beta_tilde_t` as `std -> 0`, the two
 * fixed choices of DDPM sec. 3.2. The values are for `schedule`'s own steps: a respaced sampler
 * would interpolate between its respaced betas with them.
 *
 * @example
 * ```ts
 * import { gaussianDenoiser, makeSchedule, sample } from "../mod.ts";
 * const schedule = makeSchedule();
 * const ideal = gaussianDenoiser(schedule, { mean: 0.2, std: 0.3 });
 * const x = await sample(ideal, { schedule, shape: [1, 1, 32, 32], sampler: "ddim", steps: 20 });
 * ```
 */
export function gaussianDenoiser(schedule: Schedule, options: GaussianDataOptions): Denoiser {
  const { mean, std } = options;
  const prediction = options.prediction ?? "eps";
  const learn = options.learnVariance ?? false;
  if (!(std > 0) || !Number.isFinite(mean)) {
    throw new RangeError(`std must be > 0 and mean finite, got std ${std}, mean ${mean}`);
  }
  return (x, t, shape) => {
    const n = shape[0];
    const per = x.length / n;
    const out = new Float32Array(learn ? 2 * x.length : x.length);
    for (let i = 0; i < n; i++) {
      const index = t[i];
      if (!Number.isInteger(index) || index < 0 || index >= schedule.timesteps) {
        throw new RangeError(
          `t[${i}] must be an integer in 0..${schedule.timesteps - 1}, got ${index}`,
        );
      }
      const abar = schedule.alphasCumprod[index];
      const sa = Math.sqrt(abar);
      const sn = Math.sqrt(1 - abar);
      const total = abar * std * std + 1 - abar;
      // Output NCHW [n, c, h, w], or [n, 2c, h, w] with v after each example's prediction.
      const at = (learn ? 2 * i : i) * per;
      if (learn) {
        const c1 = schedule.posteriorMeanCoef1[index];
        const reverse = schedule.posteriorVariance[index] +
          c1 * c1 * (std * std * (1 - abar)) / total;
        const { minLog, maxLog } = learnedRangeEnds(schedule, index);
        const v = (2 * (Math.log(reverse) - minLog)) / (maxLog - minLog) - 1;
        out.fill(v, at + per, at + 2 * per);
      }
      for (let e = 0; e < per; e++) {
        const xt = x[i * per + e];
        const eps = (sn * (xt - sa * mean)) / total;
        const x0 = (xt - sn * eps) / sa;
        switch (prediction) {
          case "eps":
            out[at + e] = eps;
            break;
          case "x0":
            out[at + e] = x0;
            break;
          case "v":
            out[at + e] = sa * eps - sn * x0;
            break;
          default: {
            const unknown: never = prediction;
            throw new RangeError(`prediction must be eps, x0 or v, got ${unknown}`);
          }
        }
      }
    }
    return out;
  };
}
