/**
 * Classifier-free guidance (Ho & Salimans 2022) as a wrapper around a class-conditional
 * network, so every sampler gets it without change.
 *
 * A conditional network trained with its label dropped to a "no class" index some of the time
 * predicts both `eps(x, y)` and `eps(x, none)`. Guidance with weight `w` samples with
 * `eps~ = (1 + w) eps(x, y) - w eps(x, none)` (their eq. 6): `w = 0` is plain conditional
 * sampling, larger `w` trades diversity for samples that look more like their class.
 *
 * The combination's weights sum to one, so it is the same whether the network predicts eps,
 * x0 or v: each is an affine function of eps for a given `x_t`. The wrapper therefore mixes
 * the network's outputs as they are.
 *
 * A network that learns its variance (learned-range) outputs more values per example than its
 * input: the prediction, the image's size, and then `v`. Only the prediction is mixed; `v` is
 * the conditional output's, as in GLIDE's guided sampler (the variance is not extrapolated).
 *
 * @module
 */

import type { Shape } from "./forward.ts";
import { createRng, fmix32 } from "./rng.ts";
import type { Denoiser, SamplerKind } from "./samplers.ts";

/**
 * A class-conditional network: a {@linkcode Denoiser} that also takes a class index per
 * example. An unconditional network may ignore `labels`.
 */
export type ConditionalDenoiser = (
  x: Float32Array,
  t: Float32Array,
  shape: Shape,
  labels?: Int32Array,
) => Promise<Float32Array> | Float32Array;

/** Options of {@linkcode classifierFreeGuidance}. */
export interface GuidanceOptions {
  /**
   * Class index of each example, `0..nullClass`; `nullClass` asks for no class (an
   * unconditional sample in the same batch).
   */
  labels: Int32Array;
  /** Index of the "no class" embedding row (the number of real classes). */
  nullClass: number;
  /** Guidance weight `w >= 0`. Default 0 (conditional, no guidance). */
  guidance?: number;
  /**
   * The timesteps `[from, to]` (0-based, inclusive, as the denoiser receives them) at which
   * guidance applies; elsewhere the examples are sampled with their class, unguided. Default
   * every timestep. Guiding only the middle of the noise levels keeps much of guidance's gain
   * in class fidelity while losing less diversity (Kynkäänniemi et al. 2024, "Applying
   * Guidance in a Limited Interval Improves Sample and Distribution Quality in Diffusion
   * Models"), and it costs the second evaluation at those steps only.
   */
  interval?: readonly [number, number];
}

/**
 * A {@linkcode Denoiser} that samples `labels` with guidance weight `w`. Examples that need
 * guidance (a real class and `w != 0`) are evaluated twice, with and without their class, in
 * one batched call; the others once.
 *
 * @example
 * ```ts
 * import { classifierFreeGuidance, makeSchedule, sample } from "../mod.ts";
 * // A toy conditional "network": its eps is the class index, or 0 for "no class" (index 10).
 * const model = (x: Float32Array, _t: Float32Array, shape: readonly number[], labels?: Int32Array) => {
 *   const per = x.length / shape[0];
 *   return x.map((_, i) => {
 *     const y = labels![Math.floor(i / per)];
 *     return y === 10 ? 0 : y;
 *   });
 * };
 * const guided = classifierFreeGuidance(model, {
 *   labels: Int32Array.of(3, 10), nullClass: 10, guidance: 2,
 * });
 * const eps = await guided(new Float32Array(2), Float32Array.of(5, 5), [2, 1, 1, 1]);
 * // Class 3: (1 + 2) * 3 - 2 * 0 = 9; the "no class" example is left as it is.
 * console.assert(eps[0] === 9 && eps[1] === 0);
 * const images = await sample(guided, {
 *   schedule: makeSchedule({ timesteps: 50 }), shape: [2, 1, 4, 4], sampler: "ddim", steps: 5,
 * });
 * console.assert(images.length === 32);
 * ```
 */
export function classifierFreeGuidance(
  model: ConditionalDenoiser,
  options: GuidanceOptions,
): Denoiser {
  const { labels, nullClass } = options;
  const w = options.guidance ?? 0;
  if (!Number.isInteger(nullClass) || nullClass < 1) {
    throw new RangeError(`nullClass must be a positive integer, got ${nullClass}`);
  }
  if (!Number.isFinite(w) || w < 0) {
    throw new RangeError(`guidance must be a finite number >= 0, got ${w}`);
  }
  labels.forEach((y, i) => {
    if (!Number.isInteger(y) || y < 0 || y > nullClass) {
      throw new RangeError(
        `labels[${i}] must be a class in 0..${nullClass - 1} or ${nullClass} (no class), got ${y}`,
      );
    }
  });
  const [from, to] = options.interval ?? [-Infinity, Infinity];
  if (Number.isNaN(from) || Number.isNaN(to) || from > to) {
    throw new RangeError(`interval must be [from, to] with from <= to, got [${from}, ${to}]`);
  }
  const labelled = w === 0 ? [] : [...labels.keys()].filter((i) => labels[i] !== nullClass);

  return async (x, t, shape) => {
    const [n] = shape;
    if (n !== labels.length) {
      throw new RangeError(`the batch has ${n} examples but ${labels.length} labels were given`);
    }
    const guided = labelled.filter((i) => t[i] >= from && t[i] <= to);
    if (guided.length === 0) return await model(x, t, shape, labels);
    // 1. One batch: every example with its label, then the guided ones again with no class.
    const per = x.length / n;
    const total = n + guided.length;
    const xs = new Float32Array(total * per);
    const ts = new Float32Array(total);
    const ys = new Int32Array(total);
    xs.set(x);
    ts.set(t);
    ys.set(labels);
    guided.forEach((i, k) => {
      xs.set(x.subarray(i * per, (i + 1) * per), (n + k) * per);
      ts[n + k] = t[i];
      ys[n + k] = nullClass;
    });
    const out = await model(xs, ts, [total, shape[1], shape[2], shape[3]], ys);
    // Per example the output holds the prediction (`per` values) and, for a learned variance,
    // `v` after it.
    const outPer = out.length / total;
    if (!Number.isInteger(outPer) || outPer < per) {
      throw new RangeError(
        `the network returned ${out.length} values for ${total} examples of ${per}; expected ` +
          `a multiple of ${total} with at least ${per} per example`,
      );
    }
    // 2. eps~ = (1 + w) eps(x, y) - w eps(x, none) for the guided examples' predictions; the
    //    rest of each row (v) stays the conditional one.
    const result = out.slice(0, n * outPer);
    guided.forEach((i, k) => {
      const conditional = i * outPer, unconditional = (n + k) * outPer;
      for (let j = 0; j < per; j++) {
        result[conditional + j] = (1 + w) * out[conditional + j] - w * out[unconditional + j];
      }
    });
    return result;
  };
}

/** The guidance a class is sampled with when the request names no weight. */
export interface DefaultGuidance {
  /** Guidance weight w. */
  readonly guidance: number;
  /** Timesteps `[from, to]` it applies at (see {@linkcode GuidanceOptions.interval}). */
  readonly interval: readonly [number, number];
}

/**
 * A sampler's default guidance of a named class: the weight, and the span of the diffusion
 * steps it applies in as fractions of T (`[0.08, 0.47]`: the timesteps 80-470 of 1,000).
 */
export interface SamplerGuidance {
  /** Guidance weight w. */
  readonly weight: number;
  /** The first and last guided timestep as fractions of T, rounded to a timestep. */
  readonly span: readonly [number, number];
}

/**
 * The default guidance of a sampler that {@linkcode SAMPLER_GUIDANCE} does not list (the
 * deterministic ones): measured with `dpmpp-2m`, whose 97% share of digits read as their class
 * needs w = 1 over the timesteps 8% to 47% of T. There w = 1 lifted that share from 90% (w = 0)
 * at less cost in Fréchet distance than guidance at every step for the same share (README,
 * "Guidance in an interval"). The fractions are of T, so other schedules get the same share of
 * steps, not the same noise levels.
 */
export const DEFAULT_SAMPLER_GUIDANCE: SamplerGuidance = { weight: 1, span: [0.08, 0.47] };

/**
 * Samplers whose default guidance is not {@linkcode DEFAULT_SAMPLER_GUIDANCE}, each measured
 * on the shipped models at 2,000 samples (README, "The API's default sampler" and "The default
 * model, sixth version"). The reverse SDE weights the score twice as heavily in its drift as
 * the probability-flow ODE does, and guidance adds to the score, so the stochastic samplers
 * reach the ODE solvers' class accuracy at a smaller weight. `dpmpp-2m-sde`: w = 0.5 over 8% to
 * 33% of T read 97.6% of digits as their class over three seeds at 1.39x the real-image floor,
 * where w = 0.3 over 8% to 47% read 98.2% at 1.60x; on the seventh digits version (measured
 * against MNIST's test digits with the classifier of its training digits) 97.4% at 1.20x, where
 * w = 0.25 read 96.6% and w = 1 98.2% at 1.35x; on clothes about the same accuracy (87.7%
 * against 88.0%) at 1.76x against 1.91x (the fifth Fashion-MNIST version, three seeds). `ddpm`
 * (ancestral steps, measured at 50): w = 0.5 read 97.8% at 0.79 of w = 1's distance (99.4%);
 * w = 0.3 read 97.0%, too near the 97% a default is held to.
 */
export const SAMPLER_GUIDANCE: Readonly<Partial<Record<SamplerKind, SamplerGuidance>>> = {
  "dpmpp-2m-sde": { weight: 0.5, span: [0.08, 0.33] },
  ddpm: { weight: 0.5, span: [0.08, 0.47] },
};

/**
 * The default guidance of a named class, for a model with `timesteps` steps sampled by
 * `sampler`: {@linkcode SAMPLER_GUIDANCE}'s weight and span for it, else
 * {@linkcode DEFAULT_SAMPLER_GUIDANCE}'s, the span rounded to timesteps.
 *
 * @example
 * ```ts
 * import { defaultGuidance } from "./guidance.ts";
 * const { guidance, interval } = defaultGuidance(1000);
 * console.assert(guidance === 1 && interval[0] === 80 && interval[1] === 470);
 * const sde = defaultGuidance(1000, "dpmpp-2m-sde");
 * console.assert(sde.guidance === 0.5 && sde.interval[1] === 330);
 * console.assert(defaultGuidance(1000, "ddpm").guidance === 0.5);
 * ```
 */
export function defaultGuidance(timesteps: number, sampler?: SamplerKind): DefaultGuidance {
  if (!Number.isInteger(timesteps) || timesteps < 1) {
    throw new RangeError(`timesteps must be a positive integer, got ${timesteps}`);
  }
  const { weight, span } = (sampler && SAMPLER_GUIDANCE[sampler]) ?? DEFAULT_SAMPLER_GUIDANCE;
  return {
    guidance: weight,
    interval: [Math.round(span[0] * timesteps), Math.round(span[1] * timesteps)],
  };
}

/** What {@linkcode requestedGuidance} needs to know about the request beyond what it sent. */
export interface GuidanceContext {
  /** The model's diffusion steps T. */
  readonly timesteps: number;
  /** The sampler the request runs, whose default weight applies (default: w = 1). */
  readonly sampler?: SamplerKind;
  /** The classes are drawn at random (the request named none), not asked for. */
  readonly drawn?: boolean;
}

/**
 * The guidance a request gets: the weight and interval it sent; with no weight sent,
 * {@linkcode defaultGuidance}'s weight for its sampler in its interval or the one sent, except
 * that classes drawn (`drawn`) with neither sent are unguided, since a request that names no
 * class asks for images like the data, where guidance's loss of variety buys nothing it asked
 * for. A sent weight without an interval guides every step (null).
 *
 * @example
 * ```ts
 * import { requestedGuidance } from "./guidance.ts";
 * console.assert(requestedGuidance(undefined, undefined, { timesteps: 1000 }).interval?.[1] === 470);
 * console.assert(requestedGuidance(3, undefined, { timesteps: 1000 }).interval === null);
 * console.assert(requestedGuidance(undefined, undefined, { timesteps: 1000, drawn: true }).guidance === 0);
 * ```
 */
export function requestedGuidance(
  guidance: number | undefined,
  interval: readonly [number, number] | undefined,
  context: GuidanceContext,
): { guidance: number; interval: readonly [number, number] | null } {
  if (guidance !== undefined) return { guidance, interval: interval ?? null };
  if (context.drawn && interval === undefined) return { guidance: 0, interval: null };
  const fallback = defaultGuidance(context.timesteps, context.sampler);
  return { guidance: fallback.guidance, interval: interval ?? fallback.interval };
}

/**
 * Seeds the class stream of {@linkcode drawClasses}: a 32-bit hash of the request's seed mixed
 * with this tag, so the classes come from other draws than the sampler's `createRng(seed)`.
 */
const CLASS_STREAM_TAG = 0x636c6173; // "clas"

/**
 * `n` classes drawn with `seed`: how a class-conditional model samples when no class is asked
 * for, by ancestral sampling of the joint, `y ~ p(y)` and then `x ~ p(x | y)`, so the images
 * follow `p(x) = sum_y p(y) p(x | y)`. The prior `p(y)` is `classCounts[y] / sum(classCounts)`
 * when the counts are given (a model card's `classCounts`: how many training images each class
 * had), so the classes come in the data's proportions; without them it is uniform. The draws
 * are their own stream, independent of the images' noise drawn from the same seed, and the
 * same for the same seed and counts everywhere (server, browser, eval): each is an exact
 * integer draw from `0..sum - 1` looked up in the counts' running sum, with no float rounding.
 *
 * @example
 * ```ts
 * import { drawClasses } from "./guidance.ts";
 * const classes = drawClasses(7, 1000, 10);
 * console.assert(classes.every((y) => y >= 0 && y < 10));
 * console.assert(drawClasses(7, 1000, 10).every((y, i) => y === classes[i]));
 * // Three classes, the second never seen in training: it is never drawn.
 * const weighted = drawClasses(7, 1000, 3, [300, 0, 100]);
 * console.assert(!weighted.includes(1) && weighted.filter((y) => y === 0).length > 650);
 * ```
 */
export function drawClasses(
  seed: number,
  n: number,
  numClasses: number,
  classCounts?: readonly number[],
): Int32Array {
  if (!Number.isInteger(numClasses) || numClasses < 1) {
    throw new RangeError(`numClasses must be a positive integer, got ${numClasses}`);
  }
  if (!Number.isInteger(n) || n < 0) {
    throw new RangeError(`n must be an integer >= 0, got ${n}`);
  }
  if (!Number.isInteger(seed) || seed < 0 || seed > Number.MAX_SAFE_INTEGER) {
    throw new RangeError(`seed must be an integer in 0..${Number.MAX_SAFE_INTEGER}, got ${seed}`);
  }
  if (classCounts !== undefined) checkClassCounts(classCounts, numClasses);
  const low = seed >>> 0;
  const high = Math.floor(seed / 2 ** 32) >>> 0;
  const rng = createRng(fmix32(low ^ fmix32(high ^ CLASS_STREAM_TAG)));
  if (classCounts === undefined) return rng.integers(n, numClasses);
  const ends: number[] = [];
  let total = 0;
  for (const count of classCounts) ends.push(total += count);
  const draws = rng.integers(n, total);
  for (let i = 0; i < n; i++) {
    let y = 0;
    while (draws[i] >= ends[y]) y++;
    draws[i] = y;
  }
  return draws;
}

/** Largest sum of class counts {@linkcode drawClasses} draws from (one 31-bit integer draw). */
export const MAX_CLASS_COUNT_TOTAL = 0x7fffffff;

/**
 * Checks a class prior given as counts: one non-negative integer per class, at least one of
 * them positive, summing to at most {@linkcode MAX_CLASS_COUNT_TOTAL}. Throws a `RangeError`
 * naming the value otherwise.
 *
 * @example
 * ```ts
 * import { checkClassCounts } from "./guidance.ts";
 * checkClassCounts([5, 0, 7], 3);
 * let message = "";
 * try {
 *   checkClassCounts([5, 7], 3);
 * } catch (error) {
 *   message = (error as Error).message;
 * }
 * console.assert(message.startsWith("classCounts must have 3 entries"));
 * ```
 */
export function checkClassCounts(classCounts: readonly number[], numClasses: number): void {
  if (classCounts.length !== numClasses) {
    throw new RangeError(
      `classCounts must have ${numClasses} entries (one per class), got ${classCounts.length}`,
    );
  }
  let total = 0;
  for (const [y, count] of classCounts.entries()) {
    if (!Number.isInteger(count) || count < 0) {
      throw new RangeError(`classCounts[${y}] must be an integer >= 0, got ${count}`);
    }
    total += count;
  }
  if (total < 1 || total > MAX_CLASS_COUNT_TOTAL) {
    throw new RangeError(
      `classCounts must sum to an integer in 1..${MAX_CLASS_COUNT_TOTAL}, got ${total}`,
    );
  }
}
