/**
 * The checks of a request against the model it names, after the schema has checked each field
 * on its own: the model exists, steps and timesteps are within its T, `eta` goes with a
 * sampler that takes it, classes and guidance are ones it has, and guided work stays within
 * the limits. Each rule is written once here and the routes only call the plans, so
 * `/v1/samples` and its stream, `/v1/noise` and `/v1/interpolate` cannot drift apart.
 *
 * Pure functions with no Hono import: a plan is the validated body with every default filled
 * in, or a 400 `HttpError` (404 for an unknown model) that names the value and what is allowed.
 *
 * @module
 */

import { defaultSteps, SAMPLER_CAPABILITIES, type SamplerKind } from "../lib/samplers.ts";
import { spacedTimesteps, type TimestepSpacing } from "../lib/schedule.ts";
import { HttpError } from "./errors.ts";
import { checkGuidedBatch, type ClassRequest, type Conditioning, conditioning } from "./labels.ts";
import type { Limits } from "./limits.ts";
import type { InterpolateImagesOptions, SampleImagesOptions } from "./pipeline.ts";
import type { ServedModel } from "./registry.ts";
import { ETA_SAMPLERS } from "./schemas.ts";

/** What the rules read of the server: its models (the first is the default) and limits. */
export interface RuleContext {
  readonly models: readonly ServedModel[];
  readonly limits: Limits;
  /** The seed of a request that names none. */
  readonly randomSeed: () => number;
}

/** The class fields every request that runs the network may send. */
interface _ClassFields extends ClassRequest {
  readonly model?: string;
}

/**
 * The model named `name`, or the default (the first) when `name` is undefined; a 404 that
 * lists the names otherwise.
 *
 * @example
 * ```ts
 * import { findModel } from "./rules.ts";
 * import type { ServedModel } from "./registry.ts";
 * const models = [{ name: "mnist" }, { name: "fashion" }] as unknown as ServedModel[];
 * console.assert(findModel(models, undefined).name === "mnist");
 * console.assert(findModel(models, "fashion").name === "fashion");
 * ```
 */
export function findModel(models: readonly ServedModel[], name: string | undefined): ServedModel {
  if (name === undefined) return models[0];
  const model = models.find((m) => m.name === name);
  if (!model) {
    throw new HttpError(
      404,
      "unknown_model",
      `no model named ${JSON.stringify(name)}; available: ${models.map((m) => m.name).join(", ")}`,
    );
  }
  return model;
}

/** `eta` is for the samplers whose capabilities say so (DDIM's noise scale). */
export function checkEta(sampler: SamplerKind, eta: number | undefined): void {
  if (eta !== undefined && !SAMPLER_CAPABILITIES[sampler].takesEta) {
    throw new HttpError(
      400,
      "invalid_request",
      `eta: applies to the ${ETA_SAMPLERS.join(", ")} sampler only, got sampler ${sampler}`,
    );
  }
}

/** The fields of a `/v1/samples` or `/v1/samples/stream` body that {@linkcode samplingPlan} reads. */
export interface SamplingRequest extends _ClassFields {
  readonly n: number;
  readonly sampler: SamplerKind;
  readonly steps?: number;
  readonly eta?: number;
  readonly spacing: TimestepSpacing;
  readonly seed?: number;
  readonly columns?: number;
  readonly every?: number;
  /** `/v1/samples` only; the stream has no format and sends a frame every `every` steps. */
  readonly format?: "png" | "json" | "apng";
}

/** A sampling request checked against its model, every default filled in. */
export interface SamplingPlan
  extends Conditioning, Omit<SampleImagesOptions, "signal" | "onStep" | keyof Conditioning> {
  readonly model: ServedModel;
  readonly columns: number | undefined;
  /** A frame (an animation's, a stream's event) every this many steps. */
  readonly every: number;
}

/**
 * Checks a sampling request against its model and fills the defaults: steps default to the
 * sampler's own count within the server's limit and must not pass the model's T; `every`
 * defaults to about 50 frames per run.
 */
export function samplingPlan(body: SamplingRequest, context: RuleContext): SamplingPlan {
  const model = findModel(context.models, body.model);
  const T = model.schedule.timesteps;
  const steps = body.steps ?? Math.min(defaultSteps(body.sampler, T), context.limits.maxSteps);
  if (steps > T) {
    throw new HttpError(
      400,
      "invalid_request",
      `steps: must be in 1..${T} for model ${model.name} (its T), got ${steps}`,
    );
  }
  checkEta(body.sampler, body.eta);
  if (body.columns !== undefined && body.columns > body.n) {
    throw new HttpError(
      400,
      "invalid_request",
      `columns: must be in 1..n (${body.n}), got ${body.columns}`,
    );
  }
  const seed = body.seed ?? context.randomSeed();
  // A sample with no label follows the model's p(x): its class is drawn from the seed too.
  const classes = _conditioning(model, body, {
    field: "n",
    images: body.n,
    max: context.limits.maxImages,
  }, seed);
  if (body.format !== undefined && body.every !== undefined && body.format !== "apng") {
    throw new HttpError(400, "invalid_request", "every: applies to format apng only");
  }
  return {
    model,
    n: body.n,
    sampler: body.sampler,
    steps,
    eta: body.eta ?? 0,
    spacing: body.spacing,
    seed,
    columns: body.columns,
    every: body.every ?? Math.ceil(steps / 50),
    ...classes,
  };
}

/** The fields of a `/v1/noise` request that {@linkcode noisePlan} reads. */
export interface NoiseRequest extends _ClassFields {
  readonly timesteps?: readonly number[];
  readonly count?: number;
  readonly seed?: number;
  readonly reconstruct: boolean;
}

/** A noising preview checked against its model. */
export interface NoisePlan extends Conditioning {
  readonly model: ServedModel;
  /** 0-based timesteps of the frames, each below T. */
  readonly timesteps: readonly number[];
  readonly seed: number;
  readonly reconstruct: boolean;
}

/**
 * Checks a noising preview against its model: timesteps below T (or `count` of them, at most
 * T, default 10, spread evenly), and a class or guidance only with `reconstruct`, the one
 * part that calls the network.
 */
export function noisePlan(body: NoiseRequest, context: RuleContext): NoisePlan {
  const model = findModel(context.models, body.model);
  const T = model.schedule.timesteps;
  const field = _framesField("timesteps", body.timesteps, body.count);
  const bad = body.timesteps?.find((t) => t >= T);
  if (bad !== undefined) {
    throw new HttpError(
      400,
      "invalid_request",
      `timesteps: each must be in 0..${T - 1} for model ${model.name}, got ${bad}`,
    );
  }
  const count = body.count ?? 10;
  if (count > T) {
    throw new HttpError(400, "invalid_request", `count: must be at most T = ${T}`);
  }
  const timesteps = body.timesteps ?? spacedTimesteps(T, count, "linspace");
  const hasLabel = body.label !== undefined && body.label !== null;
  if (!body.reconstruct && (hasLabel || (body.guidance ?? 0) > 0)) {
    const field = hasLabel ? "label" : "guidance";
    throw new HttpError(400, "invalid_request", `${field}: applies with reconstruct only`);
  }
  const classes = _conditioning(model, body, {
    field,
    images: timesteps.length,
    max: context.limits.maxFrames,
  });
  return {
    model,
    timesteps,
    seed: body.seed ?? context.randomSeed(),
    reconstruct: body.reconstruct,
    ...classes,
  };
}

/** The fields of a `/v1/interpolate` request that {@linkcode interpolationPlan} reads. */
export interface InterpolationRequest extends _ClassFields {
  readonly t?: number;
  readonly lambdas?: readonly number[];
  readonly count?: number;
  readonly mixing: "linear" | "spherical";
  readonly sampler: SamplerKind;
  readonly steps?: number;
  readonly eta?: number;
  readonly seed?: number;
}

/** An interpolation checked against its model, every default filled in. */
export interface InterpolationPlan
  extends Conditioning, Omit<InterpolateImagesOptions, "signal" | keyof Conditioning> {
  readonly model: ServedModel;
}

/**
 * Checks an interpolation against its model: t below T (default T / 2, the paper's 500), the
 * decoder's steps within the t + 1 timesteps it walks (default at most 50), and `lambdas` or
 * `count` of them evenly from 0 to 1 (default 11).
 */
export function interpolationPlan(
  body: InterpolationRequest,
  context: RuleContext,
): InterpolationPlan {
  const model = findModel(context.models, body.model);
  const T = model.schedule.timesteps;
  const t = body.t ?? Math.floor(T / 2);
  if (t >= T) {
    throw new HttpError(
      400,
      "invalid_request",
      `t: must be in 0..${T - 1} for model ${model.name}, got ${t}`,
    );
  }
  const field = _framesField("lambdas", body.lambdas, body.count);
  const count = body.count ?? 11;
  const lambdas = body.lambdas ?? Array.from({ length: count }, (_, i) => i / (count - 1));
  const steps = body.steps ?? Math.min(t + 1, 50);
  if (steps > t + 1) {
    throw new HttpError(
      400,
      "invalid_request",
      `steps: must be in 1..${t + 1} (t + 1) for t = ${t}, got ${steps}`,
    );
  }
  checkEta(body.sampler, body.eta);
  const classes = _conditioning(model, body, {
    field,
    images: lambdas.length,
    max: context.limits.maxFrames,
  });
  return {
    model,
    t,
    lambdas,
    mixing: body.mixing,
    sampler: body.sampler,
    steps,
    eta: body.eta ?? 0,
    seed: body.seed ?? context.randomSeed(),
    ...classes,
  };
}

/**
 * The field that names a request's frames: its list (`timesteps`, `lambdas`) or else `count`;
 * a 400 when it sends both.
 */
function _framesField(
  listField: string,
  list: readonly number[] | undefined,
  count: number | undefined,
): string {
  if (list !== undefined && count !== undefined) {
    throw new HttpError(400, "invalid_request", `send ${listField} or count, not both`);
  }
  return list !== undefined ? listField : "count";
}

/** A batch of `images`, counted in the request's `field`, and its limit of network images. */
interface _Batch {
  readonly field: string;
  readonly images: number;
  readonly max: number;
}

/**
 * The classes of a batch, checked against the model, a guided batch held to its limit; with
 * `drawSeed`, a request with no label has its classes drawn.
 */
function _conditioning(
  model: ServedModel,
  body: _ClassFields,
  batch: _Batch,
  drawSeed?: number,
): Conditioning {
  const classes = conditioning(model, body, batch.images, drawSeed);
  // The default guidance (neither field sent) is not held to the limit: it guides about 40%
  // of the steps, and the network batcher splits a step's rows into calls of --max-batch.
  const defaulted = body.guidance === undefined && body.guidanceInterval === undefined;
  if (!defaulted) checkGuidedBatch(batch.field, batch.images, classes.guided, batch.max);
  return classes;
}
