/**
 * The model card: everything a server needs to sample from an exported model, written by the
 * exporter (`train/export.ts`) beside the `.onnx` file and into its `metadata_props`, and read
 * by the server (`serve/registry.ts`), the evaluation (`train/eval.ts`) and the browser
 * playground. One zod schema defines it; the types are inferred from it.
 *
 * @module
 */

import { z } from "zod";
import { PREDICTIONS, VARIANCE_TYPES } from "../lib/parameterization.ts";
import { SCHEDULE_KINDS } from "../lib/schedule.ts";
import { UNetConfigSchema } from "./config.ts";
import { DATA_SCALING } from "./scaling.ts";

/** Everything the exporter writes into a card. */
export const ModelCardSchema = z.looseObject({
  format: z.literal("onnx"),
  opset: z.number().int(),
  exporter: z.object({ name: z.string(), version: z.string() }),
  inputs: z.object({ x: z.string(), t: z.string(), y: z.string().optional() }).describe(
    "The graph inputs; `y` only for a class-conditional network.",
  ),
  output: z.string(),
  schedule: z.object({
    kind: z.enum(SCHEDULE_KINDS),
    timesteps: z.number().int().min(2).max(100_000),
    betaStart: z.number().gt(0).lt(1),
    betaEnd: z.number().gt(0).lt(1),
  }),
  prediction: z.enum(PREDICTIONS),
  variance: z.enum(VARIANCE_TYPES).describe(
    "The reverse-process variance to sample with: fixed, or learned-range when the network " +
      "outputs it (config.learnVariance).",
  ),
  imageSize: z.number().int().min(1).max(4096),
  channels: z.union([z.literal(1), z.literal(3)]),
  dataScaling: z.string().meta({
    description: "How 8-bit pixels map to the model's inputs and outputs, for a person.",
    example: DATA_SCALING,
  }),
  pixelRange: z.tuple([z.number(), z.number()])
    .refine(([low, high]) => low < high, "pixelRange must be [low, high] with low < high")
    .readonly()
    .optional()
    .describe(
      "The interval 8-bit 0..255 maps onto. Absent from cards exported before it was added; " +
        "their dataScaling names it.",
    ),
  dataset: z.string(),
  classNames: z.array(z.string().min(1)).optional().describe(
    "A class-conditional model's classes, index by index; input `y` takes their indices, or " +
      'classNames.length for "no class" (what classifier-free guidance mixes against).',
  ),
  classCounts: z.array(z.number().int().min(0)).optional().describe(
    "How many images of each class (index by index, as classNames) the model trained on: a " +
      "request with no class draws its classes in these proportions (lib's drawClasses), as " +
      "the data has them. Absent from cards exported before it was added: classes drawn " +
      "uniformly.",
  ),
  seed: z.number().optional().describe(
    "The run's seed: its initial weights, its data order and, unless splitSeed says otherwise, " +
      "its train / held-out split (the evaluation's split).",
  ),
  splitSeed: z.number().optional().describe(
    "The seed of the train / held-out split it trained on (the evaluation's split), when the " +
      "exporter recorded it: a run fine-tuned from another run's weights on the same dataset " +
      "keeps that run's split, whatever its own seed.",
  ),
  initializedFrom: z.object({ path: z.string(), step: z.number() }).optional().describe(
    "The checkpoint this model was fine-tuned from, when it did not start from random weights.",
  ),
  trainingSteps: z.number(),
  parameters: z.number(),
  weights: z.enum(["ema", "raw"]).describe(
    '"ema" (the default, what the paper samples from) or "raw" (the live weights).',
  ),
  config: UNetConfigSchema,
  trainingWallSeconds: z.number().optional(),
  trainingLoss: z.number().optional().describe(
    "Smoothed training loss (`L_simple`) at the last step.",
  ),
  trainedOn: z.string().optional().describe(
    "What trained it: the tfjs backend and adapter, as the trainer reported them.",
  ),
  createdAt: z.string(),
});

/** Everything a server needs to sample from an exported model. */
export type ModelCard = z.infer<typeof ModelCardSchema>;

/**
 * The seed of the train / held-out split a card's model trained on: its `splitSeed`, else its
 * `seed`, else 0 (cards older than the seed came from runs at the trainer's default seed, 0).
 */
export function cardSplitSeed(card: Pick<ModelCard, "splitSeed" | "seed">): number {
  return card.splitSeed ?? card.seed ?? 0;
}

/**
 * The fields of a card that sampling reads, checked when a model is loaded; every other field
 * passes through unchecked, so a card from an older exporter still loads.
 */
export const SamplingCardSchema = ModelCardSchema.pick({
  format: true,
  schedule: true,
  prediction: true,
  variance: true,
  imageSize: true,
  channels: true,
  dataScaling: true,
  pixelRange: true,
  dataset: true,
  classNames: true,
  classCounts: true,
}).extend({
  config: UNetConfigSchema.pick({ numClasses: true }).loose().optional(),
});

/** A card as sampling reads it ({@linkcode SamplingCardSchema}). */
export type SamplingCard = z.infer<typeof SamplingCardSchema>;
