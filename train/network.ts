/**
 * The DDPM U-Net, defined once against an abstract set of operations.
 *
 * {@linkcode unetForward} is written against {@linkcode NetworkOps}, an interface with one
 * method per building block (convolution, dense layer, GroupNorm, attention, ...). Each
 * implementation gives the same walk a different meaning:
 * - `ShapeOps` (here) follows shapes only: it lists every parameter with its shape and
 *   initialiser, and counts FLOPs;
 * - the tfjs implementation (`tfjs_ops.ts`) computes the network for training;
 * - the ONNX exporter emits graph nodes.
 * So the parameter list, the trained network and the exported graph cannot drift apart.
 *
 * The architecture is the paper's (Ho et al. 2020, App. B; official `diffusion_utils` U-Net):
 * a PixelCNN++-style wide ResNet with GroupNorm, two (configurable) residual blocks per
 * resolution, self-attention at the listed resolutions, a sinusoidal timestep embedding through
 * a two-layer MLP added in every residual block, strided-convolution downsampling, nearest
 * neighbour + convolution upsampling, and skip connections. With `numClasses`, a class
 * embedding is added to the timestep embedding (classifier-free guidance's conditional network).
 *
 * Parameters are named by their path (`down.1.res.0.conv1.w`). Canonical layouts, whatever
 * the backend: convolution kernels `[kh, kw, in, out]`, dense weights `[in, out]`, biases
 * and norm scales `[c]`.
 *
 * @module
 */

import { createRng } from "../lib/rng.ts";
import { classCount, isConditional, outputChannels, type UNetConfig } from "../model/config.ts";

// The config is part of the model card, so its definition lives with the card in model/; the
// trainer's modules keep importing it from here, beside the network it configures.
export { classCount, isConditional, outputChannels, type UNetConfig } from "../model/config.ts";

/** Named configurations. */
export const PRESETS: Readonly<Record<"mnist" | "cifar10" | "tiny", UNetConfig>> = {
  /**
   * Small enough to train on a CPU: 28x28 digits, levels 28, 14, 7 with 16, 32, 64 channels,
   * attention at 7x7. 686,769 parameters, 0.147 GFLOP per image forward.
   */
  mnist: {
    imageSize: 28,
    channels: 1,
    ch: 16,
    chMult: [1, 2, 4],
    numResBlocks: 1,
    attnResolutions: [7],
    dropout: 0.1,
    groups: 8,
  },
  /** The paper's CIFAR-10 model (35.7M parameters). */
  cifar10: {
    imageSize: 32,
    channels: 3,
    ch: 128,
    chMult: [1, 2, 2, 2],
    numResBlocks: 2,
    attnResolutions: [16],
    dropout: 0.1,
    groups: 32,
  },
  /** For tests: 8x8 images, every block type present, a few thousand parameters. */
  tiny: {
    imageSize: 8,
    channels: 1,
    ch: 8,
    chMult: [1, 2],
    numResBlocks: 1,
    attnResolutions: [4],
    dropout: 0,
    groups: 4,
  },
};

/** How a parameter starts. */
export type Init =
  /** Variance scaling, fan_avg, uniform (the official code's `default_init(1.0)`). */
  | { kind: "fanAvgUniform"; fanIn: number; fanOut: number }
  /** Zeros: biases, and the output convolutions the official code scales to ~0. */
  | { kind: "zeros" }
  /** Ones: GroupNorm scales. */
  | { kind: "ones" }
  /**
   * A class embedding `[rows, dim]`: rows `N(0, std^2)`, except the last ("no class"), which
   * starts at zero.
   */
  | { kind: "classEmbedding"; std: number };

/** Options of a convolution in the walk. */
export interface ConvOptions {
  outChannels: number;
  kernel: 1 | 3;
  stride: 1 | 2;
  /** Start the kernel at zero (residual outputs, attention output, final convolution). */
  zeroInit?: boolean;
}

/**
 * The building blocks of the U-Net. `T` is whatever an implementation passes between blocks
 * (a tensor, a graph node name, a shape). Spatial maps are logically `[n, c, h, w]`; the
 * implementation chooses its memory layout. Methods that own parameters take the parameter
 * path prefix and read `<name>.w`, `<name>.b` (or `.g`, `.b` for norms).
 */
export interface NetworkOps<T> {
  /** 'same' padding (TensorFlow's: for stride 2 on even sizes the extra pad is at the end). */
  conv2d(x: T, name: string, options: ConvOptions): T;
  /** `[n, in] -> [n, out]`. */
  dense(x: T, name: string, outUnits: number): T;
  /** GroupNorm with epsilon 1e-6 (the official code's), scale `.g` and shift `.b`. */
  groupNorm(x: T, name: string, groups: number): T;
  silu(x: T): T;
  add(a: T, b: T): T;
  /** Adds `v` `[n, c]` to every position of the map `x` `[n, c, h, w]`. */
  addPerChannel(x: T, v: T): T;
  concatChannels(a: T, b: T): T;
  upsampleNearest2x(x: T): T;
  /** Identity outside training. */
  dropout(x: T, rate: number): T;
  /**
   * `softmax(q^T k / sqrt(c)) v` over the `h * w` positions of each example, with q, k, v
   * maps of the same shape; returns a map of that shape.
   */
  attention(q: T, k: T, v: T): T;
  /** Sinusoidal embedding `[n] -> [n, dim]` of the (float) timesteps (official formula). */
  timestepEmbedding(t: T, dim: number): T;
  /** Mean over all positions: `[n, c, h, w] -> [n, c]` (the evaluation classifier's pooling). */
  globalMeanPool(x: T): T;
  /** Row lookup `[n]` integer indices -> `[n, dim]` in the table `<name>.w` `[rows, dim]`. */
  embedding(indices: T, name: string, rows: number, dim: number): T;
}

/** Checks a configuration, naming the bad field and what it allows. */
export function validateConfig(config: UNetConfig): void {
  const positive = (name: string, v: number) => {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`${name} must be a positive integer, got ${v}`);
    }
  };
  positive("imageSize", config.imageSize);
  positive("channels", config.channels);
  positive("ch", config.ch);
  positive("numResBlocks", config.numResBlocks);
  positive("groups", config.groups);
  if (config.timestepDim !== undefined) {
    if (!Number.isInteger(config.timestepDim) || config.timestepDim < 4 || config.timestepDim % 2) {
      throw new RangeError(
        `timestepDim must be an even integer >= 4 (or absent: ch), got ${config.timestepDim}`,
      );
    }
  }
  if (config.numClasses !== undefined && config.numClasses !== 0) {
    positive("numClasses", config.numClasses);
  }
  if (config.learnVariance !== undefined && typeof config.learnVariance !== "boolean") {
    throw new RangeError(
      `learnVariance must be true, false or absent, got ${config.learnVariance}`,
    );
  }
  if (config.chMult.length < 1) throw new RangeError("chMult must list at least one level");
  config.chMult.forEach((m, i) => positive(`chMult[${i}]`, m));
  if (!(config.dropout >= 0 && config.dropout < 1)) {
    throw new RangeError(`dropout must be in [0, 1), got ${config.dropout}`);
  }
  // Every level except the last halves the image; skip connections need exact halves.
  let size = config.imageSize;
  for (let level = 0; level < config.chMult.length - 1; level++) {
    if (size % 2 !== 0) {
      throw new RangeError(
        `imageSize ${config.imageSize} cannot be halved ${config.chMult.length - 1} times ` +
          `(level ${level} is ${size}x${size}); use fewer chMult levels or another size`,
      );
    }
    size /= 2;
  }
  for (const c of [config.ch, ...config.chMult.map((m) => m * config.ch)]) {
    if (c % config.groups !== 0) {
      throw new RangeError(`groups (${config.groups}) must divide every channel count, not ${c}`);
    }
  }
}

/**
 * The U-Net's forward pass: `x` `[n, channels, s, s]` and timesteps `t` `[n]` to a map
 * `[n, outputChannels(config), s, s]` (the input's shape, or twice its channels when the network
 * learns its variance). Steps follow the official model function. A conditional network also takes
 * class indices `y` `[n]` in `0..numClasses`, where `numClasses` itself means "no class".
 */
export function unetForward<T>(
  ops: NetworkOps<T>,
  x: T,
  t: T,
  config: UNetConfig,
  y?: T,
): T {
  validateConfig(config);
  const { ch, chMult, numResBlocks, attnResolutions, dropout, groups } = config;
  const tembDim = ch * 4;
  const numClasses = classCount(config);
  if (numClasses > 0 && y === undefined) {
    throw new RangeError(`the network is conditional on ${numClasses} classes and needs labels y`);
  }
  if (numClasses === 0 && y !== undefined) {
    throw new RangeError("the network is unconditional; it takes no labels y");
  }

  // 1. Timestep embedding through a two-layer MLP, plus the class embedding when conditional
  //    (added after the MLP, as guided-diffusion's `label_emb`).
  let temb = ops.timestepEmbedding(t, config.timestepDim ?? ch);
  temb = ops.dense(temb, "temb.dense0", tembDim);
  temb = ops.dense(ops.silu(temb), "temb.dense1", tembDim);
  if (numClasses > 0) {
    temb = ops.add(temb, ops.embedding(y as T, "class_emb", numClasses + 1, tembDim));
  }

  const resBlock = (h: T, name: string, inCh: number, outCh: number): T => {
    let y = ops.conv2d(ops.silu(ops.groupNorm(h, `${name}.norm1`, groups)), `${name}.conv1`, {
      outChannels: outCh,
      kernel: 3,
      stride: 1,
    });
    y = ops.addPerChannel(y, ops.dense(ops.silu(temb), `${name}.temb_proj`, outCh));
    y = ops.dropout(ops.silu(ops.groupNorm(y, `${name}.norm2`, groups)), dropout);
    y = ops.conv2d(y, `${name}.conv2`, {
      outChannels: outCh,
      kernel: 3,
      stride: 1,
      zeroInit: true,
    });
    const skip = inCh === outCh
      ? h
      : ops.conv2d(h, `${name}.skip`, { outChannels: outCh, kernel: 1, stride: 1 });
    return ops.add(skip, y);
  };

  const attnBlock = (h: T, name: string, channels: number): T => {
    const normed = ops.groupNorm(h, `${name}.norm`, groups);
    const proj = (which: string, zeroInit = false) =>
      ops.conv2d(normed, `${name}.${which}`, {
        outChannels: channels,
        kernel: 1,
        stride: 1,
        zeroInit,
      });
    const mixed = ops.attention(proj("q"), proj("k"), proj("v"));
    const out = ops.conv2d(mixed, `${name}.proj_out`, {
      outChannels: channels,
      kernel: 1,
      stride: 1,
      zeroInit: true,
    });
    return ops.add(h, out);
  };

  // 2. Downsampling path; every output is kept for a skip connection.
  const skips: { value: T; channels: number }[] = [];
  let h = ops.conv2d(x, "conv_in", { outChannels: ch, kernel: 3, stride: 1 });
  let channels = ch;
  let size = config.imageSize;
  skips.push({ value: h, channels });
  chMult.forEach((mult, level) => {
    for (let i = 0; i < numResBlocks; i++) {
      h = resBlock(h, `down.${level}.res.${i}`, channels, ch * mult);
      channels = ch * mult;
      if (attnResolutions.includes(size)) h = attnBlock(h, `down.${level}.attn.${i}`, channels);
      skips.push({ value: h, channels });
    }
    if (level !== chMult.length - 1) {
      h = ops.conv2d(h, `down.${level}.downsample`, {
        outChannels: channels,
        kernel: 3,
        stride: 2,
      });
      size /= 2;
      skips.push({ value: h, channels });
    }
  });

  // 3. Middle: residual, attention, residual.
  h = resBlock(h, "mid.res.0", channels, channels);
  h = attnBlock(h, "mid.attn.0", channels);
  h = resBlock(h, "mid.res.1", channels, channels);

  // 4. Upsampling path: one more block per level than on the way down, each fed a skip.
  for (let level = chMult.length - 1; level >= 0; level--) {
    for (let i = 0; i < numResBlocks + 1; i++) {
      const skip = skips.pop();
      if (!skip) throw new Error("unetForward: skip connections exhausted (a bug)");
      h = resBlock(
        ops.concatChannels(h, skip.value),
        `up.${level}.res.${i}`,
        channels + skip.channels,
        ch * chMult[level],
      );
      channels = ch * chMult[level];
      if (attnResolutions.includes(size)) h = attnBlock(h, `up.${level}.attn.${i}`, channels);
    }
    if (level !== 0) {
      h = ops.conv2d(ops.upsampleNearest2x(h), `up.${level}.upsample`, {
        outChannels: channels,
        kernel: 3,
        stride: 1,
      });
      size *= 2;
    }
  }

  // 5. Head: GroupNorm, SiLU, a zero-initialised convolution back to the image channels (twice
  //    them with a learned variance: the prediction, then v).
  h = ops.silu(ops.groupNorm(h, "norm_out", groups));
  return ops.conv2d(h, "conv_out", {
    outChannels: outputChannels(config),
    kernel: 3,
    stride: 1,
    zeroInit: true,
  });
}

/**
 * Initial spread of the class rows: about the size of a trained timestep embedding's entries
 * (rms 0.3 to 0.5 for the shipped mnist model), so classes are told apart from the first step.
 * Measured on that model fine-tuned into a conditional one: zero-initialised rows had moved to
 * 0.013 rms after 1,000 steps and the samples matched their label 17% of the time (chance is
 * 10%). The "no class" row starts at zero, so a network warm-started from an unconditional
 * one computes exactly its function when asked for no class.
 */
const CLASS_EMBEDDING_STD = 0.3;

/** A parameter as the walk meets it. */
export interface ParamSpec {
  readonly name: string;
  readonly shape: readonly number[];
  readonly init: Init;
}

/** Shape of a value in the shape-only walk: `[n, c, h, w]` maps or `[n, d]` vectors. */
export type SymbolicShape = readonly number[];

/**
 * The shape-only implementation: records every parameter (name, shape, initialiser) in walk
 * order and counts multiply-accumulates as 2 FLOPs each for convolutions, dense layers and
 * attention matrix products, per example.
 */
export class ShapeOps implements NetworkOps<SymbolicShape> {
  readonly params: ParamSpec[] = [];
  flops = 0;
  #names = new Set<string>();

  #param(name: string, shape: number[], init: Init): void {
    if (this.#names.has(name)) throw new Error(`parameter ${name} defined twice (a bug)`);
    this.#names.add(name);
    this.params.push({ name, shape, init });
  }

  conv2d(x: SymbolicShape, name: string, o: ConvOptions): SymbolicShape {
    const [n, c, h, w] = x;
    const outH = Math.ceil(h / o.stride), outW = Math.ceil(w / o.stride);
    const fanIn = c * o.kernel * o.kernel, fanOut = o.outChannels * o.kernel * o.kernel;
    this.#param(
      `${name}.w`,
      [o.kernel, o.kernel, c, o.outChannels],
      o.zeroInit ? { kind: "zeros" } : { kind: "fanAvgUniform", fanIn, fanOut },
    );
    this.#param(`${name}.b`, [o.outChannels], { kind: "zeros" });
    this.flops += 2 * fanIn * o.outChannels * outH * outW;
    return [n, o.outChannels, outH, outW];
  }

  dense(x: SymbolicShape, name: string, outUnits: number): SymbolicShape {
    const [n, d] = x;
    this.#param(`${name}.w`, [d, outUnits], { kind: "fanAvgUniform", fanIn: d, fanOut: outUnits });
    this.#param(`${name}.b`, [outUnits], { kind: "zeros" });
    this.flops += 2 * d * outUnits;
    return [n, outUnits];
  }

  groupNorm(x: SymbolicShape, name: string, groups: number): SymbolicShape {
    if (x[1] % groups !== 0) {
      throw new RangeError(`groups (${groups}) must divide the ${x[1]} channels at ${name}`);
    }
    this.#param(`${name}.g`, [x[1]], { kind: "ones" });
    this.#param(`${name}.b`, [x[1]], { kind: "zeros" });
    return x;
  }

  silu(x: SymbolicShape): SymbolicShape {
    return x;
  }

  add(a: SymbolicShape, b: SymbolicShape): SymbolicShape {
    _sameShape(a, b, "add");
    return a;
  }

  addPerChannel(x: SymbolicShape, v: SymbolicShape): SymbolicShape {
    if (v.length !== 2 || v[1] !== x[1]) {
      throw new RangeError(`addPerChannel: [${v}] does not match the channels of [${x}]`);
    }
    return x;
  }

  concatChannels(a: SymbolicShape, b: SymbolicShape): SymbolicShape {
    if (a[0] !== b[0] || a[2] !== b[2] || a[3] !== b[3]) {
      throw new RangeError(`concatChannels: [${a}] and [${b}] differ outside channels`);
    }
    return [a[0], a[1] + b[1], a[2], a[3]];
  }

  upsampleNearest2x(x: SymbolicShape): SymbolicShape {
    return [x[0], x[1], x[2] * 2, x[3] * 2];
  }

  dropout(x: SymbolicShape): SymbolicShape {
    return x;
  }

  attention(q: SymbolicShape, k: SymbolicShape, v: SymbolicShape): SymbolicShape {
    _sameShape(q, k, "attention");
    _sameShape(q, v, "attention");
    const positions = q[2] * q[3];
    this.flops += 2 * 2 * positions * positions * q[1]; // q k^T, then weights times v
    return q;
  }

  globalMeanPool(x: SymbolicShape): SymbolicShape {
    return [x[0], x[1]];
  }

  embedding(indices: SymbolicShape, name: string, rows: number, dim: number): SymbolicShape {
    this.#param(`${name}.w`, [rows, dim], { kind: "classEmbedding", std: CLASS_EMBEDDING_STD });
    return [indices[0], dim];
  }

  timestepEmbedding(t: SymbolicShape, dim: number): SymbolicShape {
    if (dim % 2 !== 0 || dim < 4) {
      throw new RangeError(`embedding dim must be even and >= 4, got ${dim}`);
    }
    return [t[0], dim];
  }
}

function _sameShape(a: SymbolicShape, b: SymbolicShape, what: string): void {
  if (a.length !== b.length || a.some((d, i) => d !== b[i])) {
    throw new RangeError(`${what}: shapes [${a}] and [${b}] differ`);
  }
}

/**
 * Every parameter a network function meets, in walk order, and its forward FLOPs per image:
 * `forward` runs the network on a batch of one with the shape-only ops.
 */
export function describeNetwork(
  forward: (ops: ShapeOps) => SymbolicShape,
): { params: ParamSpec[]; flopsPerImage: number } {
  const ops = new ShapeOps();
  forward(ops);
  return { params: ops.params, flopsPerImage: ops.flops };
}

/** Every parameter of a U-Net configuration, in walk order, and the forward FLOPs per image. */
export function describeUNet(config: UNetConfig): { params: ParamSpec[]; flopsPerImage: number } {
  const image = [1, config.channels, config.imageSize, config.imageSize];
  return describeNetwork((ops) => {
    const out = unetForward(ops, image, [1], config, isConditional(config) ? [1] : undefined);
    _sameShape(
      out,
      [1, outputChannels(config), config.imageSize, config.imageSize],
      "U-Net output",
    );
    return out;
  });
}

/** Number of scalars in the parameters. */
export function countParameters(params: readonly ParamSpec[]): number {
  return params.reduce((sum, p) => sum + p.shape.reduce((a, b) => a * b, 1), 0);
}

/**
 * Initial values for every parameter, drawn from the project's seeded RNG so that every backend
 * starts from the same weights. Fan-avg uniform: `U(-l, l)`, `l = sqrt(3 / ((fanIn + fanOut) / 2))`.
 */
export function initParameters(
  params: readonly ParamSpec[],
  seed: number,
): Map<string, { shape: number[]; data: Float32Array }> {
  const rng = createRng(seed);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const p of params) {
    const size = p.shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    switch (p.init.kind) {
      case "zeros":
        data = new Float32Array(size);
        break;
      case "ones":
        data = new Float32Array(size).fill(1);
        break;
      case "fanAvgUniform": {
        const limit = Math.sqrt(3 / ((p.init.fanIn + p.init.fanOut) / 2));
        data = rng.uniform(size).map((u) => (2 * u - 1) * limit);
        break;
      }
      case "classEmbedding": {
        const std = p.init.std;
        const dim = p.shape[p.shape.length - 1];
        data = rng.normal(size).map((z, i) => (i < size - dim ? std * z : 0));
        break;
      }
      default: {
        const unknown: never = p.init;
        throw new Error(`unknown initialiser ${JSON.stringify(unknown)}`);
      }
    }
    out.set(p.name, { shape: [...p.shape], data });
  }
  return out;
}
