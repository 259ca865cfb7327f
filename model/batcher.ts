/**
 * Batching across requests. The network takes one timestep per image, so the calls of jobs that
 * run at the same time can share one network call even when the jobs are at different steps:
 * while a call is on the network, the calls that arrive queue up, and the next call takes them
 * all (oldest first, up to `maxBatch` rows) and splits the output back.
 *
 * A request's result must not depend on what else was in its batch. onnxruntime computes each
 * row of a batch on its own (convolutions image by image, the time embedding's matrix product
 * row by row), with one exception measured on its WebAssembly build with more than one thread:
 * a batch of one row takes another code path and differs from the same row in any larger batch
 * by up to 1.2e-6 (batches of 2 to 64 rows agree bit for bit, `tests/serve_batching_test.ts`).
 * So a lone row is run beside a copy of itself, and every row always runs in a batch of two or
 * more.
 *
 * @module
 */

import type { Shape } from "../lib/forward.ts";
import type { ConditionalDenoiser } from "../lib/guidance.ts";

/**
 * One network call: `n` images NCHW `[n, c, h, w]`, their timesteps and their class indices
 * (`nullLabel` for "no class"; all of them for a call that had no labels). It returns `n` rows
 * of one size: an image's `c*h*w` values, or twice that for a network that learns its variance
 * (NCHW `[n, 2c, h, w]`).
 */
export type NetworkCall = (
  x: Float32Array,
  t: Float32Array,
  labels: Int32Array,
  shape: Shape,
) => Promise<Float32Array>;

/** Options of {@linkcode batchedDenoiser}. */
export interface BatcherOptions {
  /** Most rows in one network call, >= 1. Default 64. */
  readonly maxBatch?: number;
  /** Merge the calls of different jobs; off runs each job's call on its own. Default true. */
  readonly merge?: boolean;
  /** The class index that means "no class" (the model's class count; 0 when unconditional). */
  readonly nullLabel?: number;
  /** Called before each network call with its rows (padding included) and how many calls share it. */
  readonly onBatch?: (rows: number, callers: number) => void;
}

interface _Pending {
  readonly x: Float32Array;
  readonly t: Float32Array;
  readonly labels: Int32Array;
  readonly n: number;
  /** The output, allocated when the first rows come back (their size is the network's). */
  out: Float32Array | null;
  /** Rows handed to a network call so far. */
  taken: number;
  /** Rows whose output has come back. */
  done: number;
  resolve(out: Float32Array): void;
  reject(error: unknown): void;
}

/**
 * A `ConditionalDenoiser` that queues its calls and runs them through `network`, one network
 * call at a time, merged across callers up to `maxBatch` rows (or, with `merge: false`, one
 * caller's rows at a time). Calls bigger than `maxBatch` are split.
 *
 * @example
 * ```ts
 * import { batchedDenoiser } from "./batcher.ts";
 * const sizes: number[] = [];
 * const denoiser = batchedDenoiser((x, _t, _labels, shape) => {
 *   sizes.push(shape[0]);
 *   return Promise.resolve(x.map((v) => 2 * v));
 * }, { maxBatch: 8 });
 * const [a, b] = await Promise.all([
 *   denoiser(new Float32Array([1, 2]), new Float32Array([5, 5]), [2, 1, 1, 1]),
 *   denoiser(new Float32Array([3]), new Float32Array([9]), [1, 1, 1, 1]),
 * ]);
 * console.assert(a.join() === "2,4" && b.join() === "6");
 * ```
 */
export function batchedDenoiser(
  network: NetworkCall,
  options: BatcherOptions = {},
): ConditionalDenoiser {
  const maxBatch = options.maxBatch ?? 64;
  const merge = options.merge ?? true;
  const nullLabel = options.nullLabel ?? 0;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) {
    throw new RangeError(`maxBatch must be a positive integer, got ${maxBatch}`);
  }
  const queue: _Pending[] = [];
  let running = false;
  let imageShape: readonly [number, number, number] | null = null;

  const pump = async () => {
    if (running) return;
    running = true;
    try {
      while (queue.length > 0) await runOne();
    } finally {
      running = false;
    }
  };

  // 1. Take rows, oldest call first, until the batch is full. 2. Pad a lone row with a copy.
  // 3. One network call. 4. Hand each call its rows; a call is done when all have come back.
  const runOne = async () => {
    const [c, h, w] = imageShape as readonly [number, number, number];
    const per = c * h * w;
    const pieces: { call: _Pending; from: number; count: number }[] = [];
    let rows = 0;
    for (const call of queue) {
      if (rows >= maxBatch) break;
      if (call.taken >= call.n) continue;
      if (!merge && pieces.length > 0) break;
      const count = Math.min(call.n - call.taken, maxBatch - rows);
      pieces.push({ call, from: call.taken, count });
      call.taken += count;
      rows += count;
    }
    const size = Math.max(rows, 2);
    const x = new Float32Array(size * per);
    const t = new Float32Array(size);
    const labels = new Int32Array(size);
    let row = 0;
    for (const { call, from, count } of pieces) {
      x.set(call.x.subarray(from * per, (from + count) * per), row * per);
      t.set(call.t.subarray(from, from + count), row);
      labels.set(call.labels.subarray(from, from + count), row);
      row += count;
    }
    if (rows === 1) {
      x.copyWithin(per, 0, per);
      t[1] = t[0];
      labels[1] = labels[0];
    }
    options.onBatch?.(size, pieces.length);
    let out: Float32Array;
    try {
      out = await network(x, t, labels, [size, c, h, w]);
    } catch (error) {
      for (const { call } of pieces) _fail(queue, call, error);
      return;
    }
    // An output row is the network's: `per` values, or `2 per` when it learns its variance.
    const outPer = out.length / size;
    if (!Number.isInteger(outPer) || outPer < 1) {
      const error = new RangeError(
        `the network returned ${out.length} values for ${size} rows of ${per}; expected a ` +
          `multiple of ${size}`,
      );
      for (const { call } of pieces) _fail(queue, call, error);
      return;
    }
    row = 0;
    for (const { call, from, count } of pieces) {
      if (call.out === null) call.out = new Float32Array(call.n * outPer);
      else if (call.out.length !== call.n * outPer) {
        _fail(
          queue,
          call,
          new RangeError(
            `the network returned rows of ${outPer} values after rows of ${
              call.out.length / call.n
            }`,
          ),
        );
        row += count;
        continue;
      }
      call.out.set(out.subarray(row * outPer, (row + count) * outPer), from * outPer);
      row += count;
      call.done += count;
      if (call.done === call.n) {
        queue.splice(queue.indexOf(call), 1);
        call.resolve(call.out);
      }
    }
  };

  return (x, t, shape, labels) => {
    const [n, c, h, w] = shape;
    if (labels && labels.length !== n) {
      throw new RangeError(`the batch has ${n} images but ${labels.length} labels`);
    }
    if (imageShape === null) imageShape = [c, h, w];
    else if (imageShape[0] !== c || imageShape[1] !== h || imageShape[2] !== w) {
      throw new RangeError(
        `images must be ${imageShape.join("x")} for this network, got ${c}x${h}x${w}`,
      );
    }
    if (n === 0) return new Float32Array(0);
    return new Promise<Float32Array>((resolve, reject) => {
      queue.push({
        x,
        t,
        labels: labels ?? new Int32Array(n).fill(nullLabel),
        n,
        out: null,
        taken: 0,
        done: 0,
        resolve,
        reject,
      });
      pump();
    });
  };
}

/** Takes `call` off the queue and rejects it, once. */
function _fail(queue: _Pending[], call: _Pending, error: unknown): void {
  const index = queue.indexOf(call);
  if (index < 0) return;
  queue.splice(index, 1);
  call.reject(error);
}
