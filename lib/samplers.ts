/**
 * Samplers over a model-free {@linkcode Denoiser}: DDPM ancestral sampling (all T steps or
 * respaced to K), DDIM, and the multistep probability-flow ODE solvers DPM-Solver++(2M) and
 * UniPC. The sampler never sees the network; the trainer plugs in tfjs, the server
 * onnxruntime, and the tests an exact analytic denoiser.
 *
 * {@linkcode SAMPLER_CAPABILITIES} describes each sampler's options (default step count,
 * whether it takes `eta`), so the server, the evaluation and the trainer read one table.
 *
 * @module
 */

import { checkTensor, type Shape, shapeSize } from "./forward.ts";
import { outputFactor, pMeanVariance, type ReverseOptions } from "./parameterization.ts";
import { createRng, type Rng } from "./rng.ts";
import {
  respaceSchedule,
  type Schedule,
  spacedTimesteps,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
} from "./schedule.ts";

/**
 * A network as the samplers see it: `x` in NCHW, `t` the 0-based timestep of each example
 * (as a float), returning the model output (eps, x0 or v) with the shape of `x`; a network
 * that learns its variance (`variance: "learned-range"`) returns NCHW `[n, 2c, h, w]`, per
 * example its prediction and then `v` (see `splitModelOutput`).
 */
export type Denoiser = (
  x: Float32Array,
  t: Float32Array,
  shape: readonly [number, number, number, number],
) => Promise<Float32Array> | Float32Array;

/** The sampling algorithms. */
export type SamplerKind = "ddpm" | "ddim" | "dpmpp-2m" | "dpmpp-2m-sde" | "unipc";

/** What a sampler accepts and does, for validation, defaults and documentation. */
export interface SamplerCapabilities {
  /** One line for listings and the API documentation. */
  readonly description: string;
  /** Network evaluations when `steps` is not given; `"T"`: every timestep of the schedule. */
  readonly defaultSteps: number | "T";
  /** Whether it takes DDIM's noise scale `eta`. */
  readonly takesEta: boolean;
  /** Whether it draws fresh noise at every step (with `eta` 0, DDIM does not). */
  readonly stochastic: boolean;
  /** Order of accuracy of the deterministic update in the step size (DDPM: none, 0). */
  readonly order: number;
}

/**
 * Every sampler and its options. Adding a sampler means adding its row here and its update in
 * {@linkcode reverseProcess}; the server's validation, the OpenAPI text, `deno task eval` and
 * the playground read this table.
 *
 * The ODE solvers' 15 default steps are the fewest at which both matched DDIM at 100 steps in
 * Fréchet distance on the shipped MNIST models (the README's sampler table).
 */
export const SAMPLER_CAPABILITIES: Readonly<Record<SamplerKind, SamplerCapabilities>> = {
  "ddpm": {
    description: "DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), respaced when steps < T",
    defaultSteps: "T",
    takesEta: false,
    stochastic: true,
    order: 0,
  },
  "ddim": {
    description: "DDIM (Song et al. 2021); eta 0 is the first-order probability-flow ODE step",
    defaultSteps: 50,
    takesEta: true,
    stochastic: false,
    order: 1,
  },
  "dpmpp-2m": {
    description: "DPM-Solver++(2M) (Lu et al. 2022): second-order multistep ODE solver on x0",
    defaultSteps: 15,
    takesEta: false,
    stochastic: false,
    order: 2,
  },
  "dpmpp-2m-sde": {
    description:
      "SDE-DPM-Solver++(2M) (Lu et al. 2022): the second-order multistep solver of the reverse SDE; fresh noise each step",
    defaultSteps: 15,
    takesEta: false,
    stochastic: true,
    // Second order in the drift's x0 term (the noise is integrated exactly); at first order it
    // is DDPM's ancestral step (DDIM with eta 1). Measured in tests/samplers_test.ts.
    order: 2,
  },
  "unipc": {
    description: "UniPC (Zhao et al. 2023, bh2): DPM-Solver++(2M) with a free corrector step",
    defaultSteps: 15,
    takesEta: false,
    stochastic: false,
    // UniP-2 lifted by one order by UniC (Zhao et al. 2023, Theorem 3.1); measured 6-8x less
    // error per doubling of steps in tests/samplers_test.ts.
    order: 3,
  },
};

/** Every sampler, for validation and listings. */
export const SAMPLERS: readonly SamplerKind[] = Object.keys(
  SAMPLER_CAPABILITIES,
) as SamplerKind[];

/**
 * The step count a sampler runs when none is asked for, on a schedule of `timesteps` steps:
 * its {@linkcode SamplerCapabilities.defaultSteps}, at most `timesteps`.
 *
 * @example
 * ```ts
 * import { defaultSteps } from "./samplers.ts";
 * console.assert(defaultSteps("ddim", 1000) === 50 && defaultSteps("ddpm", 1000) === 1000);
 * ```
 */
export function defaultSteps(sampler: SamplerKind, timesteps: number): number {
  const capabilities = SAMPLER_CAPABILITIES[sampler];
  if (!capabilities) {
    throw new RangeError(`sampler must be one of ${SAMPLERS.join(", ")}, got ${sampler}`);
  }
  const steps = capabilities.defaultSteps;
  return steps === "T" ? timesteps : Math.min(steps, timesteps);
}

/** What {@linkcode SampleOptions.onStep} receives after each network evaluation. */
export interface StepInfo {
  /** 0-based position of this step in the run (0 is the noisiest). */
  readonly step: number;
  /** Number of steps in the run. */
  readonly steps: number;
  /** The 0-based model timestep the network was called with. */
  readonly t: number;
  /**
   * `x_t`, the input of this step (NCHW); for `unipc`, after its corrector has refined it with
   * this step's x0 prediction.
   */
  readonly x: Float32Array;
  /** The model's estimate of `x_0` from `x_t` (progressive generation, DDPM Fig. 6). */
  readonly predX0: Float32Array;
}

/** Options of {@linkcode sample}. */
export interface SampleOptions extends ReverseOptions {
  /** The noise schedule the network was trained with. */
  schedule: Schedule;
  /** Output shape NCHW `[n, c, h, w]`. */
  shape: Shape;
  /**
   * `ddpm`: ancestral sampling (Algorithm 2), respaced when `steps < T`. `ddim`: Song et al.
   * `dpmpp-2m`, `unipc`: multistep ODE solvers (see {@linkcode SAMPLER_CAPABILITIES}).
   */
  sampler: SamplerKind;
  /**
   * Number of network evaluations, `1..T`. Default {@linkcode defaultSteps}: T for `ddpm`, 50
   * for `ddim`, 15 for `dpmpp-2m` and `unipc` (at most T).
   */
  steps?: number;
  /**
   * DDIM noise scale in [0, 1]: 0 is deterministic, 1 matches DDPM's posterior variance.
   * Default 0. Only samplers whose capabilities say `takesEta` accept a non-zero value.
   */
  eta?: number;
  /** Seed of the initial noise and of every step's noise. Default 0. Ignored when `rng` is given. */
  seed?: number;
  /** A generator to draw from instead of one made from `seed`. */
  rng?: Rng;
  /** Which timesteps a shortened run visits. Default `"leading"`. */
  spacing?: TimestepSpacing;
  /** Start from this `x_T` (NCHW) instead of drawing it. */
  initialNoise?: Float32Array;
  /** Called after each network evaluation; awaited, so it may stream results. */
  onStep?: (info: StepInfo) => void | Promise<void>;
  /** Aborting stops the run before the next network evaluation, rejecting with the reason. */
  signal?: AbortSignal;
}

/**
 * Draws samples with DDPM or DDIM.
 *
 * @example
 * ```ts
 * import { makeSchedule, sample } from "../mod.ts";
 * // A "network" that predicts zero noise: samples are the scaled initial noise.
 * const zeroNoise = (x: Float32Array) => new Float32Array(x.length);
 * const images = await sample(zeroNoise, {
 *   schedule: makeSchedule(),
 *   shape: [4, 1, 8, 8],
 *   sampler: "ddim",
 *   steps: 10,
 *   seed: 1,
 * });
 * console.assert(images.length === 4 * 64);
 * ```
 */
export async function sample(denoiser: Denoiser, options: SampleOptions): Promise<Float32Array> {
  const { schedule, shape, sampler } = options;
  const size = shapeSize(shape);
  if (!SAMPLERS.includes(sampler)) {
    throw new RangeError(`sampler must be one of ${SAMPLERS.join(", ")}, got ${sampler}`);
  }
  const steps = options.steps ?? defaultSteps(sampler, schedule.timesteps);
  const spacing = options.spacing ?? "leading";
  if (!TIMESTEP_SPACINGS.includes(spacing)) {
    throw new RangeError(`spacing must be one of ${TIMESTEP_SPACINGS.join(", ")}, got ${spacing}`);
  }
  const kept = spacedTimesteps(schedule.timesteps, steps, spacing);
  const rng = options.rng ?? createRng(options.seed ?? 0);
  let x: Float32Array;
  if (options.initialNoise) {
    checkTensor("initialNoise", options.initialNoise, shape);
    x = options.initialNoise.slice();
  } else {
    x = rng.normal(size);
  }
  return await reverseProcess(denoiser, {
    ...options,
    x,
    kept,
    drawNoise: () => rng.normal(size),
  });
}

/** Options of {@linkcode reverseProcess}. */
export interface ReverseProcessOptions extends ReverseOptions {
  /** The noise schedule the network was trained with. */
  schedule: Schedule;
  /** Shape NCHW `[n, c, h, w]` of `x`. */
  shape: Shape;
  /** As in {@linkcode SampleOptions.sampler}. */
  sampler: SamplerKind;
  /** The starting point `x_t` at the largest kept timestep. Not modified. */
  x: Float32Array;
  /** Increasing 0-based timesteps to visit, from the last (noisiest) down to the first. */
  kept: readonly number[];
  /** Fresh standard normal noise of the batch's size for one step. */
  drawNoise: () => Float32Array;
  /** As in {@linkcode SampleOptions.eta}. */
  eta?: number;
  /** As in {@linkcode SampleOptions.onStep}. */
  onStep?: (info: StepInfo) => void | Promise<void>;
  /** As in {@linkcode SampleOptions.signal}. */
  signal?: AbortSignal;
}

/**
 * Runs the reverse process from `x` over the kept timesteps, for callers that choose their own
 * start (interpolation decodes from an intermediate `t`) or their own noise.
 *
 * Every sampler runs on the respaced schedule of the kept steps, so `abar` at each kept step is
 * the original one and the network is called with the original timestep. Each step calls the
 * network once at the current kept timestep and moves to the next smaller one (after the
 * smallest, to the clean image), so `steps` is the number of network evaluations for every one.
 *
 * The multistep solvers (`dpmpp-2m`, its SDE form `dpmpp-2m-sde`, `unipc`) work in the half log-SNR
 * `lambda = log(sqrt(abar) / sqrt(1 - abar))` on the model's x0 prediction, clipped to
 * [-1, 1] first when `clipDenoised` (pixel-space thresholding). Their first step and their
 * last two are first order: the first has no history, the last lands on `sigma = 0` (infinite
 * `lambda`: it returns the x0 prediction), and the one before it jumps far in `lambda`
 * compared with the step before, where a second-order extrapolation overshoots.
 */
export async function reverseProcess(
  denoiser: Denoiser,
  options: ReverseProcessOptions,
): Promise<Float32Array> {
  const { shape, sampler, kept, drawNoise, onStep, signal } = options;
  checkTensor("x", options.x, shape);
  const n = shape[0];
  if (!SAMPLERS.includes(sampler)) {
    throw new RangeError(`sampler must be one of ${SAMPLERS.join(", ")}, got ${sampler}`);
  }
  const eta = options.eta ?? 0;
  if (!(eta >= 0 && eta <= 1)) throw new RangeError(`eta must be in [0, 1], got ${eta}`);
  if (eta !== 0 && !SAMPLER_CAPABILITIES[sampler].takesEta) {
    throw new RangeError(
      `eta applies to ${SAMPLERS.filter((s) => SAMPLER_CAPABILITIES[s].takesEta).join(", ")} ` +
        `only, got eta ${eta} for ${sampler}`,
    );
  }
  const variance = options.variance ?? "fixedlarge";
  const outputLength = outputFactor(variance) * options.x.length;
  const schedule = respaceSchedule(options.schedule, kept);
  const steps = schedule.timesteps;
  let x: Float32Array = options.x.slice();
  // The multistep solvers' memory: the x0 predictions of the last two steps (newest last),
  // and for UniPC's corrector the sample the last prediction came from and its order.
  const history: _Point[] = [];
  let previousX = x;
  let previousOrder = 1;

  for (let k = steps - 1; k >= 0; k--) {
    signal?.throwIfAborted();
    const modelT = schedule.modelTimesteps[k];
    const output = await denoiser(x, new Float32Array(n).fill(modelT), shape);
    if (!(output instanceof Float32Array) || output.length !== outputLength) {
      throw new RangeError(
        `denoiser must return a Float32Array of ${outputLength} values${
          outputLength === x.length ? "" : ` (2 x ${x.length}: the prediction, then v)`
        }, got ${
          output instanceof Float32Array ? output.length : typeof output
        } (variance ${variance})`,
      );
    }
    const index = new Array<number>(n).fill(k);
    const step = pMeanVariance(schedule, output, x, index, shape, options);
    let next: Float32Array = new Float32Array(x.length);
    const abarPrev = schedule.alphasCumprodPrev[k];
    switch (sampler) {
      case "ddpm": {
        // Algorithm 2: x_{t-1} = mu + sigma z, with no noise at the last step; sigma per
        // element (a learned variance varies within an example).
        next.set(step.mean);
        if (k > 0) {
          const z = drawNoise();
          for (let j = 0; j < x.length; j++) next[j] += Math.sqrt(step.variance[j]) * z[j];
        }
        break;
      }
      case "ddim": {
        // Song et al. eq. 12: x_{t'} = sqrt(abar') x0 + sqrt(1 - abar' - sigma^2) eps + sigma z.
        const abar = schedule.alphasCumprod[k];
        const sigma = eta * Math.sqrt((1 - abarPrev) / (1 - abar)) *
          Math.sqrt(1 - abar / abarPrev);
        const a = Math.sqrt(abarPrev);
        const b = Math.sqrt(Math.max(0, 1 - abarPrev - sigma * sigma));
        const z = sigma > 0 && k > 0 ? drawNoise() : null;
        for (let j = 0; j < x.length; j++) {
          next[j] = a * step.predX0[j] + b * step.predEps[j] + (z ? sigma * z[j] : 0);
        }
        break;
      }
      case "dpmpp-2m":
      case "dpmpp-2m-sde":
      case "unipc": {
        const here: _Point = { x0: step.predX0, abar: schedule.alphasCumprod[k] };
        // 1. UniC: correct x_t with this step's x0 (no extra network call), then predict from it.
        if (sampler === "unipc" && history.length > 0) {
          x = _uniCorrector(previousX, here, history, previousOrder);
        }
        // 2. The predictor (UniP-2 with B(h) = e^h - 1 is DPM-Solver++(2M)): second order
        //    when there is a previous x0 and the target is neither the smallest kept step nor
        //    the clean image.
        //    The last step lands on the clean image (sigma = 0): the x0 prediction itself.
        const order = history.length > 0 && k >= 2 ? 2 : 1;
        next = k === 0 ? step.predX0.slice() : _dpmSolverPlusPlus(x, here, abarPrev, {
          previous: order === 2 ? history[history.length - 1] : undefined,
          noise: sampler === "dpmpp-2m-sde" ? drawNoise() : undefined,
        });
        history.push(here);
        if (history.length > 2) history.shift();
        previousX = x;
        previousOrder = order;
        break;
      }
      default: {
        const unknown: never = sampler;
        throw new RangeError(`sampler must be one of ${SAMPLERS.join(", ")}, got ${unknown}`);
      }
    }
    if (onStep) {
      await onStep({ step: steps - 1 - k, steps, t: modelT, x, predX0: step.predX0 });
    }
    x = next;
  }
  return x;
}

/** A visited timestep of a multistep solver: its `abar` and the x0 predicted there. */
interface _Point {
  readonly x0: Float32Array;
  readonly abar: number;
}

/** `lambda = log(alpha / sigma)`, half the log signal-to-noise ratio, from `abar`. */
function _halfLogSnr(abar: number): number {
  return 0.5 * (Math.log(abar) - Math.log1p(-abar));
}

/**
 * One DPM-Solver++ step (Lu et al. 2022, eq. 9 and Algorithm 2) from `x` at `from` to the
 * timestep with `abarTo`, in data prediction:
 * `x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D`, `h = lambda_t - lambda_s`, where
 * `D = x0_s` at first order and, given the previous point,
 * `D = (1 + 1/(2r)) x0_s - (1/(2r)) x0_prev` with `r = h_prev / h` (2M).
 *
 * With `noise`, the step of the reverse SDE instead (SDE-DPM-Solver++, the same paper's
 * appendix), whose linear part and noise are integrated exactly:
 * `x_t = (sigma_t / sigma_s) e^{-h} x_s - alpha_t (e^{-2h} - 1) D + sigma_t sqrt(1 - e^{-2h}) z`.
 * At first order that is DDIM's step with eta 1: `sigma_t^2 (1 - e^{-2h})` is its `sigma^2`.
 */
function _dpmSolverPlusPlus(
  x: Float32Array,
  from: _Point,
  abarTo: number,
  options: { previous?: _Point; noise?: Float32Array },
): Float32Array {
  const { previous, noise } = options;
  const sigmaTo = Math.sqrt(1 - abarTo);
  const lambdaS = _halfLogSnr(from.abar);
  const h = _halfLogSnr(abarTo) - lambdaS;
  // The SDE's drift decays x twice as fast in lambda: its exponents are 2h where the ODE's are h.
  const rate = noise ? 2 : 1;
  const xWeight = (sigmaTo / Math.sqrt(1 - from.abar)) * (noise ? Math.exp(-h) : 1);
  // -alpha_t (e^{-rate h} - 1), written with expm1 so small steps keep their digits.
  const x0Weight = -Math.sqrt(abarTo) * Math.expm1(-rate * h);
  const noiseWeight = noise ? sigmaTo * Math.sqrt(-Math.expm1(-2 * h)) : 0;
  const half = previous ? 1 / (2 * ((lambdaS - _halfLogSnr(previous.abar)) / h)) : 0;
  const out = new Float32Array(x.length);
  for (let j = 0; j < x.length; j++) {
    const d = previous ? (1 + half) * from.x0[j] - half * previous.x0[j] : from.x0[j];
    out[j] = xWeight * x[j] + x0Weight * d + (noise ? noiseWeight * noise[j] : 0);
  }
  return out;
}

/**
 * UniC, the corrector of UniPC with `B(h) = e^h - 1` (bh2; Zhao et al. 2023, Algorithm 1 and
 * eq. 8, data prediction): redoes the step from `xFrom` (at the newest point of `history`) to
 * `here` with `here.x0` added to the interpolation, one order above the predictor's `order`.
 * Order 1 is the trapezoidal rule in `lambda`; order 2 solves the 2x2 system
 * `[[1, 1], [r1, 1]] rho = [b1, b2]` for the weights of the previous and the new difference.
 */
function _uniCorrector(
  xFrom: Float32Array,
  here: _Point,
  history: readonly _Point[],
  order: number,
): Float32Array {
  const s0 = history[history.length - 1];
  const lambdaS0 = _halfLogSnr(s0.abar);
  const h = _halfLogSnr(here.abar) - lambdaS0;
  const alphaT = Math.sqrt(here.abar);
  const sigmaRatio = Math.sqrt((1 - here.abar) / (1 - s0.abar));
  // In data prediction the step runs in -lambda: hh = -h, phi_1 = e^{hh} - 1 = B(h) for bh2.
  const hh = -h;
  const phi1 = Math.expm1(hh);
  const bh = phi1;
  let rhoPrevious = 0, rhoHere = 0.5, r1 = 1;
  if (order === 2 && history.length >= 2) {
    const s1 = history[history.length - 2];
    r1 = (_halfLogSnr(s1.abar) - lambdaS0) / h;
    // b_k = k! phi_{k+1}(hh) / B(h), with phi_2 = phi_1 / hh - 1 and phi_3 = phi_2 / hh - 1/2.
    const phi2 = phi1 / hh - 1;
    const b1 = phi2 / bh;
    const b2 = (2 * (phi2 / hh - 0.5)) / bh;
    rhoPrevious = (b1 - b2) / (1 - r1);
    rhoHere = b1 - rhoPrevious;
  }
  const previous = order === 2 && history.length >= 2 ? history[history.length - 2] : null;
  const out = new Float32Array(xFrom.length);
  for (let j = 0; j < xFrom.length; j++) {
    const m0 = s0.x0[j];
    const d1Previous = previous ? (previous.x0[j] - m0) / r1 : 0;
    const d1Here = here.x0[j] - m0;
    out[j] = sigmaRatio * xFrom[j] - alphaT * phi1 * m0 -
      alphaT * bh * (rhoPrevious * d1Previous + rhoHere * d1Here);
  }
  return out;
}
