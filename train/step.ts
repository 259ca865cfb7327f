/**
 * The loss of one training step on one tfjs backend, for a whole batch or a worker's share of
 * it. The trainer (in the calling thread) and each gradient worker call the same function, so
 * the two paths compute the same network on the same inputs.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { nchwToHwc } from "../lib/image.ts";
import type { Prediction } from "../lib/parameterization.ts";
import type { UNetConfig } from "./network.ts";
import { type ParamTensors, unetApply } from "./tfjs_ops.ts";

/** An NCHW batch shape. */
export type BatchShape = readonly [number, number, number, number];

/**
 * Everything random about a step, drawn on the CPU from the run's `Rng` before the batch is
 * split: the images, their timesteps and noise, the dropout seed and the class indices.
 */
export interface StepInputs {
  /** NCHW images in [-1, 1]. */
  readonly x0: Float32Array;
  readonly shape: BatchShape;
  /** 0-based timestep per example. */
  readonly t: Int32Array;
  /** eps ~ N(0, I), NCHW like `x0`. */
  readonly noise: Float32Array;
  readonly dropoutSeed: number;
  /** Embedding rows of a conditional network (the "no class" row included); else absent. */
  readonly classes?: Int32Array;
  /** Index of the first example in the whole batch (dropout masks are drawn per example). */
  readonly exampleOffset: number;
}

/** What the loss needs that does not change during a run. */
export interface LossSetup {
  readonly config: UNetConfig;
  readonly prediction: Prediction;
  /** `sqrt(abar_t)` and `sqrt(1 - abar_t)` per 0-based timestep, as float32. */
  readonly sqrtAbar: Float32Array;
  readonly sqrtOneMinusAbar: Float32Array;
}

/** Examples `[start, end)` of a step's inputs, with their offset in the whole batch. */
export function sliceInputs(inputs: StepInputs, start: number, end: number): StepInputs {
  const [, c, h, w] = inputs.shape;
  const size = c * h * w;
  return {
    x0: inputs.x0.slice(start * size, end * size),
    shape: [end - start, c, h, w],
    t: inputs.t.slice(start, end),
    noise: inputs.noise.slice(start * size, end * size),
    dropoutSeed: inputs.dropoutSeed,
    classes: inputs.classes?.slice(start, end),
    exampleOffset: inputs.exampleOffset + start,
  };
}

/**
 * `L_simple` of the inputs: the mean squared error between the network's output on
 * `x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps` (eq. 4) and the target of the prediction type
 * (eq. 14). `training` turns dropout on. Call inside `tf.tidy` or `tf.variableGrads`.
 */
export function batchLoss(
  params: ParamTensors,
  setup: LossSetup,
  inputs: StepInputs & { training: boolean },
): tf.Scalar {
  const [n, c, h, w] = inputs.shape;
  const nhwc: [number, number, number, number] = [n, h, w, c];
  const x0 = tf.tensor4d(nchwToHwc(inputs.x0, inputs.shape), nhwc);
  const eps = tf.tensor4d(nchwToHwc(inputs.noise, inputs.shape), nhwc);
  const a = tf.tensor4d(Float32Array.from(inputs.t, (i) => setup.sqrtAbar[i]), [n, 1, 1, 1]);
  const s = tf.tensor4d(
    Float32Array.from(inputs.t, (i) => setup.sqrtOneMinusAbar[i]),
    [n, 1, 1, 1],
  );
  const xt = tf.add(tf.mul(a, x0), tf.mul(s, eps));
  let target: tf.Tensor;
  switch (setup.prediction) {
    case "eps":
      target = eps;
      break;
    case "x0":
      target = x0;
      break;
    case "v":
      target = tf.sub(tf.mul(a, eps), tf.mul(s, x0)); // v = sqrt(abar) eps - sqrt(1 - abar) x0
      break;
    default: {
      const unknown: never = setup.prediction;
      throw new RangeError(`prediction must be eps, x0 or v, got ${unknown}`);
    }
  }
  const y = inputs.classes && tf.tensor1d(inputs.classes, "int32");
  const out = unetApply(params, setup.config, xt, tf.tensor1d(Float32Array.from(inputs.t)), {
    training: inputs.training,
    dropoutSeed: inputs.dropoutSeed,
    exampleOffset: inputs.exampleOffset,
  }, y);
  return tf.mean(tf.squaredDifference(out, target)) as tf.Scalar;
}
