import assert from "node:assert/strict";
import { loadCheckpoint } from "../train/checkpoint.ts";
import { buildOnnxModel, modelCard } from "../train/export.ts";
import { PRESETS } from "../train/network.ts";
import { loadInitialWeights, weightsFromOnnx } from "../train/onnx_import.ts";
import type { RunEvent } from "../train/run.ts";
import { loadRunCheckpoint } from "../train/run_state.ts";
import { card, randomWeights, TINY_CONDITIONAL } from "./_models.ts";
import { runTinyTraining } from "./_tiny_run.ts";

Deno.test("weightsFromOnnx gives back every parameter the exporter wrote, bit for bit", () => {
  for (const config of [PRESETS.tiny, TINY_CONDITIONAL]) {
    const weights = randomWeights(config, 3);
    const bytes = buildOnnxModel(weights, config, card(config));
    const back = weightsFromOnnx(bytes, config);
    assert.deepEqual(Object.keys(back).sort(), Object.keys(weights).sort());
    for (const [name, { shape, data }] of Object.entries(weights)) {
      assert.deepEqual(back[name].shape, shape, name);
      // Compared as bits: the kernels' layout round trip must not move a single value.
      assert.deepEqual(
        new Uint32Array(back[name].data.buffer),
        new Uint32Array(data.slice().buffer),
        name,
      );
    }
  }
});

Deno.test("weightsFromOnnx names a missing parameter and a wrong size", () => {
  const config = PRESETS.tiny;
  const bytes = buildOnnxModel(randomWeights(config, 3), config, card(config));
  assert.throws(
    () => weightsFromOnnx(bytes, TINY_CONDITIONAL, "m.onnx"),
    /m\.onnx has no initializer for parameter class_emb\.w/,
  );
  assert.throws(
    () => weightsFromOnnx(bytes, { ...config, ch: config.ch * 2 }, "m.onnx"),
    /m\.onnx: temb\.dense0\.w holds 256 values, the card's network needs \[16,64\]/,
  );
});

Deno.test("a run starts from an exported model's weights (--init-from model.onnx)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const config = PRESETS.tiny;
    const weights = randomWeights(config, 5);
    const path = `${dir}/start.onnx`;
    await Deno.writeFile(
      path,
      buildOnnxModel(weights, config, { ...card(config), trainingSteps: 7 }),
    );
    const loaded = await loadInitialWeights(path);
    assert.equal(loaded.step, 7);
    assert.deepEqual(loaded.config, config);
    assert.equal(loaded.ema, loaded.params, "an export holds one set of weights, used for both");

    const result = await runTinyTraining(`${dir}/run`, { initFrom: path, steps: 1 });
    const saved = await loadRunCheckpoint(result.checkpoint);
    assert.deepEqual(saved.metadata.initializedFrom, { path, step: 7 });
    // One Adam step at the first warm-up rate (2e-7) moves no weight by more than 1e-6; the
    // run's own initialisation differs from these weights by about 0.1.
    let largest = 0;
    for (const [name, { data }] of Object.entries(weights)) {
      const trained = saved.params[name].data;
      for (let i = 0; i < data.length; i++) {
        largest = Math.max(largest, Math.abs(trained[i] - data[i]));
      }
    }
    assert.ok(largest < 1e-6, `a weight moved by ${largest}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a run from another run's weights on its dataset keeps that run's held-out split", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const notices: string[] = [];
    const report = (event: RunEvent) => {
      if (event.kind === "notice") notices.push(event.message);
    };
    // `data: undefined`: the runs load mnist by name and split it by the trainer's rules.
    const start = await runTinyTraining(`${dir}/start`, { data: undefined, seed: 0 });
    assert.equal((await loadRunCheckpoint(start.checkpoint)).metadata.splitSeed, 0);

    const tuned = await runTinyTraining(`${dir}/tuned`, {
      data: undefined,
      seed: 5,
      initFrom: start.checkpoint,
      report,
    });
    const saved = await loadRunCheckpoint(tuned.checkpoint);
    assert.equal(saved.seed, 5, "its own seed still draws its noise and order");
    assert.equal(saved.metadata.splitSeed, 0);
    assert.match(notices[0], /keeps that run's train \/ held-out split \(seed 0\)/);
    assert.equal(modelCard(await loadCheckpoint(tuned.checkpoint), "ema").splitSeed, 0);
    const resumed = await runTinyTraining(`${dir}/tuned`, {
      data: undefined,
      resume: true,
      steps: 2,
    });
    assert.equal((await loadRunCheckpoint(resumed.checkpoint)).metadata.splitSeed, 0);

    // A resume that repeats the starting command's --init-from continues the run without reading
    // the start again (it is gone here); another start is a different run, refused by name.
    const aside = `${dir}/start-aside.ddpm`;
    await Deno.rename(start.checkpoint, aside);
    const again = await runTinyTraining(`${dir}/tuned`, {
      data: undefined,
      resume: true,
      initFrom: start.checkpoint,
      steps: 3,
      report,
    });
    const continued = await loadRunCheckpoint(again.checkpoint);
    assert.equal(continued.step, 3);
    assert.deepEqual(continued.metadata.initializedFrom?.path, start.checkpoint);
    assert.ok(
      notices.some((n) =>
        /resuming from .* at step 2 \(--init-from .* is where the run started/.test(n)
      ),
      notices.join("\n"),
    );
    await assert.rejects(
      runTinyTraining(`${dir}/tuned`, { data: undefined, resume: true, initFrom: aside, steps: 4 }),
      new RegExp(
        `^RangeError: --resume continues the run in ${dir}/tuned, which started from .*start/` +
          `.*, not from --init-from ${aside}: drop --init-from to resume it`,
      ),
    );
    await assert.rejects(
      runTinyTraining(`${dir}/start-resumed`, { data: undefined, seed: 0 }).then(() =>
        runTinyTraining(`${dir}/start-resumed`, {
          data: undefined,
          resume: true,
          initFrom: aside,
          steps: 2,
        })
      ),
      /which started from its seed, not from --init-from/,
    );

    // An export of another dataset: the run splits its own data by its own seed.
    const config = PRESETS.tiny;
    const other = `${dir}/clothes.onnx`;
    await Deno.writeFile(
      other,
      buildOnnxModel(randomWeights(config, 5), config, {
        ...card(config),
        dataset: "fashion-mnist",
        seed: 0,
      }),
    );
    const loaded = await loadInitialWeights(other);
    assert.deepEqual([loaded.dataset, loaded.splitSeed], ["fashion-mnist", 0]);
    const digits = await runTinyTraining(`${dir}/digits`, {
      data: undefined,
      seed: 5,
      initFrom: other,
    });
    assert.equal((await loadRunCheckpoint(digits.checkpoint)).metadata.splitSeed, 5);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
