/**
 * The model joined to the samplers, with every setting taken from the model card (schedule,
 * prediction, variance, image shape): what each endpoint computes, without HTTP. The
 * sampling math itself is `lib/`'s.
 *
 * @module
 */

import { qSample, type Shape } from "../lib/forward.ts";
import { interpolate, type Mixing } from "../lib/interpolate.ts";
import { predictX0 } from "../lib/parameterization.ts";
import { createRng } from "../lib/rng.ts";
import { sample, type SamplerKind, type StepInfo } from "../lib/samplers.ts";
import type { TimestepSpacing } from "../lib/schedule.ts";
import type { ServedModel } from "./registry.ts";

/** Options of {@linkcode sampleImages}. */
export interface SampleImagesOptions {
  readonly n: number;
  readonly sampler: SamplerKind;
  readonly steps: number;
  readonly eta: number;
  readonly spacing: TimestepSpacing;
  readonly seed: number;
  readonly signal: AbortSignal;
  readonly onStep?: (info: StepInfo) => void | Promise<void>;
}

/** Draws `n` images, NCHW in model space. */
export async function sampleImages(
  model: ServedModel,
  options: SampleImagesOptions,
): Promise<Float32Array> {
  const [c, h, w] = model.imageShape;
  return await sample(model.denoiser, {
    schedule: model.schedule,
    shape: [options.n, c, h, w],
    sampler: options.sampler,
    steps: options.steps,
    eta: options.eta,
    spacing: options.spacing,
    seed: options.seed,
    prediction: model.prediction,
    variance: model.variance,
    signal: options.signal,
    onStep: options.onStep,
  });
}

/** The result of {@linkcode noisePreview}: NCHW batches with one image per timestep. */
export interface NoisePreview {
  readonly frames: Float32Array;
  readonly reconstructions: Float32Array | null;
}

/**
 * The forward process at each timestep (eq. 4): `x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t)
 * eps`, with one `eps` drawn from the seed and shared by every frame, so frames differ only by
 * t and a slider over t shows the same noise growing. With `reconstruct`, also the model's
 * estimate of `x_0` from each frame (clipped to [-1, 1], as the samplers do).
 */
export async function noisePreview(
  model: ServedModel,
  x0: Float32Array,
  timesteps: readonly number[],
  options: { seed: number; reconstruct: boolean; signal?: AbortSignal },
): Promise<NoisePreview> {
  const [c, h, w] = model.imageShape;
  const per = c * h * w;
  const k = timesteps.length;
  const shape: Shape = [k, c, h, w];
  const eps = createRng(options.seed).normal(per);
  const tiledX0 = new Float32Array(k * per);
  const tiledEps = new Float32Array(k * per);
  for (let i = 0; i < k; i++) {
    tiledX0.set(x0, i * per);
    tiledEps.set(eps, i * per);
  }
  const frames = qSample(model.schedule, tiledX0, timesteps, tiledEps, shape);
  if (!options.reconstruct) return { frames, reconstructions: null };
  options.signal?.throwIfAborted();
  const output = await model.denoiser(frames, Float32Array.from(timesteps), shape);
  const estimate = predictX0(model.prediction, model.schedule, frames, timesteps, output, shape);
  for (let j = 0; j < estimate.length; j++) estimate[j] = Math.min(1, Math.max(-1, estimate[j]));
  return { frames, reconstructions: estimate };
}

/** Options of {@linkcode interpolateImages}. */
export interface InterpolateImagesOptions {
  readonly t: number;
  readonly lambdas: readonly number[];
  readonly mixing: Mixing;
  readonly sampler: SamplerKind;
  readonly steps: number;
  readonly eta: number;
  readonly seed: number;
  readonly signal: AbortSignal;
}

/** Decoded mixes of two images' latents at `t` (paper sec. 4.3), one per lambda, NCHW. */
export async function interpolateImages(
  model: ServedModel,
  a: Float32Array,
  b: Float32Array,
  options: InterpolateImagesOptions,
): Promise<Float32Array> {
  const { images } = await interpolate(model.denoiser, {
    schedule: model.schedule,
    x0a: a,
    x0b: b,
    imageShape: model.imageShape,
    t: options.t,
    lambdas: options.lambdas,
    mixing: options.mixing,
    seed: options.seed,
    sampler: options.sampler,
    steps: options.steps,
    eta: options.eta,
    prediction: model.prediction,
    variance: model.variance,
    signal: options.signal,
  });
  return images;
}
