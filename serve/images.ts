/**
 * Images in and out of the HTTP layer: uploads (base64 or multipart PNG) checked and converted
 * to a model's shape (`uploads.ts`, re-exported here), and model tensors back to PNG grids and
 * JSON pixels.
 *
 * @module
 */

import { type HwcImage, makeGrid, nchwToHwc, toUint8 } from "../lib/image.ts";
import { encodePng } from "../lib/png.ts";
import { HttpError } from "./errors.ts";
import type { ServedModel } from "./registry.ts";

export {
  describeChannels,
  imageForModel,
  type ImageForModelOptions,
  type ImageTarget,
  type ModelImage,
} from "./uploads.ts";

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
