import assert from "node:assert/strict";
import {
  fromUint8,
  type HwcImage,
  hwcToNchw,
  type ImageChannels,
  makeGrid,
  nchwToHwc,
  resizeBilinear,
  resizeNearest,
  toGrey,
  toRgb,
  toUint8,
} from "../lib/image.ts";

/** A deterministic image whose bytes differ from pixel to pixel and channel to channel. */
function pattern(width: number, height: number, channels: ImageChannels, seed = 0): HwcImage {
  const data = new Uint8Array(width * height * channels);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + seed * 101 + (i >> 3) * 11) % 256;
  return { data, width, height, channels };
}

Deno.test("toUint8() and fromUint8() invert each other exactly on all 256 byte values", () => {
  const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
  const floats = fromUint8(bytes);
  assert.deepEqual(toUint8(floats), bytes);
  // v / 127.5 - 1 rounded to float32, checked against the same formula in float64.
  for (let v = 0; v < 256; v++) assert.equal(floats[v], Math.fround(v / 127.5 - 1));
});

Deno.test("toUint8() maps -1 to 0, 0 to 128, 1 to 255, clamps out-of-range values and NaN to 0", () => {
  const x = new Float32Array([-1, 0, 1, -3, 2.5, Infinity, -Infinity, NaN]);
  assert.deepEqual(toUint8(x), new Uint8Array([0, 128, 255, 0, 255, 255, 0, 0]));
});

Deno.test("toUint8() and fromUint8() follow a custom range and reject an empty one", () => {
  const range = [0, 1] as const;
  assert.deepEqual(
    toUint8(new Float32Array([0, 0.5, 1]), { range }),
    new Uint8Array([0, 128, 255]),
  );
  assert.deepEqual(fromUint8(new Uint8Array([0, 255]), { range }), new Float32Array([0, 1]));
  assert.throws(() => toUint8(new Float32Array(1), { range: [1, 1] }), RangeError);
});

Deno.test("nchwToHwc() interleaves channel planes and hwcToNchw() undoes it", () => {
  // Two 1x2 RGB images; image b channel k pixel p holds 100 * b + 10 * k + p.
  const shape = [2, 3, 1, 2] as const;
  const nchw = new Float32Array([0, 1, 10, 11, 20, 21, 100, 101, 110, 111, 120, 121]);
  const hwc = nchwToHwc(nchw, shape);
  assert.deepEqual(hwc, new Float32Array([0, 10, 20, 1, 11, 21, 100, 110, 120, 101, 111, 121]));
  assert.deepEqual(hwcToNchw(hwc, shape), nchw);
  assert.deepEqual(hwcToNchw(nchwToHwc(new Uint8Array(nchw), shape), shape), new Uint8Array(nchw));
});

Deno.test("nchwToHwc() rejects a shape that does not match the data length", () => {
  assert.throws(() => nchwToHwc(new Float32Array(5), [1, 1, 2, 3]), /6 elements.*got 5/);
  assert.throws(() => nchwToHwc(new Float32Array(0), [0, 1, 2, 3]), RangeError);
});

Deno.test("makeGrid() puts image i at row floor(i / columns), column i % columns", () => {
  // Five 4x6 RGB images (h != w catches a swap), image i channel k filled with i * 10 + k.
  const [n, c, h, w] = [5, 3, 4, 6];
  const x = new Uint8Array(n * c * h * w);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < c; k++) x.fill(i * 10 + k, (i * c + k) * h * w, (i * c + k + 1) * h * w);
  }
  const padding = 2;
  const grid = makeGrid(x, [n, c, h, w], { padValue: 255 });
  const columns = 3; // ceil(sqrt(5))
  assert.equal(grid.channels, 3);
  assert.equal(grid.width, columns * w + (columns + 1) * padding);
  assert.equal(grid.height, 2 * h + 3 * padding);
  const pixel = (
    y: number,
    xx: number,
  ) => [...grid.data.subarray((y * grid.width + xx) * c, (y * grid.width + xx + 1) * c)];
  for (let i = 0; i < n; i++) {
    const row = Math.floor(i / columns);
    const col = i % columns;
    const centreY = padding + row * (h + padding) + h / 2;
    const centreX = padding + col * (w + padding) + w / 2;
    assert.deepEqual(pixel(centreY, centreX), [i * 10, i * 10 + 1, i * 10 + 2], `image ${i}`);
  }
  assert.deepEqual(pixel(0, 0), [255, 255, 255], "border");
  assert.deepEqual(pixel(padding + 1, padding + w), [255, 255, 255], "gap between tiles 0 and 1");
  const emptyCentre = [padding + (h + padding) + h / 2, padding + 2 * (w + padding) + w / 2];
  assert.deepEqual(pixel(emptyCentre[0], emptyCentre[1]), [255, 255, 255], "unfilled cell 5");
});

Deno.test("makeGrid() pads a float batch with -1 (black) by default and honours columns", () => {
  const grid = makeGrid(new Float32Array(2 * 1 * 2 * 2).fill(0.5), [2, 1, 2, 2], {
    columns: 1,
    padding: 1,
  });
  assert.equal(grid.width, 2 + 2);
  assert.equal(grid.height, 2 * 2 + 3);
  assert.equal(grid.data[0], -1);
  assert.equal(grid.data[1 * grid.width + 1], 0.5);
  assert.equal(grid.data[4 * grid.width + 1], 0.5, "second image is below the first");
});

Deno.test("makeGrid() names a bad channel count, shape or option in a RangeError", () => {
  assert.throws(() => makeGrid(new Uint8Array(8), [1, 2, 2, 2]), /channels \(shape\[1\]\).*got 2/);
  assert.throws(() => makeGrid(new Uint8Array(4), [1, 1, 2, 2.5]), RangeError);
  assert.throws(() => makeGrid(new Uint8Array(4), [1, 1, 2, 2], { columns: 0 }), /columns.*got 0/);
  assert.throws(() => makeGrid(new Uint8Array(4), [1, 1, 2, 2], { padValue: 300 }), /padValue/);
});

Deno.test("resizeBilinear() and resizeNearest() keep a constant image constant", () => {
  for (const channels of [1, 3, 4] as const) {
    const image: HwcImage = {
      data: new Uint8Array(9 * 7 * channels).fill(77),
      width: 9,
      height: 7,
      channels,
    };
    for (const [w, h] of [[9, 7], [4, 3], [20, 15], [3, 14], [1, 1]]) {
      for (const resize of [resizeBilinear, resizeNearest]) {
        const out = resize(image, w, h);
        assert.deepEqual(out, {
          data: new Uint8Array(w * h * channels).fill(77),
          width: w,
          height: h,
          channels,
        });
      }
    }
  }
});

Deno.test("resizeBilinear() averages each 2x2 block when halving a checkerboard", () => {
  const data = Uint8Array.from(
    { length: 8 * 6 },
    (_, i) => ((i % 8) + Math.floor(i / 8)) % 2 ? 255 : 0,
  );
  const out = resizeBilinear({ data, width: 8, height: 6, channels: 1 }, 4, 3);
  // Every block holds two 0s and two 255s: mean 127.5, rounded half up by Math.round.
  assert.deepEqual(out.data, new Uint8Array(4 * 3).fill(128));
});

Deno.test("resizeBilinear() interpolates between pixel centres when enlarging", () => {
  // Output centres of a 2 -> 4 stretch sit at input x = -0.25, 0.25, 0.75, 1.25; the outer two
  // clamp to the edge pixels, the inner two are 1/4 and 3/4 of the way from 0 to 255.
  const out = resizeBilinear(
    { data: Uint8Array.of(0, 255), width: 2, height: 1, channels: 1 },
    4,
    1,
  );
  assert.deepEqual(out.data, Uint8Array.of(0, Math.round(63.75), Math.round(191.25), 255));
  const near = resizeNearest(
    { data: Uint8Array.of(0, 255), width: 2, height: 1, channels: 1 },
    4,
    1,
  );
  assert.deepEqual(near.data, Uint8Array.of(0, 0, 255, 255));
});

Deno.test("resizeBilinear() rejects a non-positive output size", () => {
  assert.throws(() => resizeBilinear(pattern(2, 2, 1), 0, 2), /positive integers, got 0x2/);
});

Deno.test("toGrey() uses BT.601 luma weights and toRgb() repeats grey and drops alpha", () => {
  const red = { data: Uint8Array.of(255, 0, 0), width: 1, height: 1, channels: 3 } as const;
  assert.deepEqual(toGrey(red).data, Uint8Array.of(Math.round(0.299 * 255)));
  const rgbaPixels = {
    data: Uint8Array.of(0, 255, 0, 9, 0, 0, 255, 9),
    width: 2,
    height: 1,
    channels: 4,
  } as const;
  assert.deepEqual(
    toGrey(rgbaPixels).data,
    Uint8Array.of(Math.round(0.587 * 255), Math.round(0.114 * 255)),
  );
  assert.deepEqual(
    toGrey({ data: Uint8Array.of(255, 255, 255), width: 1, height: 1, channels: 3 }).data,
    Uint8Array.of(255),
  );
  assert.deepEqual(
    toRgb({ data: Uint8Array.of(7, 8), width: 2, height: 1, channels: 1 }).data,
    Uint8Array.of(7, 7, 7, 8, 8, 8),
  );
  assert.deepEqual(toRgb(rgbaPixels).data, Uint8Array.of(0, 255, 0, 0, 0, 255));
});
