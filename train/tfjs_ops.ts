/**
 * The U-Net's building blocks in TensorFlow.js, and the network as a `Denoiser`.
 *
 * Tensors are NHWC inside (the layout every tfjs backend's convolutions support); the
 * network's interface stays NCHW like the rest of the toolkit, converted at the boundary.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { nchwToHwc } from "../lib/image.ts";
import { fmix32 } from "../lib/rng.ts";
import type { ConditionalDenoiser } from "../lib/guidance.ts";
import { GROUP_NORM_EPSILON, timestepFrequencies } from "../model/constants.ts";
import {
  type ConvOptions,
  isConditional,
  type NetworkOps,
  type UNetConfig,
  unetForward,
} from "./network.ts";

/** Parameters by path name, in the canonical layouts of `network.ts`. */
export type ParamTensors = ReadonlyMap<string, tf.Tensor>;

/** Options of {@linkcode TfjsOps}. */
export interface TfjsOpsOptions {
  /** Dropout is active only while training. */
  training?: boolean;
  /** Seed of this pass's dropout masks (see {@linkcode dropoutMultipliers}). */
  dropoutSeed?: number;
  /**
   * Index in the whole batch of this tensor's first example. Dropout masks are drawn per example
   * from its index in the batch, so a batch split across workers gets the masks it would get in
   * one piece.
   */
  exampleOffset?: number;
}

/** The blocks of `network.ts` computed with tfjs ops on NHWC tensors. */
export class TfjsOps implements NetworkOps<tf.Tensor> {
  readonly #params: ParamTensors;
  readonly #training: boolean;
  readonly #dropoutSeed: number;
  readonly #exampleOffset: number;
  #dropoutLayer = 0;

  constructor(params: ParamTensors, options: TfjsOpsOptions = {}) {
    this.#params = params;
    this.#training = options.training ?? false;
    this.#dropoutSeed = options.dropoutSeed ?? 0;
    this.#exampleOffset = options.exampleOffset ?? 0;
  }

  #param(name: string): tf.Tensor {
    const p = this.#params.get(name);
    if (!p) throw new RangeError(`the network has no parameter ${name}`);
    return p;
  }

  conv2d(x: tf.Tensor, name: string, options: ConvOptions): tf.Tensor {
    const y = tf.conv2d(
      x as tf.Tensor4D,
      this.#param(`${name}.w`) as tf.Tensor4D,
      options.stride,
      "same",
    );
    return tf.add(y, this.#param(`${name}.b`));
  }

  dense(x: tf.Tensor, name: string): tf.Tensor {
    return tf.add(
      tf.matMul(x as tf.Tensor2D, this.#param(`${name}.w`) as tf.Tensor2D),
      this.#param(`${name}.b`),
    );
  }

  groupNorm(x: tf.Tensor, name: string, groups: number): tf.Tensor {
    return _groupNorm(x, this.#param(`${name}.g`), this.#param(`${name}.b`), groups);
  }

  silu(x: tf.Tensor): tf.Tensor {
    return tf.mul(x, tf.sigmoid(x));
  }

  add(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
    return tf.add(a, b);
  }

  addPerChannel(x: tf.Tensor, v: tf.Tensor): tf.Tensor {
    return tf.add(x, tf.reshape(v, [v.shape[0], 1, 1, v.shape[1] as number]));
  }

  concatChannels(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
    return tf.concat([a, b], 3);
  }

  upsampleNearest2x(x: tf.Tensor): tf.Tensor {
    return _upsampleNearest2x(x);
  }

  dropout(x: tf.Tensor, rate: number): tf.Tensor {
    const layer = this.#dropoutLayer++;
    if (!this.#training || rate === 0) return x;
    const multipliers = dropoutMultipliers(x.shape, rate, {
      seed: this.#dropoutSeed,
      layer,
      exampleOffset: this.#exampleOffset,
    });
    return tf.mul(x, tf.tensor(multipliers, x.shape));
  }

  attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor): tf.Tensor {
    const [n, h, w, c] = q.shape;
    const flat = (t: tf.Tensor) => tf.reshape(t, [n, h * w, c]) as tf.Tensor3D;
    const logits = tf.mul(tf.matMul(flat(q), flat(k), false, true), 1 / Math.sqrt(c));
    const mixed = tf.matMul(tf.softmax(logits) as tf.Tensor3D, flat(v));
    return tf.reshape(mixed, [n, h, w, c]);
  }

  globalMeanPool(x: tf.Tensor): tf.Tensor {
    return tf.mean(x, [1, 2]); // NHWC
  }

  embedding(indices: tf.Tensor, name: string, rows: number): tf.Tensor {
    // A one-hot matrix product rather than a gather: its gradient is a matMul, which every
    // backend has (the WebAssembly backend lacks the scatter that gather's gradient needs).
    const oneHot = tf.oneHot(tf.cast(indices, "int32") as tf.Tensor1D, rows);
    return tf.matMul(
      tf.cast(oneHot, "float32") as tf.Tensor2D,
      this.#param(`${name}.w`) as tf.Tensor2D,
    );
  }

  timestepEmbedding(t: tf.Tensor, dim: number): tf.Tensor {
    const freqs = timestepFrequencies(dim);
    const args = tf.mul(tf.reshape(t, [-1, 1]), tf.tensor2d(freqs, [1, freqs.length]));
    return tf.concat([tf.sin(args), tf.cos(args)], 1);
  }
}

/**
 * Inverted-dropout multipliers for a tensor of `shape` (batch first): `1 / (1 - rate)` where a
 * value is kept, 0 where it is dropped. Each example's mask depends only on the seed, the layer
 * and the example's index in the whole batch (`exampleOffset` + its index here): a counter-based
 * hash (MurmurHash3's finaliser over the example's key XOR a Weyl sequence), so any split of a
 * batch across workers draws the same masks, in any order, and the draw costs one hash per value.
 * A value is kept when the hash's top 24 bits fall below `(1 - rate) 2^24`.
 */
export function dropoutMultipliers(
  shape: readonly number[],
  rate: number,
  options: { seed: number; layer: number; exampleOffset?: number },
): Float32Array {
  if (!(rate >= 0 && rate < 1)) throw new RangeError(`dropout rate must be in [0, 1), got ${rate}`);
  const [n, ...rest] = shape;
  const perExample = rest.reduce((a, b) => a * b, 1);
  const keep = 1 - rate;
  const threshold = Math.round(keep * 2 ** 24);
  const scale = 1 / keep;
  const out = new Float32Array(n * perExample);
  const layerKey = fmix32((options.seed ^ fmix32(options.layer + 0x9e3779b9)) >>> 0);
  const first = options.exampleOffset ?? 0;
  for (let e = 0; e < n; e++) {
    const key = fmix32((layerKey + Math.imul(first + e + 1, 0x85ebca6b)) >>> 0);
    const base = e * perExample;
    for (let i = 0; i < perExample; i++) {
      const h = fmix32((key ^ Math.imul(i + 1, 0x9e3779b9)) >>> 0);
      out[base + i] = h >>> 8 < threshold ? scale : 0;
    }
  }
  return out;
}

/**
 * GroupNorm on NHWC `x` with per-channel scale `g` and shift `b`, with a hand-written gradient.
 * Autodiff through the moments costs about three times as many kernel launches (and builds
 * full-size tensors of ones for the means' gradients); on the WebAssembly backend those
 * element-wise launches, not the convolutions, dominated a training step.
 *
 * Forward, per example and group: `xhat = (x - mean) / sqrt(var + eps)`, `y = g xhat + b`.
 * Backward: `db = sum dy`, `dg = sum dy xhat`, and with `d = dy g`,
 * `dx = (d - mean(d) - xhat mean(d xhat)) / sqrt(var + eps)`.
 */
function _groupNorm(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, groups: number): tf.Tensor {
  const [n, h, w, c] = x.shape;
  const grouped: [number, number, number, number, number] = [n, h, w, groups, c / groups];
  const axes = [1, 2, 4];
  const op = tf.customGrad((xIn, gIn, bIn, save) => {
    const xg = tf.reshape(xIn as tf.Tensor, grouped);
    const centred = tf.sub(xg, tf.mean(xg, axes, true));
    const inv = tf.rsqrt(tf.add(tf.mean(tf.square(centred), axes, true), GROUP_NORM_EPSILON));
    const xhat = tf.mul(centred, inv);
    (save as tf.GradSaveFunc)([xhat, inv, gIn as tf.Tensor]);
    const value = tf.add(
      tf.mul(tf.reshape(xhat, [n, h, w, c]), gIn as tf.Tensor),
      bIn as tf.Tensor,
    );
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xhatSaved, invSaved, gSaved] = saved;
        const xhatFlat = tf.reshape(xhatSaved, [n, h, w, c]);
        const dg = tf.sum(tf.mul(dy, xhatFlat), [0, 1, 2]);
        const db = tf.sum(dy, [0, 1, 2]);
        const d = tf.reshape(tf.mul(dy, gSaved), grouped);
        const correction = tf.add(
          tf.mean(d, axes, true),
          tf.mul(xhatSaved, tf.mean(tf.mul(d, xhatSaved), axes, true)),
        );
        const dx = tf.reshape(tf.mul(tf.sub(d, correction), invSaved), [n, h, w, c]);
        return [dx, dg, db];
      },
    };
  });
  return op(x, g, b);
}

/**
 * Nearest-neighbour 2x upsampling of NHWC `x`, each pixel repeated into a 2x2 block, with the
 * gradient written as the sum over each block: rank-4 reshapes and sums, which every backend
 * has (the WebAssembly backend has no gradient kernel for the resize op itself).
 */
function _upsampleNearest2x(x: tf.Tensor): tf.Tensor {
  const [n, h, w, c] = x.shape;
  const op = tf.customGrad((xIn) => {
    // Without corner alignment or half-pixel centres, output pixel y reads floor(y / 2).
    const value = tf.image.resizeNearestNeighbor(xIn as tf.Tensor4D, [2 * h, 2 * w], false, false);
    return {
      value,
      gradFunc: (dy: tf.Tensor) => {
        const rows = tf.sum(tf.reshape(dy, [n, h, 2, 2 * w * c]), 2); // [n, h, 2w c]
        return tf.reshape(tf.sum(tf.reshape(rows, [n * h, w, 2, c]), 2), [n, h, w, c]);
      },
    };
  });
  return op(x);
}

/**
 * The U-Net on NHWC tensors: `x` `[n, s, s, channels]`, `t` `[n]` float timesteps and, for a
 * conditional network, `y` `[n]` int32 class indices. Not wrapped in `tf.tidy`; the caller
 * owns the intermediates (training needs them for gradients).
 */
export function unetApply(
  params: ParamTensors,
  config: UNetConfig,
  x: tf.Tensor,
  t: tf.Tensor,
  options: TfjsOpsOptions = {},
  y?: tf.Tensor,
): tf.Tensor {
  return unetForward(new TfjsOps(params, options), x, t, config, y);
}

/**
 * The network as a `ConditionalDenoiser` for the samplers (NCHW in and out, evaluation mode);
 * an unconditional network ignores the labels. The output has `outputChannels(config)` channels:
 * a network that learns its variance returns `[n, 2c, h, w]` (the prediction, then `v`). Reads back with `await data()`, the only read
 * that works on every backend.
 */
export function tfjsDenoiser(params: ParamTensors, config: UNetConfig): ConditionalDenoiser {
  return async (x, t, shape, labels) => {
    const [n, c, h, w] = shape;
    const out = tf.tidy(() => {
      const input = tf.tensor4d(nchwToHwc(x, shape), [n, h, w, c]);
      const y = isConditional(config)
        ? tf.tensor1d(labels ?? new Int32Array(n).fill(config.numClasses as number), "int32")
        : undefined;
      const nhwc = unetApply(params, config, input, tf.tensor1d(t), {}, y);
      return tf.transpose(nhwc, [0, 3, 1, 2]); // NHWC -> NCHW
    });
    try {
      return (await out.data()) as Float32Array;
    } finally {
      out.dispose();
    }
  };
}
