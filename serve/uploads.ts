/**
 * Uploads checked and converted to a model's shape: {@linkcode imageForModel}. Its own module,
 * with no import of the registry or the runtime, so the decoding Worker (`decode_worker.ts`)
 * loads only this and `lib/`.
 *
 * @module
 */

import {
  fromUint8,
  type HwcImage,
  hwcToNchw,
  resizeBilinear,
  toGrey,
  toRgb,
} from "../lib/image.ts";
import { decodePng, readPngHeader } from "../lib/png.ts";
import { HttpError } from "./errors.ts";

/** An upload as the model sees it. */
export interface ModelImage {
  /** One image, CHW `[c, h, w]` of the model, in model space. */
  readonly x: Float32Array;
  /** What was done to fit the model ("64x64 RGBA -> 28x28 grey ..."), or null when nothing. */
  readonly conversion: string | null;
}

/** What fitting an upload needs of a model: its CHW shape and pixel range. */
export interface ImageTarget {
  /** CHW `[c, h, w]`. */
  readonly imageShape: readonly [number, number, number];
  /** The pixel range of the model's data, `[low, high]` (`ServedModel.range`). */
  readonly range: readonly [number, number];
}

/** Options of {@linkcode imageForModel}. */
export interface ImageForModelOptions {
  /** Field name for messages (`image`, `a`). */
  readonly field: string;
  /** Convert another size or channel count (true) or refuse it with 422 (false). */
  readonly resize: boolean;
  /** Largest width * height accepted, checked before decoding. */
  readonly maxPixels: number;
}

/**
 * Decodes a PNG upload and fits it to the model: the header is read first, so a
 * decompression bomb (a small file that inflates to a huge image) is refused with 413 before
 * anything is inflated; bytes that are not a PNG get 422; a size or channel count other than
 * the model's is converted and reported, or refused with 422 saying what is expected.
 */
export function imageForModel(
  bytes: Uint8Array,
  model: ImageTarget,
  options: ImageForModelOptions,
): ModelImage {
  const { field } = options;
  const [c, h, w] = model.imageShape;
  // 1. Size from the header alone.
  let header;
  try {
    header = readPngHeader(bytes);
  } catch (error) {
    throw new HttpError(422, "invalid_image", `${field}: ${(error as Error).message}`);
  }
  const pixels = header.width * header.height;
  if (pixels > options.maxPixels) {
    throw new HttpError(
      413,
      "image_too_large",
      `${field} is ${header.width}x${header.height} (${pixels} pixels); at most ${options.maxPixels} pixels are accepted`,
    );
  }
  // 2. Decode.
  let image: HwcImage;
  try {
    image = decodePng(bytes);
  } catch (error) {
    // A RangeError is image data that inflates past the header's size: a zlib bomb.
    if (error instanceof RangeError) {
      throw new HttpError(413, "image_too_large", `${field}: ${error.message}`);
    }
    throw new HttpError(422, "invalid_image", `${field}: ${(error as Error).message}`);
  }
  // 3. Fit channels, then size (resizing one channel is cheaper than three).
  const sameSize = image.width === w && image.height === h;
  const sameChannels = image.channels === c;
  if (sameSize && sameChannels) {
    return { x: _toModel(image, model), conversion: null };
  }
  const from = `${image.width}x${image.height} ${describeChannels(image.channels)}`;
  const to = `${w}x${h} ${describeChannels(c)}`;
  if (!options.resize) {
    throw new HttpError(
      422,
      "image_mismatch",
      `${field} is ${from}; the model takes ${to} images. Send one of that size, or resize: true to convert it`,
    );
  }
  const steps: string[] = [];
  if (!sameChannels) {
    image = c === 1 ? toGrey(image) : toRgb(image);
    steps.push(c === 1 ? "BT.601 luma" : "grey to RGB");
    if (image.channels !== c) throw new Error(`channel conversion gave ${image.channels} (a bug)`);
  }
  if (!sameSize) {
    const shrinking = image.width > w || image.height > h;
    image = resizeBilinear(image, w, h);
    steps.push(shrinking ? "area-average resize" : "bilinear resize");
  }
  return { x: _toModel(image, model), conversion: `${from} -> ${to} (${steps.join(", ")})` };
}

/** "grey", "RGB" or "RGBA". */
export function describeChannels(channels: number): string {
  return channels === 1
    ? "grey"
    : channels === 3
    ? "RGB"
    : channels === 4
    ? "RGBA"
    : `${channels}-channel`;
}

function _toModel(image: HwcImage, model: ImageTarget): Float32Array {
  const [c, h, w] = model.imageShape;
  return hwcToNchw(fromUint8(image.data, { range: model.range }), [1, c, h, w]);
}
