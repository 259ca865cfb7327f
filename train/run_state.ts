/**
 * A training run's checkpoint, typed: the network config, the schedule and prediction, the
 * optimizer settings, the generator and data position to continue from, and the run's
 * metadata. The checkpoint format (`checkpoint_format.ts`) stores these as plain JSON fields;
 * {@linkcode toRunCheckpoint} checks a decoded checkpoint against the types here once, so
 * no reader casts, and {@linkcode fromRunCheckpoint} gives the format back exactly the JSON it
 * always wrote: checkpoints are written byte for byte as before, and every checkpoint the
 * trainer ever wrote reads (a resume needs the optimizer settings, which every version stored).
 *
 * @module
 */

import { type Prediction, PREDICTIONS } from "../lib/parameterization.ts";
import type { RngState } from "../lib/rng.ts";
import { SCHEDULE_KINDS, type ScheduleKind } from "../lib/schedule.ts";
import {
  checkArray,
  checkInteger,
  checkNumber,
  checkOneOf,
  checkRecord,
  checkString,
  describe,
} from "./_checks.ts";
import { type Checkpoint, loadCheckpoint, saveCheckpoint } from "./checkpoint.ts";
import type { BatchSamplerState } from "./data.ts";
import { UNetConfigSchema } from "../model/config.ts";
import { type UNetConfig, validateConfig } from "./network.ts";
import type { OptimizerOptions } from "./trainer.ts";

/** What a run keeps in a checkpoint's `trainingState` to continue exactly where it stopped. */
export interface TrainingState {
  /** The run's generator (timesteps, noise, label dropout) after the last step. */
  rng: RngState;
  /** The data position: epoch, place in the epoch, and the sampler's generator. */
  sampler: BatchSamplerState;
  /** Exponential moving average of the training loss. */
  lossSmoothed: number;
  /** Training time so far, over every resume. */
  wallSeconds: number;
  /** Label dropout of a conditional run; absent in checkpoints older than conditional runs. */
  labelDropout?: number;
  /** The batch share drawn from the small-t proposal (`--vb-importance`); absent: 0. */
  vbImportance?: number;
  /** The weight of `L_vlb` in the hybrid objective (`--vb-lambda`); absent: 0.001. */
  vbLambda?: number;
  /**
   * Every optimizer setting, so a resumed run keeps its learning-rate schedule. Adam's `beta1`,
   * `beta2` and `epsilon` are also in the checkpoint's `optimizer`, which takes precedence.
   */
  optimizerOptions: Required<OptimizerOptions>;
}

/** What a run records about itself in a checkpoint's `metadata` (the model card reads it). */
export interface RunMetadata {
  /** The dataset's name. */
  dataset: string;
  /** The class names of a conditional network's dataset, by class index. */
  classNames?: string[];
  /**
   * How many training images each class had, by class index: the prior a request with no label
   * draws its classes from (the card's `classCounts`). Absent in older checkpoints.
   */
  classCounts?: number[];
  /** The checkpoint a fine-tuned run started from, carried over every resume. */
  initializedFrom?: { path: string; step: number };
  /**
   * The seed of the train / held-out split (`SplitOptions.seed`). The run's own seed, except
   * that a run started with `--init-from` a run of the same dataset keeps that run's split, so
   * it never trains on the images its start held out. Absent in older checkpoints: the seed.
   */
  splitSeed?: number;
  /** Images per step. */
  batch: number;
  /** The backend's summary line. */
  backend: string;
  /** When the checkpoint was written, ISO 8601. */
  savedAt: string;
}

/** A training run's checkpoint: the format's fields, with the JSON ones typed. */
export interface RunCheckpoint
  extends Omit<Checkpoint, "config" | "schedule" | "prediction" | "trainingState" | "metadata"> {
  config: UNetConfig;
  schedule: { kind: ScheduleKind; timesteps: number; betaStart: number; betaEnd: number };
  prediction: Prediction;
  trainingState: TrainingState;
  metadata: RunMetadata;
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/**
 * Checks that a checkpoint holds a training run's state and returns it typed. The format has
 * already checked the tensors, the schedule's ranges and the optimizer's numbers; this checks
 * the JSON fields' shapes and the network config, naming `source` and the field in any error.
 * Ranges that their owners check on use (an rng state's words, a sampler position against its
 * dataset) are left to them.
 *
 * @example
 * ```ts ignore
 * import { loadCheckpoint } from "./checkpoint.ts";
 * import { toRunCheckpoint } from "./run_state.ts";
 * const run = toRunCheckpoint(await loadCheckpoint("runs/mnist/ckpt-00001000.ddpm"));
 * console.log(run.config.imageSize, run.trainingState.sampler.epoch);
 * ```
 */
export function toRunCheckpoint(ckpt: Checkpoint, source = "checkpoint"): RunCheckpoint {
  const where = `${source}: trainingState`;
  const state = checkRecord(ckpt.trainingState, where);
  const options = checkRecord(state.optimizerOptions, `${where}.optimizerOptions`);
  const number = (key: keyof Required<OptimizerOptions>) =>
    checkNumber(options[key], `${where}.optimizerOptions.${key}`);
  const trainingState: TrainingState = {
    rng: _checkRngState(state.rng, `${where}.rng`),
    sampler: _checkSamplerState(state.sampler, `${where}.sampler`),
    lossSmoothed: checkNumber(state.lossSmoothed, `${where}.lossSmoothed`),
    wallSeconds: checkNumber(state.wallSeconds, `${where}.wallSeconds`),
    optimizerOptions: {
      lr: number("lr"),
      warmupSteps: number("warmupSteps"),
      // Checkpoints from before the cool-down existed ran at a constant rate.
      cooldownSteps: options.cooldownSteps === undefined ? 0 : number("cooldownSteps"),
      gradClip: number("gradClip"),
      emaDecay: number("emaDecay"),
      beta1: number("beta1"),
      beta2: number("beta2"),
      epsilon: number("epsilon"),
    },
  };
  if (state.labelDropout !== undefined) {
    trainingState.labelDropout = checkNumber(state.labelDropout, `${where}.labelDropout`);
  }
  if (state.vbImportance !== undefined) {
    trainingState.vbImportance = checkNumber(state.vbImportance, `${where}.vbImportance`);
  }
  if (state.vbLambda !== undefined) {
    trainingState.vbLambda = checkNumber(state.vbLambda, `${where}.vbLambda`);
  }
  return {
    step: ckpt.step,
    config: checkpointConfig(ckpt, source),
    schedule: {
      ...ckpt.schedule,
      kind: checkOneOf(ckpt.schedule.kind, SCHEDULE_KINDS, `${source}: schedule.kind`),
    },
    prediction: checkOneOf(ckpt.prediction, PREDICTIONS, `${source}: prediction`),
    seed: ckpt.seed,
    params: ckpt.params,
    ema: ckpt.ema,
    optimizer: ckpt.optimizer,
    trainingState,
    metadata: _checkMetadata(ckpt.metadata, `${source}: metadata`),
  };
}

/**
 * The checkpoint of a run as the format stores it: the same fields, the typed ones as plain
 * JSON objects. Optional fields that are absent stay absent (JSON has no `undefined`).
 */
export function fromRunCheckpoint(run: RunCheckpoint): Checkpoint {
  return {
    ...run,
    config: { ...run.config },
    trainingState: { ...run.trainingState },
    metadata: { ...run.metadata },
  };
}

/**
 * The seed of the train / held-out split a checkpoint's run trained on: its metadata's
 * `splitSeed`, or for checkpoints older than it the run's seed, which split the data then.
 */
export function checkpointSplitSeed(
  ckpt: { seed: number; metadata: { splitSeed?: unknown } },
): number {
  const { splitSeed } = ckpt.metadata;
  return Number.isSafeInteger(splitSeed) ? splitSeed as number : ckpt.seed;
}

/**
 * A checkpoint's network config, checked field by field and by `validateConfig`; the exporter
 * reads only this of a checkpoint's JSON fields, so a checkpoint written by hand (or by an
 * older trainer) exports as long as its config is whole.
 *
 * @example
 * ```ts ignore
 * import { loadCheckpoint } from "./checkpoint.ts";
 * import { checkpointConfig } from "./run_state.ts";
 * const { imageSize } = checkpointConfig(await loadCheckpoint("runs/mnist/ckpt-00001000.ddpm"));
 * ```
 */
export function checkpointConfig(ckpt: Checkpoint, source = "checkpoint"): UNetConfig {
  const where = `${source}: config`;
  // The card's schema is the one definition of the config's fields; validateConfig then checks
  // that they make a network.
  const parsed = UNetConfigSchema.safeParse(checkRecord(ckpt.config, where));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const { path, code } = issue;
    const field = path.map((k) => typeof k === "number" ? `[${k}]` : `.${String(k)}`).join("");
    const value = path.reduce<unknown>(
      (v, k) => (v as Record<PropertyKey, unknown> | undefined)?.[k],
      ckpt.config,
    );
    // "must be an array" for a wrong type, as the other fields' checks say it; zod's own
    // words for any other rule.
    const rule = code === "invalid_type" && "expected" in issue
      ? `must be ${/^[aeiou]/.test(issue.expected) ? "an" : "a"} ${issue.expected}`
      : issue.message;
    throw new TypeError(`${source}: config${field} ${rule}, got ${describe(value)}`);
  }
  try {
    validateConfig(parsed.data);
  } catch (error) {
    throw new RangeError(`${where}: ${(error as Error).message}`);
  }
  // In the stored key order (the header's, sorted), so a card written from it reads as before.
  const stored = Object.keys(ckpt.config).filter((key) => key in parsed.data);
  return Object.fromEntries(
    stored.map((key) => [key, parsed.data[key as keyof UNetConfig]]),
  ) as UNetConfig;
}

/** Reads a training run's checkpoint file; every error names `path`. */
export async function loadRunCheckpoint(path: string): Promise<RunCheckpoint> {
  return toRunCheckpoint(await loadCheckpoint(path), path);
}

/** Writes a training run's checkpoint atomically (`saveCheckpoint`). */
export async function saveRunCheckpoint(path: string, run: RunCheckpoint): Promise<void> {
  await saveCheckpoint(path, fromRunCheckpoint(run));
}

function _checkRngState(value: unknown, where: string): RngState {
  const raw = checkRecord(value, where);
  const words = raw.words;
  if (!Array.isArray(words) || words.length !== 4) {
    throw new TypeError(`${where}.words must be an array of 4 words, got ${describe(words)}`);
  }
  const [a, b, c, d] = words.map((w, i) => checkInteger(w, `${where}.words[${i}]`, 0, 0xffffffff));
  const spare = raw.spareNormal;
  return {
    words: [a, b, c, d],
    spareNormal: spare === null ? null : checkNumber(spare, `${where}.spareNormal`),
  };
}

function _checkSamplerState(value: unknown, where: string): BatchSamplerState {
  const raw = checkRecord(value, where);
  const integer = (key: string) => checkInteger(raw[key], `${where}.${key}`, 0, MAX_SAFE);
  return {
    epoch: integer("epoch"),
    position: integer("position"),
    epochSeed: integer("epochSeed"),
    rng: _checkRngState(raw.rng, `${where}.rng`),
    datasetLength: integer("datasetLength"),
  };
}

function _checkMetadata(value: unknown, where: string): RunMetadata {
  const raw = checkRecord(value, where);
  const metadata: RunMetadata = {
    dataset: checkString(raw.dataset, `${where}.dataset`),
    batch: checkInteger(raw.batch, `${where}.batch`, 1, MAX_SAFE),
    backend: checkString(raw.backend, `${where}.backend`),
    savedAt: checkString(raw.savedAt, `${where}.savedAt`),
  };
  if (raw.classNames !== undefined) {
    metadata.classNames = checkArray(raw.classNames, `${where}.classNames`).map((name, i) =>
      checkString(name, `${where}.classNames[${i}]`)
    );
  }
  if (raw.classCounts !== undefined) {
    metadata.classCounts = checkArray(raw.classCounts, `${where}.classCounts`).map((count, i) =>
      checkInteger(count, `${where}.classCounts[${i}]`, 0, MAX_SAFE)
    );
  }
  if (raw.initializedFrom !== undefined) {
    const from = checkRecord(raw.initializedFrom, `${where}.initializedFrom`);
    metadata.initializedFrom = {
      path: checkString(from.path, `${where}.initializedFrom.path`),
      step: checkInteger(from.step, `${where}.initializedFrom.step`, 0, MAX_SAFE),
    };
  }
  if (raw.splitSeed !== undefined) {
    metadata.splitSeed = checkInteger(raw.splitSeed, `${where}.splitSeed`, 0, MAX_SAFE);
  }
  return metadata;
}
