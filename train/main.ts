/**
 * `deno task train`: trains the DDPM U-Net. Run with `--help` for the flags.
 *
 * @module
 */

import { type Prediction, PREDICTIONS } from "../lib/parameterization.ts";
import { type SamplerKind, SAMPLERS } from "../lib/samplers.ts";
import { SCHEDULE_KINDS, type ScheduleKind } from "../lib/schedule.ts";
import { BACKEND_CHOICES, type BackendChoice, gradientWorkers, initBackend } from "./backend.ts";
import { countParameters, describeUNet, PRESETS, type UNetConfig } from "./network.ts";
import { type RunEvent, type RunOptions, runTraining } from "./run.ts";
import type { OptimizerOptions } from "./trainer.ts";
import { FlagError, Flags, type FlagTable, usageText } from "./cli.ts";
import { TRAINING_DEFAULTS } from "./defaults.ts";

/**
 * Every flag: name, default (undefined: none), and what it does. The defaults are
 * `TRAINING_DEFAULTS`, as text; `auto` and the derived ones (`--dataset`, `--out`) are the
 * command line's own.
 */
const FLAGS: FlagTable = {
  preset: {
    default: TRAINING_DEFAULTS.preset,
    help: `network preset: ${Object.keys(PRESETS).join(", ")}`,
  },
  ch: {
    help:
      "base channel count, which every level multiplies (default: the preset's: mnist 16); a multiple of the preset's GroupNorm groups (mnist 8). A resumed run keeps its checkpoint's (the same --ch may be repeated, no other); with --init-from, that network's or a multiple of it",
  },
  dataset: {
    help:
      'data: "mnist" (10,000 digits), "mnist-full" (all 70,000: MNIST\'s 60,000 training digits, its 10,000 test digits held out), "fashion-mnist", "idx:<images>[,<labels>]" or "folder:<dir>" (default: mnist for the mnist and tiny presets)',
  },
  steps: {
    default: String(TRAINING_DEFAULTS.steps),
    help: "total optimizer steps (a resumed run continues up to this)",
  },
  batch: { default: String(TRAINING_DEFAULTS.batch), help: "images per step" },
  lr: { default: TRAINING_DEFAULTS.optimizer.lr.toExponential(), help: "peak Adam learning rate" },
  warmup: {
    default: String(TRAINING_DEFAULTS.optimizer.warmupSteps),
    help: "linear learning-rate warm-up steps (the paper: 5000)",
  },
  cooldown: {
    default: String(TRAINING_DEFAULTS.optimizer.cooldownSteps),
    help: "linear learning-rate decay toward 0 over the last N steps of --steps; 0 none " +
      "(a resumed run may change it, and --steps, to end a run early or cool a constant one down)",
  },
  "ema-decay": {
    default: String(TRAINING_DEFAULTS.optimizer.emaDecay),
    help: "decay of the EMA of the weights (with a (1+s)/(10+s) warm-up)",
  },
  "grad-clip": {
    default: String(TRAINING_DEFAULTS.optimizer.gradClip),
    help: "global gradient-norm clip",
  },
  backend: {
    default: "auto",
    help: `tfjs backend: ${BACKEND_CHOICES.join(", ")} (auto prefers WebGPU)`,
  },
  workers: {
    default: "auto",
    help:
      "gradient workers on the wasm backend, each with its share of every batch (auto: one per core; 0: train in the main thread)",
  },
  seed: {
    default: String(TRAINING_DEFAULTS.seed),
    help: "seed of the initial weights, the data order and every noise draw",
  },
  out: { help: "run directory (default runs/<preset>-<dataset>)" },
  resume: { boolean: true, help: "continue from the newest good checkpoint in --out" },
  overwrite: {
    boolean: true,
    help: "start a new run in an --out that holds another run, deleting that run's files",
  },
  conditional: {
    boolean: true,
    help: "class-conditional network on the dataset's labels (classifier-free guidance)",
  },
  "label-dropout": {
    default: String(TRAINING_DEFAULTS.labelDropout),
    help: 'conditional: probability of training a label as "no class"',
  },
  "vb-importance": {
    default: "0",
    help:
      "learned variance: share of each batch whose timesteps are drawn from 1/(t+1), every example importance-weighted, so the bound's small-t terms (most of it) are trained more often; new runs only",
  },
  "vb-lambda": {
    default: "0.001",
    help:
      "learned variance: weight of L_vlb in the hybrid objective L_simple + lambda L_vlb (Improved DDPM: 0.001); new runs only",
  },
  "init-from": {
    help:
      "start a new run from the weights of a checkpoint (.ddpm) or an exported model (.onnx) of the same network (--preset, --ch), or widened to a --ch that is a multiple of its own (each channel split into copies: the same function, more room): fine-tuning, fresh optimizer; on the same dataset it keeps that run's train / held-out split. With --resume it may repeat the start the run was made from (not read again), no other",
  },
  "learn-variance": {
    boolean: true,
    help:
      "new runs: the network also learns its reverse variance (Improved DDPM: learned range, hybrid loss); with --init-from a fixed-variance checkpoint, its v channels start at zero",
  },
  prediction: {
    default: TRAINING_DEFAULTS.prediction,
    help: `network output: ${PREDICTIONS.join(", ")}`,
  },
  schedule: {
    default: TRAINING_DEFAULTS.schedule.kind,
    help: `noise schedule: ${SCHEDULE_KINDS.join(", ")}`,
  },
  timesteps: { default: String(TRAINING_DEFAULTS.schedule.timesteps), help: "diffusion steps T" },
  "held-out": {
    default: String(TRAINING_DEFAULTS.heldOut),
    help:
      "fraction of the data kept aside for evaluation (not for mnist-full, held out by MNIST itself)",
  },
  flip: { default: "auto", help: "random horizontal flips: auto (on for image folders), on, off" },
  "ckpt-every": {
    default: String(TRAINING_DEFAULTS.checkpointEvery),
    help: "checkpoint every N steps (and at the end, and on Ctrl-C)",
  },
  keep: { default: String(TRAINING_DEFAULTS.keep), help: "checkpoints to keep" },
  "sample-every": {
    default: String(TRAINING_DEFAULTS.sampleEvery),
    help: "write a sample grid (EMA weights) every N steps; 0 never",
  },
  "sample-sampler": {
    default: TRAINING_DEFAULTS.sampleSampler,
    help: `sampler of the sample grids: ${SAMPLERS.join(", ")}`,
  },
  "sample-steps": {
    default: String(TRAINING_DEFAULTS.sampleSteps),
    help: "sampler steps (network evaluations) of the sample grids",
  },
  "log-every": { default: String(TRAINING_DEFAULTS.logEvery), help: "metrics line every N steps" },
  "eval-every": {
    default: String(TRAINING_DEFAULTS.evalEvery),
    help: "held-out loss every N steps; 0 never",
  },
  "on-nan": {
    default: TRAINING_DEFAULTS.onNonFinite,
    help: "a NaN or infinite loss: stop (keep the last checkpoint) or skip the batch",
  },
  "dry-run": { boolean: true, help: "build the network, print its summary and exit" },
  help: { boolean: true, help: "show this help" },
};

/** The help text, as the trainer's other tools print theirs (`cli.ts`). */
function usage(): string {
  return usageText("deno task train [flags]", "Trains the DDPM U-Net (TensorFlow.js).", FLAGS);
}

/** Reads the flags into run options; throws a `FlagError` (a RangeError) naming any bad value. */
export function parseTrainArgs(args: string[]): {
  options: Omit<RunOptions, "backend" | "workers">;
  backend: BackendChoice;
  workers: number | "auto";
  dryRun: boolean;
  help: boolean;
} {
  const flags = new Flags(args, FLAGS);
  // Not Flags.number, which quotes the value (`got "0"`): the trainer's messages show it bare
  // (`got 0`), and scripts and tests match them.
  const number = (name: string, ok: (v: number) => boolean, range: string): number => {
    const v = Number(flags.text(name));
    if (!Number.isFinite(v) || !ok(v)) {
      throw new FlagError(`--${name} must be ${range}, got ${flags.text(name)}`);
    }
    return v;
  };
  const integer = (name: string, min: number) =>
    number(name, (v) => Number.isInteger(v) && v >= min, `an integer >= ${min}`);
  const resume = flags.boolean("resume");

  const presetName = flags.oneOf("preset", Object.keys(PRESETS) as (keyof typeof PRESETS)[]);
  const preset = PRESETS[presetName];
  let config: UNetConfig = { ...preset };
  if (flags.given("ch")) {
    const ch = number(
      "ch",
      (v) => Number.isInteger(v) && v > 0 && v % preset.groups === 0,
      `a positive multiple of ${preset.groups} (the ${presetName} preset's GroupNorm groups)`,
    );
    config = { ...config, ch };
  }
  const dataset = flags.given("dataset")
    ? flags.text("dataset")
    : presetName === "cifar10"
    ? ""
    : "mnist";
  if (!dataset && !flags.boolean("dry-run") && !flags.boolean("help")) {
    throw new FlagError(
      '--preset cifar10 needs --dataset (for example "folder:<dir of 32x32 PNGs>")',
    );
  }
  const flipText = flags.oneOf("flip", ["auto", "on", "off"] as const);
  // Only flags the user gave override what a resumed checkpoint saved.
  const optimizer: OptimizerOptions = {};
  if (flags.given("lr") || !resume) {
    optimizer.lr = number("lr", (v) => v > 0 && v < 1, "in (0, 1)");
  }
  if (flags.given("warmup") || !resume) optimizer.warmupSteps = integer("warmup", 0);
  if (flags.given("cooldown") || !resume) {
    optimizer.cooldownSteps = integer("cooldown", 0);
    const steps = integer("steps", 1);
    if (optimizer.cooldownSteps > steps) {
      throw new FlagError(
        `--cooldown must be in 0..${steps} (--steps), got ${optimizer.cooldownSteps}`,
      );
    }
  }
  if (flags.given("ema-decay") || !resume) {
    optimizer.emaDecay = number("ema-decay", (v) => v >= 0 && v < 1, "in [0, 1)");
  }
  if (flags.given("grad-clip") || !resume) {
    optimizer.gradClip = number("grad-clip", (v) => v > 0, "> 0");
  }
  const datasetTag = dataset.replace(/^(idx|folder):/, "").split(/[\\/,]/).filter(Boolean).pop() ??
    "data";

  return {
    options: {
      config,
      dataset,
      steps: integer("steps", 1),
      batch: integer("batch", 1),
      seed: number(
        "seed",
        (v) => Number.isInteger(v) && v >= 0 && v < 2 ** 32,
        "an integer in 0..4294967295",
      ),
      out: flags.given("out") ? flags.text("out") : `runs/${presetName}-${datasetTag}`,
      resume,
      overwrite: flags.boolean("overwrite"),
      conditional: flags.boolean("conditional"),
      labelDropout: number("label-dropout", (v) => v >= 0 && v <= 1, "in [0, 1]"),
      vbImportance: number("vb-importance", (v) => v >= 0 && v < 1, "in [0, 1)"),
      vbLambda: number("vb-lambda", (v) => v > 0 && v <= 1, "in (0, 1]"),
      ...(flags.given("init-from") ? { initFrom: flags.text("init-from") } : {}),
      // A resume repeats the command that started the run; its --ch is checked against the
      // checkpoint's width, the network itself comes from the checkpoint.
      ...(resume && flags.given("ch") ? { resumeWidth: config.ch } : {}),
      ...(flags.boolean("learn-variance") ? { learnVariance: true } : {}),
      prediction: flags.oneOf("prediction", PREDICTIONS) as Prediction,
      schedule: {
        kind: flags.oneOf("schedule", SCHEDULE_KINDS) as ScheduleKind,
        timesteps: integer("timesteps", 2),
      },
      optimizer,
      ...(flags.given("held-out")
        ? { heldOut: number("held-out", (v) => v > 0 && v < 1, "in (0, 1)") }
        : {}),
      flip: flipText === "auto" ? undefined : flipText === "on",
      checkpointEvery: integer("ckpt-every", 1),
      keep: integer("keep", 1),
      sampleEvery: integer("sample-every", 0),
      sampleSampler: flags.oneOf<SamplerKind>("sample-sampler", SAMPLERS),
      sampleSteps: integer("sample-steps", 1),
      logEvery: integer("log-every", 1),
      evalEvery: integer("eval-every", 0),
      onNonFinite: flags.oneOf("on-nan", ["stop", "skip"] as const),
    },
    backend: flags.oneOf("backend", BACKEND_CHOICES),
    workers: flags.text("workers") === "auto" ? "auto" : integer("workers", 0),
    dryRun: flags.boolean("dry-run"),
    help: flags.boolean("help"),
  };
}

/** The parameter count of each block (path up to the layer name) and the total. */
export function networkSummary(config: UNetConfig): string {
  const { params, flopsPerImage } = describeUNet(config);
  const blocks = new Map<string, number>();
  for (const p of params) {
    // A residual or attention block is one row; other layers (convolutions, MLP) their own.
    const layer = p.name.split(".").slice(0, -1);
    const inner = layer.findIndex((part) => part === "res" || part === "attn");
    const block = (inner >= 0 ? layer.slice(0, inner + 2) : layer).join(".");
    blocks.set(block, (blocks.get(block) ?? 0) + p.shape.reduce((a, b) => a * b, 1));
  }
  const lines = [`U-Net ${JSON.stringify(config)}`, "", "| block | parameters |", "| --- | ---: |"];
  for (const [block, count] of blocks) {
    lines.push(`| ${block} | ${count.toLocaleString("en-US")} |`);
  }
  lines.push(`| **total** | **${countParameters(params).toLocaleString("en-US")}** |`);
  lines.push("", `forward pass: ${(flopsPerImage / 1e9).toFixed(3)} GFLOP per image`);
  return lines.join("\n");
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const h = Math.floor(seconds / 3600),
    m = Math.floor((seconds % 3600) / 60),
    s = Math.floor(seconds % 60);
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(s).padStart(2, "0")}s`;
}

/** A one-line progress bar on a terminal, plain lines otherwise. */
function progressReporter(): (event: RunEvent) => void {
  const tty = Deno.stdout.isTerminal();
  const encoder = new TextEncoder();
  let onBar = false;
  const line = (text: string) => {
    if (onBar) Deno.stdout.writeSync(encoder.encode("\n"));
    onBar = false;
    console.log(text);
  };
  return (event) => {
    switch (event.kind) {
      case "progress": {
        const width = 24;
        const filled = Math.round((width * event.step) / event.steps);
        const text =
          `step ${event.step}/${event.steps} [${"#".repeat(filled)}${
            "-".repeat(width - filled)
          }] ` +
          `loss ${event.lossSmoothed.toFixed(4)} | ${event.stepsPerSecond.toFixed(2)} steps/s | ` +
          `${event.imagesPerSecond.toFixed(1)} img/s | ETA ${formatDuration(event.etaSeconds)}`;
        if (tty) {
          Deno.stdout.writeSync(encoder.encode(`\r${text}\x1b[K`));
          onBar = true;
        } else {
          console.log(text);
        }
        break;
      }
      case "notice":
        line(event.message);
        break;
      case "checkpoint":
        line(`saved ${event.path}`);
        break;
      case "samples":
        line(`samples ${event.path}`);
        break;
    }
  };
}

if (import.meta.main) {
  let parsed;
  try {
    parsed = parseTrainArgs(Deno.args);
  } catch (error) {
    console.error(`error: ${(error as Error).message}\n\n${usage()}`);
    Deno.exit(2);
  }
  if (parsed.help) {
    console.log(usage());
    Deno.exit(0);
  }
  if (parsed.dryRun) {
    let config = parsed.options.config;
    if (parsed.options.learnVariance) config = { ...config, learnVariance: true };
    if (parsed.options.conditional) {
      // The class count comes from the data: load it (a second for the npm datasets).
      const { loadDataset } = await import("./data.ts");
      const { train } = await loadDataset(parsed.options.dataset, {
        imageSize: config.imageSize,
        channels: config.channels as 1 | 3,
      });
      config = { ...config, numClasses: train.classNames?.length ?? 0 };
    }
    console.log(networkSummary(config));
    Deno.exit(0);
  }
  const backend = await initBackend(parsed.backend);
  let workers;
  try {
    workers = gradientWorkers(parsed.workers, backend.name);
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    Deno.exit(2);
  }
  console.log(backend.summary + (workers > 0 ? `, ${workers} gradient workers` : ""));
  // Ctrl-C: finish the current step, save a checkpoint, exit 130. A second Ctrl-C exits at
  // once; checkpoints are written to a temporary file and renamed, so the newest complete one
  // stays.
  const stop = new AbortController();
  Deno.addSignalListener("SIGINT", () => {
    if (stop.signal.aborted) Deno.exit(130);
    console.log("\nstopping after this step and saving a checkpoint (Ctrl-C again to quit now)");
    stop.abort();
  });
  let result;
  try {
    result = await runTraining({
      ...parsed.options,
      backend,
      workers,
      signal: stop.signal,
      report: progressReporter(),
    });
  } catch (error) {
    console.error(`\nerror: ${(error as Error).message}`);
    Deno.exit(1);
  }
  console.log(
    `\n${result.interrupted ? "interrupted" : "finished"} at step ${result.step}; ` +
      `smoothed loss ${result.lossSmoothed.toFixed(4)}; checkpoint ${result.checkpoint}`,
  );
  // 130 = 128 + SIGINT, the shell's code for a run stopped by Ctrl-C.
  Deno.exit(result.interrupted ? 130 : 0);
}
