/**
 * A DDPM toolkit in TypeScript (Ho, Jain & Abbeel 2020): noise schedules, the forward
 * process, eps / x0 / v parameterisations, DDPM, DDIM, DPM-Solver++(2M) and UniPC samplers
 * over a model-free denoiser, latent interpolation, the variational bound in bits/dim, a
 * seeded random generator that is identical on every runtime, and PNG helpers. Pure TypeScript: it runs
 * unchanged in Deno, browsers and edge runtimes. Timesteps are 0-based throughout.
 *
 * @example
 * ```ts
 * import { encodePng, gaussianDenoiser, makeGrid, makeSchedule, sample, toUint8 } from "./mod.ts";
 *
 * const schedule = makeSchedule({ kind: "linear", timesteps: 1000 });
 * // Any (x, t, shape) => eps function works here: a tfjs or onnxruntime network, or
 * // the exact denoiser for Gaussian data used below.
 * const denoiser = gaussianDenoiser(schedule, { mean: 0, std: 0.5 });
 * const shape = [4, 1, 16, 16] as const;
 * const x = await sample(denoiser, { schedule, shape, sampler: "ddim", steps: 25, seed: 7 });
 * const png = encodePng(makeGrid(toUint8(x), shape));
 * console.log(`${png.length} bytes of PNG`);
 * ```
 *
 * @module
 */

export * from "./lib/schedule.ts";
export * from "./lib/rng.ts";
export * from "./lib/forward.ts";
export * from "./lib/parameterization.ts";
export * from "./lib/samplers.ts";
export * from "./lib/guidance.ts";
export * from "./lib/interpolate.ts";
export * from "./lib/likelihood.ts";
export * from "./lib/analytic.ts";
export * from "./lib/frechet.ts";
export * from "./lib/image.ts";
export * from "./lib/png.ts";
