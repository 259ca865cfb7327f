/**
 * Exact denoisers for data whose optimal prediction is known in closed form. They let the
 * samplers and the likelihood code be checked against theory with no trained network.
 *
 * @module
 */

import type { Prediction } from "./parameterization.ts";
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
}

/**
 * The ideal network for data `x_0 ~ N(mean, std^2)` per dimension. Since
 * `x_t ~ N(sqrt(abar) mean, abar std^2 + 1 - abar)` jointly Gaussian with `eps`,
 * `E[eps | x_t] = sqrt(1 - abar) (x_t - sqrt(abar) mean) / (abar std^2 + 1 - abar)`, and the
 * ideal x0 and v predictions follow from `x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps`.
 * `t` is read as the 0-based timestep of `schedule`.
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
  if (!(std > 0) || !Number.isFinite(mean)) {
    throw new RangeError(`std must be > 0 and mean finite, got std ${std}, mean ${mean}`);
  }
  return (x, t, shape) => {
    const n = shape[0];
    const per = x.length / n;
    const out = new Float32Array(x.length);
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
      for (let j = i * per, end = j + per; j < end; j++) {
        const eps = (sn * (x[j] - sa * mean)) / total;
        const x0 = (x[j] - sn * eps) / sa;
        switch (prediction) {
          case "eps":
            out[j] = eps;
            break;
          case "x0":
            out[j] = x0;
            break;
          case "v":
            out[j] = sa * eps - sn * x0;
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
