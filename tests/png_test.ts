import assert from "node:assert/strict";
import { decodeApng, encode } from "fast-png";
import { unzlibSync, zlibSync } from "fflate";
import type { HwcImage, ImageChannels } from "../lib/image.ts";
import { decodePng, encodeApng, encodePng, inflatedPngBytes, readPngHeader } from "../lib/png.ts";
import { concatBytes, crc32, pngChunk, withCrc } from "./_png_bytes.ts";

/** A deterministic image whose bytes differ from pixel to pixel and channel to channel. */
function pattern(width: number, height: number, channels: ImageChannels, seed = 0): HwcImage {
  const data = new Uint8Array(width * height * channels);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + seed * 101 + (i >> 3) * 11) % 256;
  return { data, width, height, channels };
}

/** Pseudo-random bytes (a 32-bit LCG, Numerical Recipes constants): deterministic noise. */
function noise(width: number, height: number, channels: ImageChannels, seed: number): HwcImage {
  const data = new Uint8Array(width * height * channels);
  let state = seed >>> 0;
  for (let i = 0; i < data.length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    data[i] = state >>> 24;
  }
  return { data, width, height, channels };
}

/** One chunk of a PNG: its type, its data and the CRC stored after it. */
interface Chunk {
  readonly type: string;
  readonly data: Uint8Array;
  readonly view: DataView;
  readonly crc: number;
}

/** The chunks of a PNG in file order, read by their length fields. */
function chunks(png: Uint8Array): Chunk[] {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const out: Chunk[] = [];
  for (let offset = 8; offset < png.length;) {
    const length = view.getUint32(offset);
    const data = png.subarray(offset + 8, offset + 8 + length);
    out.push({
      type: String.fromCharCode(...png.subarray(offset + 4, offset + 8)),
      data,
      view: new DataView(data.buffer, data.byteOffset, data.byteLength),
      crc: view.getUint32(offset + 8 + length),
    });
    offset += 12 + length;
  }
  return out;
}

/** The filter type bytes of every row in an IDAT / fdAT zlib stream of 8-bit rows. */
function filterTypes(zlib: Uint8Array, width: number, height: number, channels: number): number[] {
  const rows = unzlibSync(zlib);
  assert.equal(rows.length, (width * channels + 1) * height);
  return Array.from({ length: height }, (_, y) => rows[y * (width * channels + 1)]);
}

/** `png` with one more chunk right after IHDR, for formats fast-png's encoder does not write. */
function withChunkAfterIhdr(png: Uint8Array, type: string, payload: Uint8Array): Uint8Array {
  const chunk = pngChunk(type, payload);
  const ihdrEnd = 8 + 12 + 13;
  const out = new Uint8Array(png.length + chunk.length);
  out.set(png.subarray(0, ihdrEnd));
  out.set(chunk, ihdrEnd);
  out.set(png.subarray(ihdrEnd), ihdrEnd + chunk.length);
  return out;
}

for (const channels of [1, 3, 4] as const) {
  Deno.test(`encodePng() then decodePng() gives back identical bytes for ${channels} channel(s)`, () => {
    const image = pattern(7, 5, channels);
    const decoded = decodePng(encodePng(image));
    assert.deepEqual(decoded, image);
  });
}

Deno.test("readPngHeader() reads size, bit depth and colour type without decoding", () => {
  for (const [channels, colorType] of [[1, 0], [3, 2], [4, 6]] as const) {
    assert.deepEqual(readPngHeader(encodePng(pattern(9, 4, channels))), {
      width: 9,
      height: 4,
      bitDepth: 8,
      colorType,
    });
  }
});

Deno.test("readPngHeader() rejects bytes that are not a PNG with a TypeError", () => {
  const png = encodePng(pattern(2, 2, 1));
  assert.throws(() => readPngHeader(new TextEncoder().encode("GIF89a".padEnd(40))), {
    name: "TypeError",
    message: /not a valid PNG: wrong signature/,
  });
  assert.throws(() => readPngHeader(png.subarray(0, 20)), /at least 33 bytes/);
  const noIhdr = png.slice();
  noIhdr[12] = "X".charCodeAt(0);
  assert.throws(() => readPngHeader(noIhdr), /first chunk must be a 13-byte IHDR/);
});

Deno.test("decodePng() throws a TypeError for truncated or random bytes", () => {
  const png = encodePng(pattern(16, 16, 3));
  const random = Uint8Array.from({ length: 200 }, (_, i) => (i * 73 + 19) % 256);
  const corrupted = png.slice();
  corrupted[png.length - 20] ^= 0xff; // inside IDAT: the CRC check catches it
  for (const bytes of [png.subarray(0, png.length - 30), png.subarray(0, 40), random, corrupted]) {
    assert.throws(() => decodePng(bytes), { name: "TypeError", message: /not a valid PNG/ });
  }
});

Deno.test("decodePng() scales 16-bit samples to 8 bits and keeps grey + alpha as RGBA", () => {
  // 257 * v is v in 16 bits (v * 65535 / 255), so it must come back as exactly v.
  const values = [0, 1, 127, 128, 254, 255];
  const grey16 = encode({
    width: 3,
    height: 2,
    channels: 1,
    depth: 16,
    data: Uint16Array.from(values, (v) => 257 * v),
  });
  assert.deepEqual(decodePng(grey16), {
    data: new Uint8Array(values),
    width: 3,
    height: 2,
    channels: 1,
  });
  const greyAlpha = encode({
    width: 2,
    height: 1,
    channels: 2,
    depth: 8,
    data: Uint8Array.of(10, 20, 30, 40),
  });
  assert.deepEqual(decodePng(greyAlpha).data, Uint8Array.of(10, 10, 10, 20, 30, 30, 30, 40));
});

Deno.test("decodePng() expands 1-bit grey to 0 / 255 and palettes to RGB or RGBA", () => {
  // 10 pixels per row, 2 bytes per row: 1010101010 then 6 padding bits.
  const bits = encode({
    width: 10,
    height: 1,
    channels: 1,
    depth: 1,
    data: Uint8Array.of(0xaa, 0x80),
  });
  assert.deepEqual(
    decodePng(bits).data,
    Uint8Array.from({ length: 10 }, (_, i) => (i % 2 ? 0 : 255)),
  );

  const palette = [[255, 0, 0], [0, 0, 255]];
  const indexed = encode({
    width: 3,
    height: 1,
    channels: 1,
    depth: 8,
    data: Uint8Array.of(1, 0, 1),
    palette,
  });
  assert.deepEqual(decodePng(indexed), {
    data: Uint8Array.of(0, 0, 255, 255, 0, 0, 0, 0, 255),
    width: 3,
    height: 1,
    channels: 3,
  });
  const translucent = [[255, 0, 0, 128], [0, 0, 255, 255]];
  const withAlpha = encode({
    width: 2,
    height: 1,
    channels: 1,
    depth: 8,
    data: Uint8Array.of(0, 1),
    palette: translucent,
  });
  assert.deepEqual(decodePng(withAlpha).data, Uint8Array.of(255, 0, 0, 128, 0, 0, 255, 255));
});

Deno.test("decodePng() turns a grey tRNS colour key into an alpha channel", () => {
  const grey = encodePng({ data: Uint8Array.of(5, 9, 5), width: 3, height: 1, channels: 1 });
  const keyed = withChunkAfterIhdr(grey, "tRNS", Uint8Array.of(0, 5)); // grey 5 is transparent
  assert.deepEqual(decodePng(keyed).data, Uint8Array.of(5, 5, 5, 0, 9, 9, 9, 255, 5, 5, 5, 0));
});

Deno.test("encodePng() rejects a data length that does not match the size", () => {
  assert.throws(
    () => encodePng({ data: new Uint8Array(5), width: 2, height: 1, channels: 3 }),
    /6 bytes for 2x1x3, got 5/,
  );
});

/** A smooth image: bytes grow along x, along y and across channels, so rows predict well. */
function gradient(width: number, height: number, channels: ImageChannels, seed = 0): HwcImage {
  const data = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let k = 0; k < channels; k++) {
        data[(y * width + x) * channels + k] = (3 * x + 5 * y * (k + 1) + 7 * seed + x * y) % 256;
      }
    }
  }
  return { data, width, height, channels };
}

/** `image` with the `w x h` block at `(left, top)` replaced by noise: a partial change. */
function withNoisyBlock(
  image: HwcImage,
  [left, top, w, h]: readonly [number, number, number, number],
  seed: number,
): HwcImage {
  const data = image.data.slice();
  const block = noise(w, h, image.channels, seed).data;
  const c = image.channels;
  for (let y = 0; y < h; y++) {
    const dst = ((top + y) * image.width + left) * c; // HWC
    data.set(block.subarray(y * w * c, (y + 1) * w * c), dst);
  }
  return { ...image, data };
}

Deno.test("encodeApng() frames decode through fast-png's decodeApng to the exact input pixels", () => {
  const seenFilters = new Set<number>();
  for (const channels of [1, 3, 4] as const) {
    const still = noise(24, 16, channels, 9);
    const cases: Array<[string, HwcImage[]]> = [
      ["1x1", [0, 1, 2, 3, 4].map((k) => pattern(1, 1, channels, k))],
      ["3x3", [0, 1, 2].map((k) => pattern(3, 3, channels, k))],
      ["24x16 noise", [1, 2, 3].map((k) => noise(24, 16, channels, k))],
      ["24x16 gradient", [0, 1, 2].map((k) => gradient(24, 16, channels, k))],
      // Only a block changes from frame to frame; every frame must still decode whole.
      ["24x16, part of the image changes", [
        still,
        withNoisyBlock(still, [3, 2, 5, 4], 1),
        withNoisyBlock(still, [10, 9, 7, 6], 2),
        still,
      ]],
    ];
    for (const [size, frames] of cases) {
      const label = `${size}, ${channels} channel(s)`;
      const apng = encodeApng(frames);
      const decoded = decodeApng(apng, { checkCrc: true });
      assert.equal(decoded.width, frames[0].width, label);
      assert.equal(decoded.height, frames[0].height, label);
      assert.equal(decoded.channels, channels, label);
      assert.equal(decoded.depth, 8, label);
      assert.equal(decoded.numberOfFrames, frames.length, label);
      assert.equal(decoded.frames.length, frames.length, label);
      decoded.frames.forEach((frame, j) => {
        assert.deepEqual(frame.data, frames[j].data, `${label}, frame ${j}`);
      });
      for (const chunk of chunks(apng)) {
        if (chunk.type === "IDAT" || chunk.type === "fdAT") {
          const zlib = chunk.type === "IDAT" ? chunk.data : chunk.data.subarray(4);
          const { width, height } = frames[0];
          for (const t of filterTypes(zlib, width, height, channels)) seenFilters.add(t);
        }
      }
    }
  }
  // So that the round trips above exercise every filter the encoder can choose.
  assert.deepEqual([...seenFilters].sort(), [0, 1, 2, 3, 4]);
});

Deno.test("encodeApng() writes IHDR colour type 0, 2 or 6 for 1, 3 or 4 channels at 8 bits", () => {
  for (const [channels, colorType] of [[1, 0], [3, 2], [4, 6]] as const) {
    const apng = encodeApng([pattern(5, 2, channels), pattern(5, 2, channels, 1)]);
    assert.deepEqual(readPngHeader(apng), { width: 5, height: 2, bitDepth: 8, colorType });
    const ihdr = chunks(apng)[0].data;
    assert.deepEqual([...ihdr.subarray(10)], [0, 0, 0], "deflate, adaptive filters, no interlace");
  }
});

Deno.test("encodeApng() writes acTL, then fcTL + IDAT, then fcTL + fdAT per frame, with sequence numbers 0, 1, 2, ...", () => {
  const frames = [0, 1, 2, 3].map((k) => pattern(6, 4, 3, k));
  const apng = encodeApng(frames, { delayMs: 40 });
  const list = chunks(apng);
  assert.deepEqual(list.map((c) => c.type), [
    "IHDR",
    "acTL",
    "fcTL",
    "IDAT",
    "fcTL",
    "fdAT",
    "fcTL",
    "fdAT",
    "fcTL",
    "fdAT",
    "IEND",
  ]);
  const actl = list[1].view;
  assert.equal(actl.getUint32(0), 4, "num_frames");
  assert.equal(actl.getUint32(4), 0, "num_plays: 0 loops forever by default");
  const numbered = list.filter((c) => c.type === "fcTL" || c.type === "fdAT");
  assert.deepEqual(numbered.map((c) => c.view.getUint32(0)), [0, 1, 2, 3, 4, 5, 6]);
  for (const { view } of list.filter((c) => c.type === "fcTL")) {
    assert.equal(view.byteLength, 26);
    assert.deepEqual(
      [1, 2, 3, 4].map((i) => view.getUint32(4 * i)),
      [6, 4, 0, 0],
      "full size at 0,0",
    );
    assert.deepEqual([view.getUint16(20), view.getUint16(22)], [40, 1000], "40 / 1000 s");
    assert.deepEqual([view.getUint8(24), view.getUint8(25)], [0, 0], "dispose NONE, blend SOURCE");
  }
});

Deno.test("encodeApng() stores every chunk with the CRC-32 of its type and data", () => {
  const apng = encodeApng([noise(7, 5, 4, 1), noise(7, 5, 4, 2)]);
  const encoder = new TextEncoder();
  for (const { type, data, crc } of chunks(apng)) {
    const typeAndData = new Uint8Array(4 + data.length);
    typeAndData.set(encoder.encode(type));
    typeAndData.set(data, 4);
    assert.equal(crc, crc32(typeAndData), type);
  }
  // IEND has no data, so every PNG ends in the same 12 bytes; its CRC 0xAE426082 is the value
  // quoted in the PNG spec's examples and visible at the end of any PNG file.
  assert.deepEqual(
    [...apng.subarray(-12)],
    [0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82],
  );
  const corrupted = apng.slice();
  corrupted[apng.length - 20] ^= 0xff; // inside the last fdAT: fast-png's CRC check catches it
  assert.throws(() => decodeApng(corrupted, { checkCrc: true }), /CRC/);
});

Deno.test("encodeApng() stores per-frame delays in milliseconds and the loop count", () => {
  const frames = [0, 1, 2, 3].map((k) => pattern(3, 3, 3, k));
  const decoded = decodeApng(encodeApng(frames, { delayMs: [0, 100, 2500, 65535], loop: 3 }));
  assert.deepEqual(decoded.frames.map((f) => f.delayNumber), [0, 100, 2500, 65535]);
  assert.deepEqual(decoded.frames.map((f) => f.delayDenominator), [1000, 1000, 1000, 1000]);
  assert.equal(decoded.numberOfPlays, 3);
  const byDefault = decodeApng(encodeApng(frames));
  assert.deepEqual(byDefault.frames.map((f) => f.delayNumber), [100, 100, 100, 100]);
  assert.equal(byDefault.numberOfPlays, 0);
  const actl = chunks(encodeApng(frames, { loop: 65535 }))[1];
  assert.equal(actl.type, "acTL");
  assert.equal(actl.view.getUint32(4), 65535, "num_plays");
});

Deno.test("encodeApng() turns a single frame into a 1-frame APNG that still decoders read too", () => {
  const frame = pattern(3, 3, 4);
  const apng = encodeApng([frame], { delayMs: 500 });
  const list = chunks(apng);
  assert.deepEqual(list.map((c) => c.type), ["IHDR", "acTL", "fcTL", "IDAT", "IEND"]);
  assert.equal(list[1].view.getUint32(0), 1, "num_frames");
  const decoded = decodeApng(apng, { checkCrc: true });
  assert.equal(decoded.numberOfFrames, 1);
  assert.deepEqual(decoded.frames[0].data, frame.data);
  assert.equal(decoded.frames[0].delayNumber, 500);
  // A decoder without APNG support skips acTL and fcTL and shows the IDAT image.
  assert.deepEqual(decodePng(apng), frame);
});

Deno.test("encodeApng() names bad frames, delays and loop counts in a RangeError", () => {
  const frames = [0, 1].map((k) => pattern(3, 3, 3, k));
  const rejects = (f: () => unknown, message: RegExp) =>
    assert.throws(f, { name: "RangeError", message });
  rejects(() => encodeApng([]), /at least 1 frame, got 0/);
  rejects(() => encodeApng([frames[0], pattern(3, 2, 3)]), /frames\[1\] is 3x2x3.*\(3x3x3\)/);
  rejects(() => encodeApng([frames[0], pattern(3, 3, 4)]), /frames\[1\] is 3x3x4.*\(3x3x3\)/);
  rejects(
    () => encodeApng([frames[0], { ...frames[1], data: new Uint8Array(5) }]),
    /frames\[1\]\.data must have 27 bytes for 3x3x3, got 5/,
  );
  rejects(() => encodeApng(frames, { delayMs: [100] }), /one delay per frame \(2\), got 1/);
  rejects(() => encodeApng(frames, { delayMs: 70000 }), /delayMs must be .*0\.\.65535, got 70000/);
  rejects(() => encodeApng(frames, { delayMs: [100, -1] }), /delayMs\[1\] .*0\.\.65535, got -1/);
  rejects(() => encodeApng(frames, { delayMs: [2.5, 100] }), /delayMs\[0\] .*got 2\.5/);
  for (const loop of [-1, 1.5, 65536, NaN]) {
    rejects(() => encodeApng(frames, { loop }), new RegExp(`loop .*0\\.\\.65535, got ${loop}`));
  }
});

Deno.test("inflatedPngBytes() counts a filter byte per row and the packed samples, per Adam7 pass", () => {
  const grey8 = { width: 8, height: 8, bitDepth: 8, colorType: 0 } as const;
  assert.equal(inflatedPngBytes(grey8), 8 * (1 + 8));
  // Adam7 passes of 8x8 by hand (width x height): 1x1, 1x1, 2x1, 2x2, 4x2, 4x4, 8x4; each row
  // is a filter byte and its pixels.
  assert.equal(inflatedPngBytes(grey8, true), 2 + 2 + 3 + 2 * 3 + 2 * 5 + 4 * 5 + 4 * 9);
  // 10 one-bit pixels pack into 2 bytes; 3 RGBA 16-bit pixels are 24 bytes.
  assert.equal(inflatedPngBytes({ width: 10, height: 3, bitDepth: 1, colorType: 0 }), 3 * 3);
  assert.equal(inflatedPngBytes({ width: 3, height: 2, bitDepth: 16, colorType: 6 }), 2 * 25);
});

Deno.test("decodePng() reads an Adam7-interlaced image whose data is exactly the bound", () => {
  // 8x8 grey with pixel (x, y) = 8y + x, written pass by pass with filter type 0 (None).
  const passes = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [
    1,
    0,
    2,
    2,
  ], [0, 1, 1, 2]];
  const raw: number[] = [];
  for (const [x0, y0, dx, dy] of passes) {
    for (let y = y0; y < 8; y += dy) {
      raw.push(0);
      for (let x = x0; x < 8; x += dx) raw.push(8 * y + x);
    }
  }
  const header = { width: 8, height: 8, bitDepth: 8, colorType: 0 } as const;
  assert.equal(raw.length, inflatedPngBytes(header, true));
  const still = encodePng({ data: new Uint8Array(64), width: 8, height: 8, channels: 1 });
  const ihdr = still.slice(8, 33);
  ihdr[8 + 12] = 1; // interlace method: Adam7
  const idat = zlibSync(Uint8Array.from(raw));
  const png = concatBytes([
    still.subarray(0, 8),
    withCrc(ihdr),
    pngChunk("IDAT", idat),
    pngChunk("IEND", new Uint8Array(0)),
  ]);
  assert.deepEqual([...decodePng(png).data], Array.from({ length: 64 }, (_, i) => i));
  // One byte more than the header allows is a RangeError naming the bound.
  const over = concatBytes([
    still.subarray(0, 8),
    withCrc(ihdr),
    pngChunk("IDAT", zlibSync(Uint8Array.from([...raw, 0]))),
    pngChunk("IEND", new Uint8Array(0)),
  ]);
  assert.throws(
    () => decodePng(over),
    /RangeError: the image data inflates to more than the 79 bytes/,
  );
});
