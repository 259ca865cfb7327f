/**
 * Samplers over a model-free {@linkcode Denoiser}: DDPM ancestral sampling (all T steps or
 * respaced to K) and DDIM. The sampler never sees the network; the trainer plugs in tfjs, the
 * server onnxruntime, and the tests an exact analytic denoiser.
 *
 * @module
 */

import { checkTensor, type Shape, shapeSize } from "./forward.ts";
import { pMeanVariance, type ReverseOptions } from "./parameterization.ts";
import { createRng, type Rng } from "./rng.ts";
import {
  respaceSchedule,
  type Schedule,
  spacedTimesteps,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
} from "./schedule.ts";

/**
 * A network as the samplers see it: `x` in NCHW, `t` the 0-based timestep of each example
 * (as a float), returning the model output (eps, x0 or v) with the shape of `x`.
 */
export type Denoiser = (
  x: Float32Array,
  t: Float32Array,
  shape: readonly [number, number, number, number],
) => Promise<Float32Array> | Float32Array;

/** The sampling algorithms. */
export type SamplerKind = "ddpm" | "ddim";
/** Every sampler, for validation and listings. */
export const SAMPLERS: readonly SamplerKind[] = ["ddpm", "ddim"];

/** What {@linkcode SampleOptions.onStep} receives after each network evaluation. */
export interface StepInfo {
  /** 0-based position of this step in the run (0 is the noisiest). */
  readonly step: number;
  /** Number of steps in the run. */
  readonly steps: number;
  /** The 0-based model timestep the network was called with. */
  readonly t: number;
  /** `x_t`, the input of this step (NCHW). */
  readonly x: Float32Array;
  /** The model's estimate of `x_0` from `x_t` (progressive generation, DDPM Fig. 6). */
  readonly predX0: Float32Array;
}

/** Options of {@linkcode sample}. */
export interface SampleOptions extends ReverseOptions {
  /** The noise schedule the network was trained with. */
  schedule: Schedule;
  /** Output shape NCHW `[n, c, h, w]`. */
  shape: Shape;
  /** `ddpm`: ancestral sampling (Algorithm 2), respaced when `steps < T`. `ddim`: Song et al. */
  sampler: SamplerKind;
  /** Number of network evaluations, `1..T`. Default T for `ddpm`, 50 (or T if smaller) for `ddim`. */
  steps?: number;
  /** DDIM noise scale in [0, 1]: 0 is deterministic, 1 matches DDPM's posterior variance. Default 0. */
  eta?: number;
  /** Seed of the initial noise and of every step's noise. Default 0. Ignored when `rng` is given. */
  seed?: number;
  /** A generator to draw from instead of one made from `seed`. */
  rng?: Rng;
  /** Which timesteps a shortened run visits. Default `"leading"`. */
  spacing?: TimestepSpacing;
  /** Start from this `x_T` (NCHW) instead of drawing it. */
  initialNoise?: Float32Array;
  /** Called after each network evaluation; awaited, so it may stream results. */
  onStep?: (info: StepInfo) => void | Promise<void>;
  /** Aborting stops the run before the next network evaluation, rejecting with the reason. */
  signal?: AbortSignal;
}

/**
 * Draws samples with DDPM or DDIM.
 *
 * @example
 * ```ts
 * import { makeSchedule, sample } from "../mod.ts";
 * // A "network" that predicts zero noise: samples are the scaled initial noise.
 * const zeroNoise = (x: Float32Array) => new Float32Array(x.length);
 * const images = await sample(zeroNoise, {
 *   schedule: makeSchedule(),
 *   shape: [4, 1, 8, 8],
 *   sampler: "ddim",
 *   steps: 10,
 *   seed: 1,
 * });
 * console.assert(images.length === 4 * 64);
 * ```
 */
export async function sample(denoiser: Denoiser, options: SampleOptions): Promise<Float32Array> {
  const { schedule, shape, sampler } = options;
  const size = shapeSize(shape);
  if (!SAMPLERS.includes(sampler)) {
    throw new RangeError(`sampler must be one of ${SAMPLERS.join(", ")}, got ${sampler}`);
  }
  const steps = options.steps ??
    (sampler === "ddpm" ? schedule.timesteps : Math.min(50, schedule.timesteps));
  const spacing = options.spacing ?? "leading";
  if (!TIMESTEP_SPACINGS.includes(spacing)) {
    throw new RangeError(`spacing must be one of ${TIMESTEP_SPACINGS.join(", ")}, got ${spacing}`);
  }
  const kept = spacedTimesteps(schedule.timesteps, steps, spacing);
  const rng = options.rng ?? createRng(options.seed ?? 0);
  let x: Float32Array;
  if (options.initialNoise) {
    checkTensor("initialNoise", options.initialNoise, shape);
    x = options.initialNoise.slice();
  } else {
    x = rng.normal(size);
  }
  return await reverseProcess(denoiser, {
    ...options,
    x,
    kept,
    drawNoise: () => rng.normal(size),
  });
}

/** Options of {@linkcode reverseProcess}. */
export interface ReverseProcessOptions extends ReverseOptions {
  /** The noise schedule the network was trained with. */
  schedule: Schedule;
  /** Shape NCHW `[n, c, h, w]` of `x`. */
  shape: Shape;
  /** As in {@linkcode SampleOptions.sampler}. */
  sampler: SamplerKind;
  /** The starting point `x_t` at the largest kept timestep. Not modified. */
  x: Float32Array;
  /** Increasing 0-based timesteps to visit, from the last (noisiest) down to the first. */
  kept: readonly number[];
  /** Fresh standard normal noise of the batch's size for one step. */
  drawNoise: () => Float32Array;
  /** As in {@linkcode SampleOptions.eta}. */
  eta?: number;
  /** As in {@linkcode SampleOptions.onStep}. */
  onStep?: (info: StepInfo) => void | Promise<void>;
  /** As in {@linkcode SampleOptions.signal}. */
  signal?: AbortSignal;
}

/**
 * Runs the reverse process from `x` over the kept timesteps, for callers that choose their own
 * start (interpolation decodes from an intermediate `t`) or their own noise.
 *
 * Both samplers run on the respaced schedule of the kept steps, so `abar` at each kept step is
 * the original one and the network is called with the original timestep.
 */
export async function reverseProcess(
  denoiser: Denoiser,
  options: ReverseProcessOptions,
): Promise<Float32Array> {
  const { shape, sampler, kept, drawNoise, onStep, signal } = options;
  const per = checkTensor("x", options.x, shape);
  const n = shape[0];
  const eta = options.eta ?? 0;
  if (!(eta >= 0 && eta <= 1)) throw new RangeError(`eta must be in [0, 1], got ${eta}`);
  const schedule = respaceSchedule(options.schedule, kept);
  const steps = schedule.timesteps;
  let x = options.x.slice();

  for (let k = steps - 1; k >= 0; k--) {
    signal?.throwIfAborted();
    const modelT = schedule.modelTimesteps[k];
    const output = await denoiser(x, new Float32Array(n).fill(modelT), shape);
    if (!(output instanceof Float32Array) || output.length !== x.length) {
      throw new RangeError(
        `denoiser must return a Float32Array of ${x.length} values, got ${
          output instanceof Float32Array ? output.length : typeof output
        }`,
      );
    }
    const index = new Array<number>(n).fill(k);
    const step = pMeanVariance(schedule, output, x, index, shape, options);
    const next = new Float32Array(x.length);
    switch (sampler) {
      case "ddpm": {
        // Algorithm 2: x_{t-1} = mu + sigma z, with no noise at the last step.
        next.set(step.mean);
        if (k > 0) {
          const z = drawNoise();
          for (let i = 0; i < n; i++) {
            const sigma = Math.sqrt(step.variance[i]);
            for (let j = i * per, end = j + per; j < end; j++) next[j] += sigma * z[j];
          }
        }
        break;
      }
      case "ddim": {
        // Song et al. eq. 12: x_{t'} = sqrt(abar') x0 + sqrt(1 - abar' - sigma^2) eps + sigma z.
        const abar = schedule.alphasCumprod[k];
        const abarPrev = schedule.alphasCumprodPrev[k];
        const sigma = eta * Math.sqrt((1 - abarPrev) / (1 - abar)) *
          Math.sqrt(1 - abar / abarPrev);
        const a = Math.sqrt(abarPrev);
        const b = Math.sqrt(Math.max(0, 1 - abarPrev - sigma * sigma));
        const z = sigma > 0 && k > 0 ? drawNoise() : null;
        for (let j = 0; j < x.length; j++) {
          next[j] = a * step.predX0[j] + b * step.predEps[j] + (z ? sigma * z[j] : 0);
        }
        break;
      }
      default: {
        const unknown: never = sampler;
        throw new RangeError(`sampler must be one of ${SAMPLERS.join(", ")}, got ${unknown}`);
      }
    }
    if (onStep) {
      await onStep({ step: steps - 1 - k, steps, t: modelT, x, predX0: step.predX0 });
    }
    x = next;
  }
  return x;
}
