/**
 * One training step of DDPM (Algorithm 1 with the `L_simple` objective) and the state it
 * updates: the weights, their exponential moving average and Adam's moments.
 *
 * Every random number (timesteps, noise, dropout seeds) comes from the caller's seeded `Rng`
 * on the CPU, so a run is reproducible and resumable on any backend.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { nchwToHwc } from "../lib/image.ts";
import type { Prediction } from "../lib/parameterization.ts";
import type { Rng } from "../lib/rng.ts";
import type { ConditionalDenoiser } from "../lib/guidance.ts";
import type { Schedule } from "../lib/schedule.ts";
import type { NamedTensors } from "./checkpoint.ts";
import { classCount, describeUNet, initParameters, type UNetConfig } from "./network.ts";
import { tfjsDenoiser, unetApply } from "./tfjs_ops.ts";

/** Optimisation settings; defaults are the paper's CIFAR-10 ones (`run_cifar.py`). */
export interface OptimizerOptions {
  /** Peak learning rate. Default 2e-4. */
  lr?: number;
  /** Steps of linear warm-up from 0 to `lr`. Default 5000. */
  warmupSteps?: number;
  /** Global gradient-norm clip. Default 1. */
  gradClip?: number;
  /** EMA decay. Default 0.9999. */
  emaDecay?: number;
  /** Adam's moment decays and epsilon. Defaults 0.9, 0.999, 1e-8. */
  beta1?: number;
  beta2?: number;
  epsilon?: number;
}

/** Everything fixed for the lifetime of a run. */
export interface TrainerSetup {
  config: UNetConfig;
  schedule: Schedule;
  prediction?: Prediction;
  optimizer?: OptimizerOptions;
  /**
   * Conditional networks: the probability that a label is replaced by "no class" in training,
   * so one network learns both predictions classifier-free guidance needs. Default 0.1.
   */
  labelDropout?: number;
}

/** The learnable state, as plain arrays. */
export interface TrainerState {
  step: number;
  params: NamedTensors;
  ema: NamedTensors;
  m: NamedTensors;
  v: NamedTensors;
}

/** What one step reports. */
export interface StepResult {
  /** `L_simple` of the batch before the update. */
  readonly loss: number;
  /** Global gradient norm before clipping. */
  readonly gradNorm: number;
  /** Learning rate used for this update. */
  readonly lr: number;
}

/**
 * A step whose loss or gradient norm is NaN or infinite. Thrown before anything is updated:
 * the weights, the EMA and Adam's moments are those of the previous step.
 */
export class NonFiniteLossError extends Error {
  constructor(readonly step: number, readonly loss: number, readonly gradNorm: number) {
    super(
      `step ${step}: the loss is ${loss} and the gradient norm ${gradNorm}; the weights were not ` +
        "updated (a corrupt batch, or a learning rate too high: try a lower --lr)",
    );
    this.name = "NonFiniteLossError";
  }
}

/** Learning rate at 0-based step `step`: linear warm-up over `warmupSteps`, then constant. */
export function learningRate(step: number, lr: number, warmupSteps: number): number {
  return warmupSteps > 0 ? lr * Math.min(1, (step + 1) / warmupSteps) : lr;
}

/**
 * EMA decay at 0-based step `step`: `min(decay, (1 + step) / (10 + step))`, TensorFlow's
 * `num_updates` warm-up, so the average of a short run is not dominated by the random start.
 */
export function emaDecayAt(step: number, decay: number): number {
  return Math.min(decay, (1 + step) / (10 + step));
}

/** Weights, EMA weights and Adam moments on the tfjs backend, and the step that updates them. */
export class Trainer {
  readonly config: UNetConfig;
  readonly schedule: Schedule;
  readonly prediction: Prediction;
  readonly options: Required<OptimizerOptions>;
  /** Probability of training a labelled example as "no class" (conditional networks). */
  readonly labelDropout: number;
  /** Optimizer steps taken. */
  step: number;
  readonly #params: Map<string, tf.Variable>;
  readonly #ema: Map<string, tf.Variable>;
  readonly #m: Map<string, tf.Variable>;
  readonly #v: Map<string, tf.Variable>;
  readonly #sqrtAbar: Float32Array;
  readonly #sqrtOneMinusAbar: Float32Array;

  private constructor(setup: TrainerSetup, state: TrainerState) {
    this.config = setup.config;
    this.schedule = setup.schedule;
    this.prediction = setup.prediction ?? "eps";
    const o = setup.optimizer ?? {};
    this.options = {
      lr: o.lr ?? 2e-4,
      warmupSteps: o.warmupSteps ?? 5000,
      gradClip: o.gradClip ?? 1,
      emaDecay: o.emaDecay ?? 0.9999,
      beta1: o.beta1 ?? 0.9,
      beta2: o.beta2 ?? 0.999,
      epsilon: o.epsilon ?? 1e-8,
    };
    _checkOptions(this.options);
    this.labelDropout = setup.labelDropout ?? 0.1;
    if (!(this.labelDropout >= 0 && this.labelDropout <= 1)) {
      throw new RangeError(`labelDropout must be in [0, 1], got ${this.labelDropout}`);
    }
    this.step = state.step;
    const names = describeUNet(setup.config).params.map((p) => p.name);
    const load = (group: NamedTensors, what: string, trainable: boolean) => {
      const out = new Map<string, tf.Variable>();
      for (const name of names) {
        const entry = group[name];
        if (!entry) throw new RangeError(`${what} has no tensor ${name} for this network config`);
        out.set(name, tf.variable(tf.tensor(entry.data, entry.shape), trainable));
      }
      const extra = Object.keys(group).filter((k) => !out.has(k));
      if (extra.length > 0) {
        out.forEach((v) => v.dispose());
        throw new RangeError(
          `${what} has tensors the network lacks: ${extra.slice(0, 5).join(", ")}`,
        );
      }
      return out;
    };
    this.#params = load(state.params, "params", true);
    this.#ema = load(state.ema, "ema", false);
    this.#m = load(state.m, "adam.m", false);
    this.#v = load(state.v, "adam.v", false);
    this.#sqrtAbar = Float32Array.from(setup.schedule.sqrtAlphasCumprod);
    this.#sqrtOneMinusAbar = Float32Array.from(setup.schedule.sqrtOneMinusAlphasCumprod);
  }

  /**
   * A fresh run: weights from the seeded initialiser, EMA equal to them, zero moments. With
   * `warmStart` (another run's weights), every parameter found there starts from its value
   * instead; parameters it lacks (a new class embedding) keep their initial value, and a
   * tensor of another shape, or one this network lacks, is an error.
   */
  static create(
    setup: TrainerSetup,
    seed: number,
    warmStart?: { params: NamedTensors; ema: NamedTensors },
  ): Trainer {
    const specs = describeUNet(setup.config).params;
    const initial = initParameters(specs, seed);
    const params: NamedTensors = {}, ema: NamedTensors = {}, zeros: NamedTensors = {};
    for (const [name, { shape, data }] of initial) {
      params[name] = warmStart?.params[name] ?? { shape, data };
      ema[name] = warmStart?.ema[name] ?? { shape, data };
      zeros[name] = { shape, data: new Float32Array(data.length) };
      for (const group of [params, ema]) {
        if (group[name].shape.join(",") !== shape.join(",")) {
          throw new RangeError(
            `warm start: ${name} has shape [${group[name].shape}], this network needs [${shape}]`,
          );
        }
      }
    }
    const extra = Object.keys(warmStart?.params ?? {}).filter((name) => !(name in params));
    if (extra.length > 0) {
      throw new RangeError(
        `warm start: the weights have tensors this network lacks: ${extra.slice(0, 5).join(", ")}`,
      );
    }
    return new Trainer(setup, { step: 0, params, ema, m: zeros, v: zeros });
  }

  /** Continues from saved state (a checkpoint). */
  static restore(setup: TrainerSetup, state: TrainerState): Trainer {
    return new Trainer(setup, state);
  }

  /** The live weights by name (for the forward pass and export). */
  get params(): ReadonlyMap<string, tf.Tensor> {
    return this.#params;
  }

  /** The EMA weights by name. */
  get ema(): ReadonlyMap<string, tf.Tensor> {
    return this.#ema;
  }

  /**
   * One step on a batch `x0` (NCHW, values in [-1, 1]), with class `labels` for a conditional
   * network (-1: unlabelled, trained as "no class"):
   * 1. draw t uniformly from `0..T-1` and eps ~ N(0, I) per example (from `rng`); a conditional
   *    network also drops each label to "no class" with probability `labelDropout`;
   * 2. `x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps` (eq. 4);
   * 3. loss = mean squared error between the network's output and the target (eq. 14);
   * 4. if the loss or the gradient norm is not finite, throw `NonFiniteLossError` and change
   *    nothing; otherwise clip the gradients to global norm `gradClip` and take an Adam step
   *    at the warm-up rate;
   * 5. update the EMA of the weights.
   */
  async trainStep(
    x0: Float32Array,
    shape: readonly [number, number, number, number],
    rng: Rng,
    labels?: Int32Array,
  ): Promise<StepResult> {
    this.#checkBatch(x0, shape);
    const t = rng.integers(shape[0], this.schedule.timesteps);
    const noise = rng.normal(x0.length);
    const dropoutSeed = rng.nextUint32();
    const classes = this.#classIndices(shape[0], labels, rng);
    const { lr: peak, warmupSteps, gradClip, beta1, beta2, epsilon, emaDecay } = this.options;
    const lr = learningRate(this.step, peak, warmupSteps);
    const k = this.step + 1;
    const stepSize = (lr * Math.sqrt(1 - beta2 ** k)) / (1 - beta1 ** k); // Adam bias correction
    const decay = emaDecayAt(this.step, emaDecay);

    // Phase 1: loss, gradients and their global norm. The update waits until both numbers are
    // known to be finite, so a bad batch never reaches the weights.
    const forward = tf.tidy(() => {
      const { xt, target, tT } = this.#noisyInputs(x0, shape, t, noise);
      const yT = classes && tf.tensor1d(classes, "int32");
      const vars = [...this.#params.values()] as tf.Variable[];
      const { value, grads } = tf.variableGrads(() => {
        const out = unetApply(
          this.#params,
          this.config,
          xt,
          tT,
          { training: true, dropoutSeed },
          yT,
        );
        return tf.mean(tf.squaredDifference(out, target)) as tf.Scalar;
      }, vars);
      const ordered = vars.map((v) => grads[v.name]);
      const norm = tf.sqrt(_sumPairwise(ordered.map((g) => tf.sum(tf.square(g)))));
      return { value, norm, grads: ordered };
    });
    try {
      const [loss] = await forward.value.data();
      const [gradNorm] = await forward.norm.data();
      if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
        throw new NonFiniteLossError(k, loss, gradNorm);
      }
      // Phase 2: clip to the global norm (g * clip / max(norm, clip)), Adam, then the EMA.
      tf.tidy(() => {
        const clipScale = tf.div(gradClip, tf.maximum(forward.norm, gradClip));
        [...this.#params.keys()].forEach((name, i) => {
          const g = tf.mul(forward.grads[i], clipScale);
          const m = this.#m.get(name) as tf.Variable;
          const v = this.#v.get(name) as tf.Variable;
          m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1)));
          v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2)));
          const p = this.#params.get(name) as tf.Variable;
          p.assign(tf.sub(p, tf.mul(stepSize, tf.div(m, tf.add(tf.sqrt(v), epsilon)))));
          const e = this.#ema.get(name) as tf.Variable;
          e.assign(tf.add(tf.mul(e, decay), tf.mul(p, 1 - decay)));
        });
      });
      this.step = k;
      return { loss, gradNorm, lr };
    } finally {
      tf.dispose([forward.value, forward.norm, ...forward.grads]);
    }
  }

  /**
   * `L_simple` of a batch without updating anything (no dropout), with t and noise drawn from
   * `rng`; with a fixed seed, the same batch gives a fixed yardstick (held-out loss, tests).
   * `weights` picks the live or the EMA weights. A conditional network is scored with the
   * given `labels` (none dropped), or as "no class" without them.
   */
  async evalLoss(
    x0: Float32Array,
    shape: readonly [number, number, number, number],
    rng: Rng,
    weights: "params" | "ema" = "params",
    labels?: Int32Array,
  ): Promise<number> {
    this.#checkBatch(x0, shape);
    const t = rng.integers(shape[0], this.schedule.timesteps);
    const noise = rng.normal(x0.length);
    const classes = this.#classIndices(shape[0], labels);
    const lossT = tf.tidy(() => {
      const { xt, target, tT } = this.#noisyInputs(x0, shape, t, noise);
      const params = weights === "ema" ? this.#ema : this.#params;
      const yT = classes && tf.tensor1d(classes, "int32");
      return tf.mean(
        tf.squaredDifference(unetApply(params, this.config, xt, tT, {}, yT), target),
      );
    });
    try {
      return (await lossT.data())[0];
    } finally {
      lossT.dispose();
    }
  }

  /**
   * The embedding rows a conditional network is fed: each label, or "no class" (index
   * `numClasses`) for unlabelled examples and, when `rng` is given, for a `labelDropout` share
   * of the others. Undefined for an unconditional network, which takes no labels.
   */
  #classIndices(n: number, labels: Int32Array | undefined, rng?: Rng): Int32Array | undefined {
    const numClasses = classCount(this.config);
    if (numClasses === 0) return undefined;
    if (labels && labels.length !== n) {
      throw new RangeError(`the batch has ${n} images but ${labels.length} labels`);
    }
    const drop = rng?.uniform(n);
    return Int32Array.from({ length: n }, (_, i) => {
      const y = labels?.[i] ?? -1;
      if (y >= numClasses || y < -1 || !Number.isInteger(y)) {
        throw new RangeError(`labels[${i}] must be in 0..${numClasses - 1} (or -1), got ${y}`);
      }
      return y < 0 || (drop !== undefined && drop[i] < this.labelDropout) ? numClasses : y;
    });
  }

  #checkBatch(x0: Float32Array, shape: readonly [number, number, number, number]): void {
    const [n, c, h, w] = shape;
    if (c !== this.config.channels || h !== this.config.imageSize || w !== this.config.imageSize) {
      throw new RangeError(
        `batch images are ${c}x${h}x${w}, the network expects ` +
          `${this.config.channels}x${this.config.imageSize}x${this.config.imageSize}`,
      );
    }
    if (x0.length !== n * c * h * w) {
      throw new RangeError(
        `batch has ${x0.length} values, shape [${shape}] needs ${n * c * h * w}`,
      );
    }
  }

  /**
   * The network's input `x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps` (eq. 4) and its
   * regression target, NHWC, for given timesteps and noise. Call inside `tf.tidy`.
   */
  #noisyInputs(
    x0: Float32Array,
    shape: readonly [number, number, number, number],
    t: Int32Array,
    noise: Float32Array,
  ): { xt: tf.Tensor; target: tf.Tensor; tT: tf.Tensor } {
    const [n, c, h, w] = shape;
    const nhwc: [number, number, number, number] = [n, h, w, c];
    const x0T = tf.tensor4d(nchwToHwc(x0, shape), nhwc);
    const epsT = tf.tensor4d(nchwToHwc(noise, shape), nhwc);
    const a = tf.tensor4d(Float32Array.from(t, (i) => this.#sqrtAbar[i]), [n, 1, 1, 1]);
    const s = tf.tensor4d(Float32Array.from(t, (i) => this.#sqrtOneMinusAbar[i]), [n, 1, 1, 1]);
    const xt = tf.add(tf.mul(a, x0T), tf.mul(s, epsT));
    let target: tf.Tensor;
    switch (this.prediction) {
      case "eps":
        target = epsT;
        break;
      case "x0":
        target = x0T;
        break;
      case "v":
        target = tf.sub(tf.mul(a, epsT), tf.mul(s, x0T)); // v = sqrt(abar) eps - sqrt(1 - abar) x0
        break;
      default: {
        const unknown: never = this.prediction;
        throw new RangeError(`prediction must be eps, x0 or v, got ${unknown}`);
      }
    }
    return { xt, target, tT: tf.tensor1d(Float32Array.from(t)) };
  }

  /** The network with the EMA weights, as a `ConditionalDenoiser` for sampling previews. */
  emaDenoiser(): ConditionalDenoiser {
    return tfjsDenoiser(this.#ema, this.config);
  }

  /** Reads every tensor back to plain arrays (for a checkpoint). */
  async state(): Promise<TrainerState> {
    const read = async (group: Map<string, tf.Variable>) => {
      const out: NamedTensors = {};
      for (const [name, v] of group) {
        out[name] = { shape: [...v.shape], data: (await v.data()) as Float32Array };
      }
      return out;
    };
    return {
      step: this.step,
      params: await read(this.#params),
      ema: await read(this.#ema),
      m: await read(this.#m),
      v: await read(this.#v),
    };
  }

  /** Frees every tensor this trainer holds. */
  dispose(): void {
    for (const group of [this.#params, this.#ema, this.#m, this.#v]) {
      group.forEach((v) => v.dispose());
    }
  }
}

/**
 * Sum of scalars by pairwise `add`. Not `tf.addN`: on WebGPU adapters that allow 8 storage
 * buffers per shader (llvmpipe), tfjs's AddN with 8 or more inputs silently returns zeros.
 */
function _sumPairwise(values: tf.Tensor[]): tf.Tensor {
  let level = values;
  while (level.length > 1) {
    const next: tf.Tensor[] = [];
    for (let i = 0; i < level.length; i += 2) {
      next.push(i + 1 < level.length ? tf.add(level[i], level[i + 1]) : level[i]);
    }
    level = next;
  }
  return level[0];
}

function _checkOptions(o: Required<OptimizerOptions>): void {
  const check = (name: string, value: number, ok: boolean, range: string) => {
    if (!ok) throw new RangeError(`${name} must be ${range}, got ${value}`);
  };
  check("lr", o.lr, o.lr > 0 && o.lr < 1, "in (0, 1)");
  check(
    "warmupSteps",
    o.warmupSteps,
    Number.isInteger(o.warmupSteps) && o.warmupSteps >= 0,
    "an integer >= 0",
  );
  check("gradClip", o.gradClip, o.gradClip > 0, "> 0");
  check("emaDecay", o.emaDecay, o.emaDecay >= 0 && o.emaDecay < 1, "in [0, 1)");
  check("beta1", o.beta1, o.beta1 >= 0 && o.beta1 < 1, "in [0, 1)");
  check("beta2", o.beta2, o.beta2 >= 0 && o.beta2 < 1, "in [0, 1)");
  check("epsilon", o.epsilon, o.epsilon > 0, "> 0");
}
