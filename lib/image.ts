/**
 * Image helpers: model space to 8-bit and back, NCHW to HWC and back, sample grids, PNG and
 * animated PNG, resizing and channel conversion.
 *
 * Everything here is pure TypeScript with no `Deno.*`, no `node:` import and no file I/O, so
 * the trainer, an edge runtime and a browser run the same code. Model tensors are
 * `Float32Array` in NCHW `[n, c, h, w]` with data scaled to [-1, 1] as in the DDPM paper
 * (Ho et al. 2020, §3.3: "image data consists of integers in {0, 1, ..., 255} scaled linearly
 * to [-1, 1]"). PNG pixels are 8-bit and interleaved HWC `[h, w, c]`; an {@linkcode HwcImage}
 * holds one such image and is what the PNG functions take and return.
 *
 * @example Save a batch of samples as one PNG
 * ```ts
 * import { encodePng, makeGrid, toUint8 } from "./image.ts";
 *
 * const samples = new Float32Array(4 * 3 * 8 * 8); // NCHW [4, 3, 8, 8], values in [-1, 1]
 * const png = encodePng(makeGrid(toUint8(samples), [4, 3, 8, 8]));
 * ```
 *
 * @module
 */

import { convertIndexedToRgb, decode, type DecodedPng, encode } from "fast-png";
import { zlibSync } from "fflate";

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
  _checkTensor("x", x, shape);
  const [n, c, h, w] = shape;
  const hw = h * w;
  const out = _sameKind(x, x.length);
  for (let b = 0; b < n; b++) {
    for (let k = 0; k < c; k++) {
      const plane = (b * c + k) * hw; // NCHW [n, c, h, w]: start of plane (b, k)
      for (let p = 0; p < hw; p++) out[(b * hw + p) * c + k] = x[plane + p]; // NHWC
    }
  }
  return out;
}

/**
 * Reorders a batch from NHWC (PNG pixel order) to NCHW `[n, c, h, w]`; `shape` is the NCHW
 * shape of the result, the same one {@linkcode nchwToHwc} takes, so the two are inverses. For
 * one decoded image use `[1, image.channels, image.height, image.width]`.
 *
 * @example
 * ```ts
 * import { decodePng, fromUint8, hwcToNchw } from "./image.ts";
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
  _checkTensor("x", x, shape);
  const [n, c, h, w] = shape;
  const hw = h * w;
  const out = _sameKind(x, x.length);
  for (let b = 0; b < n; b++) {
    for (let k = 0; k < c; k++) {
      const plane = (b * c + k) * hw; // NCHW [n, c, h, w]: start of plane (b, k)
      for (let p = 0; p < hw; p++) out[plane + p] = x[(b * hw + p) * c + k]; // NHWC
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
 * 8-bit grid goes straight into {@linkcode encodePng}; a float grid goes through
 * {@linkcode toUint8} first.
 *
 * @example
 * ```ts
 * import { encodePng, makeGrid, toUint8 } from "./image.ts";
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
  _checkTensor("x", x, shape);
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
 * Encodes an 8-bit HWC image as a lossless PNG (grey, RGB or RGBA, 8 bits per sample).
 *
 * @example
 * ```ts
 * import { encodePng } from "./image.ts";
 *
 * const red = encodePng({ data: new Uint8Array([255, 0, 0]), width: 1, height: 1, channels: 3 });
 * ```
 */
export function encodePng(image: HwcImage): Uint8Array {
  _checkImage(image, "image");
  const { data, width, height, channels } = image;
  return encode({ data, width, height, channels, depth: 8 });
}

/** The image header of a PNG, as stored in its IHDR chunk. */
export interface PngHeader {
  /** Pixels per row, 1..2^31-1. */
  readonly width: number;
  /** Rows, 1..2^31-1. */
  readonly height: number;
  /** Bits per sample (per palette index for colour type 3). */
  readonly bitDepth: 1 | 2 | 4 | 8 | 16;
  /** 0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA. */
  readonly colorType: 0 | 2 | 3 | 4 | 6;
}

/**
 * Reads the size and pixel format of a PNG from its first 33 bytes (signature and IHDR chunk)
 * without inflating anything, so a server can refuse a huge image before paying for decoding
 * it. Throws a `TypeError` when the bytes do not start like a PNG.
 *
 * @example
 * ```ts
 * import { encodePng, readPngHeader } from "./image.ts";
 *
 * const png = encodePng({ data: new Uint8Array(6), width: 3, height: 2, channels: 1 });
 * readPngHeader(png); // { width: 3, height: 2, bitDepth: 8, colorType: 0 }
 * ```
 */
export function readPngHeader(bytes: Uint8Array): PngHeader {
  // Layout (PNG spec §5.2, §11.2.2): 8-byte signature, then the IHDR chunk: length 13 (u32),
  // "IHDR", width (u32), height (u32), bit depth, colour type, compression, filter, interlace,
  // CRC (u32). Integers are big-endian, as DataView reads them by default.
  if (bytes.length < 33) {
    throw new TypeError(
      `bytes are not a valid PNG: need at least 33 bytes for the signature and IHDR, got ${bytes.length}`,
    );
  }
  if (!_PNG_SIGNATURE.every((b, i) => bytes[i] === b)) {
    throw new TypeError("bytes are not a valid PNG: wrong signature");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = String.fromCharCode(bytes[12], bytes[13], bytes[14], bytes[15]);
  if (type !== "IHDR" || view.getUint32(8) !== 13) {
    throw new TypeError("bytes are not a valid PNG: the first chunk must be a 13-byte IHDR");
  }
  const width = view.getUint32(16);
  const height = view.getUint32(20);
  if (width < 1 || width > _PNG_MAX_SIZE || height < 1 || height > _PNG_MAX_SIZE) {
    throw new TypeError(
      `bytes are not a valid PNG: width and height must be in 1..${_PNG_MAX_SIZE}, got ${width}x${height}`,
    );
  }
  const bitDepth = bytes[24];
  const colorType = bytes[25];
  const allowed = _PNG_BIT_DEPTHS[colorType];
  if (allowed === undefined || !allowed.includes(bitDepth)) {
    throw new TypeError(
      `bytes are not a valid PNG: bit depth ${bitDepth} is not allowed with colour type ${colorType}`,
    );
  }
  return {
    width,
    height,
    bitDepth: bitDepth as PngHeader["bitDepth"],
    colorType: colorType as PngHeader["colorType"],
  };
}

/**
 * Decodes a PNG to an 8-bit HWC image, whatever its pixel format: 16-bit samples are scaled to
 * 8 bits (`round(v / 257)`), 1/2/4-bit grey is scaled up (`v * 255 / (2^depth - 1)`), palette
 * images are expanded to RGB or RGBA, and grey + alpha or a `tRNS` colour key becomes RGBA. So
 * the result has 1, 3 or 4 channels, like every image in this module.
 *
 * Bytes that are not a valid PNG throw a `TypeError` carrying the decoder's message. Check the
 * size with {@linkcode readPngHeader} first when the bytes come from outside.
 *
 * @example
 * ```ts
 * import { decodePng, encodePng } from "./image.ts";
 *
 * const png = encodePng({ data: new Uint8Array([1, 2, 3, 4]), width: 2, height: 2, channels: 1 });
 * decodePng(png).data; // Uint8Array [1, 2, 3, 4]
 * ```
 */
export function decodePng(bytes: Uint8Array): HwcImage {
  const header = readPngHeader(bytes);
  // fast-png 8 reads Adam7 passes as whole bytes per pixel, which is wrong below 8 bits.
  if (bytes[28] === 1 && header.bitDepth < 8) {
    throw new TypeError(
      `unsupported PNG: Adam7-interlaced images with bit depth ${header.bitDepth} cannot be decoded; re-save without interlacing`,
    );
  }
  let png: DecodedPng;
  try {
    png = decode(bytes, { checkCrc: true });
    // Colour type 3 and not the presence of PLTE decides: RGB images may carry a suggested
    // palette too.
    if (header.colorType === 3) {
      const data = convertIndexedToRgb(png);
      const channels = data.length === 4 * png.width * png.height ? 4 : 3;
      return { data, width: png.width, height: png.height, channels };
    }
  } catch (error) {
    throw new TypeError(`bytes are not a valid PNG: ${_describe(error)}`, { cause: error });
  }
  return _to8Bit(png);
}

/** Options of {@linkcode encodeApng}. */
export interface ApngOptions {
  /**
   * How long each frame shows, in milliseconds: one number for every frame or one per frame.
   * Integers in 0..65535, because APNG stores the delay as a 16-bit numerator, here over 1000.
   * Default 100 (10 frames per second).
   */
  readonly delayMs?: number | readonly number[];
  /**
   * How many times the animation plays, an integer in 0..65535 (the acTL `num_plays` field).
   * Default 0, which means forever.
   */
  readonly loop?: number;
}

/**
 * Encodes frames (a sampling trajectory, say) as a lossless animated PNG.
 *
 * Frames may have 1, 3 or 4 channels and are stored as they are: 8-bit grey, RGB or RGBA
 * (colour type 0, 2 or 6). All frames must have the first frame's size and channel count.
 * Every frame is stored whole (full size at offset 0,0, `dispose_op` NONE, `blend_op`
 * SOURCE), so each frame decodes on its own: browsers and fast-png's `decodeApng` give back
 * the input pixels exactly. Frame 0 is also the default image, so a viewer without APNG
 * support shows it as a still PNG. A single frame still gives a valid APNG (an acTL chunk
 * with 1 frame).
 *
 * The chunks are written here, after the APNG specification
 * (https://wiki.mozilla.org/APNG_Specification): signature, IHDR, acTL, then per frame an
 * fcTL followed by IDAT (frame 0) or fdAT (later frames), then IEND. Each frame's rows are
 * filtered adaptively and zlib-compressed with fflate.
 *
 * @example
 * ```ts
 * import { encodeApng } from "./image.ts";
 *
 * const frame = (v: number) =>
 *   ({ data: new Uint8Array(16).fill(v), width: 4, height: 4, channels: 1 as const });
 * const apng = encodeApng([frame(0), frame(128), frame(255)], { delayMs: [100, 100, 1000] });
 * ```
 */
export function encodeApng(frames: readonly HwcImage[], options: ApngOptions = {}): Uint8Array {
  // 1. Check the frames, the delays and the play count.
  if (frames.length < 1) throw new RangeError("frames must hold at least 1 frame, got 0");
  const { width, height, channels } = frames[0];
  frames.forEach((frame, j) => {
    _checkImage(frame, `frames[${j}]`);
    if (frame.width !== width || frame.height !== height || frame.channels !== channels) {
      throw new RangeError(
        `frames[${j}] is ${frame.width}x${frame.height}x${frame.channels}, but all frames must match frames[0] (${width}x${height}x${channels})`,
      );
    }
  });
  if (width > _PNG_MAX_SIZE || height > _PNG_MAX_SIZE) {
    throw new RangeError(
      `frame width and height must be in 1..${_PNG_MAX_SIZE}, got ${width}x${height}`,
    );
  }
  const delayMs = options.delayMs ?? 100;
  const delays = typeof delayMs === "number" ? frames.map(() => delayMs) : [...delayMs];
  if (delays.length !== frames.length) {
    throw new RangeError(
      `delayMs must have one delay per frame (${frames.length}), got ${delays.length}`,
    );
  }
  delays.forEach((d, j) => {
    if (!Number.isInteger(d) || d < 0 || d > 65535) {
      const name = typeof delayMs === "number" ? "delayMs" : `delayMs[${j}]`;
      throw new RangeError(`${name} must be an integer in 0..65535, got ${d}`);
    }
  });
  const loop = options.loop ?? 0;
  if (!Number.isInteger(loop) || loop < 0 || loop > 65535) {
    throw new RangeError(`loop must be an integer in 0..65535, got ${loop}`);
  }

  // 2. Header: IHDR (8 bits per sample, deflate, adaptive filtering, no interlace), then acTL.
  //    Integers are big-endian, as DataView writes them by default.
  const ihdr = new Uint8Array(13);
  const ihdrView = new DataView(ihdr.buffer);
  ihdrView.setUint32(0, width);
  ihdrView.setUint32(4, height);
  ihdr[8] = 8;
  ihdr[9] = _COLOUR_TYPES[channels];
  const actl = new Uint8Array(8);
  const actlView = new DataView(actl.buffer);
  actlView.setUint32(0, frames.length); // num_frames
  actlView.setUint32(4, loop); // num_plays
  const chunks = [
    Uint8Array.from(_PNG_SIGNATURE),
    _pngChunk("IHDR", ihdr),
    _pngChunk("acTL", actl),
  ];

  // 3. Per frame: fcTL, then the compressed filtered rows in IDAT (frame 0, which is also the
  //    default image) or fdAT. fcTL and fdAT share one sequence counter that starts at 0.
  let sequence = 0;
  frames.forEach((frame, j) => {
    const fctl = new Uint8Array(26);
    const fctlView = new DataView(fctl.buffer);
    fctlView.setUint32(0, sequence++);
    fctlView.setUint32(4, width);
    fctlView.setUint32(8, height);
    // x_offset and y_offset (bytes 12..19) stay 0: every frame covers the whole image.
    fctlView.setUint16(20, delays[j]); // delay_num
    fctlView.setUint16(22, 1000); // delay_den: delay_num is in milliseconds
    // dispose_op (byte 24) and blend_op (byte 25) stay 0: NONE and SOURCE.
    chunks.push(_pngChunk("fcTL", fctl));
    const compressed = zlibSync(_filterRows(frame));
    if (j === 0) {
      chunks.push(_pngChunk("IDAT", compressed));
    } else {
      const fdat = new Uint8Array(4 + compressed.length);
      new DataView(fdat.buffer).setUint32(0, sequence++);
      fdat.set(compressed, 4);
      chunks.push(_pngChunk("fdAT", fdat));
    }
  });
  chunks.push(_pngChunk("IEND", new Uint8Array(0)));

  // 4. Join the pieces.
  const apng = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    apng.set(chunk, offset);
    offset += chunk.length;
  }
  return apng;
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
  _checkImage(image, "image");
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
  _checkImage(image, "image");
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
  _checkImage(image, "image");
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
  _checkImage(image, "image");
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

const _PNG_SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
/** PNG spec §11.2.2: width and height fit in 31 bits. */
const _PNG_MAX_SIZE = 2 ** 31 - 1;
/** PNG spec §11.2.2, table 11.1: the bit depths each colour type allows. */
const _PNG_BIT_DEPTHS: Readonly<Record<number, readonly number[]>> = {
  0: [1, 2, 4, 8, 16],
  2: [8, 16],
  3: [1, 2, 4, 8],
  4: [8, 16],
  6: [8, 16],
};

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

function _checkTensor(
  name: string,
  x: ArrayLike<number>,
  shape: readonly [number, number, number, number],
): void {
  if (shape.length !== 4) {
    throw new RangeError(`shape must be [n, c, h, w], got [${shape.join(", ")}]`);
  }
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 1) {
      throw new RangeError(`shape entries must be positive integers, got [${shape.join(", ")}]`);
    }
  }
  const size = shape[0] * shape[1] * shape[2] * shape[3];
  if (x.length !== size) {
    throw new RangeError(
      `${name} must have ${size} elements for shape [${shape.join(", ")}], got ${x.length}`,
    );
  }
}

function _checkChannels(c: number, name: string): ImageChannels {
  if (c !== 1 && c !== 3 && c !== 4) throw new RangeError(`${name} must be 1, 3 or 4, got ${c}`);
  return c;
}

function _checkImage(image: HwcImage, name: string): void {
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

/** PNG spec §11.2.2: the colour type of 8-bit grey, RGB and RGBA. */
const _COLOUR_TYPES: Readonly<Record<ImageChannels, number>> = { 1: 0, 3: 2, 4: 6 };

/**
 * The rows of an 8-bit image as PNG stores them before compression: each row is one filter
 * type byte and the row filtered with it (PNG spec §9). The type is chosen per row by the
 * spec's suggested heuristic (§12.8): the smallest sum of the filtered bytes read as signed
 * values, ties going to the lower type.
 */
function _filterRows(image: HwcImage): Uint8Array {
  const { data, width, height, channels } = image;
  const stride = width * channels;
  const out = new Uint8Array((stride + 1) * height);
  const candidate = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const row = y * stride; // HWC: start of row y
    const dst = y * (stride + 1);
    let best = Infinity;
    for (const type of _FILTER_TYPES) {
      let cost = 0;
      // Each byte is predicted from the same byte of the pixel to the left (a), above (b) and
      // above-left (c); outside the image these are 0. A type stops once it cannot win.
      for (let i = 0; i < stride && cost < best; i++) {
        const a = i >= channels ? data[row + i - channels] : 0;
        const b = y > 0 ? data[row + i - stride] : 0;
        const c = i >= channels && y > 0 ? data[row + i - stride - channels] : 0;
        const v = (data[row + i] - _predict(type, a, b, c)) & 0xff;
        candidate[i] = v;
        cost += v < 128 ? v : 256 - v;
      }
      if (cost < best) {
        best = cost;
        out[dst] = type;
        out.set(candidate, dst + 1);
      }
    }
  }
  return out;
}

/** PNG filter types (spec §9.2): 0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth. */
type _FilterType = 0 | 1 | 2 | 3 | 4;
const _FILTER_TYPES: readonly _FilterType[] = [0, 1, 2, 3, 4];

/** The value filter `type` predicts from the left (a), upper (b) and upper-left (c) bytes. */
function _predict(type: _FilterType, a: number, b: number, c: number): number {
  switch (type) {
    case 0:
      return 0;
    case 1:
      return a;
    case 2:
      return b;
    case 3:
      return (a + b) >> 1;
    case 4: {
      // Paeth: whichever of a, b, c is closest to a + b - c, in that order on ties.
      const pa = Math.abs(b - c);
      const pb = Math.abs(a - c);
      const pc = Math.abs(a + b - 2 * c);
      return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
    default:
      return _unreachable(type);
  }
}

/** One PNG chunk (spec §5.3): data length, type, data, and the CRC of type and data. */
function _pngChunk(type: string, data: Uint8Array): Uint8Array {
  const chunk = new Uint8Array(12 + data.length);
  const view = new DataView(chunk.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) chunk[4 + i] = type.charCodeAt(i);
  chunk.set(data, 8);
  view.setUint32(8 + data.length, _crc32(chunk.subarray(4, 8 + data.length)));
  return chunk;
}

/**
 * CRC-32 of ISO 3309 as PNG uses it (spec Annex D): reflected polynomial 0xEDB88320, initial
 * value and final XOR 0xFFFFFFFF, one table lookup per byte.
 */
function _crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = _CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** `_CRC_TABLE[n]` is the CRC register after shifting byte `n` through 8 steps. */
const _CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});

/** Converts fast-png's grey / grey + alpha / RGB / RGBA output to 8-bit 1, 3 or 4 channels. */
function _to8Bit(png: DecodedPng): HwcImage {
  const { width, height, depth } = png;
  const pixels = width * height;
  const inChannels = png.channels; // 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA
  const colour = inChannels >= 3 ? 3 : 1;
  const raw = _unpackSamples(png);
  const to8 = 255 / (2 ** depth - 1);
  // A tRNS chunk on grey or RGB names one colour (in raw samples) that is fully transparent.
  const key = png.transparency;
  const alpha = inChannels === 2 || inChannels === 4 || key !== undefined;
  const channels: ImageChannels = alpha ? 4 : colour;
  const outColour = alpha ? 3 : colour;
  const data = new Uint8Array(pixels * channels);
  for (let p = 0; p < pixels; p++) {
    const s = p * inChannels;
    const o = p * channels; // HWC
    for (let k = 0; k < outColour; k++) {
      data[o + k] = Math.round(raw[s + (colour === 1 ? 0 : k)] * to8);
    }
    if (inChannels === 2 || inChannels === 4) {
      data[o + 3] = Math.round(raw[s + inChannels - 1] * to8);
    } else if (key !== undefined) {
      let transparent = true;
      for (let k = 0; k < colour; k++) transparent &&= raw[s + k] === key[k];
      data[o + 3] = transparent ? 0 : 255;
    }
  }
  return { data, width, height, channels };
}

/** One raw sample per element: bytes and 16-bit words as they are, 1/2/4-bit rows unpacked. */
function _unpackSamples(png: DecodedPng): ArrayLike<number> {
  const { data, width, height, depth, channels } = png;
  if (depth >= 8) return data;
  // Below 8 bits only grey is left here (palette images went through convertIndexedToRgb);
  // each row starts on a fresh byte, most significant bits first.
  const rowBytes = Math.ceil((width * depth * channels) / 8);
  const perByte = 8 / depth;
  const mask = 2 ** depth - 1;
  const out = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let i = 0; i < width * channels; i++) {
      const byte = data[y * rowBytes + Math.floor(i / perByte)];
      out[y * width * channels + i] = (byte >> (8 - depth * (1 + (i % perByte)))) & mask;
    }
  }
  return out;
}

function _describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  return error.cause instanceof Error ? `${error.message} ${error.cause.message}` : error.message;
}

function _unreachable(value: never): never {
  throw new TypeError(`unexpected value ${value}`);
}
