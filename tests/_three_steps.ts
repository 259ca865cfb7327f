/**
 * Three training steps of a fresh trainer on one fixed batch, with the timesteps and noise from
 * a fixed seed: what the tests comparing the in-thread step with gradient workers run twice.
 *
 * @module
 */

import { createRng } from "../lib/rng.ts";
import {
  type StepResult,
  Trainer,
  type TrainerSetup,
  type TrainerState,
} from "../train/trainer.ts";

/** Runs three steps of `setup` (weights from seed 1, the step's draws from seed 7). */
export async function threeSteps(
  setup: TrainerSetup,
  batch: Float32Array,
  shape: readonly [number, number, number, number],
): Promise<{ steps: StepResult[]; state: TrainerState }> {
  const trainer = await Trainer.create(setup, 1);
  try {
    const rng = createRng(7);
    const steps = [];
    for (let i = 0; i < 3; i++) steps.push(await trainer.trainStep(batch, shape, rng));
    return { steps, state: await trainer.state() };
  } finally {
    trainer.dispose();
  }
}
