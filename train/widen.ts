/**
 * A trained U-Net grown to a wider one that computes the same function (Net2WiderNet, Chen,
 * Goodfellow & Shlens 2016): `deno task train --init-from <model> --ch <k times its ch>` goes on
 * from what the narrow network learned instead of from noise.
 *
 * Every channel of every map and embedding becomes `k` adjacent copies:
 * - a producer's output axis (the last axis of a kernel, bias, norm scale or embedding table) is
 *   repeated, so each copy carries the old channel's value;
 * - a consumer's input axis (a kernel's second to last) is split among the copies, in random
 *   shares that sum to one, so the sum over the copies is the old weight times the old value.
 *   Equal shares would keep the copies identical through training (the same inputs and the same
 *   outgoing weights give them the same gradients); unequal shares give each copy its own
 *   gradient from the first step without changing the function.
 * Adjacent copies keep GroupNorm exact: with the same number of groups, a group of the wide
 * network holds the `k` copies of each channel of the narrow group, so its mean and variance are
 * the narrow group's. Concatenated skip connections stay exact for the same reason. Attention's
 * scores `q . k / sqrt(c)` would grow by `sqrt(k)` (the dot product sums `k` copies, the scale
 * divides by `sqrt(k c)`), so the query projection is scaled by `1 / sqrt(k)`. The sinusoidal
 * timestep embedding keeps its width (`timestepDim`): its frequencies depend on it.
 *
 * @module
 */

import { createRng, type Rng } from "../lib/rng.ts";
import type { UNetConfig } from "../model/config.ts";
import type { NamedTensors } from "./checkpoint_format.ts";
import { describeUNet } from "./network.ts";

/** How far the shares of one weight's copies may stray from `1 / k`, relative to it. */
const SHARE_SPREAD = 0.5;

/**
 * The configuration of `from` at base width `ch`: everything else, the timestep embedding's
 * width included, is the narrow network's. Throws unless `ch` is a multiple (2 or more times)
 * of `from.ch`.
 */
export function widenedConfig(from: UNetConfig, ch: number): UNetConfig {
  if (!Number.isInteger(ch) || ch <= from.ch || ch % from.ch !== 0) {
    throw new RangeError(
      `a network of ch ${from.ch} widens only to a multiple of it (${2 * from.ch}, ` +
        `${3 * from.ch}, ...), not to ch ${ch}`,
    );
  }
  return { ...from, ch, timestepDim: from.timestepDim ?? from.ch };
}

/**
 * The weights of `from`'s network (live and EMA) as weights of its widened network at base
 * width `ch` ({@linkcode widenedConfig}), computing the same function. `seed` draws the copies'
 * shares; the live and EMA weights split alike.
 */
export function widenWeights(
  weights: { params: NamedTensors; ema: NamedTensors },
  from: UNetConfig,
  ch: number,
  seed: number,
): { config: UNetConfig; params: NamedTensors; ema: NamedTensors } {
  const config = widenedConfig(from, ch);
  const k = ch / from.ch;
  const narrow = new Map(describeUNet(from).params.map((p) => [p.name, p.shape]));
  const rng = createRng(seed);
  const params: NamedTensors = {}, ema: NamedTensors = {};
  for (const { name, shape } of describeUNet(config).params) {
    const old = narrow.get(name);
    const live = weights.params[name], average = weights.ema[name];
    if (!old || !live || !average) throw new RangeError(`widening: the weights lack ${name}`);
    const plan = _axisPlan(name, old, shape, k);
    const shares = plan.split ? _shares(rng, live.data.length, k) : null;
    // Attention's query: its scores sum k copies and divide by sqrt(k) more.
    const scale = /\.q\.[wb]$/.test(name) ? 1 / Math.sqrt(k) : 1;
    params[name] = { shape: [...shape], data: _widen(live.data, old, plan, k, shares, scale) };
    // An exported model's one set of weights is both (`loadInitialWeights`): widened once.
    ema[name] = average === live
      ? params[name]
      : { shape: [...shape], data: _widen(average.data, old, plan, k, shares, scale) };
  }
  return { config, params, ema };
}

/** Which of a tensor's axes widen: its last (repeated) and its second to last (split). */
interface _AxisPlan {
  repeat: boolean;
  split: boolean;
}

function _axisPlan(
  name: string,
  old: readonly number[],
  wide: readonly number[],
  k: number,
): _AxisPlan {
  const widened = wide.map((size, axis) => {
    if (size === old[axis]) return false;
    if (size === k * old[axis]) return true;
    throw new Error(`widening ${name}: axis ${axis} goes from ${old[axis]} to ${size} (a bug)`);
  });
  const last = wide.length - 1;
  if (widened.some((w, axis) => w && axis < last - 1)) {
    throw new Error(`widening ${name}: only the last two axes hold channels (a bug)`);
  }
  return { repeat: widened[last], split: last >= 1 && widened[last - 1] };
}

/** For each weight, `k` shares near `1 / k` that sum to exactly one (in float64). */
function _shares(rng: Rng, count: number, k: number): Float64Array {
  const noise = rng.uniform(count * k);
  const shares = new Float64Array(count * k);
  for (let i = 0; i < count; i++) {
    let mean = 0;
    for (let j = 0; j < k; j++) mean += noise[i * k + j] / k;
    for (let j = 0; j < k; j++) {
      shares[i * k + j] = (1 + SHARE_SPREAD * 2 * (noise[i * k + j] - mean)) / k;
    }
  }
  return shares;
}

/**
 * One tensor widened: a row-major array of shape `[...outer, rows, cols]` (`old`) to
 * `[...outer, rows * (split ? k : 1), cols * (repeat ? k : 1)]`. Wide row `r` is a copy of old
 * row `floor(r / k)` weighted by its share, wide column `c` a copy of old column `floor(c / k)`.
 */
function _widen(
  data: Float32Array,
  old: readonly number[],
  plan: _AxisPlan,
  k: number,
  shares: Float64Array | null,
  scale: number,
): Float32Array {
  const cols = old[old.length - 1];
  const rows = old.length >= 2 ? old[old.length - 2] : 1;
  const outer = data.length / (rows * cols);
  const rowK = plan.split ? k : 1, colK = plan.repeat ? k : 1;
  const out = new Float32Array(data.length * rowK * colK);
  const wideCols = cols * colK;
  for (let o = 0; o < outer; o++) {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const index = (o * rows + r) * cols + c;
        const value = data[index] * scale;
        for (let i = 0; i < rowK; i++) {
          const share = shares ? shares[index * k + i] : 1;
          const wideRow = (o * rows + r) * rowK + i;
          for (let j = 0; j < colK; j++) {
            out[wideRow * wideCols + c * colK + j] = value * share;
          }
        }
      }
    }
  }
  return out;
}
