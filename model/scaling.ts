/**
 * How 8-bit pixels map to the model's inputs and outputs. A model card states it twice: as
 * numbers (`pixelRange`, what code reads) and as a sentence (`dataScaling`, what a person
 * reads). Cards exported before `pixelRange` existed, such as the ONNX files in `weights/`, have
 * only the sentence, so the range is read from it when the numbers are absent.
 *
 * No zod and no onnxruntime here: the browser bundle (`serve/browser/local.ts`) imports this.
 *
 * @module
 */

/** The float interval that 8-bit 0..255 maps onto, `[low, high]` with low < high. */
export type PixelRange = readonly [number, number];

/** The interval this toolkit trains and exports with (Ho et al. 2020, Sec. 3.3). */
export const PIXEL_RANGE: PixelRange = [-1, 1];

/** The card's sentence for {@linkcode PIXEL_RANGE}. */
export const DATA_SCALING = "x = pixel / 127.5 - 1 (8-bit pixels to [-1, 1])";

/**
 * The `[low, high]` interval named in a card's `dataScaling` text, such as
 * `"x = pixel / 127.5 - 1 (8-bit pixels to [-1, 1])"`; `name` names the model in the error.
 *
 * @example
 * ```ts
 * import { dataRange } from "./scaling.ts";
 * console.assert(dataRange("[0, 1]").join() === "0,1");
 * ```
 */
export function dataRange(dataScaling: string, name = "model"): [number, number] {
  const match = /\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\]/.exec(dataScaling);
  const low = match ? Number(match[1]) : NaN;
  const high = match ? Number(match[2]) : NaN;
  if (!(low < high)) {
    throw new TypeError(
      `model ${name}: dataScaling must name the pixel range as [low, high], got "${dataScaling}"`,
    );
  }
  return [low, high];
}

/**
 * A card's pixel range: its `pixelRange`, or for a card written before that field, the
 * interval its `dataScaling` sentence names ({@linkcode dataRange}).
 */
export function cardPixelRange(
  card: { readonly pixelRange?: PixelRange; readonly dataScaling: string },
  name = "model",
): [number, number] {
  return card.pixelRange
    ? [card.pixelRange[0], card.pixelRange[1]]
    : dataRange(card.dataScaling, name);
}
