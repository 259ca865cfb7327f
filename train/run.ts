/**
 * A training run: data, network, optimizer, checkpoints, logs and sample grids, from start or
 * from a checkpoint. `main.ts` turns command-line flags into {@linkcode RunOptions}; tests call
 * {@linkcode runTraining} directly.
 *
 * A run directory holds:
 * - `ckpt-<step>.ddpm`: checkpoints (see `checkpoint.ts`), the newest `keep` of them;
 * - `metrics.jsonl`: one JSON object per logged step;
 * - `curves.svg`: the loss, held-out loss and learning rate against step and images seen,
 *   redrawn at each held-out evaluation and at the end (`curves.ts`);
 * - `samples/step-<step>.png`: grids drawn from the EMA weights.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { makeGrid, toUint8 } from "../lib/image.ts";
import type { Prediction } from "../lib/parameterization.ts";
import { encodePng } from "../lib/png.ts";
import { createRng, restoreRng, type Rng } from "../lib/rng.ts";
import { sample, type SamplerKind } from "../lib/samplers.ts";
import { makeSchedule, type ScheduleOptions } from "../lib/schedule.ts";
import type { BackendInfo } from "./backend.ts";
import { checkpointPath, latestCheckpoint, pruneCheckpoints } from "./checkpoint.ts";
import { loadInitialWeights } from "./onnx_import.ts";
import {
  BatchSampler,
  countClasses,
  type Dataset,
  type DataSplit,
  defaultFlip,
  imagesAt,
  loadDataset,
} from "./data.ts";
import { writeTrainingCurves } from "./curves.ts";
import { TRAINING_DEFAULTS, withDefaults } from "./defaults.ts";
import { classCount, isConditional, type UNetConfig, validateConfig } from "./network.ts";
import {
  checkpointSplitSeed,
  loadRunCheckpoint,
  type RunCheckpoint,
  type RunMetadata,
  saveRunCheckpoint,
} from "./run_state.ts";
import { NonFiniteLossError, type OptimizerOptions, Trainer } from "./trainer.ts";
import { widenWeights } from "./widen.ts";
import { VB_LAMBDA } from "./step.ts";

/**
 * Everything a run needs; `main.ts` fills it from flags. What is left out is
 * `TRAINING_DEFAULTS`'s (`defaults.ts`), the defaults the flags show.
 */
export interface RunOptions {
  /** Network config (ignored when resuming: the checkpoint's is used). */
  config: UNetConfig;
  /** Dataset spec for `loadDataset` ("mnist", "fashion-mnist", "idx:...", "folder:..."). */
  dataset: string;
  /** Use these data instead of loading `dataset` (tests). */
  data?: DataSplit;
  /** Total optimizer steps to reach (a resumed run continues up to this). */
  steps: number;
  batch: number;
  seed: number;
  /** Run directory. */
  out: string;
  /** Continue from the newest good checkpoint in `out`. */
  resume?: boolean;
  /**
   * Start a new run in an `out` that holds another run's checkpoints, metrics or grids,
   * deleting them first. Without it (or `resume`) such an `out` is refused, so two runs never
   * mix.
   */
  overwrite?: boolean;
  /**
   * Train a class-conditional network on the dataset's labels (`numClasses` set from its class
   * names), for classifier-free guidance. Ignored when resuming: the checkpoint's config rules.
   */
  conditional?: boolean;
  /** Conditional networks: probability of dropping a label to "no class". */
  labelDropout?: number;
  /**
   * Networks that learn their variance: the share of each batch whose timesteps come from the
   * small-t proposal, importance-weighted (`drawTimesteps`). Default 0. A resume keeps the
   * checkpoint's share.
   */
  vbImportance?: number;
  /**
   * Networks that learn their variance: the weight `lambda` of `L_vlb` in the hybrid objective.
   * Default 0.001 (Improved DDPM). A resume keeps the checkpoint's.
   */
  vbLambda?: number;
  /**
   * Start a new run from the weights (and EMA) of this checkpoint instead of random ones:
   * fine-tuning, for example an unconditional model into a conditional one. Optimizer moments,
   * the step count and the learning-rate warm-up start afresh. On the dataset it was trained on,
   * the run keeps its train / held-out split whatever `seed` says (`RunMetadata.splitSeed`).
   */
  initFrom?: string;
  /**
   * The `--ch` a resume repeated from the command that started its run: refused unless it is the
   * checkpoint's width (the network comes from the checkpoint, whatever `config` says).
   */
  resumeWidth?: number;
  /**
   * A new run's network also learns its reverse variance (Improved DDPM's learned range and
   * hybrid loss; `config.learnVariance`). With `initFrom` a fixed-variance checkpoint, its final
   * convolution grows the `v` channels, starting at zero. A resume keeps the checkpoint's
   * choice: asking for the other one is refused.
   */
  learnVariance?: boolean;
  schedule?: ScheduleOptions;
  prediction?: Prediction;
  optimizer?: OptimizerOptions;
  /** Random horizontal flips; default from the dataset (off for digits). */
  flip?: boolean;
  /**
   * Held-out fraction kept aside for evaluation (default `TRAINING_DEFAULTS.heldOut`); none for a
   * source with its own split (`"mnist-full"`).
   */
  heldOut?: number;
  /** Checkpoint every this many steps (and at the end). */
  checkpointEvery?: number;
  /** Checkpoints kept. */
  keep?: number;
  /** Sample grid every this many steps (0: never). */
  sampleEvery?: number;
  /** Sampler of the sample grids. */
  sampleSampler?: SamplerKind;
  /** Steps (network evaluations, at most T) and image count of the sample grids. */
  sampleSteps?: number;
  sampleCount?: number;
  /** Metrics line every this many steps. */
  logEvery?: number;
  /** Held-out loss (EMA weights, fixed noise) every this many steps (0: never). */
  evalEvery?: number;
  /** The backend in use, recorded in checkpoints and logs. */
  backend?: BackendInfo;
  /**
   * Gradient workers, each on its own WebAssembly backend (see `Trainer`); 0 (the default here)
   * trains in the calling thread on the current backend. `deno task train` defaults to the cores.
   */
  workers?: number;
  /** The gradient worker's module; tests substitute one that fails on purpose. */
  workerModule?: URL;
  /** Progress lines and notices; default writes to stdout. */
  report?: (event: RunEvent) => void;
  /**
   * Stops the run after the current step, with a checkpoint (Ctrl-C). The loop gives the
   * event loop a turn after every step, so a signal listener runs within the step it came in.
   */
  signal?: AbortSignal;
  /**
   * What a NaN or infinite loss does: `stop` ends the run with an error, keeping the
   * last checkpoint; `skip` drops that batch and goes on, up to 10 in a row.
   */
  onNonFinite?: "stop" | "skip";
}

/** What a run tells its caller as it goes. */
export type RunEvent =
  | { kind: "notice"; message: string }
  | {
    kind: "progress";
    step: number;
    steps: number;
    loss: number;
    lossSmoothed: number;
    stepsPerSecond: number;
    imagesPerSecond: number;
    etaSeconds: number;
  }
  | { kind: "checkpoint"; path: string; step: number }
  | { kind: "samples"; path: string; step: number };

/** How a run ended. */
export interface RunResult {
  /** Steps taken when it stopped. */
  step: number;
  /** True when it stopped early on the signal. */
  interrupted: boolean;
  /** Newest checkpoint written. */
  checkpoint: string;
  /** Exponential moving average of the training loss (factor 0.98). */
  lossSmoothed: number;
}

const LOSS_SMOOTHING = 0.98;
const MAX_SKIPPED_IN_A_ROW = 10;

/** Trains until `steps` (or the signal), writing checkpoints, metrics and sample grids. */
export async function runTraining(options: RunOptions): Promise<RunResult> {
  const report = options.report ?? _printEvent;
  const cadence = _cadence(options);
  const run = await _openRun(options, report);
  try {
    return await _loop(run, options, cadence, report);
  } finally {
    run.trainer.dispose();
  }
}

/** How often a run logs, evaluates, draws grids and saves, and how many checkpoints it keeps. */
interface _Cadence {
  checkpointEvery: number;
  keep: number;
  sampleEvery: number;
  logEvery: number;
  evalEvery: number;
}

/** A run ready for its next step: a new one, one from another run's weights, or a resumed one. */
interface _OpenRun {
  trainer: Trainer;
  /** The run's generator: timesteps, noise and label dropout. */
  rng: Rng;
  /** The training split's batches, in the run's order. */
  sampler: BatchSampler;
  data: DataSplit;
  schedule: RunCheckpoint["schedule"];
  seed: number;
  /** The seed of the train / held-out split (`RunMetadata.splitSeed`). */
  splitSeed: number;
  labelDropout: number;
  vbImportance: number;
  vbLambda: number;
  /** The dataset's class names, for a conditional network. */
  classNames?: readonly string[];
  /** How many training images each class has, for a conditional network. */
  classCounts?: readonly number[];
  /** The checkpoint whose weights a fine-tuned run started from, kept over every resume. */
  initializedFrom?: RunMetadata["initializedFrom"];
  /** The checkpoint resumed from. */
  resumedFrom?: string;
  /** What the run had when it was saved (NaN and 0 for a new one). */
  lossSmoothed: number;
  wallSeconds: number;
  /** The first line the run reports. */
  notice: string;
}

/**
 * Refuses a start whose network is built differently from this run's (another preset, or a
 * `--ch` that is neither its width nor a multiple of it), naming both, before the shapes disagree
 * tensor by tensor. The class rows and the variance channels may differ: the warm start grows or
 * keeps them. Returns whether the start is to be widened to this run's width (`widen.ts`).
 */
function _checkStartNetwork(path: string, start: UNetConfig, config: UNetConfig): boolean {
  const describe = (c: UNetConfig) =>
    `${c.imageSize}x${c.imageSize}x${c.channels}, ch ${c.ch}, levels ${c.chMult.join("/")}, ` +
    `${c.numResBlocks} block(s) per level, attention at ${c.attnResolutions.join("/")}, ` +
    `${c.groups} groups`;
  const [theirs, ours] = [describe(start), describe(config)];
  const widens = config.ch > start.ch && config.ch % start.ch === 0;
  if (theirs !== ours && !(widens && describe({ ...start, ch: config.ch }) === ours)) {
    throw new RangeError(
      `--init-from ${path}: its network is ${theirs}; this run's is ${ours}. ` +
        `Start it with the --preset of that run and --ch ${start.ch} (or a multiple of ` +
        `${start.ch}, to widen it)`,
    );
  }
  return widens;
}

/** The cadence options filled from the defaults and checked, with `steps` and `batch`. */
function _cadence(options: RunOptions): _Cadence {
  const cadence = {
    checkpointEvery: options.checkpointEvery ?? TRAINING_DEFAULTS.checkpointEvery,
    keep: options.keep ?? TRAINING_DEFAULTS.keep,
    sampleEvery: options.sampleEvery ?? TRAINING_DEFAULTS.sampleEvery,
    logEvery: options.logEvery ?? TRAINING_DEFAULTS.logEvery,
    evalEvery: options.evalEvery ?? TRAINING_DEFAULTS.evalEvery,
  };
  _positiveInteger("steps", options.steps);
  _positiveInteger("batch", options.batch);
  _positiveInteger("checkpointEvery", cadence.checkpointEvery);
  _positiveInteger("keep", cadence.keep);
  _positiveInteger("logEvery", cadence.logEvery);
  return cadence;
}

/**
 * Opens the run in `options.out`:
 * 1. claims the directory: a new run refuses one that holds another run (or, with `overwrite`,
 *    deletes it), a resumed run takes the newest good checkpoint there;
 * 2. settles the network, schedule, prediction, seed and optimizer: a resumed run's come from
 *    its checkpoint (optimizer flags given again override the saved ones), a new run's from
 *    the options;
 * 3. loads the data, split as the checkpoint, `initFrom`'s run on the same dataset, or the
 *    seed says, and checks it fits the network (image shape, class count);
 * 4. restores or creates the generator, the batch order and the trainer, from the checkpoint,
 *    from `initFrom`'s weights, or from the seed.
 */
async function _openRun(options: RunOptions, report: (event: RunEvent) => void): Promise<_OpenRun> {
  // 1. The run directory.
  if (options.resume && options.overwrite) {
    throw new RangeError(
      "--resume continues the run in --out and --overwrite replaces it: pass one",
    );
  }
  if (!options.resume) await _claimRunDirectory(options.out, Boolean(options.overwrite), report);
  await _prepareRunDirectory(options.out, report);
  const resumedFrom = options.resume ? await latestCheckpoint(options.out) : null;
  if (options.resume && !resumedFrom) {
    throw new Error(`--resume: no complete checkpoint in ${options.out}`);
  }
  const saved = resumedFrom ? await loadRunCheckpoint(resumedFrom) : null;
  // A resume repeats the command that started the run, so it may carry that run's --init-from:
  // the start is already in the checkpoint's weights and is not read again (the file may since
  // have been overwritten by the run's own export). Any other start would be a different run.
  const initFrom = saved ? undefined : options.initFrom;
  if (saved && options.initFrom !== undefined) {
    const startedFrom = saved.metadata.initializedFrom?.path;
    if (startedFrom === undefined || resolve(startedFrom) !== resolve(options.initFrom)) {
      throw new RangeError(
        `--resume continues the run in ${options.out}, which started from ` +
          (startedFrom === undefined ? "its seed" : startedFrom) +
          `, not from --init-from ${options.initFrom}: drop --init-from to resume it, or start ` +
          "a new run from that model in another --out",
      );
    }
  }

  if (saved && options.resumeWidth !== undefined && options.resumeWidth !== saved.config.ch) {
    throw new RangeError(
      `--resume continues the run in ${options.out}, whose network has ch ${saved.config.ch}, ` +
        `not --ch ${options.resumeWidth}: a resumed run keeps its checkpoint's width (drop ` +
        "--ch, or give that one)",
    );
  }

  // 2. What the network is and how it trains.
  if (saved && options.learnVariance !== undefined) {
    const stored = Boolean(saved.config.learnVariance);
    if (stored !== options.learnVariance) {
      throw new RangeError(
        stored
          ? `--resume: the run in ${options.out} learns its variance, and a resume cannot turn ` +
            "that off"
          : `--resume: the run in ${options.out} has a fixed variance, and a resume cannot make ` +
            "it learn one (--learn-variance); start a new run from its checkpoint instead: " +
            `--init-from ${resumedFrom} --learn-variance --out <a new directory>`,
      );
    }
  }
  let config = saved
    ? saved.config
    : options.learnVariance === undefined
    ? options.config
    : { ...options.config, learnVariance: options.learnVariance };
  validateConfig(config);
  const schedule = saved?.schedule ?? withDefaults(options.schedule, TRAINING_DEFAULTS.schedule);
  const prediction = saved?.prediction ?? options.prediction ?? TRAINING_DEFAULTS.prediction;
  const seed = saved?.seed ?? options.seed;
  const optimizer = saved
    ? {
      ...saved.trainingState.optimizerOptions,
      beta1: saved.optimizer.beta1,
      beta2: saved.optimizer.beta2,
      epsilon: saved.optimizer.epsilon,
      ...options.optimizer,
    }
    : options.optimizer;

  // 3. Data: the training split batched from the run's generator, the held-out split kept aside.
  // A run from another run's weights on the same dataset keeps that run's split: with its own,
  // it would train on images its start held out, and their held-out figures would flatter it.
  let warmStart = initFrom ? await loadInitialWeights(initFrom) : null;
  let widenedFrom: UNetConfig | null = null;
  if (warmStart && initFrom) {
    // The start's timestep embedding width comes along: its first dense layer reads those
    // frequencies. A start of another width is grown to this one, computing the same function.
    if (_checkStartNetwork(initFrom, warmStart.config, config)) {
      widenedFrom = warmStart.config;
      warmStart = { ...warmStart, ...widenWeights(warmStart, widenedFrom, config.ch, seed) };
    }
    const { timestepDim } = warmStart.config;
    config = { ...config, ...(timestepDim === undefined ? {} : { timestepDim }) };
  }
  const load = (splitSeed: number) =>
    loadDataset(options.dataset, {
      // The source defaults the fraction (TRAINING_DEFAULTS.heldOut is its default); one with a
      // split of its own (MNIST's test digits) refuses one given, naming it.
      heldOutFraction: options.heldOut,
      seed: splitSeed,
      imageSize: config.imageSize,
      channels: config.channels as 1 | 3,
    });
  let splitSeed = saved ? checkpointSplitSeed(saved) : warmStart?.splitSeed ?? seed;
  let data = options.data ?? await load(splitSeed);
  if (!saved && warmStart && warmStart.dataset !== data.train.name && splitSeed !== seed) {
    splitSeed = seed;
    data = options.data ?? await load(splitSeed);
  }
  const inheritsSplit = !saved && warmStart !== null && splitSeed !== seed;
  const { train, heldOut } = data;
  if (train.imageSize !== config.imageSize || train.channels !== config.channels) {
    throw new RangeError(
      `dataset ${train.name} has ${train.channels}x${train.imageSize}x${train.imageSize} images, ` +
        `the network expects ${config.channels}x${config.imageSize}x${config.imageSize}`,
    );
  }
  if (!saved && options.conditional) {
    const classes = train.classNames?.length ?? 0;
    if (classes < 2) {
      throw new RangeError(
        `a conditional network needs a dataset with at least 2 classes; ${train.name} has ${classes}` +
          " (an image folder takes its classes from its sub-folders)",
      );
    }
    config = { ...config, numClasses: classes };
  }
  const classNames = isConditional(config) ? train.classNames : undefined;
  if (saved && isConditional(config) && classNames?.length !== config.numClasses) {
    throw new RangeError(
      `the checkpoint's network has ${config.numClasses} classes, dataset ${train.name} has ` +
        `${classNames?.length ?? 0}`,
    );
  }

  const classCounts = classNames ? countClasses(train) : undefined;

  // 4. Generator, batch order and trainer.
  const flip = options.flip ?? defaultFlip(train);
  const labelDropout = saved?.trainingState.labelDropout ?? options.labelDropout ??
    TRAINING_DEFAULTS.labelDropout;
  // Checkpoints from before importance sampling drew every t uniformly.
  const vbImportance = saved ? saved.trainingState.vbImportance ?? 0 : options.vbImportance ?? 0;
  const vbLambda = saved
    ? saved.trainingState.vbLambda ?? VB_LAMBDA
    : options.vbLambda ?? VB_LAMBDA;
  const rng = saved ? restoreRng(saved.trainingState.rng) : createRng(seed);
  const sampler = new BatchSampler(train, {
    batchSize: options.batch,
    rng: createRng(seed + 1),
    flip,
    dropLast: true,
  });
  if (saved) sampler.restore(saved.trainingState.sampler);
  const setup = {
    config,
    schedule: makeSchedule(schedule),
    prediction,
    optimizer,
    totalSteps: options.steps,
    labelDropout,
    vbImportance,
    vbLambda,
    workers: options.workers,
    workerModule: options.workerModule,
  };
  const initializedFrom = warmStart && initFrom
    ? { path: initFrom, step: warmStart.step }
    : saved?.metadata.initializedFrom;
  const trainer = saved
    ? await Trainer.restore(setup, {
      step: saved.step,
      params: saved.params,
      ema: saved.ema,
      m: saved.optimizer.m,
      v: saved.optimizer.v,
    })
    : await Trainer.create(setup, seed, warmStart ?? undefined);

  const origin = resumedFrom
    ? `resuming from ${resumedFrom} at step ${trainer.step}` +
      (options.initFrom === undefined
        ? ""
        : ` (--init-from ${options.initFrom} is where the run started, already in its weights)`)
    : warmStart
    ? `starting a new run from the weights of ${initFrom} (step ${warmStart.step})` +
      (widenedFrom
        ? `, widened from ch ${widenedFrom.ch} to ${config.ch}: each channel split into ` +
          `${config.ch / widenedFrom.ch} copies, computing the same function`
        : "") +
      (config.learnVariance && warmStart.params["conv_out.b"]?.shape[0] === config.channels
        ? "; its output grows v channels for the learned variance, starting at v = 0"
        : "") +
      (inheritsSplit ? `; it keeps that run's train / held-out split (seed ${splitSeed})` : "")
    : "starting a new run";
  return {
    trainer,
    rng,
    sampler,
    data,
    schedule,
    seed,
    splitSeed,
    labelDropout,
    vbImportance,
    vbLambda,
    classNames,
    classCounts,
    initializedFrom,
    resumedFrom: resumedFrom ?? undefined,
    lossSmoothed: saved?.trainingState.lossSmoothed ?? NaN,
    wallSeconds: saved?.trainingState.wallSeconds ?? 0,
    notice: origin +
      (classNames ? `; conditional on ${classNames.length} classes` : "") +
      (config.learnVariance ? "; learned variance (hybrid loss)" : "") +
      (vbImportance > 0 ? `; ${vbImportance} of each batch at small t (importance-weighted)` : "") +
      (vbLambda !== VB_LAMBDA ? `; L_vlb weighted by lambda = ${vbLambda}` : "") +
      `; ${train.length} training and ${heldOut.length} held-out images of ${train.name}` +
      `, batch ${options.batch}${flip ? ", random flips" : ""}` +
      (trainer.options.cooldownSteps > 0
        ? "; learning rate decaying linearly over steps " +
          `${options.steps - trainer.options.cooldownSteps + 1}-${options.steps}`
        : "") +
      (trainer.workers > 0 ? `; ${trainer.workers} gradient workers` : ""),
  };
}

/**
 * The loop: one batch, one step; a metrics line, the held-out loss, sample grids and
 * checkpoints on their cadence; at the end, or on the signal, a checkpoint of the last step.
 */
async function _loop(
  run: _OpenRun,
  options: RunOptions,
  cadence: _Cadence,
  report: (event: RunEvent) => void,
): Promise<RunResult> {
  const { trainer, rng, sampler, seed } = run;
  const { checkpointEvery, sampleEvery, logEvery, evalEvery } = cadence;
  const onNonFinite = options.onNonFinite ?? TRAINING_DEFAULTS.onNonFinite;
  const heldOut = _heldOutBatch(run.data.heldOut, options.batch);
  const metrics = await _openMetrics(options.out);
  report({ kind: "notice", message: run.notice });

  let lossSmoothed = run.lossSmoothed;
  let lastCheckpoint = run.resumedFrom ?? "";
  let lastSaved = trainer.step;
  const started = performance.now();
  const startStep = trainer.step;
  let interrupted = false;
  let skippedInARow = 0;
  const save = async () => {
    const wallSeconds = run.wallSeconds + (performance.now() - started) / 1000;
    lastCheckpoint = await _saveRun(run, options, cadence.keep, {
      lossSmoothed,
      wallSeconds,
      newest: lastCheckpoint,
    });
    lastSaved = trainer.step;
    report({ kind: "checkpoint", path: lastCheckpoint, step: trainer.step });
  };

  try {
    while (trainer.step < options.steps) {
      // A macrotask turn: tfjs's awaits settle as microtasks, so without it a Ctrl-C listener
      // ran only at the next file write (the metrics line, every --log-every steps).
      await new Promise((resolve) => setTimeout(resolve, 0));
      if (options.signal?.aborted) {
        interrupted = true;
        break;
      }
      const batch = sampler.next();
      const { channels, imageSize } = trainer.config;
      const shape = [batch.labels.length, channels, imageSize, imageSize] as const;
      let result;
      try {
        result = await trainer.trainStep(batch.x, shape, rng, batch.labels);
        skippedInARow = 0;
      } catch (error) {
        if (!(error instanceof NonFiniteLossError) || onNonFinite !== "skip") throw error;
        if (++skippedInARow > MAX_SKIPPED_IN_A_ROW) {
          throw new Error(
            `${MAX_SKIPPED_IN_A_ROW} batches in a row gave a non-finite loss: ${error.message}`,
          );
        }
        report({ kind: "notice", message: `skipped a batch: ${error.message}` });
        continue;
      }
      lossSmoothed = Number.isNaN(lossSmoothed)
        ? result.loss
        : LOSS_SMOOTHING * lossSmoothed + (1 - LOSS_SMOOTHING) * result.loss;
      const step = trainer.step;
      const elapsed = (performance.now() - started) / 1000;
      if (step === startStep + 1) {
        report({
          kind: "notice",
          message: `step ${step} took ${elapsed.toFixed(1)} s (the first builds the kernels); ` +
            `a line every ${logEvery} steps`,
        });
      }
      const stepsPerSecond = (step - startStep) / elapsed;

      if (step % logEvery === 0 || step === options.steps) {
        const record: Record<string, number> = {
          step,
          loss: result.loss,
          ...(result.vb === undefined ? {} : { vb: result.vb }),
          lossSmoothed,
          gradNorm: result.gradNorm,
          lr: result.lr,
          stepsPerSecond,
          imagesPerSecond: stepsPerSecond * options.batch,
          // A resumed run keeps its batch size (the data sampler's state requires it).
          imagesSeen: step * options.batch,
          wallSeconds: run.wallSeconds + elapsed,
        };
        if (evalEvery > 0 && step % evalEvery === 0) {
          report({
            kind: "notice",
            message: `step ${step}: held-out loss on ${heldOut.shape[0]} images`,
          });
          const heldOutLosses = await trainer.evalLosses(
            heldOut.x,
            heldOut.shape,
            createRng(seed + 2),
            "ema",
            heldOut.labels,
          );
          record.heldOutLoss = heldOutLosses.loss;
          if (heldOutLosses.vb !== undefined) record.heldOutVb = heldOutLosses.vb;
        }
        await metrics.write(record);
        if (record.heldOutLoss !== undefined) await _drawCurves(options, report);
        report({
          kind: "progress",
          step,
          steps: options.steps,
          loss: result.loss,
          lossSmoothed,
          stepsPerSecond,
          imagesPerSecond: stepsPerSecond * options.batch,
          etaSeconds: (options.steps - step) / stepsPerSecond,
        });
      }
      if (sampleEvery > 0 && step % sampleEvery === 0) {
        report({ kind: "notice", message: _samplingNotice(step, options, trainer) });
        const path = await _writeSamples(trainer, options, step, seed);
        report({ kind: "samples", path, step });
      }
      if (step % checkpointEvery === 0) await save();
    }
    // The end, or an interruption: always leave a checkpoint of the last step taken.
    if (trainer.step !== lastSaved || !lastCheckpoint) await save();
    if (!interrupted && sampleEvery > 0 && trainer.step % sampleEvery !== 0) {
      report({ kind: "notice", message: _samplingNotice(trainer.step, options, trainer) });
      const path = await _writeSamples(trainer, options, trainer.step, seed);
      report({ kind: "samples", path, step: trainer.step });
    }
  } finally {
    metrics.close();
  }
  await _drawCurves(options, report);
  return { step: trainer.step, interrupted, checkpoint: lastCheckpoint, lossSmoothed };
}

/**
 * Redraws `<out>/curves.svg` from the metrics so far. A figure that fails to render is
 * reported and the training goes on: it is a view of the run, not part of it.
 */
async function _drawCurves(options: RunOptions, report: (event: RunEvent) => void): Promise<void> {
  try {
    await writeTrainingCurves(options.out, { batch: options.batch, title: options.out });
  } catch (error) {
    report({ kind: "notice", message: `could not draw the training curves: ${error}` });
  }
}

/**
 * Saves the run at its current step and prunes to the newest `keep`; returns the path. A save
 * that fails (a full disk, say) leaves nothing behind, so the error names the newest complete
 * checkpoint, which is intact.
 */
async function _saveRun(
  run: _OpenRun,
  options: RunOptions,
  keep: number,
  progress: { lossSmoothed: number; wallSeconds: number; newest: string },
): Promise<string> {
  const { trainer } = run;
  const path = checkpointPath(options.out, trainer.step);
  const tensors = await trainer.state();
  const o = trainer.options;
  const ckpt: RunCheckpoint = {
    step: trainer.step,
    config: trainer.config,
    schedule: run.schedule,
    prediction: trainer.prediction,
    seed: run.seed,
    params: tensors.params,
    ema: tensors.ema,
    optimizer: {
      kind: "adam",
      step: trainer.step,
      beta1: o.beta1,
      beta2: o.beta2,
      epsilon: o.epsilon,
      m: tensors.m,
      v: tensors.v,
    },
    trainingState: {
      rng: run.rng.getState(),
      sampler: run.sampler.getState(),
      lossSmoothed: progress.lossSmoothed,
      labelDropout: run.labelDropout,
      ...(run.vbImportance > 0 ? { vbImportance: run.vbImportance } : {}),
      ...(run.vbLambda !== VB_LAMBDA ? { vbLambda: run.vbLambda } : {}),
      wallSeconds: progress.wallSeconds,
      optimizerOptions: { ...o },
    },
    metadata: {
      dataset: run.data.train.name,
      ...(run.classNames ? { classNames: [...run.classNames] } : {}),
      ...(run.classCounts ? { classCounts: [...run.classCounts] } : {}),
      ...(run.initializedFrom ? { initializedFrom: run.initializedFrom } : {}),
      splitSeed: run.splitSeed,
      batch: options.batch,
      backend: options.backend?.summary ?? "unknown",
      savedAt: new Date().toISOString(),
    },
  };
  try {
    await saveRunCheckpoint(path, ckpt);
  } catch (error) {
    const newest = progress.newest
      ? `the newest complete checkpoint is ${progress.newest}`
      : "no checkpoint was written";
    throw new Error(
      `could not write the checkpoint of step ${trainer.step} to ${path} (${
        (error as Error).message
      }); ${newest}`,
    );
  }
  await pruneCheckpoints(options.out, keep);
  return path;
}

/** The first `batch` held-out images with their labels: the fixed yardstick of the held-out loss. */
function _heldOutBatch(heldOut: Dataset, batch: number) {
  const count = Math.min(batch, heldOut.length);
  return {
    x: imagesAt(heldOut, Array.from({ length: count }, (_, i) => i)),
    labels: Int32Array.from({ length: count }, (_, i) => heldOut.label(i)),
    shape: [count, heldOut.channels, heldOut.imageSize, heldOut.imageSize] as const,
  };
}

/** `metrics.jsonl`, opened to append one JSON record per line. */
async function _openMetrics(
  out: string,
): Promise<{ write(record: Record<string, number>): Promise<void>; close(): void }> {
  const path = join(out, "metrics.jsonl");
  const encoder = new TextEncoder();
  // A process killed mid-line leaves a partial record: end it so the next one starts clean.
  const previous = await Deno.readFile(path).catch(() => new Uint8Array(0));
  const file = await Deno.open(path, { append: true, create: true });
  if (previous.length > 0 && previous[previous.length - 1] !== 0x0a) {
    await file.write(encoder.encode("\n"));
  }
  return {
    write: async (record) => {
      await file.write(encoder.encode(JSON.stringify(record) + "\n"));
    },
    close: () => file.close(),
  };
}

/** What a run directory holds of a run: checkpoints (also partial ones), metrics, grids. */
async function _runFiles(out: string): Promise<string[]> {
  const found: string[] = [];
  for (
    const [dir, pattern] of [[out, /^ckpt-\d+\.ddpm|^metrics\.jsonl$|^curves\.svg$/], [
      join(out, "samples"),
      /^step-\d+\.png/,
    ]] as const
  ) {
    try {
      for await (const entry of Deno.readDir(dir)) {
        if (entry.isFile && pattern.test(entry.name)) found.push(join(dir, entry.name));
      }
    } catch (error) {
      // Absent, or not a directory: _prepareRunDirectory then says why it cannot be used.
      if (!(error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory)) {
        throw error;
      }
    }
  }
  return found.sort();
}

/**
 * Refuses to start a new run in a directory that holds another one (its higher-step
 * checkpoints would outrank the new run's for `--resume` and `export`, and its metrics would
 * be appended to), or with `overwrite` deletes that run's files first.
 */
async function _claimRunDirectory(
  out: string,
  overwrite: boolean,
  report: (event: RunEvent) => void,
): Promise<void> {
  const files = await _runFiles(out);
  if (files.length === 0) return;
  const checkpoints = files.filter((f) => /ckpt-\d+\.ddpm$/.test(f));
  const what = `${checkpoints.length} checkpoint(s)${
    checkpoints.length > 0 ? ` up to ${checkpoints.at(-1)}` : ""
  }, ${files.length - checkpoints.length} other run file(s)`;
  if (!overwrite) {
    throw new RangeError(
      `--out ${out} already holds a run (${what}); pass --resume to continue it, --overwrite ` +
        "to delete it and start again there, or another --out",
    );
  }
  for (const file of files) await Deno.remove(file);
  report({ kind: "notice", message: `--overwrite: deleted the earlier run in ${out} (${what})` });
}

/** The sample grids' image count, sampler and steps (at most T), from the run's options. */
function _gridSettings(options: RunOptions, trainer: Trainer) {
  return {
    count: options.sampleCount ?? TRAINING_DEFAULTS.sampleCount,
    sampler: options.sampleSampler ?? TRAINING_DEFAULTS.sampleSampler,
    steps: Math.min(
      options.sampleSteps ?? TRAINING_DEFAULTS.sampleSteps,
      trainer.schedule.timesteps,
    ),
  };
}

/** The line printed before a sample grid is drawn (it takes a while on a CPU). */
function _samplingNotice(step: number, options: RunOptions, trainer: Trainer): string {
  const { count, sampler, steps } = _gridSettings(options, trainer);
  const name = sampler === "ddim" ? "DDIM" : sampler;
  return `step ${step}: drawing a grid of ${count} samples (${steps} ${name} steps)`;
}

/**
 * Makes sure the run directory can be written before any training time is spent, and removes
 * temporary files that a killed process left behind (a run directory has one writer).
 */
async function _prepareRunDirectory(out: string, report: (event: RunEvent) => void): Promise<void> {
  try {
    await Deno.mkdir(join(out, "samples"), { recursive: true });
    const probe = join(out, `.write-probe-${Deno.pid}`);
    await Deno.writeFile(probe, new Uint8Array(1 << 20)); // 1 MiB: fails early on a full disk
    await Deno.remove(probe);
  } catch (error) {
    throw new Error(`cannot write to the run directory ${out}: ${(error as Error).message}`);
  }
  for (const dir of [out, join(out, "samples")]) {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && /\.tmp(-|$)/.test(entry.name)) {
        await Deno.remove(join(dir, entry.name));
        report({
          kind: "notice",
          message: `removed ${join(dir, entry.name)}, left by an interrupted write`,
        });
      }
    }
  }
}

/**
 * A grid of EMA samples (DDIM unless `sampleSampler` says otherwise), the same noise every time
 * so grids compare across steps.
 */
async function _writeSamples(
  trainer: Trainer,
  options: RunOptions,
  step: number,
  seed: number,
): Promise<string> {
  const { channels, imageSize } = trainer.config;
  const { count, sampler, steps } = _gridSettings(options, trainer);
  const shape = [count, channels, imageSize, imageSize] as const;
  // A conditional network draws its classes in turn (0, 1, 2, ...), without guidance.
  const numClasses = classCount(trainer.config);
  const labels = Int32Array.from({ length: shape[0] }, (_, i) => i % Math.max(numClasses, 1));
  const model = trainer.emaDenoiser();
  const images = await sample((x, t, s) => model(x, t, s, labels), {
    schedule: trainer.schedule,
    shape,
    sampler,
    steps,
    prediction: trainer.prediction,
    ...(trainer.config.learnVariance ? { variance: "learned-range" as const } : {}),
    seed: seed + 3,
  });
  const path = join(options.out, "samples", `step-${String(step).padStart(8, "0")}.png`);
  const tmp = `${path}.tmp`;
  await Deno.writeFile(tmp, encodePng(makeGrid(toUint8(images), shape)));
  await Deno.rename(tmp, path);
  return path;
}

function _positiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
}

function _printEvent(event: RunEvent): void {
  switch (event.kind) {
    case "notice":
      console.log(event.message);
      break;
    case "progress":
      console.log(
        `step ${event.step}/${event.steps} loss ${event.lossSmoothed.toFixed(4)} ` +
          `${event.stepsPerSecond.toFixed(2)} steps/s`,
      );
      break;
    case "checkpoint":
      console.log(`checkpoint ${event.path}`);
      break;
    case "samples":
      console.log(`samples ${event.path}`);
      break;
  }
}
