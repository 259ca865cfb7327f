/**
 * Images in and out of the HTTP layer: uploads (base64 or multipart PNG) checked and converted
 * to a model's shape, and model tensors back to PNG grids and JSON pixels.
 *
 * @module
 */

import {
  fromUint8,
  type HwcImage,
  hwcToNchw,
  makeGrid,
  nchwToHwc,
  resizeBilinear,
  toGrey,
  toRgb,
  toUint8,
} from "../lib/image.ts";
import { decodePng, encodePng, readPngHeader } from "../lib/png.ts";
import { HttpError } from "./errors.ts";
import type { ServedModel } from "./registry.ts";

/** An upload as the model sees it. */
export interface ModelImage {
  /** One image, CHW `[c, h, w]` of the model, in model space. */
  readonly x: Float32Array;
  /** What was done to fit the model ("64x64 RGBA -> 28x28 grey ..."), or null when nothing. */
  readonly conversion: string | null;
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
  model: ServedModel,
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

/**
 * Bytes of a base64 PNG, with or without a `data:` URL prefix; 400 when the text is not
 * base64.
 */
export function fromBase64(text: string, field: string): Uint8Array {
  const payload = text.replace(/^data:[^,]*;base64,/, "").replace(/\s+/g, "");
  let binary: string;
  try {
    binary = atob(payload);
  } catch {
    throw new HttpError(400, "invalid_base64", `${field} must be a base64-encoded PNG`);
  }
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Base64 of bytes (for PNGs inside JSON and server-sent events). */
export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  // Chunks keep String.fromCharCode's argument count within engine limits.
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** A batch (NCHW, model space) as one PNG grid. */
export function gridPng(
  model: ServedModel,
  x: Float32Array,
  n: number,
  columns?: number,
): Uint8Array {
  return encodePng(gridImage(model, x, n, columns));
}

/** A batch (NCHW, model space) as one 8-bit grid image. */
export function gridImage(
  model: ServedModel,
  x: Float32Array,
  n: number,
  columns?: number,
): HwcImage {
  const [c, h, w] = model.imageShape;
  return makeGrid(toUint8(x, { range: model.range }), [n, c, h, w], { columns });
}

/** A batch (NCHW, model space) as 8-bit images in JSON: HWC pixels per image. */
export function jsonImages(
  model: ServedModel,
  x: Float32Array,
  n: number,
): { width: number; height: number; channels: number; pixels: number[] }[] {
  const [c, h, w] = model.imageShape;
  const hwc = nchwToHwc(toUint8(x, { range: model.range }), [n, c, h, w]);
  const per = c * h * w;
  return Array.from({ length: n }, (_, i) => ({
    width: w,
    height: h,
    channels: c,
    pixels: Array.from(hwc.subarray(i * per, (i + 1) * per)),
  }));
}

function _toModel(image: HwcImage, model: ServedModel): Float32Array {
  const [c, h, w] = model.imageShape;
  return hwcToNchw(fromUint8(image.data, { range: model.range }), [1, c, h, w]);
}
