/**
 * `deno task eval`: how good an exported model is, measured on onnxruntime-web (exactly what
 * the server runs).
 *
 * The model's card names its dataset (MNIST or Fashion-MNIST); its held-out split is the
 * trainer's, and the classifier is the one `EVAL_REFERENCES` gives that dataset (`deno task
 * train:classifier --dataset`; for digits the one trained on MNIST's 60,000 training digits).
 *
 * 1. Likelihood: the variational bound in bits/dim on held-out images (every term, as the
 *    paper's evaluation; the decoder is discrete, so no dequantisation noise is added).
 * 2. Sample quality: the Fréchet distance between generated and held-out images in the
 *    feature space of the project's classifier, beside the same distance between real
 *    training images and the held-out ones (the floor, at the same sample sizes, averaged
 *    over `--floor-draws` draws of training images), and the class histogram of the generated
 *    images. A row that asks for classes also gets a class-matched floor: real training images
 *    of the same classes in the same numbers, since a set with the classes in other proportions
 *    than the held-out images' is farther from them, however real each image is. Each distance
 *    is also split into its two terms (the means' gap and the covariances'), and a row that asks
 *    for classes into classes: each class's samples against the held-out images of that class,
 *    how far its mean has moved (less what sampling noise adds) and how widely it spreads, which
 *    says whether a distance comes from a few classes drawn off-style or too uniform. The
 *    held-out images are the model's own, or with `--reference mnist-full` MNIST's 10,000 test
 *    digits for a model of the `mnist` package's digits (none of which is a test digit).
 * 3. Sampler comparison: the distance and the wall time per image for each sampler, drawn
 *    against the step count with `--plot`.
 * 4. A class-conditional model samples the ten classes in equal numbers, at each
 *    classifier-free guidance weight asked for, and also reports the label accuracy: the share
 *    of samples the classifier assigns to the class that was asked for. `any` samples as the
 *    server does when a request names no class: each image's class drawn from the batch's
 *    seed in the card's training class proportions (`drawClasses`), unguided. `none` samples
 *    the network's "no class" prediction.
 * 5. For a conditional model the bound can be that of the "no class" prediction or of the
 *    class mixture `p(x) = sum_y p(y) p(x | y)` that `any` samples from (`--nll-class`).
 *
 * @module
 */

import { featureStatistics, type FrechetParts, frechetParts } from "../lib/frechet.ts";
import {
  checkClassCounts,
  classifierFreeGuidance,
  drawClasses,
  requestedGuidance,
} from "../lib/guidance.ts";
import { isEdgeBin, type VariationalBound, variationalBound } from "../lib/likelihood.ts";
import { createRng, type Rng } from "../lib/rng.ts";
import { sample, type SamplerKind, SAMPLERS } from "../lib/samplers.ts";
import { makeSchedule, type ScheduleKind } from "../lib/schedule.ts";
import { cardSplitSeed } from "../model/card.ts";
import {
  createSession,
  type ExecutionProvider,
  loadOnnxModel,
  type LoadOnnxOptions,
  onnxDenoiser,
  type OnnxModel,
} from "../model/onnx.ts";
import { FlagError, type FlagTable, readFlagFile, runFlagCommand, usageText } from "./cli.ts";
import { CLASSIFIER_DATASETS, classifierPath } from "./classifier.ts";
import { frechetCurveSpec, renderSvg } from "./curves.ts";
import { imagesAt, loadDataset, splitIndices } from "./data.ts";
import { classCount } from "./network.ts";

/** One sampler setting to evaluate, written `ddim:50`, `dpmpp-2m:20` or `ddpm:1000`. */
export interface SamplerSetting {
  sampler: SamplerKind;
  steps: number;
}

/** Parses `"ddpm:1000,ddim:50,unipc:15"` (any sampler of lib's table), naming any bad entry. */
export function parseSamplers(text: string): SamplerSetting[] {
  return text.split(",").map((entry) => {
    const [name, steps] = entry.trim().split(":");
    const n = Number(steps);
    const sampler = SAMPLERS.find((s) => s === name);
    if (sampler === undefined || !Number.isInteger(n) || n < 1) {
      throw new RangeError(
        `sampler settings look like ddim:50, one of ${SAMPLERS.join(", ")} and a step count, ` +
          `got "${entry}"`,
      );
    }
    return { sampler, steps: n };
  });
}

/**
 * How a conditional model is sampled in one row: a guidance weight `w` for the ten classes in
 * turn, `null` for no class, `"default"` for the ten classes at the API's default guidance,
 * `"any"` for classes drawn as the API draws them for a request with no label and no weight,
 * or `"any:<w>"` for drawn classes at weight w.
 */
export type GuidanceSetting = number | null | "default" | "any" | `any:${number}`;

/**
 * Parses `"none,any,any:0,default,0,1,3"` into {@linkcode GuidanceSetting}s: weights are
 * finite numbers >= 0.
 */
export function parseGuidance(text: string): GuidanceSetting[] {
  const weight = (word: string, entry: string) => {
    const w = Number(word);
    if (word === "" || !Number.isFinite(w) || w < 0) {
      throw new RangeError(
        "guidance settings are weights >= 0, none, default, any or any:<weight>, such as " +
          `none,any,0,1,3, got "${entry}"`,
      );
    }
    return w;
  };
  return text.split(",").map((entry): GuidanceSetting => {
    const word = entry.trim();
    if (word === "none") return null;
    if (word === "any" || word === "default") return word;
    if (word.startsWith("any:")) return `any:${weight(word.slice(4), entry)}`;
    return weight(word, entry);
  });
}

/**
 * The classes and guidance of one row: drawn or in turn, the weight, and the interval it
 * applies in (null: every step); null for no class. The API's defaults come from lib's
 * `requestedGuidance` for the row's sampler, so the rows measure what a request gets.
 */
export function rowGuidance(
  setting: GuidanceSetting,
  timesteps: number,
  sampler: SamplerKind,
  interval?: readonly [number, number],
): { drawn: boolean; weight: number; interval: readonly [number, number] | null } | null {
  if (setting === null) return null;
  if (typeof setting === "number") {
    return { drawn: false, weight: setting, interval: setting > 0 ? interval ?? null : null };
  }
  const drawn = setting !== "default";
  const sent = setting.startsWith("any:") ? Number(setting.slice(4)) : undefined;
  const { guidance, interval: applied } = requestedGuidance(sent, interval, {
    timesteps,
    sampler,
    drawn,
  });
  return { drawn, weight: guidance, interval: guidance > 0 ? applied : null };
}

/** Parses `"100-500"`: the inclusive timesteps of a guidance interval, naming a bad one. */
export function parseInterval(text: string): [number, number] {
  const match = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(text);
  const [from, to] = match ? [Number(match[1]), Number(match[2])] : [NaN, NaN];
  if (!match || from > to) {
    throw new RangeError(
      `a guidance interval is two timesteps from-to with from <= to, such as 100-500, got "${text}"`,
    );
  }
  return [from, to];
}

/** Parses `"0,2"`: seeds of train / held-out splits, integers in `0..2^53-1`, naming a bad one. */
export function parseSeedList(text: string): number[] {
  return text.split(",").map((part) => {
    const seed = Number(part.trim());
    if (part.trim() === "" || !Number.isSafeInteger(seed) || seed < 0) {
      throw new RangeError(
        `a split seed is an integer in 0..${Number.MAX_SAFE_INTEGER}, got "${part.trim()}" in "${text}"`,
      );
    }
    return seed;
  });
}

/** Which bound `eval` reads on a conditional model (`--nll-class`). */
export const NLL_CLASSES = ["none", "mixture"] as const;

/** An ONNX session and the ort module it came from (the classifier has no model card). */
export type Session = Pick<OnnxModel, "ort" | "session">;

/**
 * Loads the evaluation classifier exported by `train/classifier.ts`, on the provider the model
 * runs on (`native` takes onnxruntime-node from `model/native.ts`, as `loadOnnxModel` does).
 */
export async function loadClassifier(
  bytes: Uint8Array,
  provider: ExecutionProvider,
  options: LoadOnnxOptions = {},
): Promise<Session> {
  return await createSession(bytes, provider, options);
}

/** The classifier's features and predicted classes for images in [-1, 1], NCHW `[n, 1, 28, 28]`. */
export async function classify(
  classifier: Session,
  images: Float32Array,
  count: number,
  batch = 250,
): Promise<{ features: Float32Array; classes: Int32Array; dim: number }> {
  const { ort, session } = classifier;
  const per = 28 * 28;
  const chunks: Float32Array[] = [];
  const classes = new Int32Array(count);
  let dim = 0;
  for (let start = 0; start < count; start += batch) {
    const n = Math.min(batch, count - start);
    const x = new ort.Tensor("float32", images.subarray(start * per, (start + n) * per), [
      n,
      1,
      28,
      28,
    ]);
    const out = await session.run({ x });
    const features = out.features.data as Float32Array;
    const logits = out.logits.data as Float32Array;
    dim = features.length / n;
    chunks.push(features.slice());
    const k = logits.length / n;
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let j = 1; j < k; j++) if (logits[i * k + j] > logits[i * k + best]) best = j;
      classes[start + i] = best;
    }
    out.features.dispose();
    out.logits.dispose();
  }
  const features = new Float32Array(count * dim);
  let offset = 0;
  for (const c of chunks) {
    features.set(c, offset);
    offset += c.length;
  }
  return { features, classes, dim };
}

/**
 * Positions in split `seed`'s held-out set (of a source of `n` examples, 10% held out as the
 * trainer's default) of the examples that every split in `others` held out too: all of them
 * when `others` is empty.
 */
function _heldOutByAll(n: number, seed: number, others: readonly number[]): number[] {
  const mine = splitIndices(n, { seed }).heldOut;
  const theirs = others.map((other) => new Set(splitIndices(n, { seed: other }).heldOut));
  const positions: number[] = [];
  mine.forEach((example, i) => {
    if (theirs.every((held) => held.has(example))) positions.push(i);
  });
  return positions;
}

/** `k` distinct indices of `0..n-1`, by a seeded partial Fisher-Yates shuffle. */
function _choose(n: number, k: number, seed: number): number[] {
  return _chooseWith(createRng(seed), n, k);
}

function _chooseWith(rng: Rng, n: number, k: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < k; i++) {
    const j = i + rng.integers(1, n - i)[0];
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order.slice(0, k);
}

/**
 * Indices of training images with `counts[c]` distinct images of each class `c`, drawn by
 * one seeded generator class after class (`byClass[c]`: the indices of class `c`).
 */
export function classMatchedDraw(
  byClass: readonly (readonly number[])[],
  counts: readonly number[],
  seed: number,
): number[] {
  const rng = createRng(seed);
  return counts.flatMap((k, c) => {
    const pool = byClass[c] ?? [];
    if (k > pool.length) {
      throw new RangeError(
        `a class-matched draw needs ${k} training images of class ${c}, the split has ${pool.length}`,
      );
    }
    return _chooseWith(rng, pool.length, k).map((i) => pool[i]);
  });
}

/**
 * The Fréchet distance of `images` to the statistics `target`, in its two terms, with each
 * image's features and class.
 */
async function distanceTo(
  target: ReturnType<typeof featureStatistics>,
  classifier: Session,
  images: Float32Array,
  count: number,
): Promise<
  { frechet: number; parts: FrechetParts; features: Float32Array; classes: Int32Array }
> {
  const { features, classes, dim } = await classify(classifier, images, count);
  const stats = featureStatistics(features, dim);
  const parts = frechetParts(stats.mean, stats.covariance, target.mean, target.covariance, dim);
  return { frechet: parts.means + parts.covariances, parts, features, classes };
}

/** How the samples asked for one class sit against the real held-out images of that class. */
export interface ClassGap {
  /** Samples asked for the class. */
  samples: number;
  /** Real held-out images of the class. */
  real: number;
  /**
   * `||m_g - m_r||^2 - tr S_g / n_g - tr S_r / n_r`: the squared distance between the two
   * feature means less what sampling noise alone adds to it in expectation, so an unbiased
   * estimate of the squared shift of the class (about 0, either sign, when there is none).
   */
  meanShift: number;
  /**
   * `tr S_g / tr S_r`: the samples' total feature variance over the real images' (below 1 they
   * are more alike than real ones).
   */
  spread: number;
}

/**
 * Per class, where a row's distance comes from: each class's samples (by the class asked) against
 * the real images of that class, in the classifier's features; `null` for a class with fewer than
 * two of either (or real images all alike, which leave the spread undefined). Labels are class
 * indices in `0..numClasses-1`.
 */
export function classGaps(
  generated: Float32Array,
  asked: ArrayLike<number>,
  real: Float32Array,
  realLabels: ArrayLike<number>,
  dim: number,
  numClasses: number,
): (ClassGap | null)[] {
  const g = _classMoments(generated, asked, dim, numClasses);
  const r = _classMoments(real, realLabels, dim, numClasses);
  return g.map((gc, c) => {
    const rc = r[c];
    if (gc === null || rc === null || rc.totalVariance === 0) return null;
    let squared = 0;
    for (let j = 0; j < dim; j++) squared += (gc.mean[j] - rc.mean[j]) ** 2;
    return {
      samples: gc.count,
      real: rc.count,
      meanShift: squared - gc.totalVariance / gc.count - rc.totalVariance / rc.count,
      spread: gc.totalVariance / rc.totalVariance,
    };
  });
}

/**
 * Per class, the count, mean and total variance (the trace of the unbiased covariance) of its
 * feature vectors, by lib's `featureStatistics`; `null` for a class with fewer than two.
 */
function _classMoments(
  features: Float32Array,
  labels: ArrayLike<number>,
  dim: number,
  numClasses: number,
): ({ count: number; mean: Float64Array; totalVariance: number } | null)[] {
  const rows: number[][] = Array.from({ length: numClasses }, () => []);
  for (let i = 0; i < labels.length; i++) {
    const ofClass = rows[labels[i]];
    if (ofClass === undefined) {
      throw new RangeError(`a class label is in 0..${numClasses - 1}, got ${labels[i]} at ${i}`);
    }
    ofClass.push(i);
  }
  return rows.map((indices) => {
    if (indices.length < 2) return null;
    const own = new Float32Array(indices.length * dim);
    indices.forEach((i, k) => own.set(features.subarray(i * dim, (i + 1) * dim), k * dim));
    const { count, mean, covariance } = featureStatistics(own, dim);
    let totalVariance = 0;
    for (let j = 0; j < dim; j++) totalVariance += covariance[j * dim + j];
    return { count, mean, totalVariance };
  });
}

/** Options of {@linkcode evaluate}. */
export interface EvalOptions {
  model: OnnxModel;
  classifier: Session;
  /** Generated images per sampler setting. */
  samples: number;
  samplers: SamplerSetting[];
  /** Held-out images for the likelihood (0 to skip). */
  nllImages: number;
  /**
   * Conditional models: the bound of the "no class" prediction (default), or of the class
   * mixture, read from each image's own class: `-log p(x) <= -log p(y) - log p(x | y)`.
   */
  nllClass?: (typeof NLL_CLASSES)[number];
  /**
   * Seeds of other train / held-out splits: the bound reads only the held-out images that
   * those splits held out too. For a model whose lineage trained on another split before
   * `--init-from` kept splits, these are the images no part of its training saw.
   */
  nllUnseenBy?: readonly number[];
  /**
   * Draws of `samples` training images whose distances to the held-out images average into
   * the floor (default 8). One draw is a noisy floor: at 2,000 MNIST digits the draws' standard
   * deviation is about 9% of their mean.
   */
  floorDraws?: number;
  batch: number;
  seed: number;
  /** Guidance weights to evaluate a conditional model at; null: no class. Default `[0]`. */
  guidance?: GuidanceSetting[];
  /** The timesteps `[from, to]` that guidance applies at (lib's `interval`); default all. */
  guidanceInterval?: readonly [number, number];
  /**
   * The dataset whose held-out images the samples are measured against (the Fréchet distances,
   * floors and class gaps; the bound keeps the model's own held-out images). Default the model's
   * own; otherwise one of {@linkcode EVAL_REFERENCES}' for the model's dataset: a set of images
   * that no model trained on that dataset has seen.
   */
  reference?: string;
  log?: (line: string) => void;
}

/** One row of the sampler table. */
export interface SamplerResult extends SamplerSetting {
  frechet: number;
  /** The distance's two terms: the means' gap and the covariances' (they sum to `frechet`). */
  frechetParts: FrechetParts;
  msPerImage: number;
  classHistogram: number[];
  /** Conditional models: how the row was sampled (see {@linkcode GuidanceSetting}). */
  guidance?: GuidanceSetting;
  /** Rows of `default` and `any` settings: the weight they resolved to. */
  guidanceWeight?: number;
  /** Guided rows sampled with guidance in a limited interval: its timesteps `[from, to]`. */
  guidanceInterval?: readonly [number, number];
  /** Conditional models: the share of samples classified as the digit asked for (or drawn). */
  labelAccuracy?: number;
  /**
   * Rows that ask for classes: the floor of real training images with the row's classes in
   * the same numbers (mean of `floorDraws` draws, like the floor), and the draws' sd. Absent
   * when the split has too few images of a class asked for.
   */
  classMatchedFloor?: number;
  classMatchedFloorSd?: number;
  /** Rows that ask for classes: each class's samples against its real images (index = class). */
  classGaps?: (ClassGap | null)[];
}

/** Part of the bound, mean bits/dim over the images: the prior `L_T`, or terms `[from, to)`. */
export interface BoundPart {
  /**
   * `"prior"`, `"decoder"` (t = 0), `"<from>-<to - 1>"` (0-based timesteps), or `"class"`: the
   * class mixture's `-log2 p(y)` bits per image over the dimensions, averaged over the images
   * (`--nll-class mixture`; `log2(K)` under a uniform prior).
   */
  readonly terms: string;
  readonly bitsPerDim: number;
}

/**
 * The bound split into the prior, the decoder `L_0` and the KL terms over decades of t (1-9,
 * 10-99, 100-999 for T = 1000): learned variances and more training move different parts.
 */
export function boundParts(bound: VariationalBound, timesteps: number): BoundPart[] {
  const n = bound.bitsPerDim.length;
  const mean = (sum: (i: number) => number) => {
    let total = 0;
    for (let i = 0; i < n; i++) total += sum(i);
    return total / n;
  };
  const range = (from: number, to: number) =>
    mean((i) => {
      let sum = 0;
      for (let t = from; t < to; t++) sum += bound.terms[i * timesteps + t];
      return sum;
    });
  const parts: BoundPart[] = [
    { terms: "prior", bitsPerDim: mean((i) => bound.priorBitsPerDim[i]) },
    { terms: "decoder", bitsPerDim: range(0, 1) },
  ];
  for (let from = 1; from < timesteps; from *= 10) {
    const to = Math.min(from * 10, timesteps);
    parts.push({ terms: `${from}-${to - 1}`, bitsPerDim: range(from, to) });
  }
  return parts;
}

/**
 * How much of the decoder `L_0` the pixels in the two edge bins (8-bit 0 and 255) cost, and how
 * many they are: on digits most pixels are black or white, and there the decoder's cost is set
 * by its standard deviation, so this is where a too-wide decoder shows.
 */
export interface DecoderEdgePart {
  /** Their part of the decoder, mean bits per dimension of the whole image. */
  readonly bitsPerDim: number;
  /** Their share of the images' pixels. */
  readonly pixelShare: number;
}

/** The decoder's edge-bin part of `bound` over images `x0` (see {@linkcode DecoderEdgePart}). */
export function decoderEdgePart(bound: VariationalBound, x0: Float32Array): DecoderEdgePart {
  const bits = bound.decoderEdgeBitsPerDim;
  let edges = 0;
  for (const v of x0) if (isEdgeBin(v)) edges++;
  return {
    bitsPerDim: bits.reduce((a, b) => a + b, 0) / bits.length,
    pixelShare: edges / x0.length,
  };
}

/** Everything `deno task eval` reports. */
export interface EvalResult {
  nll?: {
    bitsPerDim: number;
    standardError: number;
    images: number;
    /** Where the bits are: the prior, then the bound's terms summed over ranges of t. */
    parts: BoundPart[];
    /** The decoder's part on the pixels at 8-bit 0 or 255 ({@linkcode decoderEdgePart}). */
    decoderEdge: DecoderEdgePart;
    /** Conditional models: whose bound it is (see {@linkcode EvalOptions.nllClass}). */
    classes?: (typeof NLL_CLASSES)[number];
    /** The other splits whose held-out images alone it read ({@linkcode EvalOptions.nllUnseenBy}). */
    unseenBy?: number[];
  };
  /** The floor: the mean of {@linkcode realFloorDraws}. */
  realFloor: number;
  /** The distance of each draw of `samples` training images to the held-out images. */
  realFloorDraws: number[];
  /** The draws' sample standard deviation (0 for one draw). */
  realFloorSd: number;
  /** The dataset whose held-out images the samples were measured against. */
  reference: string;
  /** How many held-out images that is. */
  heldOutImages: number;
  /**
   * The share of those images the classifier reads as their own class: the label accuracy that
   * samples exactly like real images would get, against which a row's is read.
   */
  referenceAccuracy: number;
  samplers: SamplerResult[];
}

/** Runs the evaluation (see the module doc). */
export async function evaluate(options: EvalOptions): Promise<EvalResult> {
  const { model, classifier, samples, batch, seed } = options;
  const log = options.log ?? console.log;
  const card = model.card;
  if (card.imageSize !== 28 || card.channels !== 1) {
    throw new RangeError(
      `the evaluation classifier reads 1x28x28 digits, the model makes ${card.channels}x${card.imageSize}x${card.imageSize}`,
    );
  }
  const schedule = makeSchedule({ ...card.schedule, kind: card.schedule.kind as ScheduleKind });
  // Called without labels (as the bound and unguided sampling do), a conditional network
  // predicts for "no class".
  const network = onnxDenoiser(model, { maxBatch: batch });
  const numClasses = classCount(card.config);
  if (numClasses > 0 && numClasses !== 10) {
    throw new RangeError(
      `the evaluation classifier knows 10 digits, the model has ${numClasses} classes`,
    );
  }
  if (numClasses === 0 && (options.guidance !== undefined || options.nllClass === "mixture")) {
    throw new RangeError(
      "guidance and the class mixture's bound apply to a class-conditional model; this model " +
        "has no classes",
    );
  }
  // The card's prior for drawn classes and the mixture's bound, checked once, as the server
  // checks it when it loads the model.
  if (card.classCounts !== undefined) checkClassCounts(card.classCounts, numClasses);
  const guidanceWeights = numClasses > 0 ? options.guidance ?? [0] : [undefined];
  // The trainer's split: its seed (from the card; 0 before cards recorded it), 10% held out.
  const dataset = evalDataset(card.dataset);
  const reference = evalReference(dataset, options.reference);
  const splitSeed = cardSplitSeed(card);
  const { train, heldOut } = await loadDataset(dataset, { seed: splitSeed });
  // The real images samples are measured against: the model's held-out split, or another
  // dataset's that no model of this one saw.
  const against = reference === dataset ? heldOut : (await loadDataset(reference)).heldOut;
  const againstIndices = Array.from({ length: against.length }, (_, i) => i);
  const real = await classify(classifier, imagesAt(against, againstIndices), against.length);
  const realStats = featureStatistics(real.features, real.dim);
  const realLabels = Int32Array.from(againstIndices, (i) => against.label(i));
  const referenceAccuracy = realLabels.filter((y, i) => real.classes[i] === y).length /
    against.length;
  log(
    `the classifier reads ${(100 * referenceAccuracy).toFixed(2)}% of the ${against.length} ` +
      `held-out images${reference === dataset ? "" : ` of ${reference}`} as their class`,
  );

  // The floor: real training digits against the held-out ones, at the generated sample size,
  // averaged over draws (draw d takes the training digits of seed + d), since a single draw's
  // distance varies by several percent and the ratios to it would inherit that noise.
  const floorDraws = options.floorDraws ?? 8;
  if (!Number.isInteger(floorDraws) || floorDraws < 1) {
    throw new RangeError(`floorDraws must be an integer >= 1, got ${floorDraws}`);
  }
  const floorCount = Math.min(samples, train.length);
  const floorOf = async (draw: (d: number) => number[]) => {
    const draws: number[] = [];
    for (let d = 0; d < floorDraws; d++) {
      const indices = draw(seed + d);
      draws.push(
        (await distanceTo(realStats, classifier, imagesAt(train, indices), indices.length))
          .frechet,
      );
    }
    const mean = draws.reduce((a, b) => a + b, 0) / floorDraws;
    const sd = floorDraws > 1
      ? Math.sqrt(draws.reduce((a, v) => a + (v - mean) ** 2, 0) / (floorDraws - 1))
      : 0;
    return { draws, mean, sd };
  };
  const { draws: realFloorDraws, mean: realFloor, sd: realFloorSd } = await floorOf((s) =>
    _choose(train.length, floorCount, s)
  );
  log(
    `real floor: Fréchet distance ${realFloor.toFixed(3)} ± ${realFloorSd.toFixed(3)} (mean and ` +
      `sd of ${floorDraws} draws of ${floorCount} training vs ${against.length} held-out images` +
      `${reference === dataset ? "" : ` of ${reference}`}: ` +
      `${realFloorDraws.map((v) => v.toFixed(2)).join(", ")})`,
  );

  let nll: EvalResult["nll"];
  if (options.nllImages > 0) {
    const unseenBy = options.nllUnseenBy ?? [];
    const nllIndices = _heldOutByAll(train.length + heldOut.length, splitSeed, unseenBy);
    if (nllIndices.length === 0) {
      throw new RangeError(
        `no held-out image of split seed ${splitSeed} is held out by split seeds ${
          unseenBy.join(", ")
        } too`,
      );
    }
    const count = Math.min(options.nllImages, nllIndices.length);
    const x0 = imagesAt(heldOut, nllIndices.slice(0, count));
    const started = performance.now();
    // The mixture: p(x) >= p(y) p(x | y) for any class y, so each image's bound with its own
    // class plus -log2 p(y) bits (the prior the API draws classes from) bounds -log2 p(x) too.
    const mixture = numClasses > 0 && options.nllClass === "mixture";
    const nllLabels = Int32Array.from({ length: count }, (_, i) => heldOut.label(nllIndices[i]));
    const bounded = mixture
      ? classifierFreeGuidance(network, { labels: nllLabels, nullClass: numClasses })
      : network;
    const bound = await variationalBound(bounded, {
      schedule,
      x0,
      shape: [count, 1, 28, 28],
      seed,
      prediction: card.prediction as "eps",
      variance: card.variance,
      onProgress: (done, total) => {
        if (done % 100 === 0) log(`likelihood: ${done}/${total} timesteps`);
      },
    });
    const bitsOfClass = Array.from(
      { length: numClasses },
      (_, y) => classPriorBits(y, numClasses, card.classCounts),
    );
    const imageBits = mixture
      ? bound.bitsPerDim.map((v, i) => v + bitsOfClass[nllLabels[i]])
      : bound.bitsPerDim;
    const bitsPerDim = imageBits.reduce((a, b) => a + b, 0) / count;
    const priorBits = bitsPerDim - bound.meanBitsPerDim;
    let sq = 0;
    for (const v of imageBits) sq += (v - bitsPerDim) ** 2;
    const standardError = Math.sqrt(sq / (count - 1) / count);
    const parts = boundParts(bound, schedule.timesteps);
    if (mixture) parts.push({ terms: "class", bitsPerDim: priorBits });
    const decoderEdge = decoderEdgePart(bound, x0);
    nll = { bitsPerDim, standardError, images: count, parts, decoderEdge };
    if (numClasses > 0) nll.classes = mixture ? "mixture" : "none";
    if (unseenBy.length > 0) nll.unseenBy = [...unseenBy];
    log(
      `NLL <= ${bitsPerDim.toFixed(3)} +- ${
        standardError.toFixed(3)
      } bits/dim on ${count} held-out images${
        unseenBy.length > 0 ? ` that split seeds ${unseenBy.join(", ")} held out too` : ""
      } (${((performance.now() - started) / 1000).toFixed(0)} s); ${_formatParts(parts)}; ${
        _formatDecoderEdge(decoderEdge)
      }`,
    );
  }

  const results: SamplerResult[] = [];
  // Conditional models ask for the digits in turn, so every class gets samples/10 of them.
  const requested = Int32Array.from({ length: samples }, (_, i) => i % 10);
  // Class-matched floors by the rows' class counts: every row asking in turn shares one, and
  // drawn rows at one seed draw the same classes.
  const byClass: number[][] = Array.from({ length: numClasses }, () => []);
  for (let i = 0; i < train.length; i++) byClass[train.label(i)]?.push(i);
  const matchedFloors = new Map<string, { mean: number; sd: number } | null>();
  const matchedFloor = async (asked: Int32Array) => {
    const counts = new Array<number>(numClasses).fill(0);
    for (const c of asked) counts[c]++;
    const key = counts.join(",");
    if (!matchedFloors.has(key)) {
      const short = counts.findIndex((k, c) => k > byClass[c].length);
      if (short >= 0) {
        log(
          `no class-matched floor: ${counts[short]} images of class ${short} asked, the ` +
            `training split has ${byClass[short].length}`,
        );
        matchedFloors.set(key, null);
      } else {
        const floor = await floorOf((s) => classMatchedDraw(byClass, counts, s));
        log(
          `class-matched floor (${key}): ${floor.mean.toFixed(3)} ± ${floor.sd.toFixed(3)}`,
        );
        matchedFloors.set(key, floor);
      }
    }
    return matchedFloors.get(key) ?? null;
  };
  for (const setting of options.samplers) {
    for (const guidance of guidanceWeights) {
      const images = new Float32Array(samples * 784);
      // The class asked of each image: in turn, or drawn per batch as a request of that batch's
      // size and seed would draw them.
      const asked = requested.slice();
      const started = performance.now();
      const rowClasses = guidance === undefined
        ? null
        : rowGuidance(guidance, schedule.timesteps, setting.sampler, options.guidanceInterval);
      for (let start = 0; start < samples; start += batch) {
        const n = Math.min(batch, samples - start);
        const batchSeed = seed + 1000 + start;
        if (rowClasses?.drawn) {
          asked.set(drawClasses(batchSeed, n, numClasses, card.classCounts), start);
        }
        const model = rowClasses === null ? network : classifierFreeGuidance(network, {
          labels: asked.slice(start, start + n),
          nullClass: numClasses,
          guidance: rowClasses.weight,
          interval: rowClasses.interval ?? undefined,
        });
        const out = await sample(model, {
          schedule,
          shape: [n, 1, 28, 28],
          sampler: setting.sampler,
          steps: setting.steps,
          prediction: card.prediction as "eps",
          variance: card.variance,
          seed: batchSeed,
        });
        images.set(out, start * 784);
      }
      const msPerImage = (performance.now() - started) / samples;
      const generated = await distanceTo(realStats, classifier, images, samples);
      const frechet = generated.frechet;
      const classHistogram = new Array(10).fill(0);
      for (const c of generated.classes) classHistogram[c]++;
      const row: SamplerResult = {
        ...setting,
        frechet,
        frechetParts: generated.parts,
        msPerImage,
        classHistogram,
      };
      if (guidance !== undefined) row.guidance = guidance;
      if (typeof guidance === "string" && rowClasses) row.guidanceWeight = rowClasses.weight;
      if (rowClasses?.interval) row.guidanceInterval = rowClasses.interval;
      if (rowClasses) {
        row.labelAccuracy = generated.classes.filter((c, i) => c === asked[i]).length / samples;
        const matched = await matchedFloor(asked);
        if (matched) {
          row.classMatchedFloor = matched.mean;
          row.classMatchedFloorSd = matched.sd;
        }
        row.classGaps = classGaps(
          generated.features,
          asked,
          real.features,
          realLabels,
          real.dim,
          numClasses,
        );
      }
      results.push(row);
      log(
        `${setting.sampler}:${setting.steps}${
          guidance === undefined ? "" : ` guidance ${_guidanceText(row)}`
        }: Fréchet distance ${frechet.toFixed(3)}, ${msPerImage.toFixed(0)} ms/image, classes [${
          classHistogram.join(", ")
        }]${
          row.labelAccuracy === undefined
            ? ""
            : `, label accuracy ${(100 * row.labelAccuracy).toFixed(1)}%`
        }; Fréchet distance ${_formatFrechetParts(row)}`,
      );
    }
  }
  return {
    nll,
    realFloor,
    realFloorDraws,
    realFloorSd,
    reference,
    heldOutImages: against.length,
    referenceAccuracy,
    samplers: results,
  };
}

/**
 * The dataset of a model card that `eval` can measure: one with a shipped classifier (cards
 * written before they named a dataset are MNIST's).
 */
export function evalDataset(dataset: string | undefined): keyof typeof EVAL_REFERENCES {
  const name = dataset ?? "mnist";
  if (!Object.hasOwn(EVAL_REFERENCES, name)) {
    throw new RangeError(
      `eval measures models of ${
        Object.keys(EVAL_REFERENCES).join(", ")
      } (it has their classifiers); this model's card says dataset "${name}"`,
    );
  }
  return name as keyof typeof EVAL_REFERENCES;
}

/**
 * Per dataset eval knows: the classifiers whose features may measure it, the first the default
 * (`train:classifier --dataset`), and the datasets whose held-out images a model of it can be
 * measured against: its own, and for the `mnist` package's digits MNIST's 10,000 test digits
 * (`mnist-full`'s held-out split), none of which is among them. Digits are measured by the
 * classifier trained on MNIST's 60,000 training digits, which reads 98.6% of the test digits
 * right; the first one, trained on the `mnist` package's 9,000, reads 96.3%, under the 97% of
 * samples a model is asked to have read as their class, and stays accepted so that the figures
 * measured with it can be reproduced.
 */
export const EVAL_REFERENCES = {
  "mnist": { classifiers: ["mnist-full", "mnist"], references: ["mnist", "mnist-full"] },
  "mnist-full": { classifiers: ["mnist-full", "mnist"], references: ["mnist-full"] },
  "fashion-mnist": { classifiers: ["fashion-mnist"], references: ["fashion-mnist"] },
} as const satisfies Record<
  string,
  {
    classifiers: readonly (typeof CLASSIFIER_DATASETS)[number][];
    references: readonly string[];
  }
>;

/** The reference dataset of a model of `dataset`: `asked` if allowed (default its own). */
export function evalReference(
  dataset: keyof typeof EVAL_REFERENCES,
  asked: string | undefined,
): string {
  const allowed: readonly string[] = EVAL_REFERENCES[dataset].references;
  const reference = asked ?? dataset;
  if (!allowed.includes(reference)) {
    throw new RangeError(
      `reference must be one of ${allowed.join(", ")} for a model of ${dataset} (held-out ` +
        `images no model of it trained on), got "${reference}"`,
    );
  }
  return reference;
}

/**
 * `-log2 p(y) / 784`: the bits per dimension of class `y` under the prior the API draws classes
 * from, `classCounts[y] / sum(classCounts)` ({@linkcode drawClasses}), or uniform over
 * `numClasses` without counts. Infinite for a class with no training images.
 *
 * @example
 * ```ts
 * import { classPriorBits } from "./eval.ts";
 * console.assert(Math.abs(classPriorBits(3, 10) * 784 - Math.log2(10)) < 1e-12);
 * console.assert(classPriorBits(0, 2, [3, 1]) * 784 === -Math.log2(0.75));
 * ```
 */
export function classPriorBits(
  y: number,
  numClasses: number,
  classCounts?: readonly number[],
): number {
  const share = classCounts
    ? classCounts[y] / classCounts.reduce((a, b) => a + b, 0)
    : 1 / numClasses;
  return -Math.log2(share) / (28 * 28);
}

/**
 * Refuses a classifier whose card file (written beside it by `train:classifier`) names a
 * dataset other than those that may measure a model of `dataset` ({@linkcode EVAL_REFERENCES});
 * classifiers from before cards named a dataset are the `mnist` package's. A classifier without a
 * card file is taken as it is.
 */
export async function checkClassifierDataset(
  path: string,
  dataset: keyof typeof EVAL_REFERENCES,
): Promise<void> {
  let text: string;
  try {
    text = await Deno.readTextFile(path.replace(/\.onnx$/, ".json"));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  const trainedOn = (JSON.parse(text) as { dataset?: string }).dataset ?? "mnist";
  const allowed: readonly string[] = EVAL_REFERENCES[dataset].classifiers;
  if (!allowed.includes(trainedOn)) {
    throw new RangeError(
      `the classifier ${path} was trained on ${trainedOn}; a model of ${dataset} is measured by ` +
        `one trained on ${allowed.join(" or ")}: use --classifier ${classifierPath(allowed[0])}`,
    );
  }
}

/** The results as the README's Markdown table. */
export function evalTable(result: EvalResult, samples: number): string {
  const conditional = result.samplers.some((r) => r.guidance !== undefined);
  // A binomial share's 95% interval: +- 1.96 sqrt(p (1 - p) / n).
  const accuracy = (p: number) =>
    `${(100 * p).toFixed(1)}% ± ${(196 * Math.sqrt(p * (1 - p) / samples)).toFixed(1)}`;
  // The class-matched floor's column: its ratio, then the floor itself.
  const matched = (r: SamplerResult) =>
    r.classMatchedFloor === undefined
      ? " - |"
      : ` ${(r.frechet / r.classMatchedFloor).toFixed(2)} (${r.classMatchedFloor.toFixed(2)} ± ${
        (r.classMatchedFloorSd ?? 0).toFixed(2)
      }) |`;
  const lines = [
    `| sampler | steps |${
      conditional ? " guidance | label accuracy |" : ""
    } Fréchet distance (${samples} samples) | ratio to the floor |${
      conditional ? " ratio to the class-matched floor (floor) |" : ""
    } ms/image | classes 0-9 (counts) |`,
    `| --- | --- |${conditional ? " --- | --- |" : ""} --- | --- |${
      conditional ? " --- |" : ""
    } --- | --- |`,
    ...result.samplers.map((r) =>
      `| ${r.sampler} | ${r.steps} |${
        conditional
          ? ` ${_guidanceText(r)} | ${
            r.labelAccuracy === undefined ? "-" : accuracy(r.labelAccuracy)
          } |`
          : ""
      } ${r.frechet.toFixed(2)} | ${(r.frechet / result.realFloor).toFixed(2)} |${
        conditional ? matched(r) : ""
      } ${r.msPerImage.toFixed(0)} | ${r.classHistogram.join(" ")} |`
    ),
    `| real images (floor: mean ± sd of ${result.realFloorDraws.length} draws) | - |${
      conditional ? " - | - |" : ""
    } ${result.realFloor.toFixed(2)} ± ${result.realFloorSd.toFixed(2)} | 1 |${
      conditional ? " - |" : ""
    } - | - |`,
  ];
  if (conditional) {
    lines.push(
      "",
      `The classifier reads ${(100 * result.referenceAccuracy).toFixed(1)}% of the ${
        result.heldOutImages.toLocaleString("en-US")
      } real held-out images as their class.`,
    );
  }
  if (result.nll) {
    lines.push(
      "",
      `NLL <= ${result.nll.bitsPerDim.toFixed(3)} +- ${
        result.nll.standardError.toFixed(3)
      } bits/dim (${result.nll.images} held-out images${
        result.nll.classes === "mixture" ? ", the class mixture" : ""
      }): ${_formatParts(result.nll.parts)}; ${_formatDecoderEdge(result.nll.decoderEdge)}`,
    );
  }
  return lines.join("\n");
}

/** `none`, `2`, `2 (t 100-500)`, `any: 1 (t 80-470)`, `default: 1 (t 80-470)`. */
function _guidanceText(row: SamplerResult): string {
  const interval = row.guidanceInterval
    ? ` (t ${row.guidanceInterval[0]}-${row.guidanceInterval[1]})`
    : "";
  if (row.guidance === null || row.guidance === undefined) return "none";
  if (typeof row.guidance === "number") return `${row.guidance}${interval}`;
  const name = row.guidance.startsWith("any") ? "any" : "default";
  return `${name}: ${row.guidanceWeight}${interval}`;
}

/**
 * `= means 2.51 + covariances 10.81; per class asked, mean shift (noise removed) / spread against
 * real: 0 2.8 / 0.98, 1 2.4 / 0.94, ...`
 */
function _formatFrechetParts(row: SamplerResult): string {
  const { means, covariances } = row.frechetParts;
  const gaps = row.classGaps
    ? `; per class asked, mean shift (noise removed) / spread against real: ${
      row.classGaps.map((g, c) =>
        `${c} ${g === null ? "-" : `${g.meanShift.toFixed(1)} / ${g.spread.toFixed(2)}`}`
      ).join(", ")
    }`
    : "";
  return `= means ${means.toFixed(2)} + covariances ${covariances.toFixed(2)}${gaps}`;
}

/** `prior 0.000, decoder 1.110, 1-9 0.755, ...` */
function _formatParts(parts: readonly BoundPart[]): string {
  return parts.map((p) => `${p.terms} ${p.bitsPerDim.toFixed(3)}`).join(", ");
}

/** `decoder on the 83.1% of pixels at 0 or 255 0.412` */
function _formatDecoderEdge(edge: DecoderEdgePart): string {
  return `decoder on the ${(100 * edge.pixelShare).toFixed(1)}% of pixels at 0 or 255 ${
    edge.bitsPerDim.toFixed(3)
  }`;
}

/** The flags of `deno task eval`: defaults sized to finish in minutes on two CPU cores. */
const EVAL_FLAGS: FlagTable = {
  model: { default: "weights/mnist.onnx", help: "the exported model to evaluate" },
  classifier: {
    help:
      "the feature network (deno task train:classifier) [weights/mnist-full-classifier.onnx for digits, weights/fashion-mnist-classifier.onnx for clothes]",
  },
  samples: { default: "300", help: "generated digits per sampler setting (Frechet distance)" },
  samplers: {
    default: "ddim:20,ddim:50",
    help: `sampler settings, comma-separated <sampler>:<steps>, samplers ${SAMPLERS.join(", ")}`,
  },
  "nll-images": {
    default: "8",
    help: "held-out images for the bits/dim bound (T network calls each); 0 skips it",
  },
  batch: { default: "100", help: "images per network call" },
  seed: { default: "0", help: "seed of the samples and of the training digits of the floor" },
  provider: {
    default: "wasm",
    help: "onnxruntime execution provider: wasm, webgpu, native (onnxruntime-node)",
  },
  threads: { default: "1", help: "threads of the wasm and native providers" },
  guidance: {
    help: "class-conditional models only, comma-separated: weights for the ten classes in turn,\n" +
      "none for no class, default for the API's default guidance of a named class, any for\n" +
      "classes drawn as the API draws them with neither label nor guidance (unguided),\n" +
      "any:<w> drawn and guided at weight w,\n" +
      "such as none,any,any:0,default,0,1 [0]",
  },
  "guidance-interval": {
    help: "class-conditional models: apply guidance at timesteps from-to only (0-based,\n" +
      "inclusive), such as 100-500 [every timestep]",
  },
  "floor-draws": {
    default: "8",
    help: "draws of --samples training images whose distances to the held-out images average\n" +
      "into the floor (one draw varies by several percent), and into each class-matched floor:\n" +
      "training images in the classes and numbers a row asked for",
  },
  "nll-unseen-by": {
    help: "comma-separated seeds of other train / held-out splits: the bound reads only the\n" +
      "held-out images those splits held out too (for a model started from a run on another\n" +
      "split) [none]",
  },
  "nll-class": {
    default: "none",
    help: 'class-conditional models: the bound of the "no class" prediction (none), or of the\n' +
      "class mixture p(x) = sum_y p(y) p(x|y) that the API samples with no label (mixture)",
  },
  reference: {
    help: "the dataset whose held-out images samples are measured against: the model's own, or\n" +
      "for an mnist model mnist-full (MNIST's 10,000 test digits, none of them in mnist)\n" +
      "[the model's dataset]",
  },
  json: { help: "also write the results and settings to this JSON file" },
  plot: { help: "also draw Frechet distance against steps, per sampler, into this SVG file" },
  help: { boolean: true, help: "show this help" },
};

const EVAL_USAGE = usageText(
  "deno task eval [flags]",
  "Bits/dim, Frechet distance, class histogram and (conditional models) label accuracy of an\n" +
    "exported model, on onnxruntime-web. The defaults finish in minutes on two CPU cores; the\n" +
    "README's tables used more samples (their commands are listed there).",
  EVAL_FLAGS,
);

/**
 * Network evaluations of one image that an evaluation makes: T per image of the bound, and per
 * sampler setting and guidance weight `samples * steps`, twice over when guided (w > 0).
 */
export function evalWorkload(options: {
  timesteps: number;
  samples: number;
  samplers: readonly SamplerSetting[];
  nllImages: number;
  guidance: readonly (GuidanceSetting | undefined)[];
}): number {
  const perSetting = options.samplers.reduce((sum, s) => sum + options.samples * s.steps, 0);
  // A string setting may guide: counted as twice, an upper bound.
  const guided = options.guidance.reduce<number>(
    (sum, w) => sum + ((typeof w === "number" && w > 0) || typeof w === "string" ? 2 : 1),
    0,
  );
  return options.nllImages * options.timesteps + perSetting * guided;
}

if (import.meta.main) {
  await runFlagCommand(EVAL_USAGE, EVAL_FLAGS, async (flags) => {
    const provider = flags.oneOf("provider", ["wasm", "webgpu", "native"] as const);
    const threads = flags.integer("threads", 1);
    const runtime = {
      threads,
      native: provider === "native"
        ? (await import("../model/native.ts")).nativeRuntime
        : undefined,
    };
    const samples = flags.integer("samples", 1);
    const nllImages = flags.integer("nll-images", 0);
    const nllClass = flags.oneOf("nll-class", NLL_CLASSES);
    const floorDraws = flags.integer("floor-draws", 1);
    const batch = flags.integer("batch", 1);
    const seed = flags.number(
      "seed",
      (v) => Number.isInteger(v) && v >= 0 && v < 2 ** 32,
      "an integer in 0..4294967295",
    );
    const parsed = <T>(flag: string, parse: (text: string) => T): T => {
      try {
        return parse(flags.text(flag));
      } catch (error) {
        throw new FlagError(`--${flag}: ${(error as Error).message}`);
      }
    };
    const samplers = parsed("samplers", parseSamplers);
    const nllUnseenBy = flags.given("nll-unseen-by")
      ? parsed("nll-unseen-by", parseSeedList)
      : undefined;
    const guidance = flags.given("guidance") ? parsed("guidance", parseGuidance) : undefined;
    const guidanceInterval = flags.given("guidance-interval")
      ? parsed("guidance-interval", parseInterval)
      : undefined;
    const modelPath = flags.text("model");
    const model = await loadOnnxModel(
      await readFlagFile("model", modelPath),
      provider,
      modelPath,
      runtime,
    );
    const numClasses = classCount(model.card.config);
    if (guidance && numClasses === 0) {
      throw new FlagError(
        `--guidance applies to a class-conditional model; ${modelPath} has no classes`,
      );
    }
    if (nllClass === "mixture" && numClasses === 0) {
      throw new FlagError(
        `--nll-class mixture applies to a class-conditional model; ${modelPath} has no classes`,
      );
    }
    const modelDataset = evalDataset(model.card.dataset);
    const reference = flags.given("reference")
      ? parsed("reference", (text) => evalReference(modelDataset, text))
      : undefined;
    const classifierFile = flags.text("classifier") ||
      classifierPath(EVAL_REFERENCES[modelDataset].classifiers[0]);
    await checkClassifierDataset(classifierFile, modelDataset);
    const classifier = await loadClassifier(
      await readFlagFile("classifier", classifierFile),
      provider,
      runtime,
    );
    // The estimate: one batch through the network, timed after a warm-up call.
    const T = model.card.schedule.timesteps;
    const network = onnxDenoiser(model, { maxBatch: batch });
    const [c, h, w] = [model.card.channels, model.card.imageSize, model.card.imageSize];
    const probe = Math.min(batch, samples);
    const x = new Float32Array(probe * c * h * w);
    const t = new Float32Array(probe).fill(T - 1);
    const shape = [probe, c, h, w] as const;
    await network(x, t, shape);
    const t0 = performance.now();
    await network(x, t, shape);
    const msPerImage = (performance.now() - t0) / probe;
    const workload = evalWorkload({
      timesteps: T,
      samples,
      samplers,
      nllImages,
      guidance: numClasses > 0 ? guidance ?? [0] : [undefined],
    });
    const minutes = (workload * msPerImage) / 60_000;
    console.log(
      `estimate: about ${minutes < 1 ? "1" : minutes.toFixed(0)} min (${
        workload.toLocaleString("en-US")
      } network evaluations of one image at ${msPerImage.toFixed(1)} ms each, measured); ` +
        "--samples, --samplers and --nll-images set the size",
    );
    const result = await evaluate({
      model,
      classifier,
      samples,
      samplers,
      nllImages,
      nllClass,
      ...(nllUnseenBy ? { nllUnseenBy } : {}),
      floorDraws,
      batch,
      seed,
      guidance,
      guidanceInterval,
      ...(reference ? { reference } : {}),
    });
    console.log(
      `\n${modelPath} (${model.card.trainingSteps} training steps), provider ${provider}\n`,
    );
    console.log(evalTable(result, samples));
    const json = flags.text("json");
    if (json) {
      const settings = Object.fromEntries(
        Object.keys(EVAL_FLAGS).filter((k) => k !== "help").map((k) => [k, flags.text(k)]),
      );
      settings.classifier = classifierFile;
      await Deno.writeTextFile(json, JSON.stringify({ settings, ...result }, null, 2) + "\n");
    }
    const plot = flags.text("plot");
    if (plot) {
      const spec = frechetCurveSpec(result.samplers, {
        floor: result.realFloor,
        samples,
        title: `${modelPath}: Fréchet distance, ${samples} samples per point`,
      });
      await Deno.writeTextFile(plot, await renderSvg(spec));
      console.log(`wrote ${plot}`);
    }
    return 0;
  });
}
