/**
 * Pixel values and layout: model space to 8-bit and back, NCHW to HWC and back, sample grids,
 * resizing and channel conversion. Reading and writing PNG files lives in `png.ts`.
 *
 * Everything here is pure TypeScript with no `Deno.*`, no `node:` import and no file I/O, so
 * the trainer, an edge runtime and a browser run the same code. Model tensors are
 * `Float32Array` in NCHW `[n, c, h, w]` with data scaled to [-1, 1] as in the DDPM paper
 * (Ho et al. 2020, §3.3: "image data consists of integers in {0, 1, ..., 255} scaled linearly
 * to [-1, 1]"). PNG pixels are 8-bit and interleaved HWC `[h, w, c]`; an {@linkcode HwcImage}
 * holds one such image and is what the PNG functions of `png.ts` take and return.
 *
 * @example Save a batch of samples as one PNG
 * ```ts
 * import { makeGrid, toUint8 } from "./image.ts";
 * import { encodePng } from "./png.ts";
 *
 * const samples = new Float32Array(4 * 3 * 8 * 8); // NCHW [4, 3, 8, 8], values in [-1, 1]
 * const png = encodePng(makeGrid(toUint8(samples), [4, 3, 8, 8]));
 * ```
 *
 * @module
 */

import { checkTensor } from "./forward.ts";

/** Channel counts an 8-bit image may have: grey, RGB or RGBA. */
export type ImageChannels = 1 | 3 | 4;

/**
 * One image in interleaved HWC layout: channel `k` of pixel `(y, x)` is
 * `data[(y * width + x) * channels + k]`.
 *
 * `T` is `Uint8Array` for 8-bit pixels (what the PNG functions take and return) or
 * `Float32Array` for a grid of model-space values that still has to go through
 * {@linkcode toUint8}.
 */
export interface HwcImage<T extends Uint8Array | Float32Array = Uint8Array> {
  /** Pixels, HWC `[height, width, channels]`. */
  readonly data: T;
  /** Pixels per row. */
  readonly width: number;
  /** Rows. */
  readonly height: number;
  /** Samples per pixel: 1 grey, 3 RGB, 4 RGBA. */
  readonly channels: ImageChannels;
}

/** Options of {@linkcode toUint8} and {@linkcode fromUint8}. */
export interface Uint8RangeOptions {
  /**
   * The float interval that maps onto 0..255. Default `[-1, 1]`, the DDPM data range; pass
   * `[0, 1]` for images stored the torchvision way.
   */
  readonly range?: readonly [low: number, high: number];
}

/**
 * Maps model-space floats to 8-bit pixel values: `round((x + 1) * 127.5)` clamped to 0..255,
 * so -1 becomes 0, 0 becomes 128 and 1 becomes 255. NaN becomes 0.
 *
 * Model outputs overshoot [-1, 1] a little, and the last sampling step clips anyway, so out of
 * range values are clamped rather than rejected. Rounding (not truncation) makes this the exact
 * inverse of {@linkcode fromUint8} on the 256 grid values.
 *
 * @example
 * ```ts
 * import { toUint8 } from "./image.ts";
 *
 * toUint8(new Float32Array([-1, 0, 1, 3, NaN])); // Uint8Array [0, 128, 255, 255, 0]
 * ```
 */
export function toUint8(x: Float32Array, options: Uint8RangeOptions = {}): Uint8Array {
  const [low, scale] = _rangeScale(options);
  const out = new Uint8Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = Math.round((x[i] - low) * scale);
    // NaN fails both comparisons and lands on 0.
    out[i] = v > 0 ? (v < 255 ? v : 255) : 0;
  }
  return out;
}

/**
 * Maps 8-bit pixel values to model space, `v / 127.5 - 1`: the DDPM scaling of
 * {0, ..., 255} onto [-1, 1].
 *
 * @example
 * ```ts
 * import { fromUint8 } from "./image.ts";
 *
 * fromUint8(new Uint8Array([0, 255])); // Float32Array [-1, 1]
 * ```
 */
export function fromUint8(
  u: Uint8Array | Uint8ClampedArray,
  options: Uint8RangeOptions = {},
): Float32Array {
  const [low, scale] = _rangeScale(options);
  const out = new Float32Array(u.length);
  for (let i = 0; i < u.length; i++) out[i] = u[i] / scale + low;
  return out;
}

/**
 * Reorders a batch from NCHW `[n, c, h, w]` (model tensors) to NHWC (PNG pixel order), so
 * image `i` is the contiguous slice `[i * h * w * c, (i + 1) * h * w * c)`. For one image pass
 * `n = 1`. The element type is kept.
 *
 * @example
 * ```ts
 * import { nchwToHwc } from "./image.ts";
 *
 * // One 1x2 RGB image: planes R = [1, 2], G = [3, 4], B = [5, 6].
 * nchwToHwc(new Float32Array([1, 2, 3, 4, 5, 6]), [1, 3, 1, 2]); // [1, 3, 5, 2, 4, 6]
 * ```
 */
export function nchwToHwc(
  x: Float32Array,
  shape: readonly [n: number, c: number, h: number, w: number],
): Float32Array;
/** Reorders an 8-bit batch from NCHW to NHWC; see the `Float32Array` overload. */
export function nchwToHwc(
  x: Uint8Array,
  shape: readonly [n: number, c: number, h: number, w: number],
): Uint8Array;
export function nchwToHwc(
  x: Float32Array | Uint8Array,
  shape: readonly [n: number, c: number, h: number, w: number],
): Float32Array | Uint8Array {
  return _reorder(x, shape, "nchw-to-nhwc");
}

/**
 * Reorders a batch from NHWC (PNG pixel order) to NCHW `[n, c, h, w]`; `shape` is the NCHW
 * shape of the result, the same one {@linkcode nchwToHwc} takes, so the two are inverses. For
 * one decoded image use `[1, image.channels, image.height, image.width]`.
 *
 * @example
 * ```ts
 * import { fromUint8, hwcToNchw } from "./image.ts";
 * import { decodePng } from "./png.ts";
 *
 * function toModelInput(png: Uint8Array): Float32Array {
 *   const image = decodePng(png);
 *   return hwcToNchw(fromUint8(image.data), [1, image.channels, image.height, image.width]);
 * }
 * ```
 */
export function hwcToNchw(
  x: Float32Array,
  shape: readonly [n: number, c: number, h: number, w: number],
): Float32Array;
/** Reorders an 8-bit batch from NHWC to NCHW; see the `Float32Array` overload. */
export function hwcToNchw(
  x: Uint8Array,
  shape: readonly [n: number, c: number, h: number, w: number],
): Uint8Array;
export function hwcToNchw(
  x: Float32Array | Uint8Array,
  shape: readonly [n: number, c: number, h: number, w: number],
): Float32Array | Uint8Array {
  return _reorder(x, shape, "nhwc-to-nchw");
}

/** Moves every value between its NCHW and its NHWC position, in the direction asked. */
function _reorder(
  x: Float32Array | Uint8Array,
  shape: readonly [n: number, c: number, h: number, w: number],
  direction: "nchw-to-nhwc" | "nhwc-to-nchw",
): Float32Array | Uint8Array {
  checkTensor("x", x, shape);
  const [n, c, h, w] = shape;
  const hw = h * w;
  const out = _sameKind(x, x.length);
  const toNhwc = direction === "nchw-to-nhwc";
  for (let b = 0; b < n; b++) {
    for (let k = 0; k < c; k++) {
      const plane = (b * c + k) * hw; // NCHW [n, c, h, w]: start of plane (b, k)
      for (let p = 0; p < hw; p++) {
        const nhwc = (b * hw + p) * c + k; // NHWC [n, h, w, c]
        if (toNhwc) out[nhwc] = x[plane + p];
        else out[plane + p] = x[nhwc];
      }
    }
  }
  return out;
}

/** Options of {@linkcode makeGrid}. */
export interface GridOptions {
  /** Tiles per row. Default `ceil(sqrt(n))`, the squarest grid. */
  readonly columns?: number;
  /** Pixels between tiles and around the border. Default 2, as torchvision's `make_grid`. */
  readonly padding?: number;
  /**
   * Value of padding and empty cells, in the units of the input. Default black: 0 for a
   * `Uint8Array`, -1 for a model-space `Float32Array`.
   */
  readonly padValue?: number;
}

/**
 * Tiles a batch NCHW `[n, c, h, w]` into one HWC image, row by row: image `i` goes to grid row
 * `floor(i / columns)` and column `i % columns`. The result is an {@linkcode HwcImage} so an
 * 8-bit grid goes straight into `encodePng` (`png.ts`); a float grid goes through
 * {@linkcode toUint8} first.
 *
 * @example
 * ```ts
 * import { makeGrid, toUint8 } from "./image.ts";
 * import { encodePng } from "./png.ts";
 *
 * const x = new Float32Array(6 * 1 * 4 * 4); // NCHW [6, 1, 4, 4] in [-1, 1]
 * const grid = makeGrid(x, [6, 1, 4, 4], { columns: 3 }); // 3 x 2 tiles
 * // grid.width === 3 * 4 + 4 * 2, grid.height === 2 * 4 + 3 * 2
 * const png = encodePng({ ...grid, data: toUint8(grid.data) });
 * ```
 */
export function makeGrid(
  x: Uint8Array,
  shape: readonly [n: number, c: number, h: number, w: number],
  options?: GridOptions,
): HwcImage<Uint8Array>;
/** Tiles a model-space batch; see the `Uint8Array` overload. */
export function makeGrid(
  x: Float32Array,
  shape: readonly [n: number, c: number, h: number, w: number],
  options?: GridOptions,
): HwcImage<Float32Array>;
export function makeGrid(
  x: Float32Array | Uint8Array,
  shape: readonly [n: number, c: number, h: number, w: number],
  options: GridOptions = {},
): HwcImage<Float32Array | Uint8Array> {
  checkTensor("x", x, shape);
  const [n, c, h, w] = shape;
  const channels = _checkChannels(c, "channels (shape[1])");
  const columns = options.columns ?? Math.ceil(Math.sqrt(n));
  const padding = options.padding ?? 2;
  const isBytes = x instanceof Uint8Array;
  const padValue = options.padValue ?? (isBytes ? 0 : -1);
  if (!Number.isInteger(columns) || columns < 1) {
    throw new RangeError(`columns must be a positive integer, got ${columns}`);
  }
  if (!Number.isInteger(padding) || padding < 0) {
    throw new RangeError(`padding must be a non-negative integer, got ${padding}`);
  }
  if (isBytes ? !Number.isInteger(padValue) || padValue < 0 || padValue > 255 : isNaN(padValue)) {
    throw new RangeError(
      `padValue must be ${isBytes ? "an integer in 0..255" : "a number"}, got ${padValue}`,
    );
  }

  const rows = Math.ceil(n / columns);
  const width = columns * w + (columns + 1) * padding;
  const height = rows * h + (rows + 1) * padding;
  const data = _sameKind(x, width * height * c).fill(padValue);
  for (let i = 0; i < n; i++) {
    const left = padding + (i % columns) * (w + padding);
    const top = padding + Math.floor(i / columns) * (h + padding);
    for (let k = 0; k < c; k++) {
      for (let y = 0; y < h; y++) {
        const src = ((i * c + k) * h + y) * w; // NCHW [n, c, h, w]: row y of plane (i, k)
        const dst = ((top + y) * width + left) * c + k; // HWC [height, width, c]
        for (let xx = 0; xx < w; xx++) data[dst + xx * c] = x[src + xx];
      }
    }
  }
  return { data, width, height, channels };
}

/**
 * Resizes an 8-bit image by nearest neighbour: output pixel `(y, x)` copies the input pixel
 * under its centre. Keeps hard edges and exact colours (masks, pixel art, labels).
 *
 * @example
 * ```ts
 * import { resizeNearest } from "./image.ts";
 *
 * const image = { data: new Uint8Array([0, 255]), width: 2, height: 1, channels: 1 as const };
 * resizeNearest(image, 4, 1).data; // Uint8Array [0, 0, 255, 255]
 * ```
 */
export function resizeNearest(image: HwcImage, width: number, height: number): HwcImage {
  checkHwcImage(image, "image");
  _checkSize(width, height);
  const { data, channels: c } = image;
  const out = new Uint8Array(width * height * c);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(image.height - 1, Math.floor(((y + 0.5) * image.height) / height));
    for (let x = 0; x < width; x++) {
      const sx = Math.min(image.width - 1, Math.floor(((x + 0.5) * image.width) / width));
      const src = (sy * image.width + sx) * c; // HWC
      out.set(data.subarray(src, src + c), (y * width + x) * c);
    }
  }
  return { data: out, width, height, channels: c };
}

/**
 * Resizes an 8-bit image smoothly, each axis on its own: bilinear interpolation between pixel
 * centres when the axis grows (edges clamped, as `align_corners=false`), and area averaging
 * when it shrinks, so every input pixel counts by how much of the output pixel it covers.
 * Plain bilinear would read only 2 of every `k` pixels when shrinking by `k` and alias;
 * averaging is what OpenCV's `INTER_AREA` does.
 *
 * @example
 * ```ts
 * import { resizeBilinear } from "./image.ts";
 *
 * const checks = { data: new Uint8Array([0, 255, 255, 0]), width: 2, height: 2, channels: 1 as const };
 * resizeBilinear(checks, 1, 1).data; // Uint8Array [128], the mean 127.5 rounded
 * ```
 */
export function resizeBilinear(image: HwcImage, width: number, height: number): HwcImage {
  checkHwcImage(image, "image");
  _checkSize(width, height);
  const { data, channels: c } = image;
  const taps = { x: _axisTaps(image.width, width), y: _axisTaps(image.height, height) };

  // 1. Along x, into a float buffer HWC [image.height, width, c] so rounding happens once.
  const rows = new Float64Array(image.height * width * c);
  for (let y = 0; y < image.height; y++) {
    for (let x = 0; x < width; x++) {
      const { first, weights } = taps.x[x];
      for (let k = 0; k < c; k++) {
        let sum = 0;
        for (let j = 0; j < weights.length; j++) {
          sum += weights[j] * data[(y * image.width + first + j) * c + k];
        }
        rows[(y * width + x) * c + k] = sum;
      }
    }
  }

  // 2. Along y, into HWC [height, width, c].
  const out = new Uint8Array(width * height * c);
  for (let y = 0; y < height; y++) {
    const { first, weights } = taps.y[y];
    for (let i = 0; i < width * c; i++) {
      let sum = 0;
      for (let j = 0; j < weights.length; j++) {
        sum += weights[j] * rows[(first + j) * width * c + i];
      }
      out[y * width * c + i] = Math.min(255, Math.max(0, Math.round(sum)));
    }
  }
  return { data: out, width, height, channels: c };
}

/**
 * Converts an 8-bit image to one grey channel with the ITU-R BT.601 luma weights,
 * `Y = 0.299 R + 0.587 G + 0.114 B` (the weights of JPEG and of PIL's `convert("L")`). Alpha is
 * dropped, not composited. A grey image is copied.
 *
 * @example
 * ```ts
 * import { toGrey } from "./image.ts";
 *
 * toGrey({ data: new Uint8Array([255, 0, 0]), width: 1, height: 1, channels: 3 }).data; // [76]
 * ```
 */
export function toGrey(image: HwcImage): HwcImage {
  checkHwcImage(image, "image");
  const { data, width, height, channels } = image;
  const pixels = width * height;
  const out = new Uint8Array(pixels);
  switch (channels) {
    case 1:
      out.set(data);
      break;
    case 3:
    case 4:
      for (let p = 0; p < pixels; p++) {
        const s = p * channels; // HWC
        const luma = 0.299 * data[s] + 0.587 * data[s + 1] + 0.114 * data[s + 2];
        out[p] = Math.min(255, Math.round(luma));
      }
      break;
    default:
      _unreachable(channels);
  }
  return { data: out, width, height, channels: 1 };
}

/**
 * Converts an 8-bit image to RGB: grey is repeated in all three channels, alpha is dropped
 * (not composited), RGB is copied.
 *
 * @example
 * ```ts
 * import { toRgb } from "./image.ts";
 *
 * toRgb({ data: new Uint8Array([7]), width: 1, height: 1, channels: 1 }).data; // [7, 7, 7]
 * ```
 */
export function toRgb(image: HwcImage): HwcImage {
  checkHwcImage(image, "image");
  const { data, width, height, channels } = image;
  const pixels = width * height;
  const out = new Uint8Array(pixels * 3);
  switch (channels) {
    case 1:
      for (let p = 0; p < pixels; p++) out.fill(data[p], 3 * p, 3 * p + 3);
      break;
    case 3:
      out.set(data);
      break;
    case 4:
      for (let p = 0; p < pixels; p++) out.set(data.subarray(4 * p, 4 * p + 3), 3 * p);
      break;
    default:
      _unreachable(channels);
  }
  return { data: out, width, height, channels: 3 };
}

/** Low end and scale of the float <-> 8-bit map; the default gives `(x + 1) * 127.5`. */
function _rangeScale(options: Uint8RangeOptions): [low: number, scale: number] {
  const [low, high] = options.range ?? [-1, 1];
  if (!Number.isFinite(low) || !Number.isFinite(high) || !(low < high)) {
    throw new RangeError(`range must be two finite numbers with low < high, got [${low}, ${high}]`);
  }
  return [low, 255 / (high - low)];
}

function _sameKind(x: Float32Array | Uint8Array, length: number): Float32Array | Uint8Array {
  return x instanceof Float32Array ? new Float32Array(length) : new Uint8Array(length);
}

function _checkChannels(c: number, name: string): ImageChannels {
  if (c !== 1 && c !== 3 && c !== 4) throw new RangeError(`${name} must be 1, 3 or 4, got ${c}`);
  return c;
}

/**
 * Throws a `RangeError` naming `name` unless `image` is a well-formed 8-bit {@linkcode HwcImage}:
 * width and height positive integers, 1, 3 or 4 channels, and `width * height * channels`
 * bytes of data. Every function here and in `png.ts` that takes an image checks it this way.
 */
export function checkHwcImage(image: HwcImage, name: string): void {
  const { width, height, channels, data } = image;
  if (!Number.isInteger(width) || width < 1 || !Number.isInteger(height) || height < 1) {
    throw new RangeError(
      `${name} width and height must be positive integers, got ${width}x${height}`,
    );
  }
  _checkChannels(channels, `${name}.channels`);
  if (data.length !== width * height * channels) {
    throw new RangeError(
      `${name}.data must have ${
        width * height * channels
      } bytes for ${width}x${height}x${channels}, got ${data.length}`,
    );
  }
}

function _checkSize(width: number, height: number): void {
  if (!Number.isInteger(width) || width < 1 || !Number.isInteger(height) || height < 1) {
    throw new RangeError(
      `output width and height must be positive integers, got ${width}x${height}`,
    );
  }
}

/**
 * Input pixels and weights for each output pixel along one axis of `resizeBilinear`; the
 * weights of an output pixel sum to 1 and cover pixels `first, first + 1, ...`.
 */
function _axisTaps(
  inSize: number,
  outSize: number,
): Array<{ first: number; weights: Float64Array }> {
  const taps: Array<{ first: number; weights: Float64Array }> = [];
  for (let o = 0; o < outSize; o++) {
    if (outSize >= inSize) {
      // Bilinear: output centre o + 0.5 sits at input coordinate s, between centres i0, i0 + 1.
      const s = Math.min(inSize - 1, Math.max(0, ((o + 0.5) * inSize) / outSize - 0.5));
      const i0 = Math.floor(s);
      const f = s - i0;
      taps.push(
        i0 + 1 < inSize
          ? { first: i0, weights: Float64Array.of(1 - f, f) }
          : { first: i0, weights: Float64Array.of(1) },
      );
    } else {
      // Area: output pixel o covers input interval [lo, hi); pixel i counts by its overlap.
      const lo = (o * inSize) / outSize;
      const hi = ((o + 1) * inSize) / outSize;
      const first = Math.floor(lo);
      const last = Math.min(inSize - 1, Math.ceil(hi) - 1);
      const weights = new Float64Array(last - first + 1);
      for (let i = first; i <= last; i++) {
        weights[i - first] = ((Math.min(hi, i + 1) - Math.max(lo, i)) * outSize) / inSize;
      }
      taps.push({ first, weights });
    }
  }
  return taps;
}

function _unreachable(value: never): never {
  throw new TypeError(`unexpected value ${value}`);
}
