/**
 * The PNG file format: {@linkcode encodePng} and {@linkcode decodePng} for still images,
 * {@linkcode readPngHeader} to check size and pixel format before decoding, and
 * {@linkcode encodeApng} for animated PNG (a sampling trajectory, say).
 *
 * Pixels are 8-bit {@linkcode HwcImage}s from `image.ts`, interleaved HWC `[h, w, c]` with 1, 3
 * or 4 channels. Still images go through fast-png; the APNG chunks (CRC-32 included) are
 * written here, with fflate's zlib for compression. Pure TypeScript with no `Deno.*`, no
 * `node:` import and no file I/O, like the rest of `lib/`.
 *
 * @module
 */

import { convertIndexedToRgb, decode, type DecodedPng, encode } from "npm:fast-png@8.0.0";
import { Unzlib, zlibSync } from "npm:fflate@0.8.2";
import { checkHwcImage, type HwcImage, type ImageChannels } from "./image.ts";

/**
 * Encodes an 8-bit HWC image as a lossless PNG (grey, RGB or RGBA, 8 bits per sample).
 *
 * @example
 * ```ts
 * import { encodePng } from "./png.ts";
 *
 * const red = encodePng({ data: new Uint8Array([255, 0, 0]), width: 1, height: 1, channels: 3 });
 * ```
 */
export function encodePng(image: HwcImage): Uint8Array {
  checkHwcImage(image, "image");
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
 * import { encodePng, readPngHeader } from "./png.ts";
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
 * size with {@linkcode readPngHeader} first when the bytes come from outside. Inflating stops
 * at the bytes the header allows ({@linkcode inflatedPngBytes}): image data that inflates to
 * more (a zlib bomb under a small header) throws a `RangeError` after at most about 1 MiB of
 * excess, and ancillary chunks other than `tRNS` (compressed `iCCP`, `zTXt` and `iTXt` among
 * them) are skipped unread, so decoding costs at most what the header's size does.
 *
 * @example
 * ```ts
 * import { decodePng, encodePng } from "./png.ts";
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
  const bounded = _boundedPng(bytes, header);
  let png: DecodedPng;
  try {
    png = decode(bounded, { checkCrc: true });
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

/**
 * The bytes a PNG's image data inflates to, as its header fixes them (PNG spec §7.2, §8.2):
 * per row one filter byte and the row's packed samples, summed over the seven Adam7 passes
 * when interlaced.
 *
 * @example
 * ```ts
 * import { inflatedPngBytes } from "./png.ts";
 * // 28 rows of a filter byte and 28 grey bytes.
 * console.assert(inflatedPngBytes({ width: 28, height: 28, bitDepth: 8, colorType: 0 }) === 812);
 * ```
 */
export function inflatedPngBytes(header: PngHeader, interlaced = false): number {
  const bitsPerPixel = _SAMPLES_PER_PIXEL[header.colorType] * header.bitDepth;
  const rows = (width: number, height: number) =>
    width > 0 && height > 0 ? height * (1 + Math.ceil((width * bitsPerPixel) / 8)) : 0;
  if (!interlaced) return rows(header.width, header.height);
  // Adam7 passes: [x0, y0, dx, dy] (PNG spec §8.2).
  return _ADAM7.reduce(
    (sum, [x0, y0, dx, dy]) =>
      sum + rows(Math.ceil((header.width - x0) / dx), Math.ceil((header.height - y0) / dy)),
    0,
  );
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
 * import { encodeApng } from "./png.ts";
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
    checkHwcImage(frame, `frames[${j}]`);
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
  return _concat(chunks);
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

/** PNG spec §11.2.2: samples per pixel of each colour type (a palette index is one). */
const _SAMPLES_PER_PIXEL: Readonly<Record<PngHeader["colorType"], number>> = {
  0: 1,
  2: 3,
  3: 1,
  4: 2,
  6: 4,
};
const _ADAM7: readonly (readonly [number, number, number, number])[] = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
];
/** The chunks a still image is decoded from; every other (ancillary) chunk is skipped. */
const _DECODED_CHUNKS = new Set(["IHDR", "PLTE", "tRNS", "IDAT", "IEND"]);
/**
 * Compressed bytes fed to the inflater at a time. Deflate expands at most 1032:1 (RFC 1951: a
 * 258-byte match in a code of at least 2 bits), so a piece inflates to at most about 1 MiB
 * before the running total is checked again.
 */
const _INFLATE_PIECE = 1024;

/**
 * The chunks of `bytes` that decoding reads (signature, IHDR, PLTE, tRNS, IDAT, IEND, each
 * with its CRC, in their order), after checking that the image data inflates to no more
 * than the header allows. Throws a `TypeError` for a chunk that runs past the end and a
 * `RangeError` for image data that inflates past {@linkcode inflatedPngBytes}.
 */
function _boundedPng(bytes: Uint8Array, header: PngHeader): Uint8Array {
  // 1. Walk the chunks: length (u32), type, data, CRC (spec §5.3), keeping the decoded ones.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const kept: Uint8Array[] = [bytes.subarray(0, 8)];
  const idat: Uint8Array[] = [];
  let offset = 8;
  while (offset + 12 <= bytes.length) {
    const length = view.getUint32(offset);
    const end = offset + 12 + length;
    if (end > bytes.length) {
      throw new TypeError(
        `bytes are not a valid PNG: a chunk of ${length} bytes at offset ${offset} runs past the end (${bytes.length} bytes)`,
      );
    }
    const type = String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
    if (_DECODED_CHUNKS.has(type)) kept.push(bytes.subarray(offset, end));
    if (type === "IDAT") idat.push(bytes.subarray(offset + 8, end - 4));
    offset = end;
    if (type === "IEND") break;
  }
  // 2. Inflate the image data piece by piece, stopping once it passes the header's size.
  const allowed = inflatedPngBytes(header, bytes[28] === 1);
  let inflated = 0;
  const inflater = new Unzlib((chunk) => {
    inflated += chunk.length;
  });
  try {
    for (const data of idat) {
      for (let i = 0; i < data.length && inflated <= allowed; i += _INFLATE_PIECE) {
        inflater.push(data.subarray(i, i + _INFLATE_PIECE));
      }
    }
  } catch (error) {
    throw new TypeError(`bytes are not a valid PNG: ${_describe(error)}`, { cause: error });
  }
  if (inflated > allowed) {
    throw new RangeError(
      `the image data inflates to more than the ${allowed} bytes its ${header.width}x${header.height} header allows`,
    );
  }
  // 3. Join the kept chunks.
  return _concat(kept);
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
/** The byte arrays one after another. */
function _concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

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
