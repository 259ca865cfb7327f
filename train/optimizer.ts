/**
 * The optimizer as a few passes over flat float32 buffers: global-norm clipping, Adam and the
 * EMA of the weights for every parameter at once, instead of a dozen tfjs kernels per tensor.
 *
 * Every operation rounds to float32 in the same order as the tfjs kernels the in-process trainer
 * launches (`g * clip`, `m * b1 + g * (1 - b1)`, ...). An IEEE float32 `+ - * / sqrt` equals the
 * float64 operation on the same float32 inputs rounded once to float32 (53 >= 2 * 24 + 2 bits,
 * so the double rounding is innocuous), which is what `Math.fround` of a float64 result gives. The
 * fused update is therefore bit-identical to the kernel sequence, not merely close to it
 * (`tests/optimizer_test.ts` checks both).
 *
 * @module
 */

import type { NamedTensors } from "./checkpoint.ts";
import { describeUNet, type UNetConfig } from "./network.ts";

/** Where each parameter tensor lives in one flat buffer, in the network's walk order. */
export interface ParamLayout {
  readonly names: readonly string[];
  readonly shapes: readonly (readonly number[])[];
  /** Start of each tensor in the flat buffer. */
  readonly offsets: readonly number[];
  /** Scalars in each tensor. */
  readonly sizes: readonly number[];
  /** Scalars in all of them. */
  readonly total: number;
}

/** The flat layout of a network's parameters (`describeUNet` order). */
export function paramLayout(config: UNetConfig): ParamLayout {
  const specs = describeUNet(config).params;
  const sizes = specs.map((p) => p.shape.reduce((a, b) => a * b, 1));
  const offsets: number[] = [];
  let total = 0;
  for (const size of sizes) {
    offsets.push(total);
    total += size;
  }
  return {
    names: specs.map((p) => p.name),
    shapes: specs.map((p) => [...p.shape]),
    offsets,
    sizes,
    total,
  };
}

/**
 * Checks that `tensors` holds every tensor of the layout with its size and nothing else; `what`
 * names the group in the error.
 */
export function checkTensors(layout: ParamLayout, tensors: NamedTensors, what: string): void {
  layout.names.forEach((name, i) => {
    const entry = tensors[name];
    if (!entry) throw new RangeError(`${what} has no tensor ${name} for this network config`);
    if (entry.data.length !== layout.sizes[i]) {
      throw new RangeError(
        `${what}: ${name} has ${entry.data.length} values, the network needs ${layout.sizes[i]}`,
      );
    }
  });
  const extra = Object.keys(tensors).filter((name) => !layout.names.includes(name));
  if (extra.length > 0) {
    throw new RangeError(`${what} has tensors the network lacks: ${extra.slice(0, 5).join(", ")}`);
  }
}

/**
 * Copies named tensors into one flat buffer (a new one, or `into`), after
 * {@linkcode checkTensors}; `what` names the group in the error.
 */
export function flattenTensors(
  layout: ParamLayout,
  tensors: NamedTensors,
  options: { into?: Float32Array; what?: string } = {},
): Float32Array {
  const flat = options.into ?? new Float32Array(layout.total);
  if (flat.length !== layout.total) {
    throw new RangeError(`a flat buffer of ${layout.total} values is needed, got ${flat.length}`);
  }
  checkTensors(layout, tensors, options.what ?? "tensors");
  layout.names.forEach((name, i) => flat.set(tensors[name].data, layout.offsets[i]));
  return flat;
}

/** Named copies of the tensors in a flat buffer. */
export function unflattenTensors(layout: ParamLayout, flat: Float32Array): NamedTensors {
  const out: NamedTensors = {};
  layout.names.forEach((name, i) => {
    const start = layout.offsets[i];
    out[name] = {
      shape: [...layout.shapes[i]],
      data: flat.slice(start, start + layout.sizes[i]),
    };
  });
  return out;
}

/**
 * The global gradient norm `sqrt(sum_i g_i^2)` as the in-process trainer computes it: each
 * tensor's sum of squares accumulated in float32 from its first value to its last (the order of
 * the WebAssembly backend's `Sum`), the tensors' sums added pairwise, then the square root.
 */
export function globalNorm(layout: ParamLayout, grads: Float32Array): number {
  const f = Math.fround;
  let level = layout.offsets.map((start, i) => {
    let sum = 0;
    for (let j = start, end = start + layout.sizes[i]; j < end; j++) {
      sum = f(sum + f(grads[j] * grads[j]));
    }
    return sum;
  });
  while (level.length > 1) {
    const next: number[] = [];
    for (let i = 0; i < level.length; i += 2) {
      next.push(i + 1 < level.length ? f(level[i] + level[i + 1]) : level[i]);
    }
    level = next;
  }
  return f(Math.sqrt(level[0] ?? 0));
}

/** The five buffers one update reads and writes, all of the layout's length. */
export interface OptimizerBuffers {
  /** Weights, updated in place. */
  params: Float32Array;
  /** Gradients of the loss (read only). */
  grads: Float32Array;
  /** Adam's first and second moments, updated in place. */
  m: Float32Array;
  v: Float32Array;
  /** The EMA of the weights, updated in place. */
  ema: Float32Array;
}

/** The numbers of one update; `stepSize` already holds Adam's bias correction. */
export interface UpdateSettings {
  /** Global norm of `grads` (from {@linkcode globalNorm}). */
  gradNorm: number;
  /** Clip threshold: gradients are scaled by `gradClip / max(gradNorm, gradClip)`. */
  gradClip: number;
  beta1: number;
  beta2: number;
  epsilon: number;
  /** `lr * sqrt(1 - beta2^k) / (1 - beta1^k)` at step k. */
  stepSize: number;
  /** EMA decay of this step. */
  emaDecay: number;
}

/**
 * One optimizer step over flat buffers, in place:
 * `g = grad * gradClip / max(norm, gradClip)`, `m = b1 m + (1 - b1) g`,
 * `v = b2 v + (1 - b2) g^2`, `p -= stepSize m / (sqrt(v) + eps)`, `ema = d ema + (1 - d) p`.
 */
export function adamEmaUpdate(
  buffers: OptimizerBuffers,
  settings: UpdateSettings,
): void {
  const { params, grads, m, v, ema } = buffers;
  const n = params.length;
  for (const buffer of [grads, m, v, ema]) {
    if (buffer.length !== n) {
      throw new RangeError(`optimizer buffers must all hold ${n} values, got ${buffer.length}`);
    }
  }
  const f = Math.fround;
  // The scalars as tfjs turns numbers into float32 tensors: rounded once, after any float64
  // arithmetic in the caller (1 - beta1 is computed in float64, then rounded).
  const clip = f(settings.gradClip);
  const scale = f(clip / Math.max(f(settings.gradNorm), clip));
  const b1 = f(settings.beta1), c1 = f(1 - settings.beta1);
  const b2 = f(settings.beta2), c2 = f(1 - settings.beta2);
  const eps = f(settings.epsilon), size = f(settings.stepSize);
  const d = f(settings.emaDecay), cd = f(1 - settings.emaDecay);
  for (let i = 0; i < n; i++) {
    const g = f(grads[i] * scale);
    const mi = f(f(m[i] * b1) + f(g * c1));
    const vi = f(f(v[i] * b2) + f(f(g * g) * c2));
    const pi = f(params[i] - f(size * f(mi / f(f(Math.sqrt(vi)) + eps))));
    m[i] = mi;
    v[i] = vi;
    params[i] = pi;
    ema[i] = f(f(ema[i] * d) + f(pi * cd));
  }
}
