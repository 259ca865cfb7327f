/**
 * Figures a person can look at: a run's training curves from its `metrics.jsonl`, and
 * `deno task eval`'s Fréchet distance against sampler steps. Both are Vega-Lite specifications
 * rendered to SVG by Vega's headless view, so no canvas, browser or font file is needed.
 *
 * `deno task curves --run <dir>` draws the curves of any run directory, also one trained
 * before the trainer drew them itself.
 *
 * @module
 */

import { basename, join } from "node:path";
import type { TopLevelSpec } from "vega-lite";
import { FlagError, type Flags, type FlagTable, runFlagCommand, usageText } from "./cli.ts";

/** The fields of a `metrics.jsonl` line that the curves read. */
export interface MetricsRecord {
  step: number;
  loss: number;
  lossSmoothed: number;
  lr: number;
  /** Present on the lines where the held-out loss was measured. */
  heldOutLoss?: number;
  /** Images the optimizer has consumed up to this step (lines written before it existed lack it). */
  imagesSeen?: number;
}

/** The file name of the training curves in a run directory. */
export const CURVES_FILE = "curves.svg";

/**
 * The records of a `metrics.jsonl` text. A line cut short by a killed process (the last one)
 * is skipped, as the trainer itself skips it when it resumes.
 */
export function parseMetrics(text: string): MetricsRecord[] {
  const records: MetricsRecord[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      continue;
    }
    const r = value as Partial<MetricsRecord>;
    if (typeof r.step === "number" && typeof r.loss === "number") records.push(r as MetricsRecord);
  }
  // A resumed run logs again the steps after its checkpoint: the later line stands.
  const byStep = new Map(records.map((r) => [r.step, r]));
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

/**
 * The training curves: the loss (each logged step, smoothed, and held-out) against step and
 * against images seen, and the learning rate against step. `batch` gives the images of lines
 * that do not record `imagesSeen` (step x batch).
 */
export function trainingCurvesSpec(
  records: readonly MetricsRecord[],
  options: { batch: number; title?: string },
): TopLevelSpec {
  const rows = records.flatMap((r) => {
    const imagesSeen = r.imagesSeen ?? r.step * options.batch;
    const point = (series: string, loss: number) => ({ step: r.step, imagesSeen, series, loss });
    return [
      point("logged step", r.loss),
      point("smoothed", r.lossSmoothed),
      ...(r.heldOutLoss === undefined ? [] : [point("held-out batch", r.heldOutLoss)]),
    ];
  });
  const color = {
    field: "series",
    type: "nominal",
    title: "loss",
    scale: {
      domain: ["logged step", "smoothed", "held-out batch"],
      range: ["#c6dbef", "#08519c", "#e6550d"],
    },
  } as const;
  const lossAgainst = (field: "step" | "imagesSeen", title: string) => ({
    width: 300,
    height: 220,
    data: { values: rows },
    mark: { type: "line", strokeWidth: 1.5, clip: true },
    encoding: {
      x: { field, type: "quantitative", title },
      y: { field: "loss", type: "quantitative", title: "L_simple", scale: { type: "log" } },
      color,
      order: { field },
    },
  } as const);
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: options.title ?? "training curves",
    hconcat: [
      lossAgainst("step", "step"),
      lossAgainst("imagesSeen", "images seen"),
      {
        width: 240,
        height: 220,
        data: { values: records.map((r) => ({ step: r.step, lr: r.lr })) },
        mark: { type: "line", color: "#31a354" },
        encoding: {
          x: { field: "step", type: "quantitative", title: "step" },
          y: { field: "lr", type: "quantitative", title: "learning rate", axis: { format: ".1e" } },
        },
      },
    ],
  } as TopLevelSpec;
}

/** One run of {@linkcode heldOutComparisonSpec}. */
export interface ComparedRun {
  /** The run's name in the legend. */
  label: string;
  records: readonly MetricsRecord[];
  /**
   * The run's training speed in steps per second, measured on its own (`deno task bench:train`),
   * which puts it on a time axis: runs trained side by side share the machine, so the speed
   * they logged is not what either would reach alone.
   */
  stepsPerSecond?: number;
}

/**
 * Runs side by side: the held-out loss of each against images seen and, when every run gives
 * its speed, against training time at that speed. Equal time is the comparison that counts
 * for networks of different cost (a study of widths); equal images shows what each image buys.
 */
export function heldOutComparisonSpec(
  runs: readonly ComparedRun[],
  options: { batch: number; title?: string },
): TopLevelSpec {
  const timed = runs.every((run) => run.stepsPerSecond !== undefined);
  const rows = runs.flatMap(({ label, records, stepsPerSecond }) =>
    records.flatMap((r) =>
      r.heldOutLoss === undefined ? [] : [{
        run: label,
        imagesSeen: r.imagesSeen ?? r.step * options.batch,
        minutes: stepsPerSecond === undefined ? null : r.step / stepsPerSecond / 60,
        loss: r.heldOutLoss,
      }]
    )
  );
  const against = (field: "imagesSeen" | "minutes", title: string) => ({
    width: 320,
    height: 240,
    data: { values: rows },
    mark: { type: "line", point: true, strokeWidth: 1.5 },
    encoding: {
      x: { field, type: "quantitative", title },
      y: {
        field: "loss",
        type: "quantitative",
        title: "held-out L_simple (EMA weights)",
        scale: { type: "log" },
      },
      color: { field: "run", type: "nominal", title: "run", legend: { labelLimit: 300 } },
      order: { field },
    },
  } as const);
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: options.title ?? "held-out loss",
    hconcat: [
      against("imagesSeen", "images seen"),
      ...(timed ? [against("minutes", "minutes of training, each run at its own speed")] : []),
    ],
  } as TopLevelSpec;
}

/** One point of {@linkcode frechetCurveSpec}: a sampler setting's distance. */
export interface FrechetPoint {
  sampler: string;
  steps: number;
  frechet: number;
  /** Conditional models: the guidance weight, null for no class, or a named setting. */
  guidance?: number | string | null;
}

/**
 * Fréchet distance against sampler steps, one line per sampler (and guidance weight), with
 * the real-image floor at the same sample count as a dashed rule.
 */
export function frechetCurveSpec(
  points: readonly FrechetPoint[],
  options: { floor: number; samples: number; title?: string },
): TopLevelSpec {
  const values = points.map((p) => ({
    ...p,
    setting: p.guidance === undefined
      ? p.sampler
      : `${p.sampler}, guidance ${p.guidance ?? "none"}`,
  }));
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: options.title ?? `Fréchet distance, ${options.samples} samples per point`,
    width: 420,
    height: 260,
    layer: [
      {
        data: { values },
        mark: { type: "line", point: true },
        encoding: {
          x: {
            field: "steps",
            type: "quantitative",
            title: "sampler steps (network evaluations)",
            scale: { type: "log" },
          },
          y: {
            field: "frechet",
            type: "quantitative",
            title: "Fréchet distance",
            scale: { zero: true },
          },
          color: {
            field: "setting",
            type: "nominal",
            title: "sampler",
            legend: { labelLimit: 400 },
          },
          order: { field: "steps" },
        },
      },
      {
        data: { values: [{ floor: options.floor, label: "real images (floor)" }] },
        mark: { type: "rule", strokeDash: [4, 4], color: "#555" },
        encoding: { y: { field: "floor", type: "quantitative" } },
      },
    ],
  } as TopLevelSpec;
}

/**
 * Renders a Vega-Lite specification to an SVG document. Vega is imported here, on first use,
 * so a training run or an evaluation that draws nothing does not load it.
 */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const [vega, vegaLite] = await Promise.all([import("vega"), import("vega-lite")]);
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * Draws `<runDir>/curves.svg` from `<runDir>/metrics.jsonl`, written to a temporary file and
 * renamed so a viewer never reads half a figure. Returns the path, or null when there are no
 * metrics yet.
 */
export async function writeTrainingCurves(
  runDir: string,
  options: { batch: number; title?: string },
): Promise<string | null> {
  const text = await Deno.readTextFile(join(runDir, "metrics.jsonl")).catch((error) => {
    if (error instanceof Deno.errors.NotFound) return "";
    throw error;
  });
  const records = parseMetrics(text);
  if (records.length === 0) return null;
  const path = join(runDir, CURVES_FILE);
  const svg = await renderSvg(trainingCurvesSpec(records, options));
  await Deno.writeTextFile(`${path}.tmp`, svg);
  await Deno.rename(`${path}.tmp`, path);
  return path;
}

const CURVES_FLAGS: FlagTable = {
  run: { help: "the run directory whose metrics.jsonl to draw (or --compare)" },
  compare: {
    help: "run directories, comma-separated: their held-out losses in one figure (needs --out)",
  },
  rates: {
    help:
      "with --compare: each run's steps/s measured alone (deno task bench:train), in the same order; adds the loss against training time",
  },
  out: { help: "with --compare: the SVG file to write" },
  batch: {
    default: "64",
    help: "images per step, for metrics lines that do not record images seen",
  },
  title: { help: "the figure's title (default: the run directory)" },
  help: { boolean: true, help: "show this help" },
};

const CURVES_USAGE = usageText(
  "deno task curves [flags]",
  "Draws a run's training curves (loss, held-out loss and learning rate against step and\n" +
    "images seen) from its metrics.jsonl into <run>/curves.svg. The trainer redraws it itself.\n" +
    "--compare draws the held-out loss of several runs against images seen and, given their\n" +
    "speeds (--rates), against training time.",
  CURVES_FLAGS,
);

/** `--compare`: reads each run's metrics and writes the comparison figure to `--out`. */
async function compareRuns(list: string, batch: number, flags: Flags): Promise<number> {
  if (flags.given("run")) throw new FlagError("--run and --compare: give one of them");
  const dirs = list.split(",").map((d) => d.trim());
  if (dirs.length < 2 || dirs.some((d) => d === "")) {
    throw new FlagError(`--compare needs two or more run directories, got "${list}"`);
  }
  const out = flags.text("out");
  if (out === "") throw new FlagError("--compare needs --out: the SVG file to write");
  const ratesText = flags.given("rates") ? flags.text("rates") : null;
  const rates = ratesText?.split(",").map(Number);
  if (
    rates && (rates.length !== dirs.length || rates.some((r) => !(r > 0 && Number.isFinite(r))))
  ) {
    throw new FlagError(
      `--rates must be ${dirs.length} positive steps/s, one per --compare run, got "${ratesText}"`,
    );
  }
  const runs: ComparedRun[] = [];
  for (const [i, dir] of dirs.entries()) {
    const records = parseMetrics(await Deno.readTextFile(join(dir, "metrics.jsonl")));
    if (!records.some((r) => r.heldOutLoss !== undefined)) {
      throw new FlagError(`${dir}/metrics.jsonl has no held-out loss to compare`);
    }
    runs.push({
      label: basename(dir),
      records,
      ...(rates ? { stepsPerSecond: rates[i] } : {}),
    });
  }
  const svg = await renderSvg(
    heldOutComparisonSpec(runs, { batch, title: flags.text("title") || undefined }),
  );
  await Deno.writeTextFile(out, svg);
  console.log(`wrote ${out}`);
  return 0;
}

if (import.meta.main) {
  await runFlagCommand(CURVES_USAGE, CURVES_FLAGS, async (flags) => {
    const batch = flags.integer("batch", 1);
    if (flags.given("compare")) return await compareRuns(flags.text("compare"), batch, flags);
    const run = flags.text("run");
    if (run === "") throw new FlagError("--run is required: the run directory to draw");
    const path = await writeTrainingCurves(run, { batch, title: flags.text("title") || run });
    console.log(path ? `wrote ${path}` : `${run}/metrics.jsonl has no metrics yet`);
    return path ? 0 : 1;
  });
}
