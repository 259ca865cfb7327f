import assert from "node:assert/strict";
import { join } from "node:path";
import { createRng } from "../lib/rng.ts";
import { makeSchedule } from "../lib/schedule.ts";
import { initBackend } from "../train/backend.ts";
import { latestCheckpoint, listCheckpoints, loadCheckpoint } from "../train/checkpoint.ts";
import { type Dataset, type DataSplit, loadMnist } from "../train/data.ts";
import { PRESETS } from "../train/network.ts";
import { type RunEvent, runTraining } from "../train/run.ts";
import { NonFiniteLossError, Trainer } from "../train/trainer.ts";

const tiny = PRESETS.tiny;

/** The 8x8 MNIST split with some images replaced by NaNs, as a corrupt file would give. */
async function poisoned(isBad: (index: number) => boolean): Promise<DataSplit> {
  const data = await loadMnist({ imageSize: 8 });
  const train: Dataset = {
    name: "poisoned",
    imageSize: 8,
    channels: 1,
    length: data.train.length,
    image: (i) => (isBad(i) ? new Float32Array(64).fill(NaN) : data.train.image(i)),
    label: (i) => data.train.label(i),
  };
  return { train, heldOut: data.heldOut };
}

Deno.test("a NaN loss throws before any update: weights, EMA, Adam state and step unchanged", async () => {
  await initBackend("cpu");
  const trainer = await Trainer.create({ config: tiny, schedule: makeSchedule() }, 1);
  try {
    const good = createRng(2).uniform(4 * 64).map((u) => 2 * u - 1);
    await trainer.trainStep(good, [4, 1, 8, 8], createRng(3));
    const before = await trainer.state();
    const bad = good.slice();
    bad[5] = NaN;
    await assert.rejects(trainer.trainStep(bad, [4, 1, 8, 8], createRng(4)), (error) => {
      assert.ok(error instanceof NonFiniteLossError);
      assert.match(error.message, /step 2: the loss is NaN .* the weights were not updated/);
      return true;
    });
    const after = await trainer.state();
    assert.equal(after.step, 1);
    for (const group of ["params", "ema", "m", "v"] as const) {
      for (const [name, tensor] of Object.entries(before[group])) {
        assert.deepEqual(after[group][name].data, tensor.data, `${group} ${name} changed`);
      }
    }
  } finally {
    trainer.dispose();
  }
});

Deno.test("--on-nan skip drops bad batches and trains on; stop ends the run keeping its checkpoints", async () => {
  await initBackend("cpu");
  const dir = await Deno.makeTempDir();
  try {
    const notices: string[] = [];
    const report = (event: RunEvent) => {
      if (event.kind === "notice") notices.push(event.message);
    };
    // Every image with an index divisible by 7 is NaN: batches of 2 hit one now and then.
    const data = await poisoned((i) => i % 7 === 0);
    const common = {
      config: tiny,
      dataset: "poisoned",
      data,
      batch: 2,
      seed: 3,
      sampleEvery: 0,
      evalEvery: 0,
      report,
    };
    const result = await runTraining({
      ...common,
      steps: 12,
      out: `${dir}/skip`,
      onNonFinite: "skip",
    });
    assert.equal(result.step, 12);
    assert.ok(notices.some((n) => n.startsWith("skipped a batch: step")), notices.join("\n"));
    // With stop, the run fails at the first bad batch; checkpoints written before it stay good.
    await assert.rejects(
      runTraining({ ...common, steps: 12, out: `${dir}/stop`, checkpointEvery: 1 }),
      /the loss is NaN/,
    );
    for (const { path } of await listCheckpoints(`${dir}/stop`)) await loadCheckpoint(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an unwritable run directory is refused before training starts", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/file`, "not a directory");
    await assert.rejects(
      runTraining({
        config: tiny,
        dataset: "mnist",
        data: await loadMnist({ imageSize: 8 }),
        batch: 2,
        seed: 0,
        steps: 1,
        out: `${dir}/file/run`,
        report: () => {},
      }),
      /cannot write to the run directory .*\/file\/run/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Starts `deno task train` as the user would, on the mnist preset (11 MB checkpoints). */
function startTraining(out: string, steps: number, resume: boolean): Deno.ChildProcess {
  const args = [
    "run",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "train/main.ts",
    "--preset",
    "mnist",
    "--backend",
    "wasm",
    "--batch",
    "2",
    "--steps",
    String(steps),
    "--ckpt-every",
    "1",
    "--keep",
    "3",
    "--sample-every",
    "0",
    "--eval-every",
    "0",
    "--log-every",
    "1",
    "--out",
    out,
    ...(resume ? ["--resume"] : []),
  ];
  return new Deno.Command(Deno.execPath(), { args, stdout: "null", stderr: "piped" }).spawn();
}

/** Waits until `test` holds for the directory's file names, polling every 2 ms. */
async function waitFor(
  dir: string,
  test: (names: string[]) => boolean,
  timeoutMs: number,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const names: string[] = [];
    try {
      for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    } catch {
      // not created yet
    }
    if (test(names)) return;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  throw new Error(`timed out waiting on ${dir}`);
}

/** A complete checkpoint's name (temporary files carry a `.tmp-` suffix). */
const COMPLETE = /^ckpt-\d{8}\.ddpm$/;

async function killHard(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGKILL");
  } catch {
    // it had exited already
  }
  await child.status;
  await child.stderr.cancel();
}

async function assertEveryCheckpointComplete(dir: string): Promise<number> {
  const checkpoints = await listCheckpoints(dir);
  for (const { path, step } of checkpoints) {
    const ckpt = await loadCheckpoint(path); // throws on a partial or corrupt file
    assert.equal(ckpt.step, step);
  }
  return checkpoints.length;
}

Deno.test("SIGKILL at random moments, one during a checkpoint write: every checkpoint is whole and the run resumes", async () => {
  const dir = await Deno.makeTempDir();
  const out = join(dir, "run");
  const rng = createRng(2026);
  try {
    // 1. Killed while a checkpoint's temporary file exists, that is mid-write.
    let child = startTraining(out, 1000, false);
    await waitFor(out, (names) => names.some((n) => COMPLETE.test(n)), 60_000);
    await waitFor(out, (names) => names.some((n) => n.includes(".tmp-")), 60_000);
    await killHard(child);
    assert.ok(await assertEveryCheckpointComplete(out) >= 1);

    // 2. Killed at random moments after resuming (the stale temporary file is cleaned up).
    for (let kill = 0; kill < 3; kill++) {
      const before = (await latestCheckpoint(out)) ?? "";
      child = startTraining(out, 1000, true);
      await waitFor(
        out,
        (names) => names.some((n) => COMPLETE.test(n) && join(out, n) > before),
        60_000,
      );
      await new Promise((resolve) => setTimeout(resolve, 50 + 600 * rng.nextFloat64()));
      await killHard(child);
      await assertEveryCheckpointComplete(out);
    }

    // 3. The run continues to its end from the newest complete checkpoint.
    const last = await loadCheckpoint((await latestCheckpoint(out)) as string);
    const target = last.step + 3;
    child = startTraining(out, target, true);
    const [status, stderr] = await Promise.all([child.status, new Response(child.stderr).text()]);
    assert.equal(status.code, 0, stderr);
    assert.equal((await loadCheckpoint((await latestCheckpoint(out)) as string)).step, target);
    const names = [...Deno.readDirSync(out)].map((e) => e.name);
    assert.ok(!names.some((n) => n.includes(".tmp")), `temporary files left: ${names.join(", ")}`);
    // Every metrics line parses, including the ones around each kill.
    const lines = (await Deno.readTextFile(join(out, "metrics.jsonl"))).split("\n").filter(Boolean);
    const parsed = lines.filter((line) => {
      try {
        JSON.parse(line);
        return true;
      } catch {
        return false;
      }
    });
    // A kill can cut the line being written; at most one such line per kill (4 kills).
    assert.ok(
      lines.length - parsed.length <= 4,
      `${lines.length - parsed.length} broken metrics lines`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
