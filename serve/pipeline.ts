/**
 * The model joined to the samplers, with every setting taken from the model card (schedule,
 * prediction, variance, image shape) and a request's classes joined in by classifier-free
 * guidance: what each endpoint computes, without HTTP. The sampling math itself is `lib/`'s.
 *
 * @module
 */

import { qSample, type Shape } from "../lib/forward.ts";
import { classifierFreeGuidance } from "../lib/guidance.ts";
import { interpolate, type Mixing } from "../lib/interpolate.ts";
import { predictX0, splitModelOutput } from "../lib/parameterization.ts";
import { createRng } from "../lib/rng.ts";
import { type Denoiser, sample, type SamplerKind, type StepInfo } from "../lib/samplers.ts";
import type { TimestepSpacing } from "../lib/schedule.ts";
import type { ServedModel } from "./registry.ts";

/** The classes a request conditions on (`serve/labels.ts` checks them against the model). */
export interface ClassOptions {
  /**
   * Class index of each image of the batch, `model.classes.length` for no class; null or
   * absent: no labels at all (the only choice for an unconditional model).
   */
  readonly labels?: Int32Array | null;
  /** Classifier-free guidance weight w >= 0. Default 0. */
  readonly guidance?: number;
  /** The timesteps `[from, to]` guidance applies at; null or absent: every step. */
  readonly guidanceInterval?: readonly [number, number] | null;
}

/**
 * The model's network as the samplers see it: without labels as it is, with labels wrapped in
 * classifier-free guidance (`lib/guidance.ts`), so every sampler, spacing and eta gets the
 * classes without change. With w = 0 the wrapper is one conditional call.
 */
export function conditionedDenoiser(model: ServedModel, options: ClassOptions = {}): Denoiser {
  const labels = options.labels ?? null;
  if (labels === null) return (x, t, shape) => model.denoiser(x, t, shape);
  return classifierFreeGuidance(model.denoiser, {
    labels,
    nullClass: model.classes.length,
    guidance: options.guidance ?? 0,
    interval: options.guidanceInterval ?? undefined,
  });
}

/** Options of {@linkcode sampleImages}. */
export interface SampleImagesOptions extends ClassOptions {
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
  return await sample(conditionedDenoiser(model, options), {
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
 * estimate of `x_0` from each frame (clipped to [-1, 1], as the samplers do), for the class in
 * `labels` (one per frame) when given.
 */
export async function noisePreview(
  model: ServedModel,
  x0: Float32Array,
  timesteps: readonly number[],
  options: ClassOptions & { seed: number; reconstruct: boolean; signal?: AbortSignal },
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
  const denoiser = conditionedDenoiser(model, options);
  const output = await denoiser(frames, Float32Array.from(timesteps), shape);
  // A learned-variance network's v (after each frame's prediction) plays no part in x0.
  const { prediction } = splitModelOutput(output, shape, model.variance);
  const estimate = predictX0(
    model.prediction,
    model.schedule,
    frames,
    timesteps,
    prediction,
    shape,
  );
  for (let j = 0; j < estimate.length; j++) estimate[j] = Math.min(1, Math.max(-1, estimate[j]));
  return { frames, reconstructions: estimate };
}

/** Options of {@linkcode interpolateImages}. */
export interface InterpolateImagesOptions extends ClassOptions {
  readonly t: number;
  readonly lambdas: readonly number[];
  readonly mixing: Mixing;
  readonly sampler: SamplerKind;
  readonly steps: number;
  readonly eta: number;
  readonly seed: number;
  readonly signal: AbortSignal;
}

/**
 * Decoded mixes of two images' latents at `t` (paper sec. 4.3), one per lambda, NCHW; with
 * `labels` (one per lambda), decoded as those classes.
 */
export async function interpolateImages(
  model: ServedModel,
  a: Float32Array,
  b: Float32Array,
  options: InterpolateImagesOptions,
): Promise<Float32Array> {
  const { images } = await interpolate(conditionedDenoiser(model, options), {
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
