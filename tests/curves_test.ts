/**
 * The figures: the training curves read `metrics.jsonl` as the trainer writes it (a torn last
 * line, a resumed run's repeated steps), put each line at its step and its images seen, and
 * render to an SVG with the three panels; a training run records its images seen and draws its
 * own curves; runs compared side by side put each held-out loss at its images seen and, at each
 * run's own speed, at its training time; eval's Fréchet curve has a line per setting and the floor; eval refuses a model
 * or classifier of another dataset by name.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  CURVES_FILE,
  frechetCurveSpec,
  heldOutComparisonSpec,
  type MetricsRecord,
  parseMetrics,
  renderSvg,
  trainingCurvesSpec,
  writeTrainingCurves,
} from "../train/curves.ts";
import { checkClassifierDataset, evalDataset } from "../train/eval.ts";
import { runTinyTraining } from "./_tiny_run.ts";

const line = (r: Partial<MetricsRecord> & { step: number }) =>
  JSON.stringify({ loss: 1 / r.step, lossSmoothed: 1 / r.step, lr: 2e-4, ...r });

/** The data rows of the spec's panel `i` (the spec inlines them, one array per panel). */
function panelRows(spec: unknown, i: number): Record<string, unknown>[] {
  return (spec as { hconcat: { data: { values: Record<string, unknown>[] } }[] }).hconcat[i].data
    .values;
}

Deno.test("parseMetrics skips a torn last line and keeps the later copy of a resumed step", () => {
  const text = [
    line({ step: 10 }),
    line({ step: 20, loss: 0.5 }),
    // A resume from step 10's checkpoint logs step 20 again; that run is the one that stands.
    line({ step: 20, loss: 0.25 }),
    line({ step: 30, heldOutLoss: 0.3 }),
    '{"step":40,"loss":0.1,"lossSm', // killed mid-write
  ].join("\n");
  const records = parseMetrics(text);
  assert.deepEqual(records.map((r) => r.step), [10, 20, 30]);
  assert.equal(records[1].loss, 0.25);
  assert.equal(records[2].heldOutLoss, 0.3);
  assert.deepEqual(parseMetrics(""), []);
});

Deno.test("the training curves place every line at its step and its images seen", () => {
  const records = parseMetrics(
    [
      line({ step: 10 }),
      line({ step: 20, heldOutLoss: 0.4 }),
      line({ step: 30, imagesSeen: 1234 }), // a line that records it wins over step x batch
    ].join("\n"),
  );
  const spec = trainingCurvesSpec(records, { batch: 64, title: "t" });
  const rows = panelRows(spec, 0);
  // Two series per line, three on the line that has a held-out loss.
  assert.equal(rows.length, 7);
  const heldOut = rows.filter((r) => r.series === "held-out batch");
  assert.deepEqual(heldOut, [{ step: 20, imagesSeen: 1280, series: "held-out batch", loss: 0.4 }]);
  assert.deepEqual(
    rows.filter((r) => r.series === "smoothed").map((r) => r.imagesSeen),
    [640, 1280, 1234],
  );
  assert.deepEqual(panelRows(spec, 2), [
    { step: 10, lr: 2e-4 },
    { step: 20, lr: 2e-4 },
    { step: 30, lr: 2e-4 },
  ]);
});

Deno.test("writeTrainingCurves renders the run's metrics to curves.svg, and nothing for none", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(await writeTrainingCurves(dir, { batch: 8 }), null);
    const lines = Array.from({ length: 20 }, (_, i) => line({ step: 10 * (i + 1) }));
    await Deno.writeTextFile(join(dir, "metrics.jsonl"), lines.join("\n") + "\n");
    const path = await writeTrainingCurves(dir, { batch: 8, title: "a run" });
    assert.ok(path !== null);
    assert.equal(path, join(dir, CURVES_FILE));
    const svg = await Deno.readTextFile(path);
    assert.match(svg, /^<svg[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    for (const text of ["a run", "images seen", "learning rate", "L_simple", "held-out batch"]) {
      assert.ok(svg.includes(text), `the figure lacks "${text}"`);
    }
    // Three panels, each with its line marks drawn.
    for (const panel of [0, 1, 2]) {
      assert.match(svg, new RegExp(`<g class="mark-line role-mark concat_${panel}_marks"`));
    }
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(names, [CURVES_FILE, "metrics.jsonl"], "no temporary file is left");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a training run records the images it has seen and draws curves.svg as it goes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const events: string[] = [];
    await runTinyTraining(dir, {
      batch: 3,
      steps: 4,
      logEvery: 1,
      evalEvery: 2,
      report: (e) => e.kind === "notice" && events.push(e.message),
    });
    const records = parseMetrics(await Deno.readTextFile(join(dir, "metrics.jsonl")));
    assert.deepEqual(records.map((r) => [r.step, r.imagesSeen]), [[1, 3], [2, 6], [3, 9], [
      4,
      12,
    ]]);
    assert.deepEqual(records.filter((r) => r.heldOutLoss !== undefined).map((r) => r.step), [
      2,
      4,
    ]);
    const svg = await Deno.readTextFile(join(dir, CURVES_FILE));
    assert.ok(svg.includes("held-out batch") && svg.includes(dir), "the figure names the run");
    assert.ok(!events.some((m) => m.startsWith("could not draw")), events.join("\n"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the Fréchet curve has a line per sampler and guidance, and the floor as a rule", async () => {
  const points = [
    { sampler: "ddim", steps: 10, frechet: 60 },
    { sampler: "ddim", steps: 50, frechet: 40 },
    { sampler: "dpmpp-2m", steps: 10, frechet: 45, guidance: 1 },
    { sampler: "dpmpp-2m", steps: 10, frechet: 50, guidance: null },
  ];
  const spec = frechetCurveSpec(points, { floor: 26.3, samples: 2000 }) as unknown as {
    layer: { data: { values: Record<string, unknown>[] } }[];
  };
  assert.deepEqual(
    spec.layer[0].data.values.map((v) => v.setting),
    ["ddim", "ddim", "dpmpp-2m, guidance 1", "dpmpp-2m, guidance none"],
  );
  assert.deepEqual(spec.layer[1].data.values, [{ floor: 26.3, label: "real images (floor)" }]);
  const svg = await renderSvg(spec as never);
  assert.ok(svg.includes("2000 samples per point"));
  assert.ok(svg.includes("dpmpp-2m, guidance none"));
});

Deno.test("eval names the dataset it cannot measure and a classifier of another dataset", async () => {
  assert.equal(evalDataset(undefined), "mnist");
  assert.equal(evalDataset("fashion-mnist"), "fashion-mnist");
  assert.equal(evalDataset("mnist-full"), "mnist-full");
  assert.throws(
    () => evalDataset("folder:faces"),
    /eval measures models of mnist, mnist-full, fashion-mnist .*dataset "folder:faces"/,
  );
  const dir = await Deno.makeTempDir();
  try {
    const onnx = join(dir, "c.onnx");
    // No card beside it: taken as it is.
    await checkClassifierDataset(onnx, "fashion-mnist");
    // A card without a dataset is the first digits classifier's, still accepted for digits.
    await Deno.writeTextFile(join(dir, "c.json"), JSON.stringify({ kind: "mnist-classifier" }));
    await checkClassifierDataset(onnx, "mnist");
    await checkClassifierDataset(onnx, "mnist-full");
    await assert.rejects(
      () => checkClassifierDataset(onnx, "fashion-mnist"),
      /c\.onnx was trained on mnist; a model of fashion-mnist is measured by one trained on fashion-mnist: use --classifier weights\/fashion-mnist-classifier\.onnx/,
    );
    // The classifier of all MNIST training digits measures both digits datasets, not clothes.
    await Deno.writeTextFile(join(dir, "c.json"), JSON.stringify({ dataset: "mnist-full" }));
    await checkClassifierDataset(onnx, "mnist");
    await assert.rejects(
      () => checkClassifierDataset(onnx, "fashion-mnist"),
      /trained on mnist-full/,
    );
    await Deno.writeTextFile(join(dir, "c.json"), JSON.stringify({ dataset: "fashion-mnist" }));
    await assert.rejects(
      () => checkClassifierDataset(onnx, "mnist"),
      /a model of mnist is measured by one trained on mnist-full or mnist: use --classifier weights\/mnist-full-classifier\.onnx/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the comparison puts each run's held-out losses at its images seen and, given speeds, its minutes", async () => {
  const wide = parseMetrics(
    [
      line({ step: 100, heldOutLoss: 0.3 }),
      line({ step: 150 }),
      line({ step: 200, heldOutLoss: 0.2 }),
    ]
      .join("\n"),
  );
  const narrow = parseMetrics(line({ step: 300, heldOutLoss: 0.25, imagesSeen: 9000 }));
  const runs = [
    { label: "ch32", records: wide, stepsPerSecond: 0.25 },
    { label: "ch16", records: narrow, stepsPerSecond: 1 },
  ];
  const spec = heldOutComparisonSpec(runs, { batch: 64 });
  // Only lines with a held-out loss; minutes = step / steps per second / 60.
  assert.deepEqual(panelRows(spec, 0), [
    { run: "ch32", imagesSeen: 6400, minutes: 100 / 0.25 / 60, loss: 0.3 },
    { run: "ch32", imagesSeen: 12800, minutes: 200 / 0.25 / 60, loss: 0.2 },
    { run: "ch16", imagesSeen: 9000, minutes: 5, loss: 0.25 },
  ]);
  const svg = await renderSvg(spec);
  for (const text of ["ch32", "ch16", "images seen", "minutes of training"]) {
    assert.ok(svg.includes(text), `the figure lacks "${text}"`);
  }
  // Without every run's speed there is no time axis, only the images panel.
  const untimed = heldOutComparisonSpec([runs[0], { label: "ch16", records: narrow }], {
    batch: 64,
  }) as unknown as { hconcat: unknown[] };
  assert.equal(untimed.hconcat.length, 1);
});

Deno.test("deno task curves --compare writes the figure, and names bad speeds and a missing --out", async () => {
  const dir = await Deno.makeTempDir();
  const curves = (...args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-write", "train/curves.ts", ...args],
      cwd: new URL("..", import.meta.url),
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
  try {
    for (const [name, loss] of [["a", 0.3], ["b", 0.2]] as const) {
      await Deno.mkdir(join(dir, name));
      await Deno.writeTextFile(
        join(dir, name, "metrics.jsonl"),
        line({ step: 10, heldOutLoss: loss }) + "\n",
      );
    }
    const runs = `${join(dir, "a")},${join(dir, "b")}`;
    const out = join(dir, "both.svg");
    const ok = await curves("--compare", runs, "--rates", "0.5,2", "--out", out);
    assert.equal(ok.code, 0, new TextDecoder().decode(ok.stderr));
    assert.match(await Deno.readTextFile(out), /minutes of training/);

    const bad = await curves("--compare", runs, "--rates", "0.5", "--out", out);
    assert.equal(bad.code, 2);
    assert.match(
      new TextDecoder().decode(bad.stderr),
      /--rates must be 2 positive steps\/s, one per --compare run, got "0\.5"/,
    );
    const noOut = await curves("--compare", runs);
    assert.match(new TextDecoder().decode(noOut.stderr), /--compare needs --out/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
