/**
 * The forward (noising) process `q` and its posterior (DDPM eq. 2, 4, 6, 7).
 *
 * Tensors are `Float32Array` in NCHW `[n, c, h, w]`; every example in a batch may sit at its
 * own 0-based timestep.
 *
 * @module
 */

import type { Schedule } from "./schedule.ts";

/** A batch shape, NCHW `[n, c, h, w]`. */
export type Shape = readonly [number, number, number, number];

/** Mean, variance and log-variance of a diagonal Gaussian, one value per element. */
export interface GaussianParams {
  /** Mean, per element (NCHW). */
  readonly mean: Float32Array;
  /** Per example (length n): the variance is the same for every element of an example. */
  readonly variance: Float64Array;
  /** The log of `variance`, per example. */
  readonly logVariance: Float64Array;
}

/** Number of elements of a shape, after checking every dimension is a positive integer. */
export function shapeSize(shape: Shape): number {
  if (shape.length !== 4) {
    throw new RangeError(`shape must be [n, c, h, w], got [${shape.join(", ")}]`);
  }
  let size = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 1) {
      throw new RangeError(`shape entries must be positive integers, got [${shape.join(", ")}]`);
    }
    size *= d;
  }
  return size;
}

/** Checks a tensor against its shape and returns the per-example element count `c*h*w`. */
export function checkTensor(name: string, x: ArrayLike<number>, shape: Shape): number {
  const size = shapeSize(shape);
  if (x.length !== size) {
    throw new RangeError(
      `${name} must have ${size} elements for shape [${shape.join(", ")}], got ${x.length}`,
    );
  }
  return size / shape[0];
}

/**
 * Checks per-example 0-based timesteps against a schedule: `t` must hold `n` integers in
 * `0..T-1`.
 */
export function checkTimesteps(schedule: Schedule, t: ArrayLike<number>, n: number): void {
  if (t.length !== n) {
    throw new RangeError(`t must have one timestep per example (${n}), got ${t.length}`);
  }
  for (let i = 0; i < n; i++) {
    if (!Number.isInteger(t[i]) || t[i] < 0 || t[i] >= schedule.timesteps) {
      throw new RangeError(
        `t[${i}] must be an integer in 0..${schedule.timesteps - 1}, got ${t[i]}`,
      );
    }
  }
}

/**
 * `out = a(t_n) * first + b(t_n) * second` for each example n, with the two coefficients
 * read from the schedule at that example's timestep. Every per-example formula of the
 * forward process and the parameterisations is one of these.
 */
export function combinePerExample(
  schedule: Schedule,
  first: Float32Array,
  second: Float32Array,
  t: ArrayLike<number>,
  shape: Shape,
  coefficients: (schedule: Schedule, t: number) => readonly [number, number],
  names: readonly [string, string] = ["first input", "second input"],
): Float32Array {
  const per = checkTensor(names[0], first, shape);
  checkTensor(names[1], second, shape);
  checkTimesteps(schedule, t, shape[0]);
  const out = new Float32Array(first.length);
  for (let n = 0; n < shape[0]; n++) {
    const [a, b] = coefficients(schedule, t[n]);
    for (let j = n * per, end = j + per; j < end; j++) out[j] = a * first[j] + b * second[j];
  }
  return out;
}

/** Per-example variance and log-variance read from two schedule tables. */
function _perExample(
  t: ArrayLike<number>,
  n: number,
  variance: Float64Array,
  logVariance: Float64Array,
): { variance: Float64Array; logVariance: Float64Array } {
  return {
    variance: Float64Array.from({ length: n }, (_, i) => variance[t[i]]),
    logVariance: Float64Array.from({ length: n }, (_, i) => logVariance[t[i]]),
  };
}

/**
 * Draws `x_t ~ q(x_t | x_0)` in closed form (eq. 4):
 * `x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`, with the caller's `noise` as `eps`.
 *
 * @example
 * ```ts
 * import { createRng, makeSchedule, qSample } from "../mod.ts";
 * const schedule = makeSchedule();
 * const x0 = new Float32Array(2 * 1 * 4 * 4).fill(0.5);
 * const xt = qSample(schedule, x0, [10, 900], createRng(0).normal(x0.length), [2, 1, 4, 4]);
 * ```
 */
export function qSample(
  schedule: Schedule,
  x0: Float32Array,
  t: ArrayLike<number>,
  noise: Float32Array,
  shape: Shape,
): Float32Array {
  return combinePerExample(schedule, x0, noise, t, shape, (s, i) => [
    s.sqrtAlphasCumprod[i],
    s.sqrtOneMinusAlphasCumprod[i],
  ], ["x0", "noise"]);
}

/** The Gaussian `q(x_t | x_0)`: mean `sqrt(abar_t) x_0`, variance `1 - abar_t` (eq. 4). */
export function qMeanVariance(
  schedule: Schedule,
  x0: Float32Array,
  t: ArrayLike<number>,
  shape: Shape,
): GaussianParams {
  const mean = combinePerExample(
    schedule,
    x0,
    x0,
    t,
    shape,
    (s, i) => [s.sqrtAlphasCumprod[i], 0],
    [
      "x0",
      "x0",
    ],
  );
  const oneMinus = schedule.alphasCumprod.map((a) => 1 - a);
  return { mean, ..._perExample(t, shape[0], oneMinus, schedule.logOneMinusAlphasCumprod) };
}

/**
 * The posterior `q(x_{t-1} | x_t, x_0) = N(mu_tilde, beta_tilde I)` (eq. 6, 7), with
 * `mu_tilde = c1 x_0 + c2 x_t` and the clipped log-variance (see the schedule's fields).
 */
export function qPosterior(
  schedule: Schedule,
  x0: Float32Array,
  xt: Float32Array,
  t: ArrayLike<number>,
  shape: Shape,
): GaussianParams {
  const mean = combinePerExample(schedule, x0, xt, t, shape, (s, i) => [
    s.posteriorMeanCoef1[i],
    s.posteriorMeanCoef2[i],
  ], ["x0", "xt"]);
  return {
    mean,
    ..._perExample(t, shape[0], schedule.posteriorVariance, schedule.posteriorLogVarianceClipped),
  };
}
