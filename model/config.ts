/**
 * The U-Net's hyper-parameters as the trainer, the exporter and the server all read them: the
 * trainer builds the network from them (`train/network.ts`), the exporter writes them into the
 * model card, and the server reads the class count from the card.
 *
 * @module
 */

import { z } from "zod";

/** Hyper-parameters of the U-Net; `UNetConfig` is its inferred type. */
export const UNetConfigSchema = z.object({
  imageSize: z.number().describe("Height = width of the images."),
  channels: z.number().describe("Image channels in and out."),
  ch: z.number().describe("Base channel count."),
  chMult: z.array(z.number()).describe(
    "Channel multiplier per resolution level; the image halves between levels.",
  ),
  numResBlocks: z.number().describe(
    "Residual blocks per level on the way down (the way up has one more, as in the paper).",
  ),
  attnResolutions: z.array(z.number().int().min(0)).describe(
    "Feature-map sizes (height) that get self-attention.",
  ),
  dropout: z.number().describe("Dropout rate inside residual blocks (training only)."),
  groups: z.number().describe("GroupNorm groups; must divide every channel count."),
  timestepDim: z.number().optional().describe(
    "Width of the sinusoidal timestep embedding; absent: ch. A network widened from a narrower " +
      "one (`train --init-from <model> --ch`) keeps its start's, whose frequencies its weights read.",
  ),
  // The class embedding has one more row, index `numClasses`, for "no class": classifier-free
  // guidance trains one network for both (Ho & Salimans 2022).
  numClasses: z.number().int().min(0).optional().describe(
    "Classes of a conditional network (its input `y`); 0 or absent: none.",
  ),
  learnVariance: z.boolean().optional().describe(
    "The network also learns its reverse variance (Improved DDPM's learned range): it outputs " +
      "2 x channels, the prediction and then v per element. Absent: false.",
  ),
});

/** Hyper-parameters of the U-Net (`train/network.ts` checks them with `validateConfig`). */
export type UNetConfig = z.infer<typeof UNetConfigSchema>;

/**
 * The classes of a class-conditional network; 0 for an unconditional one.
 *
 * @example
 * ```ts
 * import { classCount } from "./config.ts";
 * console.assert(classCount({ numClasses: 10 }) === 10 && classCount({}) === 0);
 * ```
 */
export function classCount(config: Pick<UNetConfig, "numClasses">): number {
  return config.numClasses ?? 0;
}

/** True when the config describes a class-conditional network. */
export function isConditional(config: Pick<UNetConfig, "numClasses">): boolean {
  return classCount(config) > 0;
}

/**
 * Channels of the network's output: the image's channels, twice that when it learns its
 * variance (the prediction first, then `v`).
 *
 * @example
 * ```ts
 * import { outputChannels } from "./config.ts";
 * console.assert(outputChannels({ channels: 1 }) === 1);
 * console.assert(outputChannels({ channels: 3, learnVariance: true }) === 6);
 * ```
 */
export function outputChannels(config: Pick<UNetConfig, "channels" | "learnVariance">): number {
  return config.learnVariance ? 2 * config.channels : config.channels;
}
