/**
 * The models a server answers for, each with everything sampling needs read from its model
 * card: the schedule, what the network predicts, the reverse variance, the image shape and
 * how pixels map to model space, and the classes of a class-conditional model. Nothing about
 * sampling is a constant of the server.
 *
 * @module
 */

import type { Prediction, VarianceType } from "../lib/parameterization.ts";
import { checkClassCounts, type ConditionalDenoiser } from "../lib/guidance.ts";
import { makeSchedule, type Schedule } from "../lib/schedule.ts";
import { type SamplingCard, SamplingCardSchema } from "../model/card.ts";
import { classCount } from "../model/config.ts";
import { cardPixelRange } from "../model/scaling.ts";
import { type ExecutionProvider, loadOnnxModel, onnxDenoiser } from "../model/onnx.ts";
import type { ProviderInfo } from "./provider.ts";

/** One model, ready to sample from. */
export interface ServedModel {
  /** The name clients use (`model` in requests): the file name without `.onnx`. */
  readonly name: string;
  /** The card as the model file holds it; the fields sampling reads are checked. */
  readonly card: SamplingCard;
  /** Built from the card's schedule. */
  readonly schedule: Schedule;
  /** `[c, h, w]` of one image. */
  readonly imageShape: readonly [number, number, number];
  /** The float interval that 8-bit 0..255 maps onto, from the card's `pixelRange`. */
  readonly range: readonly [number, number];
  readonly prediction: Prediction;
  readonly variance: VarianceType;
  /**
   * The class names of a conditional model, index by index (from the card's `classNames`);
   * empty for an unconditional one. Index `classes.length` is "no class".
   */
  readonly classes: readonly string[];
  /**
   * How many training images each class had (the card's `classCounts`), the prior a request
   * with no label draws its classes from; null: uniform (an older card, or no classes).
   */
  readonly classCounts: readonly number[] | null;
  /** The network; an unconditional one ignores labels. */
  readonly denoiser: ConditionalDenoiser;
  /** Frees the session, if there is one. */
  close(): Promise<void>;
}

/** A server's models and the execution provider they run on. */
export interface ModelRegistry {
  readonly provider: ProviderInfo;
  /** In a fixed order; the first is the default. */
  readonly models: readonly ServedModel[];
}

/** A model file's name and bytes, however they were read. */
export interface ModelSource {
  readonly name: string;
  readonly bytes: Uint8Array;
}

/**
 * A model from its card and a denoiser (an onnxruntime session, or any function in tests).
 * Throws a `TypeError` naming the model and the field when the card cannot be sampled from,
 * when its class names do not match its network's number of classes, or when its variance is
 * learned-range and its network does not learn one (`config.learnVariance`), or the reverse.
 *
 * @example
 * ```ts
 * import { servedModel } from "./registry.ts";
 * const card = {
 *   format: "onnx", schedule: { kind: "linear", timesteps: 1000, betaStart: 1e-4, betaEnd: 0.02 },
 *   prediction: "eps", variance: "fixedlarge", imageSize: 8, channels: 1,
 *   dataScaling: "[-1, 1]", dataset: "test",
 * };
 * const model = servedModel("zero", card, (x) => new Float32Array(x.length));
 * console.assert(model.imageShape.join() === "1,8,8");
 * ```
 */
export function servedModel(
  name: string,
  card: unknown,
  denoiser: ConditionalDenoiser,
  close: () => Promise<void> = () => Promise.resolve(),
): ServedModel {
  const parsed = SamplingCardSchema.safeParse(card);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new TypeError(
      `model ${name}: its card cannot be sampled from: ${
        issue.path.join(".") || "card"
      }: ${issue.message}`,
    );
  }
  const checked = parsed.data;
  // The network's class count decides whether it takes labels; the names must cover it
  // exactly, or a name would map to the wrong embedding row (or to "no class").
  const classes = checked.classNames ?? [];
  const numClasses = classCount(checked.config ?? {});
  if (classes.length !== numClasses) {
    throw new TypeError(
      `model ${name}: its network has ${numClasses} classes (config.numClasses) but its card ` +
        `names ${classes.length} (classNames)`,
    );
  }
  if (new Set(classes).size !== classes.length) {
    throw new TypeError(`model ${name}: its classNames repeat a name: ${classes.join(", ")}`);
  }
  if (checked.classCounts !== undefined) {
    try {
      checkClassCounts(checked.classCounts, classes.length);
    } catch (error) {
      throw new TypeError(`model ${name}: its card's ${(error as Error).message}`);
    }
  }
  // A learned-range variance is read from the network's extra channels: the card must say so
  // exactly when the network has them, or every request would fail on the output's length.
  const learns = checked.config?.learnVariance === true;
  if (learns !== (checked.variance === "learned-range")) {
    throw new TypeError(
      `model ${name}: its card's variance is ${checked.variance} but its network ` +
        (learns
          ? "learns its variance (config.learnVariance): expected learned-range"
          : "does not learn its variance (config.learnVariance absent or false)"),
    );
  }
  const { kind, timesteps, betaStart, betaEnd } = checked.schedule;
  return {
    name,
    // The caller's object, not zod's copy: its fields keep their order in GET /v1/models.
    card: card as SamplingCard,
    schedule: makeSchedule({ kind, timesteps, betaStart, betaEnd }),
    imageShape: [checked.channels, checked.imageSize, checked.imageSize],
    range: cardPixelRange(checked, name),
    prediction: checked.prediction,
    variance: checked.variance,
    classes: Object.freeze([...classes]),
    classCounts: checked.classCounts ? Object.freeze([...checked.classCounts]) : null,
    denoiser,
    close,
  };
}

/** Options of {@linkcode loadRegistry}. */
export interface LoadOptions {
  /** Images per network call; larger batches are split. Default 64. */
  readonly maxBatch?: number;
  /** Merge concurrent requests' network calls into one batch. Default true. */
  readonly merge?: boolean;
}

/**
 * Creates one onnxruntime session per model on the chosen provider, on this thread (the edge
 * entry and tests; `serve/worker.ts` runs them in a worker instead). When `auto` picked WebGPU
 * and a session fails to start there, every model falls back to WebAssembly and the provider
 * says why.
 */
export async function loadRegistry(
  sources: readonly ModelSource[],
  provider: ProviderInfo,
  options: LoadOptions = {},
): Promise<ModelRegistry> {
  if (sources.length === 0) throw new RangeError("loadRegistry needs at least one model");
  const names = new Set<string>();
  for (const { name } of sources) {
    if (names.has(name)) throw new RangeError(`two models are named ${name}`);
    names.add(name);
  }
  try {
    return { provider, models: await _loadAll(sources, provider.name, options) };
  } catch (error) {
    if (provider.name !== "webgpu" || provider.requested !== "auto") throw error;
    const reason = `WebAssembly: WebGPU failed to start a session (${(error as Error).message})`;
    const fallback: ProviderInfo = { ...provider, name: "wasm", reason };
    return { provider: fallback, models: await _loadAll(sources, "wasm", options) };
  }
}

async function _loadAll(
  sources: readonly ModelSource[],
  provider: ExecutionProvider,
  options: LoadOptions,
): Promise<ServedModel[]> {
  const models: ServedModel[] = [];
  try {
    for (const { name, bytes } of sources) {
      const model = await loadOnnxModel(bytes, provider, name);
      const close = () => model.session.release();
      try {
        const denoiser = onnxDenoiser(model, {
          maxBatch: options.maxBatch ?? 64,
          merge: options.merge,
        });
        models.push(servedModel(name, model.card, denoiser, close));
      } catch (error) {
        await close();
        throw error;
      }
    }
  } catch (error) {
    await Promise.all(models.map((m) => m.close()));
    throw error;
  }
  return models;
}
