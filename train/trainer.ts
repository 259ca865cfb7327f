/**
 * One training step of DDPM (Algorithm 1 with the `L_simple` objective, or Improved DDPM's hybrid
 * objective for a network that learns its variance) and the state it updates: the weights, their
 * exponential moving average and Adam's moments.
 *
 * Every random number (timesteps, noise, dropout seeds) comes from the caller's seeded `Rng`
 * on the CPU, so a run is reproducible and resumable on any backend.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { Prediction } from "../lib/parameterization.ts";
import type { Rng } from "../lib/rng.ts";
import type { ConditionalDenoiser } from "../lib/guidance.ts";
import type { Schedule } from "../lib/schedule.ts";
import type { NamedTensors } from "./checkpoint.ts";
import { TRAINING_DEFAULTS, withDefaults } from "./defaults.ts";
import { GradientPool } from "./gradient_pool.ts";
import {
  classCount,
  describeUNet,
  initParameters,
  outputChannels,
  type UNetConfig,
} from "./network.ts";
import {
  adamEmaUpdate,
  checkTensors,
  flattenTensors,
  globalNorm,
  type OptimizerBuffers,
  type ParamLayout,
  paramLayout,
  unflattenTensors,
  type UpdateSettings,
} from "./optimizer.ts";
import {
  batchLoss,
  drawTimesteps,
  lossGradients,
  type LossSetup,
  type LossValues,
  type StepInputs,
  VB_LAMBDA,
  vbTables,
} from "./step.ts";
import { type ParamTensors, tfjsDenoiser } from "./tfjs_ops.ts";

/** Optimisation settings; each one left out is `TRAINING_DEFAULTS.optimizer`'s (`defaults.ts`). */
export interface OptimizerOptions {
  /** Peak learning rate. */
  lr?: number;
  /** Steps of linear warm-up from 0 to `lr`. */
  warmupSteps?: number;
  /**
   * Steps of linear cool-down at the end of the run: the learning rate falls from `lr` toward 0
   * over the last `cooldownSteps` before `TrainerSetup.totalSteps`. 0: constant after warm-up.
   */
  cooldownSteps?: number;
  /** Global gradient-norm clip. */
  gradClip?: number;
  /** EMA decay. */
  emaDecay?: number;
  /** Adam's moment decays and epsilon. */
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
   * The step the run ends at, where a cool-down (`optimizer.cooldownSteps`) reaches 0; needed
   * only with one.
   */
  totalSteps?: number;
  /**
   * Conditional networks: the probability that a label is replaced by "no class" in training,
   * so one network learns both predictions classifier-free guidance needs. Default
   * `TRAINING_DEFAULTS.labelDropout`.
   */
  labelDropout?: number;
  /**
   * Networks that learn their variance: the share of each batch whose timesteps come from the
   * small-t proposal instead of the uniform draw, every example importance-weighted so the
   * objective is unchanged in expectation (`drawTimesteps`). Default 0: uniform t.
   */
  vbImportance?: number;
  /**
   * Networks that learn their variance: the hybrid objective's weight of `L_vlb`,
   * `L_simple + lambda L_vlb`. Default Improved DDPM's 0.001 (`VB_LAMBDA`).
   */
  vbLambda?: number;
  /**
   * Gradient workers: each computes its share of every batch on its own WebAssembly backend
   * (`gradient_pool.ts`). 0 (the default) runs the step in the calling thread on whatever tfjs
   * backend is current, the only choice for WebGPU (one device).
   */
  workers?: number;
  /** The gradient worker's module; tests substitute one that fails on purpose. */
  workerModule?: URL;
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
  /** `L_simple` of the batch before the update (the prediction's channels only). */
  readonly loss: number;
  /**
   * A network that learns its variance: the batch's mean `L_t` in bits/dim, the term the hybrid
   * objective adds (times `lambda T`, by default T / 1000) to `loss`; with `vbImportance`, like
   * `loss`, the importance-weighted batch mean. Absent otherwise.
   */
  readonly vb?: number;
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

/**
 * Learning rate at 0-based step `step`: linear warm-up over `warmupSteps`, then constant; with a
 * `cooldown`, a linear decay over the last `steps` steps before `end`: step `end - k` takes
 * `lr k / (steps + 1)` for k = steps..1, on the line from `lr` at the step before the decay to 0
 * at `end`, which no step reaches (a step at 0 would be wasted). A warm-up and a cool-down that
 * overlap multiply.
 */
export function learningRate(
  step: number,
  lr: number,
  warmupSteps: number,
  cooldown?: { steps: number; end: number },
): number {
  const warm = warmupSteps > 0 ? Math.min(1, (step + 1) / warmupSteps) : 1;
  const cool = cooldown && cooldown.steps > 0
    ? Math.max(0, Math.min(1, (cooldown.end - step) / (cooldown.steps + 1)))
    : 1;
  return lr * warm * cool;
}

/**
 * EMA decay at 0-based step `step`: `min(decay, (1 + step) / (10 + step))`, TensorFlow's
 * `num_updates` warm-up, so the average of a short run is not dominated by the random start.
 */
export function emaDecayAt(step: number, decay: number): number {
  return Math.min(decay, (1 + step) / (10 + step));
}

/**
 * The run's state and the step that updates it. Where the state lives depends on `workers`
 * (see {@linkcode TrainerSetup}): as tfjs variables on the current backend, updated by tfjs
 * kernels (0 workers: WebGPU, or any backend in the calling thread), or as flat float32 buffers
 * in shared memory, with gradients from a pool of WebAssembly workers and the fused optimizer of
 * `optimizer.ts`. Both compute the same numbers: one worker gives the bits of the in-thread step
 * on the WebAssembly backend (tested), N workers the same up to float32 summation order.
 */
export class Trainer {
  readonly config: UNetConfig;
  readonly schedule: Schedule;
  readonly prediction: Prediction;
  readonly options: Required<OptimizerOptions>;
  /** Probability of training a labelled example as "no class" (conditional networks). */
  readonly labelDropout: number;
  /** The share of each batch drawn from the small-t proposal ({@linkcode TrainerSetup.vbImportance}). */
  readonly vbImportance: number;
  /** Gradient workers (0: the step runs in the calling thread). */
  readonly workers: number;
  /** The step a cool-down ends at (`TrainerSetup.totalSteps`). */
  readonly totalSteps?: number;
  /** Optimizer steps taken. */
  step: number;
  readonly #state: _TrainingState;
  readonly #lossSetup: LossSetup;

  private constructor(
    setup: TrainerSetup,
    step: number,
    held: { state: _TrainingState; lossSetup: LossSetup },
  ) {
    this.config = setup.config;
    this.schedule = setup.schedule;
    this.prediction = setup.prediction ?? TRAINING_DEFAULTS.prediction;
    this.options = withDefaults(setup.optimizer, TRAINING_DEFAULTS.optimizer);
    this.labelDropout = setup.labelDropout ?? TRAINING_DEFAULTS.labelDropout;
    this.vbImportance = setup.vbImportance ?? 0;
    this.workers = setup.workers ?? TRAINING_DEFAULTS.workers;
    this.totalSteps = setup.totalSteps;
    this.step = step;
    this.#state = held.state;
    this.#lossSetup = held.lossSetup;
  }

  /**
   * A fresh run: weights from the seeded initialiser, EMA equal to them, zero moments. With
   * `warmStart` (another run's weights), every parameter found there starts from its value
   * instead; parameters it lacks (a new class embedding) keep their initial value, and a
   * tensor of another shape, or one this network lacks, is an error. One exception: a network
   * that learns its variance, started from one that does not, grows the final convolution from
   * C to 2C output channels with zero weights and biases for the new `v` channels
   * ({@linkcode widenOutputForVariance}), so it predicts exactly as before, with `v = 0`.
   */
  static async create(
    setup: TrainerSetup,
    seed: number,
    warmStart?: { params: NamedTensors; ema: NamedTensors },
  ): Promise<Trainer> {
    const specs = describeUNet(setup.config).params;
    const initial = initParameters(specs, seed);
    const start = warmStart && widenOutputForVariance(warmStart, setup.config);
    const params: NamedTensors = {}, ema: NamedTensors = {}, zeros: NamedTensors = {};
    for (const [name, { shape, data }] of initial) {
      params[name] = start?.params[name] ?? { shape, data };
      ema[name] = start?.ema[name] ?? { shape, data };
      zeros[name] = { shape, data: new Float32Array(data.length) };
      for (const group of [params, ema]) {
        if (group[name].shape.join(",") !== shape.join(",")) {
          // The one mismatch a flag fixes: weights that learn their variance, a network that does not.
          const learned = name.startsWith("conv_out.") && !setup.config.learnVariance &&
            group[name].shape.at(-1) === 2 * setup.config.channels;
          throw new RangeError(
            `warm start: ${name} has shape [${group[name].shape}], this network needs [${shape}]` +
              (learned ? " (the weights learn their variance: add --learn-variance)" : ""),
          );
        }
      }
    }
    const extra = Object.keys(start?.params ?? {}).filter((name) => !(name in params));
    if (extra.length > 0) {
      throw new RangeError(
        `warm start: the weights have tensors this network lacks: ${extra.slice(0, 5).join(", ")}`,
      );
    }
    return await Trainer.restore(setup, { step: 0, params, ema, m: zeros, v: zeros });
  }

  /** Continues from saved state (a checkpoint). */
  static async restore(setup: TrainerSetup, state: TrainerState): Promise<Trainer> {
    const options = withDefaults(setup.optimizer, TRAINING_DEFAULTS.optimizer);
    _checkOptions(options);
    if (options.cooldownSteps > 0 && !((setup.totalSteps ?? 0) >= options.cooldownSteps)) {
      throw new RangeError(
        `a cool-down of ${options.cooldownSteps} steps needs totalSteps (the run's end) of at ` +
          `least that, got ${setup.totalSteps}`,
      );
    }
    const labelDropout = setup.labelDropout ?? TRAINING_DEFAULTS.labelDropout;
    if (!(labelDropout >= 0 && labelDropout <= 1)) {
      throw new RangeError(`labelDropout must be in [0, 1], got ${labelDropout}`);
    }
    const vbImportance = setup.vbImportance ?? 0;
    if (!(vbImportance >= 0 && vbImportance < 1)) {
      throw new RangeError(`the vb importance share must be in [0, 1), got ${vbImportance}`);
    }
    const vbLambda = setup.vbLambda ?? VB_LAMBDA;
    if (!(vbLambda > 0 && vbLambda <= 1)) {
      throw new RangeError(`the vb weight lambda must be in (0, 1], got ${vbLambda}`);
    }
    if (vbLambda !== VB_LAMBDA && !setup.config.learnVariance) {
      throw new RangeError(
        `a vb weight lambda of ${vbLambda} needs a network that learns its variance ` +
          "(--learn-variance): a fixed variance has no vb term to weigh",
      );
    }
    if (vbImportance > 0 && !setup.config.learnVariance) {
      throw new RangeError(
        `a vb importance share of ${vbImportance} needs a network that learns its variance ` +
          "(--learn-variance): a fixed variance has no vb term to sample",
      );
    }
    const workers = setup.workers ?? TRAINING_DEFAULTS.workers;
    if (!Number.isInteger(workers) || workers < 0) {
      throw new RangeError(`workers must be an integer >= 0, got ${workers}`);
    }
    const lossSetup = _lossSetup(setup);
    const held = workers === 0
      ? _VariableState.load(lossSetup, state)
      : await _SharedState.start(lossSetup, state, { workers, workerModule: setup.workerModule });
    return new Trainer(setup, state.step, { state: held, lossSetup });
  }

  /**
   * One step on a batch `x0` (NCHW, values in [-1, 1]), with class `labels` for a conditional
   * network (-1: unlabelled, trained as "no class"):
   * 1. draw t uniformly from `0..T-1` (or a `vbImportance` share of the batch from the small-t
   *    proposal, every example weighted: `drawTimesteps`) and eps ~ N(0, I) per example (from
   *    `rng`); a conditional network also drops each label to "no class" with probability
   *    `labelDropout`;
   * 2. `x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps` (eq. 4);
   * 3. loss = mean squared error between the network's prediction and the target (eq. 14),
   *    plus `lambda T L_t` for a network that learns its variance (Improved DDPM's hybrid
   *    objective, `step.ts`);
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
    const { t, weights } = drawTimesteps(rng, shape[0], this.schedule.timesteps, this.vbImportance);
    const noise = rng.normal(x0.length);
    const dropoutSeed = rng.nextUint32();
    const classes = this.#classIndices(shape[0], labels, rng);
    const { lr: peak, warmupSteps, cooldownSteps, gradClip, beta1, beta2, epsilon, emaDecay } =
      this.options;
    const lr = learningRate(this.step, peak, warmupSteps, {
      steps: cooldownSteps,
      end: this.totalSteps ?? 0, // restore() refused a cool-down without it
    });
    const k = this.step + 1;
    const stepSize = (lr * Math.sqrt(1 - beta2 ** k)) / (1 - beta1 ** k); // Adam bias correction

    // Phase 1: loss, gradients and their global norm. The update waits until both numbers are
    // known to be finite, so a bad batch never reaches the weights.
    const inputs = {
      x0,
      shape,
      t,
      noise,
      dropoutSeed,
      classes,
      exampleOffset: 0,
      ...(weights ? { weights } : {}),
    };
    const { loss, vb, gradNorm } = await this.#state.gradients(inputs);
    const objective = loss + (this.#lossSetup.vb?.weight ?? 0) * (vb ?? 0);
    if (!Number.isFinite(objective) || !Number.isFinite(gradNorm)) {
      this.#state.discardGradients();
      throw new NonFiniteLossError(k, objective, gradNorm);
    }
    // Phase 2: clip to the global norm (g * clip / max(norm, clip)), Adam, then the EMA.
    await this.#state.update({
      gradNorm,
      gradClip,
      beta1,
      beta2,
      epsilon,
      stepSize,
      emaDecay: emaDecayAt(this.step, emaDecay),
    });
    this.step = k;
    return vb === undefined ? { loss, gradNorm, lr } : { loss, vb, gradNorm, lr };
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
    return (await this.evalLosses(x0, shape, rng, weights, labels)).loss;
  }

  /**
   * {@linkcode Trainer.evalLoss} with every part of the loss: `L_simple`, and for a network
   * that learns its variance the batch's mean `L_t` in bits/dim (`vb`).
   */
  async evalLosses(
    x0: Float32Array,
    shape: readonly [number, number, number, number],
    rng: Rng,
    weights: "params" | "ema" = "params",
    labels?: Int32Array,
  ): Promise<LossValues> {
    this.#checkBatch(x0, shape);
    const t = rng.integers(shape[0], this.schedule.timesteps);
    const noise = rng.normal(x0.length);
    const classes = this.#classIndices(shape[0], labels);
    const inputs = { x0, shape, t, noise, dropoutSeed: 0, classes, exampleOffset: 0 };
    return await this.#state.withTensors(weights, async (params) => {
      const { mse, vb } = tf.tidy(() => {
        const terms = batchLoss(params, this.#lossSetup, { ...inputs, training: false });
        return { mse: terms.mse, vb: terms.vb };
      });
      try {
        const loss = (await mse.data())[0];
        return vb ? { loss, vb: (await vb.data())[0] } : { loss };
      } finally {
        tf.dispose([mse, ...(vb ? [vb] : [])]);
      }
    });
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
   * The network with the EMA weights, as a `ConditionalDenoiser` for sampling previews, on the
   * calling thread's backend. A network that learns its variance returns `2C` channels per
   * example (sample it with `variance: "learned-range"`).
   */
  emaDenoiser(): ConditionalDenoiser {
    return (x, t, shape, labels) =>
      this.#state.withTensors(
        "ema",
        async (ema) => await tfjsDenoiser(ema, this.config)(x, t, shape, labels),
      );
  }

  /** Reads every tensor back to plain arrays (for a checkpoint). */
  async state(): Promise<TrainerState> {
    return { step: this.step, ...(await this.#state.read()) };
  }

  /** Frees every tensor this trainer holds and stops its workers. */
  dispose(): void {
    this.#state.dispose();
  }
}

/** Where the weights, EMA and moments live, and how a step computes and applies an update. */
interface _TrainingState {
  /** Loss and gradient norm of `inputs`; the gradients wait for `update` or `discard`. */
  gradients(inputs: StepInputs): Promise<LossValues & { gradNorm: number }>;
  /** Applies the waiting gradients. */
  update(settings: UpdateSettings): Promise<void>;
  discardGradients(): void;
  /** Runs `use` with the live or EMA weights as tensors on the calling thread's backend. */
  withTensors<T>(weights: "params" | "ema", use: (params: ParamTensors) => Promise<T>): Promise<T>;
  read(): Promise<Omit<TrainerState, "step">>;
  dispose(): void;
}

/** The state as tfjs variables on the current backend, updated by tfjs kernels. */
class _VariableState implements _TrainingState {
  readonly #params: Map<string, tf.Variable>;
  readonly #ema: Map<string, tf.Variable>;
  readonly #m: Map<string, tf.Variable>;
  readonly #v: Map<string, tf.Variable>;
  readonly #setup: LossSetup;
  #pending: { grads: tf.Tensor[]; norm: tf.Tensor } | null = null;

  private constructor(setup: LossSetup, groups: Map<string, tf.Variable>[]) {
    this.#setup = setup;
    [this.#params, this.#ema, this.#m, this.#v] = groups;
  }

  static load(setup: LossSetup, state: TrainerState): _VariableState {
    const layout = paramLayout(setup.config);
    const groups: Map<string, tf.Variable>[] = [];
    try {
      for (const [group, what] of _GROUPS) {
        checkTensors(layout, state[group], what); // as the shared state's flattenTensors does
        groups.push(
          new Map(layout.names.map((name) => {
            const { data, shape } = state[group][name];
            return [name, tf.variable(tf.tensor(data, shape), group === "params")];
          })),
        );
      }
    } catch (error) {
      groups.forEach((g) => g.forEach((v) => v.dispose()));
      throw error;
    }
    return new _VariableState(setup, groups);
  }

  gradients(inputs: StepInputs): Promise<LossValues & { gradNorm: number }> {
    const forward = tf.tidy(() => {
      const vars = [...this.#params.values()] as tf.Variable[];
      const { mse, vb, grads } = lossGradients(this.#params, vars, this.#setup, {
        ...inputs,
        training: true,
      });
      const ordered = vars.map((v) => grads[v.name]);
      const norm = tf.sqrt(_sumPairwise(ordered.map((g) => tf.sum(tf.square(g)))));
      return { mse, vb, norm, grads: ordered };
    });
    this.#pending = { grads: forward.grads, norm: forward.norm };
    return (async () => {
      try {
        const [loss] = await forward.mse.data();
        const vb = forward.vb ? (await forward.vb.data())[0] : undefined;
        const [gradNorm] = await forward.norm.data();
        return vb === undefined ? { loss, gradNorm } : { loss, vb, gradNorm };
      } catch (error) {
        this.discardGradients();
        throw error;
      } finally {
        tf.dispose([forward.mse, ...(forward.vb ? [forward.vb] : [])]);
      }
    })();
  }

  update(s: UpdateSettings): Promise<void> {
    const pending = this.#pending;
    if (!pending) throw new Error("update without gradients");
    try {
      tf.tidy(() => {
        const clipScale = tf.div(s.gradClip, tf.maximum(pending.norm, s.gradClip));
        [...this.#params.keys()].forEach((name, i) => {
          const g = tf.mul(pending.grads[i], clipScale);
          const m = this.#m.get(name) as tf.Variable;
          const v = this.#v.get(name) as tf.Variable;
          m.assign(tf.add(tf.mul(m, s.beta1), tf.mul(g, 1 - s.beta1)));
          v.assign(tf.add(tf.mul(v, s.beta2), tf.mul(tf.square(g), 1 - s.beta2)));
          const p = this.#params.get(name) as tf.Variable;
          p.assign(tf.sub(p, tf.mul(s.stepSize, tf.div(m, tf.add(tf.sqrt(v), s.epsilon)))));
          const e = this.#ema.get(name) as tf.Variable;
          e.assign(tf.add(tf.mul(e, s.emaDecay), tf.mul(p, 1 - s.emaDecay)));
        });
      });
    } finally {
      this.discardGradients();
    }
    return Promise.resolve();
  }

  discardGradients(): void {
    if (this.#pending) tf.dispose([this.#pending.norm, ...this.#pending.grads]);
    this.#pending = null;
  }

  withTensors<T>(weights: "params" | "ema", use: (p: ParamTensors) => Promise<T>): Promise<T> {
    return use(weights === "ema" ? this.#ema : this.#params);
  }

  async read(): Promise<Omit<TrainerState, "step">> {
    const read = async (group: Map<string, tf.Variable>) => {
      const out: NamedTensors = {};
      for (const [name, v] of group) {
        out[name] = { shape: [...v.shape], data: (await v.data()) as Float32Array };
      }
      return out;
    };
    return {
      params: await read(this.#params),
      ema: await read(this.#ema),
      m: await read(this.#m),
      v: await read(this.#v),
    };
  }

  dispose(): void {
    this.discardGradients();
    for (const group of [this.#params, this.#ema, this.#m, this.#v]) {
      group.forEach((v) => v.dispose());
    }
  }
}

/**
 * The state as flat float32 buffers in shared memory: gradients from a pool of workers, the
 * optimizer as one fused pass (`optimizer.ts`) on this thread.
 */
class _SharedState implements _TrainingState {
  readonly #layout: ParamLayout;
  readonly #pool: GradientPool;
  readonly #buffers: OptimizerBuffers;

  private constructor(layout: ParamLayout, pool: GradientPool, buffers: OptimizerBuffers) {
    this.#layout = layout;
    this.#pool = pool;
    this.#buffers = buffers;
  }

  static async start(
    setup: LossSetup,
    state: TrainerState,
    options: { workers: number; workerModule?: URL },
  ): Promise<_SharedState> {
    const layout = paramLayout(setup.config);
    const shared = () => new Float32Array(new SharedArrayBuffer(layout.total * 4));
    const [params, ema, m, v] = _GROUPS.map(([group, what]) =>
      flattenTensors(layout, state[group], { into: shared(), what })
    );
    const pool = await GradientPool.start({ ...options, setup, layout, params });
    const grads = new Float32Array(layout.total);
    return new _SharedState(layout, pool, { params, grads, m, v, ema });
  }

  async gradients(inputs: StepInputs): Promise<LossValues & { gradNorm: number }> {
    const losses = await this.#pool.gradients(inputs, this.#buffers.grads);
    return { ...losses, gradNorm: globalNorm(this.#layout, this.#buffers.grads) };
  }

  update(settings: UpdateSettings): Promise<void> {
    adamEmaUpdate(this.#buffers, settings);
    return Promise.resolve();
  }

  discardGradients(): void {
    this.#buffers.grads.fill(0);
  }

  async withTensors<T>(
    weights: "params" | "ema",
    use: (p: ParamTensors) => Promise<T>,
  ): Promise<T> {
    const flat = weights === "ema" ? this.#buffers.ema : this.#buffers.params;
    const tensors = new Map(
      Object.entries(unflattenTensors(this.#layout, flat)).map((
        [name, { data, shape }],
      ) => [name, tf.tensor(data, shape)]),
    );
    try {
      return await use(tensors);
    } finally {
      tf.dispose([...tensors.values()]);
    }
  }

  read(): Promise<Omit<TrainerState, "step">> {
    const { params, ema, m, v } = this.#buffers;
    const copy = (flat: Float32Array) => unflattenTensors(this.#layout, flat);
    return Promise.resolve({ params: copy(params), ema: copy(ema), m: copy(m), v: copy(v) });
  }

  dispose(): void {
    this.#pool.terminate();
  }
}

const _GROUPS = [["params", "params"], ["ema", "ema"], ["m", "adam.m"], ["v", "adam.v"]] as const;

function _lossSetup(setup: TrainerSetup): LossSetup {
  const prediction = setup.prediction ?? TRAINING_DEFAULTS.prediction;
  return {
    config: setup.config,
    prediction,
    sqrtAbar: Float32Array.from(setup.schedule.sqrtAlphasCumprod),
    sqrtOneMinusAbar: Float32Array.from(setup.schedule.sqrtOneMinusAlphasCumprod),
    ...(setup.config.learnVariance
      ? { vb: vbTables(setup.schedule, prediction, setup.vbLambda) }
      : {}),
  };
}

/**
 * Warm-start weights for `config`: as given, except that when `config` learns its variance and
 * the weights' final convolution (`conv_out`, kernel `[kh, kw, in, out]`, bias `[out]`) has only
 * the image's C output channels, it grows to 2C: the first C (the prediction) unchanged, the new
 * `v` channels with zero weights and zero bias, so `v = 0` everywhere (the middle of the
 * learned range, `log sigma^2` halfway between `log beta_tilde_t` and `log beta_t`).
 */
export function widenOutputForVariance(
  weights: { params: NamedTensors; ema: NamedTensors },
  config: UNetConfig,
): { params: NamedTensors; ema: NamedTensors } {
  const c = config.channels;
  const out = outputChannels(config);
  const widen = (group: NamedTensors): NamedTensors => {
    const kernel = group["conv_out.w"], bias = group["conv_out.b"];
    if (!config.learnVariance || !kernel || !bias || kernel.shape.at(-1) !== c || out === c) {
      return group;
    }
    const rows = kernel.data.length / c; // kh * kw * in rows of c output channels
    const wide = new Float32Array(rows * out);
    for (let r = 0; r < rows; r++) wide.set(kernel.data.subarray(r * c, (r + 1) * c), r * out);
    const wideBias = new Float32Array(out);
    wideBias.set(bias.data);
    return {
      ...group,
      "conv_out.w": { shape: [...kernel.shape.slice(0, -1), out], data: wide },
      "conv_out.b": { shape: [out], data: wideBias },
    };
  };
  return { params: widen(weights.params), ema: widen(weights.ema) };
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
  check(
    "cooldownSteps",
    o.cooldownSteps,
    Number.isInteger(o.cooldownSteps) && o.cooldownSteps >= 0,
    "an integer >= 0",
  );
  check("gradClip", o.gradClip, o.gradClip > 0, "> 0");
  check("emaDecay", o.emaDecay, o.emaDecay >= 0 && o.emaDecay < 1, "in [0, 1)");
  check("beta1", o.beta1, o.beta1 >= 0 && o.beta1 < 1, "in [0, 1)");
  check("beta2", o.beta2, o.beta2 >= 0 && o.beta2 < 1, "in [0, 1)");
  check("epsilon", o.epsilon, o.epsilon > 0, "> 0");
}
