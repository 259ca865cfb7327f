/**
 * A training run of the `tiny` preset on 8x8 MNIST on the CPU backend, one step of two images
 * with no grids and no held-out loss unless `options` asks for them: the smallest real run the
 * tests of tools around the trainer (export, curves, the run-directory rules) start from.
 *
 * @module
 */

import { initBackend } from "../train/backend.ts";
import { loadMnist } from "../train/data.ts";
import { PRESETS } from "../train/network.ts";
import { type RunOptions, runTraining } from "../train/run.ts";

/** Runs the tiny training into `out`; `options` overrides any setting. */
export async function runTinyTraining(
  out: string,
  options: Partial<RunOptions> = {},
): ReturnType<typeof runTraining> {
  await initBackend("cpu");
  return await runTraining({
    config: PRESETS.tiny,
    dataset: "mnist",
    data: await loadMnist({ imageSize: 8 }),
    batch: 2,
    seed: 1,
    steps: 1,
    out,
    sampleEvery: 0,
    evalEvery: 0,
    report: () => {},
    ...options,
  });
}
