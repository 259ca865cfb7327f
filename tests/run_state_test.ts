/**
 * The typed run state of a checkpoint (`train/run_state.ts`) and the one block of training
 * defaults (`train/defaults.ts`): a run's checkpoint survives the typed view byte for byte, a
 * damaged field is named, and the command line, `runTraining` and `Trainer` share their
 * defaults.
 *
 * @module
 */

import assert from "node:assert/strict";
import { makeSchedule } from "../lib/schedule.ts";
import { initBackend } from "../train/backend.ts";
import { latestCheckpoint } from "../train/checkpoint.ts";
import { type Checkpoint, decodeCheckpoint, encodeCheckpoint } from "../train/checkpoint_format.ts";
import { countClasses, loadMnist } from "../train/data.ts";
import { TRAINING_DEFAULTS } from "../train/defaults.ts";
import { parseTrainArgs } from "../train/main.ts";
import { countParameters, describeUNet, PRESETS } from "../train/network.ts";
import { runTraining } from "../train/run.ts";
import { checkpointConfig, fromRunCheckpoint, toRunCheckpoint } from "../train/run_state.ts";
import { Trainer } from "../train/trainer.ts";
import { runTinyTraining } from "./_tiny_run.ts";

/** A two-step tiny run's newest checkpoint, as bytes. */
async function runCheckpointBytes(conditional: boolean): Promise<Uint8Array> {
  await initBackend("cpu");
  const out = await Deno.makeTempDir();
  const data = await loadMnist({ imageSize: 8 });
  const quiet = { sampleEvery: 0, evalEvery: 0, report: () => {} };
  try {
    const run = { config: PRESETS.tiny, dataset: "mnist", data, conditional, out };
    await runTraining({ ...run, ...quiet, batch: 2, seed: 5, steps: 2 });
    const path = await latestCheckpoint(out);
    assert.ok(path !== null);
    return await Deno.readFile(path);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
}

Deno.test("a run's checkpoint goes through the typed run state and back to the same bytes", async () => {
  for (const conditional of [false, true]) {
    const bytes = await runCheckpointBytes(conditional);
    const run = toRunCheckpoint(await decodeCheckpoint(bytes, "run.ddpm"), "run.ddpm");
    assert.deepEqual(await encodeCheckpoint(fromRunCheckpoint(run)), bytes, `${conditional}`);
    assert.equal(run.config.numClasses, conditional ? 10 : undefined);
    assert.deepEqual(run.metadata.classNames?.length, conditional ? 10 : undefined);
    // A conditional run records how many images of each class its training split (the data
    // handed in, split at seed 0) has.
    assert.deepEqual(
      run.metadata.classCounts,
      conditional ? countClasses((await loadMnist({ imageSize: 8 })).train) : undefined,
    );
    assert.equal(run.trainingState.sampler.position, 4, "two batches of 2 handed out");
    assert.deepEqual(run.trainingState.optimizerOptions, TRAINING_DEFAULTS.optimizer);
  }
});

Deno.test("toRunCheckpoint names the source and the field that is not a run's", async () => {
  const bytes = await runCheckpointBytes(false);
  const cases: [string, (c: Checkpoint) => void, RegExp][] = [
    ["no rng", (c) => {
      delete c.trainingState.rng;
    }, /^r\.ddpm: trainingState\.rng must be an object, got undefined$/],
    ["sampler position", (c) => {
      (c.trainingState.sampler as Record<string, unknown>).position = -1;
    }, /^r\.ddpm: trainingState\.sampler\.position must be an integer in 0\.\.\d+, got -1$/],
    ["optimizer setting", (c) => {
      delete (c.trainingState.optimizerOptions as Record<string, unknown>).warmupSteps;
    }, /^r\.ddpm: trainingState\.optimizerOptions\.warmupSteps must be a finite number/],
    ["config field", (c) => {
      c.config.chMult = "1,2";
    }, /^r\.ddpm: config\.chMult must be an array, got "1,2"$/],
    ["config value", (c) => {
      c.config.groups = 3;
    }, /^r\.ddpm: config: .*groups/],
    ["class names", (c) => {
      c.metadata.classNames = [0, 1];
    }, /^r\.ddpm: metadata\.classNames\[0\] must be a string, got 0$/],
    ["class counts", (c) => {
      c.metadata.classCounts = [3, -1];
    }, /^r\.ddpm: metadata\.classCounts\[1\] must be an integer in 0\.\.\d+, got -1$/],
  ];
  for (const [what, damage, message] of cases) {
    const ckpt = await decodeCheckpoint(bytes, "r.ddpm");
    damage(ckpt);
    assert.throws(() => toRunCheckpoint(ckpt, "r.ddpm"), { message }, what);
  }
});

Deno.test("checkpointConfig keeps the config's fields and refuses an invalid network", async () => {
  const ckpt = await decodeCheckpoint(await runCheckpointBytes(false));
  assert.deepEqual(checkpointConfig(ckpt), PRESETS.tiny);
  ckpt.config.imageSize = 0;
  assert.throws(() => checkpointConfig(ckpt, "x.ddpm"), /^RangeError: x\.ddpm: config: imageSize/);
});

Deno.test("the command line, runTraining and Trainer share the training defaults", async () => {
  const { options } = parseTrainArgs([]);
  const d = TRAINING_DEFAULTS;
  assert.deepEqual(
    [options.steps, options.batch, options.seed, options.labelDropout],
    [d.steps, d.batch, d.seed, d.labelDropout],
  );
  // The held-out fraction is the run's to default (d.heldOut), on a source that takes one:
  // mnist-full keeps MNIST's own split and refuses a fraction given.
  assert.equal(options.heldOut, undefined);
  assert.equal(parseTrainArgs(["--held-out", "0.2"]).options.heldOut, 0.2);
  assert.deepEqual(options.optimizer, {
    lr: d.optimizer.lr,
    warmupSteps: d.optimizer.warmupSteps,
    cooldownSteps: d.optimizer.cooldownSteps,
    emaDecay: d.optimizer.emaDecay,
    gradClip: d.optimizer.gradClip,
  });
  assert.deepEqual(
    [options.checkpointEvery, options.keep, options.sampleEvery, options.sampleSteps],
    [d.checkpointEvery, d.keep, d.sampleEvery, d.sampleSteps],
  );
  assert.deepEqual([options.logEvery, options.evalEvery, options.onNonFinite], [
    d.logEvery,
    d.evalEvery,
    d.onNonFinite,
  ]);
  assert.deepEqual([options.prediction, options.schedule], [d.prediction, {
    kind: d.schedule.kind,
    timesteps: d.schedule.timesteps,
  }]);

  await initBackend("cpu");
  const trainer = await Trainer.create({ config: PRESETS.tiny, schedule: makeSchedule() }, 1);
  try {
    assert.deepEqual(trainer.options, d.optimizer, "a library caller gets the CLI's warm-up");
    assert.equal(trainer.labelDropout, d.labelDropout);
  } finally {
    trainer.dispose();
  }
});

Deno.test("a checkpoint whose JSON fields are not a run's still exports: only the config is read", async () => {
  const ckpt = await decodeCheckpoint(await runCheckpointBytes(false));
  ckpt.trainingState = { wallSeconds: 1 };
  ckpt.metadata = {};
  assert.deepEqual(checkpointConfig(ckpt), PRESETS.tiny);
  assert.throws(() => toRunCheckpoint(ckpt), /trainingState\.optimizerOptions must be an object/);
});

Deno.test("--ch sets a new run's width: the checkpoint records it; a bad width, or another on resume, is refused", async () => {
  assert.deepEqual(parseTrainArgs(["--ch", "32"]).options.config, { ...PRESETS.mnist, ch: 32 });
  assert.deepEqual(parseTrainArgs([]).options.config, PRESETS.mnist);
  for (const bad of ["20", "0", "-8", "8.5", "wide"]) {
    assert.throws(
      () => parseTrainArgs([`--ch=${bad}`]),
      new RegExp(
        `^FlagError: --ch must be a positive multiple of 8 \\(the mnist preset's GroupNorm groups\\), got ${bad}$`,
      ),
    );
  }
  // A resume may repeat the command that started its run, --ch included (checked below).
  assert.equal(parseTrainArgs(["--ch", "32", "--resume"]).options.resumeWidth, 32);
  assert.equal(parseTrainArgs(["--resume"]).options.resumeWidth, undefined);

  // The tiny preset (4 groups) at 12 channels: its run trains and saves that network.
  const { options } = parseTrainArgs(["--preset", "tiny", "--ch", "12"]);
  assert.deepEqual(options.config, { ...PRESETS.tiny, ch: 12 });
  await initBackend("cpu");
  const out = await Deno.makeTempDir();
  try {
    const data = await loadMnist({ imageSize: 8 });
    const quiet = { sampleEvery: 0, evalEvery: 0, report: () => {} };
    const run = { config: options.config, dataset: "mnist", data, out, batch: 2, seed: 1 };
    await runTraining({ ...run, ...quiet, steps: 1 });
    const path = await latestCheckpoint(out);
    assert.ok(path !== null);
    const saved = await decodeCheckpoint(await Deno.readFile(path), path);
    assert.equal(checkpointConfig(saved).ch, 12);
    const stored = Object.values(saved.params).reduce((n, p) => n + p.data.length, 0);
    assert.equal(stored, countParameters(describeUNet(options.config).params));
    const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    // Resumed with its own --ch it goes on; with another it is refused, naming both widths.
    await runTraining({ ...run, ...quiet, steps: 2, resume: true, resumeWidth: 12 });
    assert.match((await latestCheckpoint(out)) ?? "", /ckpt-00000002/);
    await assert.rejects(
      () => runTraining({ ...run, ...quiet, steps: 3, resume: true, resumeWidth: 8 }),
      new RegExp(
        `^RangeError: --resume continues the run in ${escaped(out)}, ` +
          "whose network has ch 12, not --ch 8: a resumed run keeps its checkpoint's width",
      ),
    );
    // A new run from those weights at another width is refused by name, before any shape.
    await assert.rejects(
      () =>
        runTraining({
          ...run,
          config: PRESETS.tiny,
          out: `${out}-narrow`,
          initFrom: path,
          ...quiet,
          steps: 1,
        }),
      new RegExp(
        `^RangeError: --init-from ${escaped(path)}: its network ` +
          "is 8x8x1, ch 12, levels 1/2, 1 block\\(s\\) per level, attention at 4, 4 groups; this " +
          "run's is 8x8x1, ch 8, .*Start it with the --preset of that run and --ch 12 \\(or a " +
          "multiple of 12, to widen it\\)$",
      ),
    );
  } finally {
    await Deno.remove(out, { recursive: true });
    await Deno.remove(`${out}-narrow`, { recursive: true }).catch(() => {});
  }
});

Deno.test("a run on mnist-full trains on MNIST's 60,000 training digits and holds out its test digits; a fraction is refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const notices: string[] = [];
    await runTinyTraining(`${dir}/run`, {
      dataset: "mnist-full",
      data: undefined, // loaded by the run, as the command line does
      config: { ...PRESETS.tiny, imageSize: 28 },
      report: (event) => {
        if (event.kind === "notice") notices.push(event.message);
      },
    });
    assert.match(notices[0], /60000 training and 10000 held-out images of mnist-full/);
    await assert.rejects(
      () =>
        runTinyTraining(`${dir}/refused`, { dataset: "mnist-full", data: undefined, heldOut: 0.2 }),
      /mnist-full keeps MNIST's own split .*heldOutFraction does not apply, got 0.2/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
