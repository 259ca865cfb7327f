/**
 * Noise schedules and every quantity derived from them.
 *
 * **Timesteps are 0-based everywhere in this toolkit.** Index `i` in `0..T-1` is the DDPM
 * paper's `t = i + 1`: `betas[0]` is the paper's `beta_1`, `alphasCumprod[T - 1]` is
 * `abar_T`, and a model is called with the 0-based index (as a float). This is the
 * convention of the official implementation; no other module restates it.
 *
 * Schedules are built in float64. Tensors take float32 copies only where they need them.
 *
 * @module
 */

/** The schedule families (official DDPM code, Nichol & Dhariwal 2021, Chen 2023). */
export type ScheduleKind =
  | "linear"
  | "quadratic"
  | "constant"
  | "warmup10"
  | "warmup50"
  | "jsd"
  | "cosine"
  | "sigmoid";

/** Every schedule kind, for validation and listings. */
export const SCHEDULE_KINDS: readonly ScheduleKind[] = [
  "linear",
  "quadratic",
  "constant",
  "warmup10",
  "warmup50",
  "jsd",
  "cosine",
  "sigmoid",
];

/** Options of {@linkcode makeSchedule}. */
export interface ScheduleOptions {
  /** Family of the schedule. Default `"linear"` (the paper's). */
  kind?: ScheduleKind;
  /** Number of diffusion steps T. Default 1000. */
  timesteps?: number;
  /** First beta of the linear, quadratic and warm-up families. Default 1e-4. */
  betaStart?: number;
  /** Last beta (and the constant one). Default 0.02. */
  betaEnd?: number;
}

/**
 * A noise schedule with all derived quantities, each a `Float64Array` of length T indexed by
 * the 0-based timestep.
 */
export interface Schedule {
  /** The named schedule it was made from, or `custom` for betas given directly. */
  readonly kind: ScheduleKind | "custom";
  /** Number of steps T of this schedule. */
  readonly timesteps: number;
  /**
   * The model timestep of each index. For a schedule from {@linkcode makeSchedule} this is
   * `0..T-1`; for a respaced one it maps each kept step back to the original index that the
   * network was trained with (improved DDPM's respacing).
   */
  readonly modelTimesteps: Float64Array;
  /** `beta_t`, the variance of the noise added at step t (eq. 2). */
  readonly betas: Float64Array;
  /** `1 - beta`. */
  readonly alphas: Float64Array;
  /** `abar_t = prod_{s <= t} alpha_s`. */
  readonly alphasCumprod: Float64Array;
  /** `abar_{t-1}`, with 1 at index 0. */
  readonly alphasCumprodPrev: Float64Array;
  /** `sqrt(abar_t)`. */
  readonly sqrtAlphasCumprod: Float64Array;
  /** `sqrt(1 - abar_t)`. */
  readonly sqrtOneMinusAlphasCumprod: Float64Array;
  /** `log(1 - abar_t)`. */
  readonly logOneMinusAlphasCumprod: Float64Array;
  /** `sqrt(1 / abar_t)`. */
  readonly sqrtRecipAlphasCumprod: Float64Array;
  /** `sqrt(1 / abar_t - 1)`. */
  readonly sqrtRecipm1AlphasCumprod: Float64Array;
  /** `beta_tilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)` (eq. 7); 0 at index 0. */
  readonly posteriorVariance: Float64Array;
  /** `log beta_tilde_t` with index 0 replaced by index 1, since `beta_tilde_0` is 0. */
  readonly posteriorLogVarianceClipped: Float64Array;
  /** Coefficient of `x_0` in the posterior mean (eq. 7). */
  readonly posteriorMeanCoef1: Float64Array;
  /** Coefficient of `x_t` in the posterior mean (eq. 7). */
  readonly posteriorMeanCoef2: Float64Array;
  /** Signal-to-noise ratio `abar_t / (1 - abar_t)`. */
  readonly snr: Float64Array;
}

/**
 * Builds a noise schedule.
 *
 * @example
 * ```ts
 * import { makeSchedule } from "./schedule.ts";
 * const s = makeSchedule({ kind: "linear", timesteps: 1000 });
 * console.log(s.alphasCumprod[999]); // about 4.0e-5
 * ```
 */
export function makeSchedule(options: ScheduleOptions = {}): Schedule {
  const kind = options.kind ?? "linear";
  const timesteps = options.timesteps ?? 1000;
  const betaStart = options.betaStart ?? 1e-4;
  const betaEnd = options.betaEnd ?? 0.02;
  if (!Number.isInteger(timesteps) || timesteps < 2 || timesteps > 100_000) {
    throw new RangeError(`timesteps must be an integer in 2..100000, got ${timesteps}`);
  }
  if (!(betaStart > 0 && betaStart < 1)) {
    throw new RangeError(`betaStart must be in (0, 1), got ${betaStart}`);
  }
  if (!(betaEnd > 0 && betaEnd < 1)) {
    throw new RangeError(`betaEnd must be in (0, 1), got ${betaEnd}`);
  }
  return scheduleFromBetas(_betasFor(kind, timesteps, betaStart, betaEnd), { kind });
}

function _betasFor(
  kind: ScheduleKind,
  timesteps: number,
  betaStart: number,
  betaEnd: number,
): Float64Array {
  switch (kind) {
    case "linear":
      return _linspace(betaStart, betaEnd, timesteps);
    case "quadratic":
      return _linspace(Math.sqrt(betaStart), Math.sqrt(betaEnd), timesteps).map((b) => b * b);
    case "constant":
      return new Float64Array(timesteps).fill(betaEnd);
    case "warmup10":
      return _warmup(betaStart, betaEnd, timesteps, 0.1);
    case "warmup50":
      return _warmup(betaStart, betaEnd, timesteps, 0.5);
    case "jsd":
      // 1/T, 1/(T-1), ..., 1: the last beta is exactly 1, so abar at the last step is 0.
      return _linspace(timesteps, 1, timesteps).map((v) => 1 / v);
    case "cosine":
      return _betasFromCumprod(timesteps, (u) => {
        const s = 0.008;
        return Math.cos(((u + s) / (1 + s)) * (Math.PI / 2)) ** 2;
      });
    case "sigmoid":
      return _betasFromCumprod(timesteps, (u) => {
        const start = -3, end = 3, tau = 1;
        const vEnd = _sigmoid(end / tau);
        return vEnd - _sigmoid((u * (end - start) + start) / tau);
      });
    default: {
      const unknown: never = kind;
      throw new RangeError(
        `schedule kind must be one of ${SCHEDULE_KINDS.join(", ")}, got ${unknown}`,
      );
    }
  }
}

/**
 * Builds a schedule from explicit betas (each in (0, 1]), deriving every other table.
 * `modelTimesteps` defaults to `0..T-1`.
 */
export function scheduleFromBetas(
  betas: ArrayLike<number>,
  options: { kind?: ScheduleKind | "custom"; modelTimesteps?: ArrayLike<number> } = {},
): Schedule {
  const n = betas.length;
  if (n < 1) throw new RangeError(`a schedule needs at least 1 beta, got ${n}`);
  for (let i = 0; i < n; i++) {
    if (!(betas[i] > 0 && betas[i] <= 1)) {
      throw new RangeError(`betas[${i}] must be in (0, 1], got ${betas[i]}`);
    }
  }
  const modelTimesteps = Float64Array.from(options.modelTimesteps ?? _range(n));
  if (modelTimesteps.length !== n) {
    throw new RangeError(
      `modelTimesteps must have one entry per beta (${n}), got ${modelTimesteps.length}`,
    );
  }
  const b = Float64Array.from(betas);
  const alphas = b.map((beta) => 1 - beta);
  const alphasCumprod = new Float64Array(n);
  let product = 1;
  for (let i = 0; i < n; i++) alphasCumprod[i] = product *= alphas[i];
  const alphasCumprodPrev = new Float64Array(n);
  alphasCumprodPrev[0] = 1;
  alphasCumprodPrev.set(alphasCumprod.subarray(0, n - 1), 1);

  const posteriorVariance = new Float64Array(n);
  const posteriorMeanCoef1 = new Float64Array(n);
  const posteriorMeanCoef2 = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const oneMinus = 1 - alphasCumprod[i];
    posteriorVariance[i] = (b[i] * (1 - alphasCumprodPrev[i])) / oneMinus;
    posteriorMeanCoef1[i] = (b[i] * Math.sqrt(alphasCumprodPrev[i])) / oneMinus;
    posteriorMeanCoef2[i] = ((1 - alphasCumprodPrev[i]) * Math.sqrt(alphas[i])) / oneMinus;
  }
  // beta_tilde is 0 at index 0 (x_0 is known exactly there), so its log would be -inf:
  // the official code substitutes index 1's value, which is what the decoder term expects.
  const posteriorLogVarianceClipped = posteriorVariance.map((v, i) =>
    Math.log(i === 0 && n > 1 ? posteriorVariance[1] : v)
  );

  return {
    kind: options.kind ?? "custom",
    timesteps: n,
    modelTimesteps,
    betas: b,
    alphas,
    alphasCumprod,
    alphasCumprodPrev,
    sqrtAlphasCumprod: alphasCumprod.map(Math.sqrt),
    sqrtOneMinusAlphasCumprod: alphasCumprod.map((a) => Math.sqrt(1 - a)),
    logOneMinusAlphasCumprod: alphasCumprod.map((a) => Math.log(1 - a)),
    sqrtRecipAlphasCumprod: alphasCumprod.map((a) => Math.sqrt(1 / a)),
    sqrtRecipm1AlphasCumprod: alphasCumprod.map((a) => Math.sqrt(1 / a - 1)),
    posteriorVariance,
    posteriorLogVarianceClipped,
    posteriorMeanCoef1,
    posteriorMeanCoef2,
    snr: alphasCumprod.map((a) => a / (1 - a)),
  };
}

/** How K of T timesteps are picked (the names diffusers uses). */
export type TimestepSpacing = "leading" | "linspace" | "trailing";

/** Every spacing, for validation and listings. */
export const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ["leading", "linspace", "trailing"];

/**
 * Picks `steps` of the `timesteps` 0-based indices, in increasing order.
 * - `leading`: `0, r, 2r, ...` with `r = floor(T / K)` (the DDIM paper's uniform skip).
 * - `linspace`: `round(linspace(0, T - 1, K))`, both ends included.
 * - `trailing`: `round(T - k T / K) - 1` for `k = K-1..0`, so the last step `T - 1` is kept.
 *
 * @example
 * ```ts
 * import { spacedTimesteps } from "./schedule.ts";
 * console.log(spacedTimesteps(1000, 4, "trailing")); // [249, 499, 749, 999]
 * ```
 */
export function spacedTimesteps(
  timesteps: number,
  steps: number,
  spacing: TimestepSpacing = "leading",
): number[] {
  if (!Number.isInteger(steps) || steps < 1 || steps > timesteps) {
    throw new RangeError(`steps must be an integer in 1..${timesteps}, got ${steps}`);
  }
  const out: number[] = [];
  switch (spacing) {
    case "leading": {
      const ratio = Math.floor(timesteps / steps);
      for (let k = 0; k < steps; k++) out.push(k * ratio);
      break;
    }
    case "linspace":
      if (steps === 1) out.push(0);
      else {for (let k = 0; k < steps; k++) {
          out.push(Math.round((k * (timesteps - 1)) / (steps - 1)));
        }}
      break;
    case "trailing": {
      const ratio = timesteps / steps;
      for (let k = steps - 1; k >= 0; k--) out.push(Math.round(timesteps - k * ratio) - 1);
      break;
    }
    default: {
      const unknown: never = spacing;
      throw new RangeError(
        `spacing must be one of ${TIMESTEP_SPACINGS.join(", ")}, got ${unknown}`,
      );
    }
  }
  return out;
}

/**
 * The schedule seen by a sampler that visits only the kept indices (improved DDPM,
 * Nichol & Dhariwal 2021): `beta'_k = 1 - abar_{s_k} / abar_{s_{k-1}}` with
 * `abar_{s_{-1}} = 1`, so `abar` at every kept step is unchanged. `modelTimesteps` maps
 * back to the original indices to call the network with.
 */
export function respaceSchedule(schedule: Schedule, kept: readonly number[]): Schedule {
  if (kept.length < 1) throw new RangeError("respacing needs at least one kept timestep");
  const betas = new Float64Array(kept.length);
  const modelTimesteps = new Float64Array(kept.length);
  let previous = 1;
  for (let k = 0; k < kept.length; k++) {
    const s = kept[k];
    if (!Number.isInteger(s) || s < 0 || s >= schedule.timesteps) {
      throw new RangeError(
        `kept timesteps must be integers in 0..${schedule.timesteps - 1}, got ${s}`,
      );
    }
    if (k > 0 && s <= kept[k - 1]) {
      throw new RangeError(`kept timesteps must increase strictly, got ${kept[k - 1]} then ${s}`);
    }
    const abar = schedule.alphasCumprod[s];
    betas[k] = 1 - abar / previous;
    previous = abar;
    modelTimesteps[k] = schedule.modelTimesteps[s];
  }
  return scheduleFromBetas(betas, { kind: schedule.kind, modelTimesteps });
}

function _linspace(start: number, end: number, n: number): Float64Array {
  const out = new Float64Array(n);
  if (n === 1) {
    out[0] = start;
    return out;
  }
  for (let i = 0; i < n; i++) out[i] = start + ((end - start) * i) / (n - 1);
  return out;
}

function _range(n: number): Float64Array {
  return Float64Array.from({ length: n }, (_, i) => i);
}

function _warmup(start: number, end: number, n: number, fraction: number): Float64Array {
  const betas = new Float64Array(n).fill(end);
  const warm = Math.floor(n * fraction);
  betas.set(_linspace(start, end, warm));
  return betas;
}

function _sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/**
 * Betas from a continuous `abar(u)`, `u = t / T` in [0, 1], normalised so `abar(0) = 1`:
 * `beta_i = 1 - abar((i + 1) / T) / abar(i / T)`, clipped to 0.999 as Nichol & Dhariwal do
 * to avoid the singularity where `abar` reaches 0 at the end.
 */
function _betasFromCumprod(n: number, abar: (u: number) => number): Float64Array {
  const f0 = abar(0);
  const betas = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const ratio = abar((i + 1) / n) / f0 / (abar(i / n) / f0);
    betas[i] = Math.min(Math.max(1 - ratio, 0), 0.999);
  }
  return betas;
}
