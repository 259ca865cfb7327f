/**
 * Every default of a training run, in one block: `deno task train`'s flag table prints and
 * parses these, and `runTraining` and `Trainer` fill what their callers leave out from the same
 * object, so the command line and the library cannot drift apart.
 *
 * @module
 */

import type { Prediction } from "../lib/parameterization.ts";
import type { SamplerKind } from "../lib/samplers.ts";
import type { ScheduleOptions } from "../lib/schedule.ts";
import { DEFAULT_HELD_OUT_FRACTION } from "./data.ts";
import type { OptimizerOptions } from "./trainer.ts";

/** The defaults of a training run; see `RunOptions` and `TrainerSetup` for what each does. */
export interface TrainingDefaults {
  readonly preset: "mnist";
  readonly steps: number;
  readonly batch: number;
  readonly seed: number;
  readonly optimizer: Readonly<Required<OptimizerOptions>>;
  readonly labelDropout: number;
  readonly prediction: Prediction;
  readonly schedule: Readonly<Required<ScheduleOptions>>;
  readonly heldOut: number;
  readonly checkpointEvery: number;
  readonly keep: number;
  readonly sampleEvery: number;
  readonly sampleSampler: SamplerKind;
  readonly sampleSteps: number;
  readonly sampleCount: number;
  readonly logEvery: number;
  readonly evalEvery: number;
  readonly onNonFinite: "stop" | "skip";
  readonly workers: number;
}

/**
 * The defaults. The optimizer's are the paper's CIFAR-10 ones (`run_cifar.py`) except the
 * warm-up: 1000 steps, what `deno task train` has always used, rather than the paper's 5000,
 * which would be a quarter of a default run of 20000 steps (the paper trains for 800000).
 */
export const TRAINING_DEFAULTS: TrainingDefaults = {
  preset: "mnist",
  steps: 20_000,
  batch: 64,
  seed: 0,
  optimizer: {
    lr: 2e-4,
    warmupSteps: 1000,
    cooldownSteps: 0,
    gradClip: 1,
    emaDecay: 0.9999,
    beta1: 0.9,
    beta2: 0.999,
    epsilon: 1e-8,
  },
  labelDropout: 0.1,
  prediction: "eps",
  schedule: { kind: "linear", timesteps: 1000, betaStart: 1e-4, betaEnd: 0.02 },
  heldOut: DEFAULT_HELD_OUT_FRACTION,
  checkpointEvery: 1000,
  keep: 3,
  sampleEvery: 2000,
  sampleSampler: "ddim",
  sampleSteps: 20,
  sampleCount: 16,
  logEvery: 10,
  evalEvery: 500,
  onNonFinite: "stop",
  // The calling thread; `deno task train` asks for one worker per core instead (--workers auto).
  workers: 0,
};

/** `given` with every field it leaves out (or sets to undefined or null) taken from `defaults`. */
export function withDefaults<T extends object>(
  given: Partial<T> | undefined,
  defaults: Readonly<Required<T>>,
): Required<T> {
  const filled = {} as Required<T>;
  for (const key of Object.keys(defaults) as (keyof T)[]) {
    filled[key] = given?.[key] ?? defaults[key];
  }
  return filled;
}
