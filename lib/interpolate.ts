/**
 * Interpolation in the diffusion latent space (DDPM sec. 4.3, Fig. 8, App. D).
 *
 * @module
 */

import { checkTimesteps, qSample, type Shape } from "./forward.ts";
import type { ReverseOptions } from "./parameterization.ts";
import { createRng } from "./rng.ts";
import { type Denoiser, reverseProcess, type SamplerKind, type StepInfo } from "./samplers.ts";
import type { Schedule } from "./schedule.ts";

/** How two latents are mixed. */
export type Mixing = "linear" | "spherical";

/** Options of {@linkcode interpolate}. */
export interface InterpolateOptions extends ReverseOptions {
  /** The noise schedule the network was trained with. */
  schedule: Schedule;
  /** The two source images, each one image of `imageShape` (CHW) in [-1, 1]. */
  x0a: Float32Array;
  /** The second source image, like `x0a`. */
  x0b: Float32Array;
  /** `[c, h, w]` of one image. */
  imageShape: readonly [number, number, number];
  /** 0-based timestep to encode to and decode from, `0..T-1`. Paper: 500 of 1000. */
  t: number;
  /** Mixing weights in [0, 1]; 0 gives the first image's latent. Default 11 values 0, 0.1, ..., 1. */
  lambdas?: readonly number[];
  /** `linear`: `(1 - l) a + l b` (the paper's). `spherical`: slerp, which keeps the norm. Default linear. */
  mixing?: Mixing;
  /** Seed of the encoder noise and of the shared decoder noise. Default 0. */
  seed?: number;
  /**
   * Decoder: `ddpm` (the paper's, default), or any other sampler; the ODE solvers (`ddim` with
   * eta 0, `dpmpp-2m`, `unipc`) decode each mix deterministically.
   */
  sampler?: SamplerKind;
  /** Decoder steps in `1..t+1`, spread evenly from t down to 0 inclusive. Default t + 1. */
  steps?: number;
  /** DDIM decoder noise scale in [0, 1], as in `sample`. Default 0. */
  eta?: number;
  /** Called after each decoder step, as in `sample`. */
  onStep?: (info: StepInfo) => void | Promise<void>;
  /** Aborting stops the run before the next network evaluation. */
  signal?: AbortSignal;
}

/** Result of {@linkcode interpolate}. */
export interface Interpolation {
  /** Decoded images, one per lambda, NCHW. */
  readonly images: Float32Array;
  /** NCHW `[lambdas.length, c, h, w]` of `images` and `latents`. */
  readonly shape: Shape;
  /** The mixed latents `x_t`, one per lambda, NCHW. */
  readonly latents: Float32Array;
  /** The mixing weights used, one per image. */
  readonly lambdas: readonly number[];
}

/**
 * Encodes two images to step t with the stochastic encoder `q(x_t | x_0)`, mixes the latents
 * with each lambda, and decodes every mix with the reverse process. The decoder draws one
 * noise image per step and uses it for every lambda, so rows differ only by lambda, as in the
 * paper.
 *
 * @example
 * ```ts
 * import { interpolate, makeSchedule } from "../mod.ts";
 * const zero = (x: Float32Array) => new Float32Array(x.length);
 * const a = new Float32Array(16).fill(-1), b = new Float32Array(16).fill(1);
 * const { images } = await interpolate(zero, {
 *   schedule: makeSchedule(), x0a: a, x0b: b, imageShape: [1, 4, 4], t: 10, lambdas: [0, 0.5, 1],
 * });
 * console.assert(images.length === 3 * 16);
 * ```
 */
export async function interpolate(
  denoiser: Denoiser,
  options: InterpolateOptions,
): Promise<Interpolation> {
  const { schedule, x0a, x0b, imageShape, t } = options;
  const [c, h, w] = imageShape;
  const per = c * h * w;
  const one: Shape = [1, c, h, w];
  if (x0a.length !== per || x0b.length !== per) {
    throw new RangeError(
      `x0a and x0b must each hold ${per} values for [${
        imageShape.join(", ")
      }], got ${x0a.length} and ${x0b.length}`,
    );
  }
  checkTimesteps(schedule, [t], 1);
  const lambdas = options.lambdas ?? Array.from({ length: 11 }, (_, i) => i / 10);
  if (lambdas.length < 1 || lambdas.some((l) => !(l >= 0 && l <= 1))) {
    throw new RangeError(
      `lambdas must be a non-empty list of values in [0, 1], got [${lambdas.join(", ")}]`,
    );
  }
  const steps = options.steps ?? t + 1;
  if (!Number.isInteger(steps) || steps < 1 || steps > t + 1) {
    throw new RangeError(`steps must be an integer in 1..${t + 1} for t = ${t}, got ${steps}`);
  }
  const mixing = options.mixing ?? "linear";

  // 1. Encode both images with their own noise.
  const rng = createRng(options.seed ?? 0);
  const latentA = qSample(schedule, x0a, [t], rng.normal(per), one);
  const latentB = qSample(schedule, x0b, [t], rng.normal(per), one);

  // 2. Mix once per lambda.
  const count = lambdas.length;
  const latents = new Float32Array(count * per);
  for (let i = 0; i < count; i++) {
    latents.set(mixLatents(latentA, latentB, lambdas[i], mixing), i * per);
  }

  // 3. Decode from t, evenly spaced down to 0 with both ends kept; noise shared across rows.
  const kept = Array.from(
    { length: steps },
    (_, k) => steps === 1 ? t : Math.round((k * t) / (steps - 1)),
  );
  const shape: Shape = [count, c, h, w];
  const images = await reverseProcess(denoiser, {
    ...options,
    shape,
    sampler: options.sampler ?? "ddpm",
    x: latents,
    kept,
    drawNoise: () => {
      const z = rng.normal(per);
      const tiled = new Float32Array(count * per);
      for (let i = 0; i < count; i++) tiled.set(z, i * per);
      return tiled;
    },
  });
  return { images, shape, latents, lambdas };
}

/**
 * Mixes two latents: linear `(1 - l) a + l b`, or spherical
 * `sin((1 - l) theta) / sin(theta) a + sin(l theta) / sin(theta) b` with theta the angle
 * between them (falls back to linear when they are nearly parallel).
 */
export function mixLatents(
  a: Float32Array,
  b: Float32Array,
  lambda: number,
  mixing: Mixing,
): Float32Array {
  if (a.length !== b.length) {
    throw new RangeError(`latents must have one length, got ${a.length} and ${b.length}`);
  }
  let wa = 1 - lambda, wb = lambda;
  switch (mixing) {
    case "linear":
      break;
    case "spherical": {
      let dot = 0, na = 0, nb = 0;
      for (let i = 0; i < a.length; i++) {
        dot += a[i] * b[i];
        na += a[i] * a[i];
        nb += b[i] * b[i];
      }
      // A zero latent has no direction: mix it linearly.
      const theta = na > 0 && nb > 0
        ? Math.acos(Math.min(1, Math.max(-1, dot / Math.sqrt(na * nb))))
        : 0;
      if (theta > 1e-6) {
        wa = Math.sin((1 - lambda) * theta) / Math.sin(theta);
        wb = Math.sin(lambda * theta) / Math.sin(theta);
      }
      break;
    }
    default: {
      const unknown: never = mixing;
      throw new RangeError(`mixing must be linear or spherical, got ${unknown}`);
    }
  }
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = wa * a[i] + wb * b[i];
  return out;
}
