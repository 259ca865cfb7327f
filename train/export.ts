/**
 * `deno task export --ckpt <checkpoint> [--out <file.onnx>]`: the trained U-Net as an ONNX model,
 * with a model card (JSON) beside it and the same card in the model's `metadata_props`, so a
 * server samples correctly without guessing (schedule, prediction, image shape, scaling).
 *
 * The graph: input `x` float32 `[N, C, H, W]` (dynamic N, data scaled to [-1, 1]), input `t`
 * float32 `[N]` (0-based timesteps), for a class-conditional network input `y` int64 `[N]`
 * (class indices, `numClasses` for no class), output `out` float32 `[N, C, H, W]` (the
 * prediction), or `[N, 2C, H, W]` for a network that learns its variance (per image the
 * prediction's C channels, then C channels of `v`; card variance `learned-range`). The timestep and class embeddings are computed inside the graph. Opset 17.
 *
 * `deno task export --refresh <model.onnx>` brings an older export's card up to date in place
 * ({@linkcode refreshCard}), leaving its graph as it is.
 *
 * @module
 */

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema, StringStringEntryProtoSchema, TensorProto_DataType } from "onnx-buf";
import { basename, dirname, join } from "node:path";
import denoJson from "../deno.json" with { type: "json" };
import { cardSplitSeed, type ModelCard } from "../model/card.ts";
import { readModelCard } from "../model/onnx.ts";
import { DATA_SCALING, PIXEL_RANGE } from "../model/scaling.ts";
import { type Checkpoint, loadCheckpoint, type NamedTensors } from "./checkpoint.ts";
import { FlagError, type FlagTable, runFlagCommand, usageText } from "./cli.ts";
import { countClasses, loadDataset } from "./data.ts";
import {
  classCount,
  countParameters,
  describeUNet,
  isConditional,
  outputChannels,
  type UNetConfig,
  unetForward,
  validateConfig,
} from "./network.ts";
import { OnnxGraphBuilder } from "./onnx_graph.ts";
import { checkpointConfig, checkpointSplitSeed } from "./run_state.ts";

/** The ONNX opset the exporter targets. */
export const OPSET = 17;

/** A graph input or output: its name, dims ("N" for the dynamic batch) and a description. */
export interface GraphIO {
  name: string;
  dims: (number | "N")[];
  doc?: string;
  /** Element type. Default float32. */
  type?: "float32" | "int64";
}

/** Serialises a built graph as an opset-17 float32 model with the given metadata. */
export function onnxModelBytes(
  builder: OnnxGraphBuilder,
  io: { inputs: GraphIO[]; outputs: GraphIO[] },
  meta: { name: string; docString: string; metadata: { key: string; value: string }[] },
): Uint8Array {
  const valueInfo = ({ name, dims, doc, type }: GraphIO) => ({
    name,
    docString: doc ?? "",
    type: {
      value: {
        case: "tensorType" as const,
        value: {
          elemType: type === "int64" ? TensorProto_DataType.INT64 : TensorProto_DataType.FLOAT,
          shape: {
            dim: dims.map((d) =>
              d === "N"
                ? { value: { case: "dimParam" as const, value: "N" } }
                : { value: { case: "dimValue" as const, value: BigInt(d) } }
            ),
          },
        },
      },
    },
  });
  const model = create(ModelProtoSchema, {
    irVersion: 8n, // the IR version that opset 17 belongs to
    opsetImport: [{ domain: "", version: BigInt(OPSET) }],
    producerName: denoJson.name,
    producerVersion: denoJson.version,
    docString: meta.docString,
    graph: {
      name: meta.name,
      node: builder.nodes,
      initializer: builder.initializers,
      input: io.inputs.map(valueInfo),
      output: io.outputs.map(valueInfo),
    },
    metadataProps: meta.metadata,
  });
  return toBinary(ModelProtoSchema, model);
}

/** Builds the ONNX model bytes from weights in the canonical layouts of `network.ts`. */
export function buildOnnxModel(
  params: NamedTensors,
  config: UNetConfig,
  card: ModelCard,
): Uint8Array {
  validateConfig(config);
  const expected = describeUNet(config).params;
  for (const p of expected) {
    const got = params[p.name];
    if (!got) throw new RangeError(`the weights lack ${p.name} for this network config`);
    if (got.shape.join(",") !== p.shape.join(",")) {
      throw new RangeError(`${p.name} has shape [${got.shape}], the config needs [${p.shape}]`);
    }
  }
  const builder = new OnnxGraphBuilder(params);
  const { imageSize: s, channels: c } = config;
  const conditional = isConditional(config);
  if (conditional && card.classNames?.length !== config.numClasses) {
    throw new RangeError(
      `the network has ${config.numClasses} classes, the card names ${
        card.classNames?.length ?? 0
      }`,
    );
  }
  const out = unetForward(
    builder,
    { name: "x", shape: [-1, c, s, s] },
    { name: "t", shape: [-1] },
    config,
    conditional ? { name: "y", shape: [-1] } : undefined,
  );
  const unused = builder.unusedParameters();
  if (unused.length > 0) {
    throw new RangeError(`the weights have tensors the network lacks: ${unused.join(", ")}`);
  }
  builder.identity(out, "out");
  return onnxModelBytes(builder, {
    inputs: [
      { name: "x", dims: ["N", c, s, s], doc: card.inputs.x },
      { name: "t", dims: ["N"], doc: card.inputs.t },
      ...(conditional
        ? [{ name: "y", dims: ["N"], doc: card.inputs.y, type: "int64" } satisfies GraphIO]
        : []),
    ],
    outputs: [{ name: "out", dims: ["N", outputChannels(config), s, s], doc: card.output }],
  }, {
    name: "ddpm_unet",
    docString:
      `DDPM U-Net (${card.dataset}, ${card.trainingSteps} steps, ${card.prediction} prediction)`,
    metadata: cardMetadata(card),
  });
}

/**
 * The card as `metadata_props`: `ddpm.card` holds the whole card as JSON (what the server
 * reads), and the main fields also stand alone for tools such as Netron.
 */
export function cardMetadata(card: ModelCard): { key: string; value: string }[] {
  return [
    { key: "ddpm.card", value: JSON.stringify(card) },
    {
      key: "ddpm.schedule",
      value:
        `${card.schedule.kind} T=${card.schedule.timesteps} beta ${card.schedule.betaStart}..${card.schedule.betaEnd}`,
    },
    { key: "ddpm.prediction", value: card.prediction },
    { key: "ddpm.variance", value: card.variance },
    { key: "ddpm.image", value: `${card.channels}x${card.imageSize}x${card.imageSize}` },
    { key: "ddpm.dataScaling", value: card.dataScaling },
    { key: "ddpm.dataset", value: card.dataset },
    ...(card.classNames ? [{ key: "ddpm.classNames", value: card.classNames.join(",") }] : []),
    ...(card.classCounts ? [{ key: "ddpm.classCounts", value: card.classCounts.join(",") }] : []),
    { key: "ddpm.trainingSteps", value: String(card.trainingSteps) },
    { key: "ddpm.parameters", value: String(card.parameters) },
  ];
}

/** The card of a checkpoint's network. */
export function modelCard(ckpt: Checkpoint, weights: "ema" | "raw"): ModelCard {
  const config = checkpointConfig(ckpt);
  const metadata = ckpt.metadata as {
    dataset?: string;
    classNames?: string[];
    classCounts?: number[];
    backend?: string;
    initializedFrom?: { path: string; step: number };
  };
  const numClasses = classCount(config);
  // The card's schema is narrower than the checkpoint's header types: loadCheckpoint accepted
  // only a known prediction and schedule kind, and a server refuses other channel counts.
  const prediction = ckpt.prediction as ModelCard["prediction"];
  const schedule = ckpt.schedule as ModelCard["schedule"];
  const state = ckpt.trainingState as { wallSeconds?: number; lossSmoothed?: number };
  return {
    format: "onnx",
    opset: OPSET,
    exporter: { name: denoJson.name, version: denoJson.version },
    inputs: {
      x: "float32 [N, C, H, W]: x_t, images scaled to [-1, 1]",
      t: "float32 [N]: 0-based timestep of each image",
      ...(numClasses > 0
        ? {
          y: `int64 [N]: class of each image, 0..${numClasses - 1}, or ${numClasses} for no class`,
        }
        : {}),
    },
    output: config.learnVariance
      ? `float32 [N, 2C, H, W]: per image, channels 0..C-1 the predicted ${ckpt.prediction}, ` +
        "channels C..2C-1 the variance value v: log sigma^2 = frac log beta_t + (1 - frac) " +
        "log beta_tilde_t (clipped at t = 0) with frac = (v + 1) / 2 (Improved DDPM's learned range)"
      : `float32 [N, C, H, W]: the predicted ${ckpt.prediction}`,
    schedule,
    prediction,
    variance: config.learnVariance ? "learned-range" : "fixedlarge",
    imageSize: config.imageSize,
    channels: config.channels as ModelCard["channels"],
    dataScaling: DATA_SCALING,
    pixelRange: PIXEL_RANGE,
    dataset: metadata.dataset ?? "unknown",
    ...(numClasses > 0 && metadata.classNames ? { classNames: metadata.classNames } : {}),
    ...(numClasses > 0 && metadata.classCounts ? { classCounts: metadata.classCounts } : {}),
    ...(metadata.initializedFrom ? { initializedFrom: metadata.initializedFrom } : {}),
    trainingSteps: ckpt.step,
    seed: ckpt.seed,
    splitSeed: checkpointSplitSeed(ckpt),
    parameters: countParameters(describeUNet(config).params),
    weights,
    config,
    ...(state.wallSeconds !== undefined ? { trainingWallSeconds: state.wallSeconds } : {}),
    ...(Number.isFinite(state.lossSmoothed) ? { trainingLoss: state.lossSmoothed } : {}),
    ...(metadata.backend ? { trainedOn: metadata.backend } : {}),
    createdAt: new Date().toISOString(),
  };
}

/**
 * Exports a checkpoint: the `.onnx` file and `<name>.json` card beside it. Both are written to
 * temporary files and renamed into place only when both are complete, so a failed export
 * leaves nothing behind; a corrupt checkpoint fails before anything is written.
 */
export async function exportCheckpoint(
  ckptPath: string,
  outPath: string,
  options: { raw?: boolean } = {},
): Promise<{ onnx: string; card: string; modelCard: ModelCard; bytes: number }> {
  if (!outPath.endsWith(".onnx")) {
    throw new RangeError(`the output must be a .onnx file, got ${outPath}`);
  }
  const ckpt = await loadCheckpoint(ckptPath);
  const weights = options.raw ? "raw" : "ema";
  const card = modelCard(ckpt, weights);
  const bytes = buildOnnxModel(options.raw ? ckpt.params : ckpt.ema, card.config, card);
  const files = await writeOnnxFiles(bytes, card, outPath);
  return { ...files, modelCard: card, bytes: bytes.length };
}

/**
 * Brings an exported model's card up to what this exporter writes, in place: a conditional
 * model's card without `classCounts` (exported before cards carried them) gets them, counted
 * on its dataset's training split (the split seed of {@linkcode cardSplitSeed} and the default
 * held-out share, as `eval` rebuilds the split). The card is rewritten in the `.json` beside
 * the file and in its `metadata_props`; the graph and its weights are not touched. Returns the
 * card and the fields added (none when it was already complete, and nothing is written then).
 */
export async function refreshCard(
  onnxPath: string,
): Promise<{ card: ModelCard; added: string[] }> {
  if (!onnxPath.endsWith(".onnx")) {
    throw new RangeError(`the model must be a .onnx file, got ${onnxPath}`);
  }
  const bytes = await Deno.readFile(onnxPath);
  const card = readModelCard(bytes, onnxPath);
  const numClasses = classCount(card.config);
  if (numClasses === 0 || card.classCounts !== undefined) return { card, added: [] };
  const { train } = await loadDataset(card.dataset, {
    seed: cardSplitSeed(card),
    imageSize: card.imageSize,
    channels: card.channels,
  });
  const counts = countClasses(train);
  if (counts.length !== numClasses) {
    throw new RangeError(
      `${onnxPath}: its network has ${numClasses} classes, dataset ${card.dataset} has ` +
        `${counts.length}`,
    );
  }
  // The counts go after classNames, where a fresh export writes them.
  const refreshed = Object.fromEntries(
    Object.entries(card).flatMap(([key, value]) =>
      key === "classNames" ? [[key, value], ["classCounts", counts]] : [[key, value]]
    ),
  ) as ModelCard;
  const model = fromBinary(ModelProtoSchema, bytes);
  model.metadataProps = [
    ...model.metadataProps.filter((p) => !p.key.startsWith("ddpm.")),
    ...cardMetadata(refreshed).map((p) => create(StringStringEntryProtoSchema, p)),
  ];
  await writeOnnxFiles(toBinary(ModelProtoSchema, model), refreshed, onnxPath);
  return { card: refreshed, added: ["classCounts"] };
}

/**
 * Writes `model.onnx` and its card `model.json`, both to temporary files first and renamed into
 * place only when both are complete, so a failure leaves neither behind.
 */
export async function writeOnnxFiles(
  bytes: Uint8Array,
  card: unknown,
  outPath: string,
): Promise<{ onnx: string; card: string }> {
  if (!outPath.endsWith(".onnx")) {
    throw new RangeError(`the output must be a .onnx file, got ${outPath}`);
  }
  const cardPath = outPath.replace(/\.onnx$/, ".json");
  await Deno.mkdir(dirname(outPath) || ".", { recursive: true });
  const suffix = `.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const temps = [outPath + suffix, cardPath + suffix];
  try {
    await Deno.writeFile(temps[0], bytes);
    await Deno.writeTextFile(temps[1], JSON.stringify(card, null, 2) + "\n");
    await Deno.rename(temps[0], outPath);
    await Deno.rename(temps[1], cardPath);
  } catch (error) {
    for (const temp of temps) await Deno.remove(temp).catch(() => {});
    throw error;
  }
  return { onnx: outPath, card: cardPath };
}

/** The flags of `deno task export`. */
const EXPORT_FLAGS: FlagTable = {
  ckpt: {
    help: "a checkpoint (.ddpm), or a run directory for its newest complete checkpoint",
  },
  out: {
    help: "the .onnx file to write (its card goes beside it as .json); default beside the\n" +
      "checkpoint, with .onnx for .ddpm (runs/x/ckpt-00001000.onnx)",
  },
  raw: {
    boolean: true,
    help: "export the live training weights instead of their exponential moving average\n" +
      "(EMA, the default and what the paper samples from: smoother, better samples); raw is\n" +
      "for comparing the two or for a run too short for the EMA to have caught up",
  },
  refresh: {
    help: "instead of exporting: bring an exported model's card up to date in place (a\n" +
      "conditional model exported before cards had classCounts gets them, counted on its\n" +
      "dataset's training split); its network is not touched",
  },
  help: { boolean: true, help: "show this help" },
};

const EXPORT_USAGE = usageText(
  "deno task export --ckpt <checkpoint.ddpm | run dir> [--out <file.onnx>] [--raw]\n" +
    "       deno task export --refresh <model.onnx>",
  "Writes a trained U-Net as an ONNX model with its model card, for deno task serve and eval.",
  EXPORT_FLAGS,
);

/**
 * Where `deno task export` writes when `--out` is not given: beside the checkpoint, with its
 * name and `.onnx` (`runs/x/ckpt-00001000.ddpm` -> `runs/x/ckpt-00001000.onnx`).
 *
 * @example
 * ```ts
 * import { defaultExportPath } from "./export.ts";
 * console.assert(defaultExportPath("runs/x/ckpt-00001000.ddpm") === "runs/x/ckpt-00001000.onnx");
 * ```
 */
export function defaultExportPath(ckptPath: string): string {
  return join(dirname(ckptPath), basename(ckptPath).replace(/\.ddpm$/, "") + ".onnx");
}

if (import.meta.main) {
  await runFlagCommand(EXPORT_USAGE, EXPORT_FLAGS, async (flags) => {
    if (flags.given("refresh")) {
      if (flags.given("ckpt") || flags.given("out") || flags.boolean("raw")) {
        throw new FlagError(
          "--refresh updates a model in place; it takes no --ckpt, --out or --raw",
        );
      }
      const path = flags.text("refresh");
      if (!path.endsWith(".onnx")) {
        throw new FlagError(`--refresh must name a .onnx file, got ${path}`);
      }
      if (!(await Deno.stat(path).catch(() => null))?.isFile) {
        throw new Error(`--refresh ${path}: no such file`);
      }
      const { added } = await refreshCard(path);
      console.log(
        added.length > 0
          ? `${path}: its card gained ${added.join(", ")} (${path.replace(/\.onnx$/, ".json")} ` +
            "and the model's metadata); the network is unchanged"
          : `${path}: its card is up to date; nothing written`,
      );
      return 0;
    }
    if (!flags.given("ckpt")) throw new FlagError("--ckpt is required: the checkpoint to export");
    if (flags.given("out") && !flags.text("out").endsWith(".onnx")) {
      throw new FlagError(`--out must name a .onnx file, got ${flags.text("out")}`);
    }
    let ckptPath = flags.text("ckpt");
    const stat = await Deno.stat(ckptPath).catch(() => null);
    if (!stat) throw new Error(`--ckpt ${ckptPath}: no such file or directory`);
    if (stat.isDirectory) {
      const { latestCheckpoint } = await import("./checkpoint.ts");
      const latest = await latestCheckpoint(ckptPath);
      if (!latest) throw new Error(`--ckpt ${ckptPath}: no complete checkpoint in the directory`);
      ckptPath = latest;
    }
    const out = flags.given("out") ? flags.text("out") : defaultExportPath(ckptPath);
    const raw = flags.boolean("raw");
    const result = await exportCheckpoint(ckptPath, out, { raw });
    console.log(
      `wrote ${result.onnx} (${
        (result.bytes / 1e6).toFixed(2)
      } MB, ${result.modelCard.parameters} parameters, ` +
        `${result.modelCard.weights} weights, step ${result.modelCard.trainingSteps}) and ${result.card}`,
    );
    return 0;
  });
}
