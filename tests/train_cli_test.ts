/**
 * The trainer as a new user meets it (issue 16): Ctrl-C acts within the current step and
 * exits 130, a second Ctrl-C quits at once, and a new run refuses an `--out` that holds
 * another run.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { initBackend } from "../train/backend.ts";
import { latestCheckpoint, listCheckpoints, loadCheckpoint } from "../train/checkpoint.ts";
import { loadMnist } from "../train/data.ts";
import { PRESETS } from "../train/network.ts";
import { parseTrainArgs } from "../train/main.ts";
import { runTraining } from "../train/run.ts";
import { toRunCheckpoint } from "../train/run_state.ts";

const ROOT = new URL("..", import.meta.url);

/** `deno task train` on the mnist preset (about 0.5 s a step on wasm here), logging rarely. */
function startTraining(
  out: string,
  checkpointEvery: number,
): { child: Deno.ChildProcess; lines: AsyncIterator<string> } {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "train/main.ts",
      "--backend",
      "wasm",
      "--batch",
      "2",
      "--steps",
      "100000",
      "--log-every",
      "1000",
      "--ckpt-every",
      String(checkpointEvery),
      "--sample-every",
      "0",
      "--eval-every",
      "0",
      "--out",
      out,
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).values();
  return { child, lines };
}

/** Reads stdout until `pattern` matches; returns what was read. */
async function readUntil(lines: AsyncIterator<string>, pattern: RegExp): Promise<string> {
  let text = "";
  while (!pattern.test(text)) {
    const { done, value } = await lines.next();
    if (done) throw new Error(`stdout ended before ${pattern}:\n${text}`);
    text += value;
  }
  return text;
}

Deno.test("Ctrl-C during training saves within the current step and exits 130", async () => {
  const dir = await Deno.makeTempDir();
  // No checkpoint or log line is due for 1000 steps: nothing else gives the signal a turn.
  const { child, lines } = startTraining(join(dir, "run"), 1000);
  // Before the fix the signal waited for step 1000; give up (SIGKILL, exit 137) after 30 s.
  const guard = setTimeout(() => child.kill("SIGKILL"), 30_000);
  try {
    await readUntil(lines, /starting a new run/);
    await new Promise((resolve) => setTimeout(resolve, 3000)); // a few steps in
    child.kill("SIGINT");
    const t0 = performance.now();
    const status = await child.status;
    const seconds = (performance.now() - t0) / 1000;
    const rest = await readUntil(lines, /interrupted at step (\d+)/).catch((e) => String(e));
    assert.equal(status.code, 130, rest);
    // A step of the mnist preset takes about 0.5 s here and a checkpoint about as long: 15 s
    // leaves room for a loaded shared machine.
    assert.ok(seconds < 15, `stopping took ${seconds.toFixed(1)} s`);
    const step = Number(/interrupted at step (\d+)/.exec(rest)?.[1]);
    assert.ok(step >= 1);
    const newest = await latestCheckpoint(join(dir, "run"));
    assert.equal((await loadCheckpoint(newest as string)).step, step);
  } finally {
    clearTimeout(guard);
    await child.stderr.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a second Ctrl-C quits at once with 130 and the newest complete checkpoint stays", async () => {
  const dir = await Deno.makeTempDir();
  const { child, lines } = startTraining(join(dir, "run"), 2);
  try {
    await readUntil(lines, /saved .*ckpt-00000002\.ddpm/);
    child.kill("SIGINT");
    await readUntil(lines, /stopping after this step/);
    child.kill("SIGINT");
    const status = await child.status;
    assert.equal(status.code, 130);
    const checkpoints = await listCheckpoints(join(dir, "run"));
    assert.ok(checkpoints.length >= 1);
    for (const { path, step } of checkpoints) assert.equal((await loadCheckpoint(path)).step, step);
  } finally {
    await child.stderr.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

/** A tiny CPU run of 8x8 digits in `out`: batch 2, a metrics line every step, nothing else. */
async function tinyRunIn(out: string) {
  await initBackend("cpu");
  return {
    config: PRESETS.tiny,
    dataset: "mnist",
    data: await loadMnist({ imageSize: 8 }),
    batch: 2,
    seed: 1,
    out,
    sampleEvery: 0,
    evalEvery: 0,
    logEvery: 1,
    report: () => {},
  };
}

Deno.test("a new run refuses an --out that holds another run unless --resume or --overwrite", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const common = await tinyRunIn(dir);
    await runTraining({ ...common, steps: 4 });
    // A shorter new run would have left step 4 as the newest checkpoint for export and resume.
    // The other run files are its metrics.jsonl and curves.svg.
    await assert.rejects(
      () => runTraining({ ...common, steps: 2, seed: 2 }),
      (error: Error) => {
        assert.ok(error instanceof RangeError);
        assert.match(
          error.message,
          /^--out .* already holds a run \(1 checkpoint\(s\) up to .*ckpt-00000004\.ddpm, 2 other run file\(s\)\); pass --resume to continue it, --overwrite/,
        );
        return true;
      },
    );
    await assert.rejects(
      () => runTraining({ ...common, steps: 2, resume: true, overwrite: true }),
      /pass one/,
    );
    const notices: string[] = [];
    const result = await runTraining({
      ...common,
      steps: 2,
      seed: 2,
      overwrite: true,
      report: (event) => event.kind === "notice" && notices.push(event.message),
    });
    assert.equal(result.step, 2);
    assert.deepEqual((await listCheckpoints(dir)).map((c) => c.step), [2]);
    const metrics = (await Deno.readTextFile(join(dir, "metrics.jsonl"))).trim().split("\n");
    assert.deepEqual(metrics.map((line) => JSON.parse(line).step), [1, 2]);
    assert.match(notices[0], /^--overwrite: deleted the earlier run/);
    assert.ok(notices.some((n) => /^step 1 took [\d.]+ s/.test(n)), "a line at the first step");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--cooldown: a constant run resumed with a cool-down decays over its last steps, and the checkpoint keeps the setting", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const common = await tinyRunIn(dir);
    await runTraining({ ...common, steps: 4, optimizer: { lr: 1e-3, warmupSteps: 0 } });
    const notices: string[] = [];
    await runTraining({
      ...common,
      steps: 8,
      resume: true,
      optimizer: { cooldownSteps: 3 },
      report: (event) => event.kind === "notice" && notices.push(event.message),
    });
    const metrics = (await Deno.readTextFile(join(dir, "metrics.jsonl"))).trim().split("\n")
      .map((line) => JSON.parse(line));
    assert.deepEqual(metrics.map((m) => m.step), [1, 2, 3, 4, 5, 6, 7, 8]);
    // The update of 1-based step k uses the rate of 0-based step k - 1: the last three decay.
    const rates = metrics.map((m) => m.lr / 1e-3);
    const expected = [1, 1, 1, 1, 1, 3 / 4, 2 / 4, 1 / 4];
    rates.forEach((r, i) => assert.ok(Math.abs(r - expected[i]) < 1e-12, `step ${i + 1}: ${r}`));
    const saved = await loadCheckpoint(join(dir, "ckpt-00000008.ddpm"));
    const options = (saved.trainingState as { optimizerOptions: Record<string, number> })
      .optimizerOptions;
    assert.equal(options.cooldownSteps, 3);
    assert.match(notices[0], /learning rate decaying linearly over steps 6-8/);
    assert.throws(
      () => parseTrainArgs(["--steps", "4", "--cooldown", "5"]),
      /--cooldown must be in 0\.\.4 \(--steps\), got 5/,
    );
    // A checkpoint from before the setting existed resumes at a constant rate.
    delete options.cooldownSteps;
    assert.equal(toRunCheckpoint(saved).trainingState.optimizerOptions.cooldownSteps, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
