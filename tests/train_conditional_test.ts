import assert from "node:assert/strict";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { GraphProtoSchema, ModelProtoSchema } from "onnx-buf";
import * as tf from "@tensorflow/tfjs";
import { classifierFreeGuidance } from "../lib/guidance.ts";
import { toUint8 } from "../lib/image.ts";
import { decodePng, encodePng } from "../lib/png.ts";
import { createRng } from "../lib/rng.ts";
import { makeSchedule } from "../lib/schedule.ts";
import { loadOnnxModel, onnxDenoiser, readModelCard } from "../model/onnx.ts";
import { initBackend } from "../train/backend.ts";
import { loadCheckpoint } from "../train/checkpoint.ts";
import { countClasses, type Dataset, loadDataset } from "../train/data.ts";
import { buildOnnxModel, exportCheckpoint, refreshCard, writeOnnxFiles } from "../train/export.ts";
import { countParameters, describeUNet, PRESETS, validateConfig } from "../train/network.ts";
import { parseTrainArgs } from "../train/main.ts";
import { runTraining } from "../train/run.ts";
import { tfjsDenoiser } from "../train/tfjs_ops.ts";
import { Trainer } from "../train/trainer.ts";
import { card, randomWeights, TINY_CONDITIONAL } from "./_models.ts";

const schedule = makeSchedule();
const tiny = PRESETS.tiny;
const K = TINY_CONDITIONAL.numClasses as number; // 3; row K of the embedding is "no class"

/**
 * 8x8 images of two classes, bright top half (class 0) or bright bottom half (class 1), under
 * three class names: class 2 never occurs, so its embedding row must never move.
 */
function halvesDataset(count: number): Dataset {
  return {
    name: "halves",
    imageSize: 8,
    channels: 1,
    length: count,
    classNames: ["top", "bottom", "unused"],
    image: (i) => Float32Array.from({ length: 64 }, (_, p) => (p < 32) === (i % 2 === 0) ? 1 : -1),
    label: (i) => i % 2,
  };
}

/** The class embedding of a tfjs tensor map as rows of plain numbers. */
async function embeddingRows(trainer: Trainer): Promise<number[][]> {
  const { data, shape: [rows, width] } = (await trainer.state()).params["class_emb.w"];
  return Array.from({ length: rows }, (_, r) => [...data.subarray(r * width, (r + 1) * width)]);
}

const shape = [4, 1, 8, 8] as const;
const x = createRng(2).normal(4 * 64);
const t = Float32Array.of(3, 300, 600, 999);

Deno.test("a conditional config adds one embedding table of (classes + 1) rows; presets stay unconditional", () => {
  const plain = describeUNet(tiny).params;
  const conditional = describeUNet(TINY_CONDITIONAL).params;
  const table = conditional.find((p) => p.name === "class_emb.w");
  assert.deepEqual(table?.shape, [K + 1, 4 * tiny.ch], "rows 0..K-1 classes, row K no class");
  assert.equal(countParameters(conditional), countParameters(plain) + (K + 1) * 4 * tiny.ch);
  for (const preset of Object.values(PRESETS)) {
    assert.ok(!describeUNet(preset).params.some((p) => p.name.startsWith("class_emb")));
  }
  assert.throws(
    () => validateConfig({ ...tiny, numClasses: 2.5 }),
    /numClasses must be a positive integer, got 2.5/,
  );
  assert.throws(
    () => validateConfig({ ...tiny, numClasses: -1 }),
    /numClasses must be a positive integer, got -1/,
  );
});

Deno.test("training moves the embedding rows of the classes it sees, and the no-class row only with label dropout", async () => {
  await initBackend("cpu");
  const data = halvesDataset(8);
  const x0 = new Float32Array(4 * 64);
  for (let i = 0; i < 4; i++) x0.set(data.image(i), i * 64);
  const labels = Int32Array.from({ length: 4 }, (_, i) => data.label(i));
  for (const labelDropout of [0, 0.5, 1]) {
    const trainer = await Trainer.create({
      config: TINY_CONDITIONAL,
      schedule,
      labelDropout,
      optimizer: { warmupSteps: 0, lr: 1e-3 },
    }, 1);
    try {
      const initial = await embeddingRows(trainer);
      assert.ok(initial[K].every((v) => v === 0), "the no-class row starts at 0");
      assert.ok(initial.slice(0, K).every((row) => row.some((v) => v !== 0)), "classes do not");
      for (let step = 0; step < 4; step++) {
        await trainer.trainStep(x0, shape, createRng(10 + step), labels);
      }
      const rows = await embeddingRows(trainer);
      const moved = rows.map((row, r) => row.some((v, j) => v !== initial[r][j]));
      // Adam moves a row only where its gradient was ever non-zero: exactly the rows used.
      assert.deepEqual(moved, [
        labelDropout < 1,
        labelDropout < 1,
        false, // class 2 never occurs
        labelDropout > 0,
      ], `label dropout ${labelDropout}`);
    } finally {
      trainer.dispose();
    }
  }
});

Deno.test("a warm start from an unconditional network computes its function for no class", async () => {
  await initBackend("cpu");
  const weights = randomWeights(tiny, 4);
  const plain = new Map(Object.entries(weights).map(([k, v]) => [k, tf.tensor(v.data, v.shape)]));
  const trainer = await Trainer.create({ config: TINY_CONDITIONAL, schedule }, 9, {
    params: weights,
    ema: weights,
  });
  try {
    const reference = await tfjsDenoiser(plain, tiny)(x, t, shape);
    const denoiser = trainer.emaDenoiser();
    // The no-class row starts at zero and adds exactly 0; the class rows start apart.
    assert.deepEqual(await denoiser(x, t, shape, new Int32Array(4).fill(K)), reference);
    assert.deepEqual(await denoiser(x, t, shape), reference, "no labels is no class");
    for (const y of [0, 1, 2]) {
      const out = await denoiser(x, t, shape, new Int32Array(4).fill(y));
      assert.notDeepEqual(out, reference, `class ${y}`);
    }
    await assert.rejects(
      () =>
        Trainer.create({ config: { ...TINY_CONDITIONAL, ch: 16 }, schedule }, 9, {
          params: weights,
          ema: weights,
        }),
      /warm start: temb.dense0.w has shape \[8,32\], this network needs \[16,64\]/,
    );
  } finally {
    plain.forEach((p) => p.dispose());
    trainer.dispose();
  }
});

Deno.test("ONNX export with input y matches tfjs label by label, and the no-class row is the unconditional prediction", async () => {
  await initBackend("cpu");
  const weights = randomWeights(TINY_CONDITIONAL, 5);
  const params = new Map(Object.entries(weights).map(([k, v]) => [k, tf.tensor(v.data, v.shape)]));
  const model = await loadOnnxModel(
    buildOnnxModel(weights, TINY_CONDITIONAL, card(TINY_CONDITIONAL)),
  );
  try {
    const network = tfjsDenoiser(params, TINY_CONDITIONAL);
    const onnx = onnxDenoiser(model, { maxBatch: 3 }); // 3 + 1: labels split with the batch
    const labels = Int32Array.of(0, 2, K, 1);
    const reference = await network(x, t, shape, labels);
    const got = await onnx(x, t, shape, labels);
    const scale = reference.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const maxAbs = reference.reduce((m, v, i) => Math.max(m, Math.abs(v - got[i])), 0);
    // The bound of tests/export_test.ts: float32 over ~50 layers in two summation orders.
    assert.ok(scale > 0.1 && maxAbs <= 1e-4 * scale, `max |onnx - tfjs| ${maxAbs}, scale ${scale}`);
    // The labels reach the network: another label, another output (by the output's own size).
    const other = await onnx(x, t, shape, Int32Array.of(1, 0, 0, 2));
    const change = other.reduce((m, v, i) => Math.max(m, Math.abs(v - got[i])), 0);
    assert.ok(change > 0.01 * scale, `changing the labels moved the output by only ${change}`);
    // Labels left out mean "no class", in both runtimes.
    assert.deepEqual(await onnx(x, t, shape), await onnx(x, t, shape, new Int32Array(4).fill(K)));
    assert.deepEqual(
      await network(x, t, shape),
      await network(x, t, shape, new Int32Array(4).fill(K)),
    );
    // Guidance 0 is the conditional prediction; "no class" rows are never guided.
    const guided0 = classifierFreeGuidance(onnx, { labels, nullClass: K, guidance: 0 });
    assert.deepEqual(await guided0(x, t, shape), got);
    const guided = await classifierFreeGuidance(onnx, { labels, nullClass: K, guidance: 2 })(
      x,
      t,
      shape,
    );
    assert.deepEqual(guided.subarray(128, 192), got.subarray(128, 192));
    const unconditional = await onnx(x, t, shape);
    for (const i of [0, 1, 3]) {
      for (let j = i * 64; j < (i + 1) * 64; j++) {
        const expected = 3 * got[j] - 2 * unconditional[j];
        assert.ok(Math.abs(guided[j] - expected) <= 1e-5 * (1 + Math.abs(expected)), `value ${j}`);
      }
    }
  } finally {
    params.forEach((p) => p.dispose());
    await model.session.release();
  }
});

Deno.test("a conditional run on an image folder takes its classes from the sub-folders, resumes, and exports input y", async () => {
  await initBackend("cpu");
  const dir = await Deno.makeTempDir();
  try {
    // 8x8 PNGs: bright top half in top/, bright bottom half in bottom/ (8 of each).
    const halves = halvesDataset(16);
    for (let i = 0; i < 16; i++) {
      const folder = `${dir}/images/${halves.classNames?.[halves.label(i)]}`;
      await Deno.mkdir(folder, { recursive: true });
      const data = toUint8(halves.image(i));
      await Deno.writeFile(
        `${folder}/${i}.png`,
        encodePng({ data, width: 8, height: 8, channels: 1 }),
      );
    }
    const common = {
      config: tiny,
      conditional: true,
      labelDropout: 0.2,
      dataset: `folder:${dir}/images`,
      batch: 4,
      seed: 3,
      out: `${dir}/run`,
      sampleEvery: 3,
      sampleSampler: "unipc" as const,
      sampleSteps: 4,
      evalEvery: 3,
      logEvery: 1,
      report: () => {},
    };
    await runTraining({ ...common, steps: 2 });
    const result = await runTraining({ ...common, steps: 3, resume: true });
    assert.equal(result.step, 3);
    // The preview grid at step 3, drawn with UniPC: 16 tiles of 8x8 in 4 columns.
    const grid = decodePng(await Deno.readFile(`${dir}/run/samples/step-00000003.png`));
    assert.deepEqual([grid.width, grid.height], [4 * 8 + 5 * 2, 4 * 8 + 5 * 2]);
    const ckpt = await loadCheckpoint(result.checkpoint);
    assert.equal(ckpt.config.numClasses, 2);
    assert.deepEqual(ckpt.metadata.classNames, ["bottom", "top"], "sorted sub-folder names");
    assert.equal((ckpt.trainingState as { labelDropout: number }).labelDropout, 0.2);
    const exported = await exportCheckpoint(result.checkpoint, `${dir}/halves.onnx`);
    assert.deepEqual(exported.modelCard.classNames, ["bottom", "top"]);
    assert.match(
      exported.modelCard.inputs.y ?? "",
      /int64 \[N\]: class of each image, 0\.\.1, or 2 for no class/,
    );
    // The card counts the classes of the training split (14 of the 16 images at seed 3), the
    // prior a request with no label draws from.
    const { train: trained } = await loadDataset(`folder:${dir}/images`, { seed: 3, imageSize: 8 });
    const counts = countClasses(trained);
    assert.equal(counts.reduce((a, b) => a + b), 14);
    assert.deepEqual(ckpt.metadata.classCounts, counts);
    assert.deepEqual(exported.modelCard.classCounts, counts);
    const bytes = await Deno.readFile(`${dir}/halves.onnx`);
    assert.deepEqual(readModelCard(bytes).classNames, ["bottom", "top"]);
    assert.deepEqual(readModelCard(bytes).classCounts, counts);
    // A model exported before cards had counts: --refresh adds them from the same split, in the
    // .json and the metadata, and leaves the graph byte for byte.
    const { classCounts: _, ...older } = exported.modelCard;
    const olderPath = `${dir}/older.onnx`;
    await writeOnnxFiles(
      buildOnnxModel((await loadCheckpoint(result.checkpoint)).ema, older.config, older),
      older,
      olderPath,
    );
    const before = await Deno.readFile(olderPath);
    assert.equal(readModelCard(before).classCounts, undefined);
    assert.deepEqual((await refreshCard(olderPath)).added, ["classCounts"]);
    const after = await Deno.readFile(olderPath);
    const refreshed = readModelCard(after);
    assert.deepEqual(refreshed.classCounts, counts);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(`${dir}/older.json`)), refreshed);
    assert.deepEqual(
      Object.keys(refreshed),
      Object.keys(exported.modelCard).filter((key) => key in refreshed),
      "the counts sit where an export writes them",
    );
    const graph = (file: Uint8Array) => {
      const parsed = fromBinary(ModelProtoSchema, file).graph;
      assert.ok(parsed, "the model has a graph");
      return toBinary(GraphProtoSchema, parsed);
    };
    assert.deepEqual(graph(after), graph(before));
    assert.deepEqual((await refreshCard(olderPath)).added, [], "up to date: nothing to add");
    assert.deepEqual(await Deno.readFile(olderPath), after, "and nothing written");
    const model = await loadOnnxModel(bytes);
    try {
      assert.deepEqual([...model.session.inputNames], ["x", "t", "y"]);
    } finally {
      await model.session.release();
    }
    // An unconditional export has no y.
    const plainModel = await loadOnnxModel(
      buildOnnxModel(randomWeights(tiny, 1), tiny, card(tiny)),
    );
    try {
      assert.deepEqual([...plainModel.session.inputNames], ["x", "t"]);
    } finally {
      await plainModel.session.release();
    }
    // A dataset without classes cannot train a conditional network.
    const unlabelled: Dataset = { ...halvesDataset(8), classNames: undefined, label: () => -1 };
    await assert.rejects(
      runTraining({
        ...common,
        dataset: "none",
        data: { train: unlabelled, heldOut: unlabelled },
        steps: 1,
        out: `${dir}/unlabelled`,
      }),
      /a conditional network needs a dataset with at least 2 classes; halves has 0/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train flags: --conditional, --label-dropout and --init-from reach the run options", () => {
  const { options } = parseTrainArgs([
    "--conditional",
    "--label-dropout",
    "0.2",
    "--init-from",
    "runs/mnist-main/ckpt-00003400.ddpm",
  ]);
  assert.equal(options.conditional, true);
  assert.equal(options.labelDropout, 0.2);
  assert.equal(options.initFrom, "runs/mnist-main/ckpt-00003400.ddpm");
  assert.equal(parseTrainArgs([]).options.conditional, false);
  assert.equal(parseTrainArgs([]).options.labelDropout, 0.1, "Ho & Salimans' 0.1 by default");
  assert.throws(
    () => parseTrainArgs(["--label-dropout", "1.5"]),
    /--label-dropout must be in \[0, 1\], got 1.5/,
  );
});
