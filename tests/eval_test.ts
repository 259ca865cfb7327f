import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { nativeRuntime } from "../model/native.ts";
import { loadOnnxModel, onnxDenoiser, type OnnxModel } from "../model/onnx.ts";
import { classifierFreeGuidance, drawClasses } from "../lib/guidance.ts";
import { featureStatistics, frechetDistance, frechetParts } from "../lib/frechet.ts";
import { variationalBound } from "../lib/likelihood.ts";
import { sample } from "../lib/samplers.ts";
import { makeSchedule } from "../lib/schedule.ts";
import { imagesAt, loadDataset, splitIndices } from "../train/data.ts";
import { initBackend } from "../train/backend.ts";
import {
  classifierForward,
  classifierGraph,
  describeClassifier,
  MNIST_CLASSIFIER,
} from "../train/classifier.ts";
import type { NamedTensors } from "../train/checkpoint.ts";
import {
  classGaps,
  classify,
  classMatchedDraw,
  type EvalOptions,
  evalReference,
  type EvalResult,
  evalTable,
  evaluate,
  loadClassifier,
  parseGuidance,
  parseInterval,
  parseSamplers,
  parseSeedList,
  rowGuidance,
  type Session,
} from "../train/eval.ts";
import { onnxModelBytes } from "../train/export.ts";
import { initParameters, PRESETS } from "../train/network.ts";
import { TfjsOps } from "../train/tfjs_ops.ts";
import { createRng } from "../lib/rng.ts";
import { randomOnnxModel } from "./_models.ts";

function randomClassifier(): { weights: NamedTensors; bytes: Uint8Array } {
  const weights: NamedTensors = {};
  for (const [name, tensor] of initParameters(describeClassifier(MNIST_CLASSIFIER).params, 4)) {
    weights[name] = tensor;
  }
  const bytes = onnxModelBytes(classifierGraph(weights, MNIST_CLASSIFIER), {
    inputs: [{ name: "x", dims: ["N", 1, 28, 28] }],
    outputs: [{ name: "features", dims: ["N", 128] }, { name: "logits", dims: ["N", 10] }],
  }, { name: "classifier", docString: "test", metadata: [] });
  return { weights, bytes };
}

Deno.test("the classifier's ONNX export gives the same features as tfjs", async () => {
  await initBackend("cpu");
  const { weights, bytes } = randomClassifier();
  const session = await loadClassifier(bytes, "wasm");
  const x = createRng(2).normal(3 * 784);
  const got = await classify(session, x, 3);
  const vars = new Map(Object.entries(weights).map(([k, v]) => [k, tf.tensor(v.data, v.shape)]));
  const reference = tf.tidy(() =>
    classifierForward(new TfjsOps(vars), tf.tensor4d(x, [3, 28, 28, 1]), MNIST_CLASSIFIER).features
  );
  const expected = (await reference.data()) as Float32Array;
  tf.dispose([reference, ...vars.values()]);
  const scale = Math.max(...expected.map(Math.abs));
  // float32 in two summation orders over four convolutions: 1e-5 of the scale.
  expected.forEach((v, i) =>
    assert.ok(Math.abs(v - got.features[i]) <= 1e-5 * scale, `feature ${i}`)
  );
  assert.equal(got.dim, 128);
  await session.session.release();
});

/** Runs `run` with `bytes` and a random classifier loaded on WebAssembly, then releases both. */
async function withSessions<T>(
  bytes: Uint8Array,
  run: (model: OnnxModel, classifier: Session) => Promise<T>,
): Promise<T> {
  const model = await loadOnnxModel(bytes, "wasm");
  const classifier = await loadClassifier(randomClassifier().bytes, "wasm");
  try {
    return await run(model, classifier);
  } finally {
    await model.session.release();
    await classifier.session.release();
  }
}

/** evaluate() on a random mnist-preset model with T = 20 (quick bound and samplers). */
async function evaluateRandomModel(
  provider: "wasm" | "native",
  options: Partial<Pick<EvalOptions, "floorDraws" | "seed">> = {},
): Promise<{ result: EvalResult }> {
  const bytes = randomOnnxModel(PRESETS.mnist, 1, {
    schedule: { kind: "linear", timesteps: 20, betaStart: 1e-4, betaEnd: 0.2 },
    dataset: "mnist", // eval reads the held-out images of the card's dataset
  });
  const runtime = { native: provider === "native" ? nativeRuntime : undefined };
  const model = await loadOnnxModel(bytes, provider, "model", runtime);
  const classifier = await loadClassifier(randomClassifier().bytes, provider, runtime);
  try {
    const result = await evaluate({
      model,
      classifier,
      samples: 12,
      samplers: parseSamplers("ddpm:20,ddim:4"),
      nllImages: 3,
      batch: 6,
      seed: 0,
      log: () => {},
      ...options,
    });
    return { result };
  } finally {
    await model.session.release();
    await classifier.session.release();
  }
}

Deno.test("evaluate() runs every part end to end on a small random model", async () => {
  const { result } = await evaluateRandomModel("wasm");
  assert.equal(result.samplers.length, 2);
  for (const row of result.samplers) {
    assert.equal(row.classHistogram.reduce((a, b) => a + b, 0), 12);
    assert.ok(
      Number.isFinite(row.frechet) && row.frechet >= -1e-9,
      `Fréchet distance ${row.frechet}`,
    );
  }
  assert.ok(result.nll && result.nll.bitsPerDim > 0 && result.nll.images === 3);
  assert.ok(Number.isFinite(result.realFloor));
  assert.match(evalTable(result, 12), /\| ddim \| 4 \|/);
});

Deno.test("the floor is the mean of its draws, draw d being seed + d's training images", async () => {
  const { result } = await evaluateRandomModel("wasm", { floorDraws: 3, seed: 4 });
  const draws = result.realFloorDraws;
  assert.equal(draws.length, 3);
  const mean = (draws[0] + draws[1] + draws[2]) / 3;
  assert.ok(Math.abs(result.realFloor - mean) < 1e-12);
  const sd = Math.sqrt(draws.reduce((a, v) => a + (v - mean) ** 2, 0) / 2);
  assert.ok(Math.abs(result.realFloorSd - sd) < 1e-12);
  assert.ok(new Set(draws).size === 3, `three different draws: ${draws}`);
  // One draw at seed 5 is the second draw at seed 4.
  const single = (await evaluateRandomModel("wasm", { floorDraws: 1, seed: 5 })).result;
  assert.deepEqual([single.realFloor, single.realFloorSd], [draws[1], 0]);
  // The table divides each distance by the mean floor.
  const row = result.samplers[0];
  const ratio = (row.frechet / result.realFloor).toFixed(2);
  const table = evalTable(result, 12);
  assert.ok(table.includes(`| ${row.frechet.toFixed(2)} | ${ratio} |`), table);
  assert.ok(
    table.includes(`${result.realFloor.toFixed(2)} ± ${result.realFloorSd.toFixed(2)} | 1 |`),
    table,
  );
});

Deno.test("evaluate() on native onnxruntime gives WebAssembly's figures", async () => {
  const [wasm, native] = [await evaluateRandomModel("wasm"), await evaluateRandomModel("native")];
  // The two runtimes' network outputs differ by a few 1e-6 (serve_runtime_test measures it on
  // the shipped models); 20 sampler steps and the feature statistics keep that far below 1e-3
  // relative, while a wrong input layout or provider mix-up would change the figures entirely.
  const close = (a: number, b: number, what: string) =>
    assert.ok(Math.abs(a - b) <= 1e-3 * Math.max(1, Math.abs(a)), `${what}: ${a} vs ${b}`);
  close(wasm.result.realFloor, native.result.realFloor, "floor");
  close(wasm.result.nll?.bitsPerDim ?? NaN, native.result.nll?.bitsPerDim ?? NaN, "bits/dim");
  wasm.result.samplers.forEach((row, i) => {
    close(row.frechet, native.result.samplers[i].frechet, `${row.sampler} Fréchet distance`);
    assert.deepEqual(row.classHistogram, native.result.samplers[i].classHistogram);
  });
});

Deno.test("sampler settings parse, and bad ones are named", () => {
  assert.deepEqual(parseSamplers("ddpm:1000, ddim:50,dpmpp-2m:15,unipc:10"), [
    { sampler: "ddpm", steps: 1000 },
    { sampler: "ddim", steps: 50 },
    { sampler: "dpmpp-2m", steps: 15 },
    { sampler: "unipc", steps: 10 },
  ]);
  assert.throws(
    () => parseSamplers("euler:10"),
    /look like ddim:50, one of ddpm, ddim, dpmpp-2m, dpmpp-2m-sde, unipc and a step count, got "euler:10"/,
  );
  assert.throws(() => parseSamplers("unipc:0"), /got "unipc:0"/);
});

Deno.test("evaluate() samples a conditional model digit by digit at each guidance weight", async () => {
  const bytes = randomOnnxModel({ ...PRESETS.mnist, numClasses: 10 }, 1, {
    schedule: { kind: "linear", timesteps: 20, betaStart: 1e-4, betaEnd: 0.2 },
    dataset: "mnist", // eval reads the held-out images of the card's dataset
  });
  await withSessions(bytes, async (model, classifier) => {
    const result = await evaluate({
      model,
      classifier,
      samples: 10,
      samplers: parseSamplers("ddim:3"),
      nllImages: 0,
      batch: 5,
      seed: 0,
      guidance: [null, 0, 2],
      guidanceInterval: [5, 15],
      log: () => {},
    });
    assert.deepEqual(result.samplers.map((r) => r.guidance), [null, 0, 2]);
    assert.equal(result.samplers[0].labelAccuracy, undefined, "no class asked for, none scored");
    for (const row of result.samplers.slice(1)) {
      const share = row.labelAccuracy as number;
      assert.ok(share >= 0 && share <= 1 && Number.isInteger(share * 10), `accuracy ${share}`);
    }
    const table = evalTable(result, 10);
    assert.match(table, /\| sampler \| steps \| guidance \| label accuracy \|/);
    // The interval is reported on the guided row only.
    assert.deepEqual(result.samplers.map((r) => r.guidanceInterval), [undefined, undefined, [
      5,
      15,
    ]]);
    assert.match(table, /\| ddim \| 3 \| 2 \(t 5-15\) \| \d+\.\d% ± \d+\.\d \|/);
    assert.match(table, /\| ddim \| 3 \| none \| - \|/);
    // The "no class" row asks for no classes, so it has no class-matched floor; the rows asking
    // for the ten digits in turn share one.
    const floors = result.samplers.map((r) => r.classMatchedFloor);
    assert.equal(floors[0], undefined);
    assert.ok(floors[1] !== undefined && floors[1] > 0 && floors[2] === floors[1]);
    assert.match(table, /\| none \| - \| [\d.]+ \| [\d.]+ \| - \|/);
  });
});

Deno.test("evaluate() against MNIST's test digits: the same samples, 10,000 real digits per class as MNIST has them", async () => {
  const bytes = randomOnnxModel({ ...PRESETS.mnist, numClasses: 10 }, 1, {
    schedule: { kind: "linear", timesteps: 20, betaStart: 1e-4, betaEnd: 0.2 },
    dataset: "mnist",
  });
  await withSessions(bytes, async (model, classifier) => {
    const run = (reference?: string) =>
      evaluate({
        model,
        classifier,
        samples: 20, // two of each class: a class's gap needs two samples
        samplers: parseSamplers("ddim:2"),
        nllImages: 0,
        batch: 20,
        seed: 0,
        floorDraws: 1,
        guidance: [0],
        log: () => {},
        ...(reference ? { reference } : {}),
      });
    const [own, test] = [await run(), await run("mnist-full")];
    assert.deepEqual([own.reference, own.heldOutImages], ["mnist", 1000]);
    assert.deepEqual([test.reference, test.heldOutImages], ["mnist-full", 10_000]);
    // The samples do not depend on the reference; their distance and the floor do.
    assert.deepEqual(test.samplers[0].classHistogram, own.samplers[0].classHistogram);
    assert.notEqual(test.samplers[0].frechet, own.samplers[0].frechet);
    assert.notEqual(test.realFloor, own.realFloor);
    // Each class's real images are MNIST's test digits of that class (LeCun et al.'s counts).
    assert.deepEqual(
      test.samplers[0].classGaps?.map((g) => g?.real),
      [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
    );
    // The ceiling a row's label accuracy is read against: the classifier on the reference itself.
    const { heldOut } = await loadDataset("mnist-full");
    const all = Array.from({ length: heldOut.length }, (_, i) => i);
    const { classes } = await classify(classifier, imagesAt(heldOut, all), all.length);
    const right = all.filter((i) => classes[i] === heldOut.label(i)).length;
    assert.equal(test.referenceAccuracy, right / 10_000);
    assert.match(
      evalTable(test, 20),
      new RegExp(`reads ${(right / 100).toFixed(1)}% of the 10,000 real held-out images`),
    );
  });
});

Deno.test("a reference must be held out from every model of the dataset: bad ones are named", () => {
  assert.equal(evalReference("mnist", undefined), "mnist");
  assert.equal(evalReference("mnist", "mnist-full"), "mnist-full");
  assert.equal(evalReference("mnist-full", undefined), "mnist-full");
  // The mnist package's digits are MNIST training digits, which an mnist-full model trained on.
  assert.throws(
    () => evalReference("mnist-full", "mnist"),
    /reference must be one of mnist-full for a model of mnist-full .*got "mnist"/,
  );
  assert.throws(
    () => evalReference("fashion-mnist", "mnist-full"),
    /reference must be one of fashion-mnist for a model of fashion-mnist .*got "mnist-full"/,
  );
});

Deno.test("guidance weights parse, and bad ones are named", () => {
  assert.deepEqual(parseGuidance("none,0, 1,3.5,any,any:0,any:2.5,default"), [
    null,
    0,
    1,
    3.5,
    "any",
    "any:0",
    "any:2.5",
    "default",
  ]);
  assert.throws(
    () => parseGuidance("1,-2"),
    /weights >= 0, none, default, any or any:<weight>, such as none,any,0,1,3, got "-2"/,
  );
  assert.throws(() => parseGuidance("1,,2"), /got ""/);
  assert.throws(() => parseGuidance("all"), /got "all"/);
  assert.throws(() => parseGuidance("any:-1"), /got "any:-1"/);
  // The rows' classes and guidance: the API's defaults for default and any (T = 1000), the
  // default weight the row's sampler's.
  assert.deepEqual(rowGuidance(null, 1000, "dpmpp-2m"), null);
  assert.deepEqual(rowGuidance(2, 1000, "dpmpp-2m"), { drawn: false, weight: 2, interval: null });
  assert.deepEqual(rowGuidance(2, 1000, "dpmpp-2m", [5, 9]), {
    drawn: false,
    weight: 2,
    interval: [5, 9],
  });
  assert.deepEqual(rowGuidance(0, 1000, "dpmpp-2m", [5, 9]), {
    drawn: false,
    weight: 0,
    interval: null,
  });
  assert.deepEqual(rowGuidance("default", 1000, "dpmpp-2m"), {
    drawn: false,
    weight: 1,
    interval: [80, 470],
  });
  assert.deepEqual(rowGuidance("default", 1000, "dpmpp-2m-sde"), {
    drawn: false,
    weight: 0.5,
    interval: [80, 330],
  });
  assert.deepEqual(rowGuidance("any", 1000, "dpmpp-2m"), {
    drawn: true,
    weight: 0,
    interval: null,
  });
  assert.deepEqual(rowGuidance("any:1", 1000, "dpmpp-2m", [80, 470]), {
    drawn: true,
    weight: 1,
    interval: [80, 470],
  });
  assert.deepEqual(rowGuidance("any:0", 1000, "dpmpp-2m"), {
    drawn: true,
    weight: 0,
    interval: null,
  });
  assert.deepEqual(rowGuidance("any:3", 1000, "dpmpp-2m"), {
    drawn: true,
    weight: 3,
    interval: null,
  });
  assert.deepEqual(parseInterval("100-500"), [100, 500]);
  assert.deepEqual(parseInterval(" 0 - 0 "), [0, 0]);
  for (const bad of ["500-100", "100", "-5-10", "a-b", "1.5-3"]) {
    assert.throws(
      () => parseInterval(bad),
      new RegExp(`two timesteps from-to with from <= to, such as 100-500, got "${bad}"`),
    );
  }
});

Deno.test("evaluate() samples 'any' with each batch's drawn classes and the API's guidance, and bounds the class mixture", async () => {
  const schedule = { kind: "linear" as const, timesteps: 20, betaStart: 1e-4, betaEnd: 0.2 };
  // A card whose training classes were uneven: the drawn rows and the mixture's prior use them.
  const classCounts = [40, 10, 10, 10, 10, 10, 10, 10, 10, 30];
  const bytes = randomOnnxModel({ ...PRESETS.mnist, numClasses: 10 }, 1, {
    schedule,
    dataset: "mnist",
    classCounts,
  });
  await withSessions(bytes, async (model, classifier) => {
    const [samples, batch, seed] = [10, 4, 3];
    const result = await evaluate({
      model,
      classifier,
      samples,
      samplers: parseSamplers("ddim:3"),
      nllImages: 2,
      nllClass: "mixture",
      batch,
      seed,
      guidance: ["any", "default"],
      log: () => {},
    });
    // The row, redone here: per batch the classes a request of its size and seed draws,
    // sampled unguided, then classified.
    const network = onnxDenoiser(model, { maxBatch: batch });
    const images = new Float32Array(samples * 784);
    const drawn = new Int32Array(samples);
    for (let start = 0; start < samples; start += batch) {
      const n = Math.min(batch, samples - start);
      drawn.set(drawClasses(seed + 1000 + start, n, 10, classCounts), start);
      const out = await sample(
        classifierFreeGuidance(network, { labels: drawn.slice(start, start + n), nullClass: 10 }),
        {
          schedule: makeSchedule(schedule),
          shape: [n, 1, 28, 28],
          sampler: "ddim",
          steps: 3,
          seed: seed + 1000 + start,
        },
      );
      images.set(out, start * 784);
    }
    const { classes } = await classify(classifier, images, samples);
    const histogram = new Array(10).fill(0);
    for (const c of classes) histogram[c]++;
    const [row, guided] = result.samplers;
    assert.equal(row.guidance, "any");
    assert.deepEqual(row.classHistogram, histogram);
    assert.equal(row.labelAccuracy, classes.filter((c, i) => c === drawn[i]).length / samples);
    assert.match(
      evalTable(result, samples),
      /\| ddim \| 3 \| any: 0 \| \d+\.\d% ± \d+\.\d \|/,
    );
    // "default" is the API's default for a named class: T = 20 here, so w = 1 over 2-9.
    assert.deepEqual([guided.guidance, guided.guidanceWeight, guided.guidanceInterval], [
      "default",
      1,
      [2, 9],
    ]);
    assert.match(evalTable(result, samples), /\| ddim \| 3 \| default: 1 \(t 2-9\) \|/);
    // Each row's class-matched floor, redone: 8 draws of training images with the row's class
    // counts (the drawn classes; one of each digit for the row asking in turn) against the
    // held-out images.
    const split = await loadDataset("mnist", { seed: model.card.seed ?? 0 });
    const held = await classify(
      classifier,
      imagesAt(split.heldOut, [...Array(split.heldOut.length).keys()]),
      split.heldOut.length,
    );
    const target = featureStatistics(held.features, held.dim);
    const byClass: number[][] = Array.from({ length: 10 }, () => []);
    for (let i = 0; i < split.train.length; i++) byClass[split.train.label(i)].push(i);
    const matchedFloor = async (classes: Int32Array) => {
      const counts = new Array(10).fill(0);
      for (const c of classes) counts[c]++;
      let sum = 0;
      for (let d = 0; d < 8; d++) {
        const indices = classMatchedDraw(byClass, counts, seed + d);
        const got = await classify(classifier, imagesAt(split.train, indices), indices.length);
        const stats = featureStatistics(got.features, got.dim);
        sum += frechetDistance(stats.mean, stats.covariance, target.mean, target.covariance, 128);
      }
      return sum / 8;
    };
    const inTurn = Int32Array.from({ length: samples }, (_, i) => i % 10);
    for (const [r, classes] of [[row, drawn], [guided, inTurn]] as const) {
      const { classMatchedFloor: floor, classMatchedFloorSd: sd } = r;
      assert.ok(floor !== undefined && sd !== undefined, "a row asking for classes has one");
      const expected = await matchedFloor(classes);
      assert.ok(Math.abs(floor - expected) < 1e-9 * expected, `${floor} vs ${expected}`);
      assert.ok(sd > 0);
      assert.ok(
        evalTable(result, samples).includes(
          `| ${(r.frechet / result.realFloor).toFixed(2)} | ${(r.frechet / floor).toFixed(2)} (${
            floor.toFixed(2)
          } ± ${sd.toFixed(2)}) |`,
        ),
      );
    }
    // The drawn row's distance in parts, from the images redone above against the held-out
    // images; its per-class gaps by the classes drawn against the held-out digits' labels.
    const generated = await classify(classifier, images, samples);
    const stats = featureStatistics(generated.features, generated.dim);
    const parts = frechetParts(stats.mean, stats.covariance, target.mean, target.covariance, 128);
    assert.ok(Math.abs(row.frechetParts.means - parts.means) < 1e-9 * parts.means);
    assert.ok(Math.abs(row.frechetParts.covariances - parts.covariances) < 1e-9 * row.frechet);
    assert.equal(row.frechetParts.means + row.frechetParts.covariances, row.frechet);
    const heldLabels = [...Array(split.heldOut.length).keys()].map((i) => split.heldOut.label(i));
    assert.deepEqual(
      row.classGaps,
      classGaps(generated.features, drawn, held.features, heldLabels, 128, 10),
    );
    // Ten samples over ten classes: a class with fewer than two samples has no gap.
    const drawnCounts = [...Array(10).keys()].map((c) => drawn.filter((d) => d === c).length);
    assert.deepEqual(row.classGaps?.map((g) => g === null), drawnCounts.map((k) => k < 2));

    // The mixture's bound: each held-out image's bound with its own class, plus -log2 p(y) bits
    // under the card's class shares (counts / 150).
    const { heldOut } = await loadDataset("mnist", { seed: model.card.seed ?? 0 });
    const bound = await variationalBound(
      classifierFreeGuidance(network, {
        labels: Int32Array.of(heldOut.label(0), heldOut.label(1)),
        nullClass: 10,
      }),
      {
        schedule: makeSchedule(schedule),
        x0: imagesAt(heldOut, [0, 1]),
        shape: [2, 1, 28, 28],
        seed,
        prediction: "eps",
        variance: model.card.variance,
      },
    );
    const nll = result.nll;
    assert.ok(nll, "the bound was asked for");
    assert.equal(nll.classes, "mixture");
    const priorBits = [0, 1].map((i) => -Math.log2(classCounts[heldOut.label(i)] / 150) / 784);
    const expected = bound.meanBitsPerDim + (priorBits[0] + priorBits[1]) / 2;
    assert.ok(Math.abs(nll.bitsPerDim - expected) < 1e-12, `${nll.bitsPerDim} vs ${expected}`);
    const classPart = nll.parts.at(-1);
    assert.equal(classPart?.terms, "class");
    assert.ok(Math.abs((classPart?.bitsPerDim ?? 0) - (priorBits[0] + priorBits[1]) / 2) < 1e-15);
    // Its standard error is that of the images' bounds with their own class's bits.
    const perImage = [0, 1].map((i) => bound.bitsPerDim[i] + priorBits[i]);
    const se = Math.abs(perImage[0] - perImage[1]) / 2;
    assert.ok(Math.abs(nll.standardError - se) < 1e-12, `${nll.standardError} vs ${se}`);
    // The decoder's part on black and white pixels: the bound's own, over the two digits' pixels
    // at 0 or 255 (most of a digit's).
    const pixels = imagesAt(heldOut, [0, 1]);
    const edges = pixels.filter((v) => v === -1 || v === 1).length / pixels.length;
    assert.ok(edges > 0.5, `${edges} of the pixels at 0 or 255`);
    assert.equal(nll.decoderEdge.pixelShare, edges);
    const edgeBits = (bound.decoderEdgeBitsPerDim[0] + bound.decoderEdgeBitsPerDim[1]) / 2;
    assert.ok(Math.abs(nll.decoderEdge.bitsPerDim - edgeBits) < 1e-15);
    const decoder = nll.parts.find((p) => p.terms === "decoder")?.bitsPerDim ?? 0;
    assert.ok(nll.decoderEdge.bitsPerDim > 0 && nll.decoderEdge.bitsPerDim < decoder);
    assert.match(evalTable(result, samples), /held-out images, the class mixture\)/);
    assert.match(evalTable(result, samples), /decoder on the \d+\.\d% of pixels at 0 or 255 /);
  });
});

Deno.test("evaluate() bounds only held-out images that other splits held out too (nllUnseenBy)", async () => {
  const schedule = { kind: "linear" as const, timesteps: 20, betaStart: 1e-4, betaEnd: 0.2 };
  // A model of split seed 1 whose start trained on split seed 0.
  const bytes = randomOnnxModel(PRESETS.mnist, 1, { schedule, dataset: "mnist", seed: 1 });
  await withSessions(bytes, async (model, classifier) => {
    const result = await evaluate({
      model,
      classifier,
      samples: 4,
      samplers: parseSamplers("ddim:2"),
      nllImages: 3,
      nllUnseenBy: [0],
      batch: 4,
      seed: 2,
      log: () => {},
    });
    // The same bound, redone on the first three of split 1's held-out digits that split 0 held
    // out too: of 10,000 digits, 1,000 are held out by each and about 100 by both.
    const { heldOut } = await loadDataset("mnist", { seed: 1 });
    const both = new Set(splitIndices(10_000, { seed: 0 }).heldOut);
    const positions = [...splitIndices(10_000, { seed: 1 }).heldOut.entries()]
      .filter(([, example]) => both.has(example)).map(([position]) => position);
    assert.ok(positions.length > 50 && positions.length < 150, `${positions.length} in both`);
    const bound = await variationalBound(onnxDenoiser(model, { maxBatch: 4 }), {
      schedule: makeSchedule(schedule),
      x0: imagesAt(heldOut, positions.slice(0, 3)),
      shape: [3, 1, 28, 28],
      seed: 2,
      prediction: "eps",
      variance: model.card.variance,
    });
    assert.equal(result.nll?.images, 3);
    assert.deepEqual(result.nll?.unseenBy, [0]);
    assert.ok(
      Math.abs((result.nll?.bitsPerDim ?? NaN) - bound.meanBitsPerDim) < 1e-12,
      `${result.nll?.bitsPerDim} vs ${bound.meanBitsPerDim}`,
    );
  });
});

Deno.test("split seed lists parse, and bad ones are named", () => {
  assert.deepEqual(parseSeedList("0"), [0]);
  assert.deepEqual(parseSeedList("0, 2"), [0, 2]);
  for (const bad of ["", "-1", "1.5", "0,", "x"]) {
    assert.throws(() => parseSeedList(bad), /a split seed is an integer in 0\.\.\d+, got/, bad);
  }
});

Deno.test("classMatchedDraw() takes the asked number of distinct images of each class, seeded", () => {
  const labels = Int32Array.from({ length: 60 }, (_, i) => (i * 7) % 3);
  const byClass: number[][] = [[], [], []];
  labels.forEach((c, i) => byClass[c].push(i));
  const counts = [5, 0, 20];
  const drawn = classMatchedDraw(byClass, counts, 4);
  assert.equal(new Set(drawn).size, 25);
  assert.deepEqual([0, 1, 2].map((c) => drawn.filter((i) => labels[i] === c).length), counts);
  assert.deepEqual(classMatchedDraw(byClass, counts, 4), drawn);
  assert.notDeepEqual(classMatchedDraw(byClass, counts, 5), drawn);
  assert.throws(
    () => classMatchedDraw(byClass, [21, 0, 0], 4),
    /needs 21 training images of class 0, the split has 20/,
  );
});

Deno.test("classGaps() measures each class's mean shift less the sampling noise, and its spread", () => {
  // Class 0 by hand: samples (0, 0) and (2, 0), mean (1, 0), total variance 2; real (1, 1),
  // (1, 3) and (1, 5), mean (1, 3), total variance 4. Shift 3^2 - 2/2 - 4/3, spread 2/4.
  // Class 1 has one sample, class 2 none: no gap.
  const generated = Float32Array.of(0, 0, 2, 0, 7, 7);
  const real = Float32Array.of(1, 1, 1, 3, 1, 5, 0, 0, 4, 4);
  const gaps = classGaps(generated, [0, 0, 1], real, [0, 0, 0, 1, 1], 2, 3);
  assert.equal(gaps.length, 3);
  assert.equal(gaps[1], null);
  assert.equal(gaps[2], null);
  const [zero] = gaps;
  assert.ok(zero !== null);
  assert.deepEqual([zero.samples, zero.real, zero.spread], [2, 3, 0.5]);
  assert.ok(Math.abs(zero.meanShift - (9 - 1 - 4 / 3)) < 1e-12, `${zero.meanShift}`);

  // Both sides drawn from one Gaussian (dimension 8, unit variance): the raw squared distance of
  // the means averages 8/200 + 8/100 = 0.12 and the shift with the noise removed averages 0.
  // Over 400 repetitions each mean is within 4 of its standard errors (the repetitions' own sd
  // over sqrt(400)) of what theory says.
  const rng = createRng(9);
  const dim = 8, repeats = 400;
  const shifts: number[] = [], raw: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const g = rng.normal(200 * dim), x = rng.normal(100 * dim);
    const [gap] = classGaps(g, new Int32Array(200), x, new Int32Array(100), dim, 1);
    assert.ok(gap !== null);
    shifts.push(gap.meanShift);
    // The noise estimate it subtracted: tr S_g / 200 + tr S_r / 100.
    const noise = featureTrace(g, dim) / 200 + featureTrace(x, dim) / 100;
    raw.push(gap.meanShift + noise);
  }
  const meanAndSe = (v: number[]) => {
    const m = v.reduce((a, b) => a + b, 0) / v.length;
    const sd = Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1));
    return [m, sd / Math.sqrt(v.length)];
  };
  const [shift, shiftSe] = meanAndSe(shifts);
  const [squared, squaredSe] = meanAndSe(raw);
  assert.ok(Math.abs(shift) < 4 * shiftSe, `shift ${shift} +- ${shiftSe}`);
  assert.ok(Math.abs(squared - 0.12) < 4 * squaredSe, `raw ${squared} +- ${squaredSe}`);
  assert.throws(
    () => classGaps(generated, [0, 0, 3], real, [0, 0, 0, 1, 1], 2, 3),
    /a class label is in 0..2, got 3 at 2/,
  );
  // Real images all alike leave the spread undefined: no gap rather than Infinity.
  assert.equal(classGaps(generated, [0, 0, 1], Float32Array.of(1, 1, 1, 1), [0, 0], 2, 2)[0], null);
});

/** The trace of the unbiased covariance of rows of `dim` features. */
function featureTrace(features: Float32Array, dim: number): number {
  const { covariance } = featureStatistics(features, dim);
  let trace = 0;
  for (let j = 0; j < dim; j++) trace += covariance[j * dim + j];
  return trace;
}
