/**
 * The classes a request asks a class-conditional model for: `label` (a class index or name, or
 * one per image) checked against the model's classes, with the guidance weight that goes with
 * it. Every mistake is a 400 that names the value and what the model allows.
 *
 * @module
 */

import { drawClasses, requestedGuidance } from "../lib/guidance.ts";
import type { SamplerKind } from "../lib/samplers.ts";
import { HttpError } from "./errors.ts";
import type { ServedModel } from "./registry.ts";

/** One class as a request names it: its 0-based index or its name. */
export type ClassRef = number | string;

/** A request's `label`: one class for every image, or one entry per image; null is no class. */
export type LabelField = ClassRef | null | readonly (ClassRef | null)[];

/** What a request asks the network to condition on, checked against the model. */
export interface Conditioning {
  /**
   * Class index of each image, named or drawn, `model.classes.length` for no class; null when
   * the request asks for no class (`label: null`, or no label where none is drawn), so the
   * network is called without labels.
   */
  readonly labels: Int32Array | null;
  /** Guidance weight w >= 0; 0 when `labels` is null. */
  readonly guidance: number;
  /** The timesteps `[from, to]` guidance applies at; null: every step (or no guidance). */
  readonly guidanceInterval: readonly [number, number] | null;
  /**
   * Images evaluated twice per network call (a real class and w > 0), once with and once
   * without their class: the work guidance adds.
   */
  readonly guided: number;
}

/** The class fields of a request, as the schema passed them. */
export interface ClassRequest {
  readonly label?: LabelField;
  /** Left out on a sampling request: the model's default guidance for a class. */
  readonly guidance?: number;
  readonly guidanceInterval?: readonly [number, number];
  /**
   * The sampler that runs the request, whose default weight a named class gets (lib's
   * `defaultGuidance`); none, as for the noising preview's one-network-call reconstruction:
   * w = 1.
   */
  readonly sampler?: SamplerKind;
}

/**
 * Checks `label` and `guidance` against `model` for a batch of `n` images: a single class
 * applies to all `n`, a list must have `n` entries. With `drawSeed`, a conditional model asked
 * for no `label` at all (not `null`) draws each image's class from that seed
 * ({@linkcode drawClasses}) in the proportions of its training classes (`model.classCounts`;
 * uniformly without them), as sampling from the model's `p(x)` does; without it, or with
 * `label: null`, the images have no class. With no `guidance` sent, named classes get lib's
 * `defaultGuidance` (its sampler's weight in its interval) and drawn ones none unless an
 * interval is sent; a weight sent applies at every step unless `guidanceInterval` limits it.
 * Throws a 400 `HttpError` when the model has no classes, a name or index is not one of them, a
 * list has the wrong length, guidance comes with no class to guide, or the interval is not
 * within the model's timesteps.
 *
 * @example
 * ```ts
 * import { conditioning } from "./labels.ts";
 * import type { ServedModel } from "./registry.ts";
 * const model = {
 *   name: "shapes", classes: ["circle", "square"], schedule: { timesteps: 1000 },
 * } as unknown as ServedModel;
 * const { labels, guided } = conditioning(model, { label: ["square", null, 0], guidance: 2 }, 3);
 * console.assert(labels?.join() === "1,2,0" && guided === 2);
 * const named = conditioning(model, { label: "circle" }, 2);
 * console.assert(named.guidance === 1 && named.guidanceInterval?.join("-") === "80-470");
 * const sde = conditioning(model, { label: "circle", sampler: "dpmpp-2m-sde" }, 2);
 * console.assert(sde.guidance === 0.3);
 * const drawn = conditioning(model, {}, 4, 7);
 * console.assert(drawn.labels?.every((y) => y === 0 || y === 1) && drawn.guidance === 0);
 * ```
 */
export function conditioning(
  model: ServedModel,
  request: ClassRequest,
  n: number,
  drawSeed?: number,
): Conditioning {
  const classes = model.classes;
  const { label } = request;
  let labels: Int32Array;
  const drawn = label === undefined && drawSeed !== undefined && classes.length > 0;
  if (drawn) {
    // 1. No label sent where classes are drawn: each image gets one from the seed.
    labels = drawClasses(drawSeed, n, classes.length, model.classCounts ?? undefined);
  } else if (label === undefined || label === null) {
    // 2. No class asked for: guidance has nothing to mix.
    const sent = request.guidance !== undefined && request.guidance > 0
      ? "guidance"
      : request.guidanceInterval !== undefined
      ? "guidanceInterval"
      : null;
    if (sent !== null) {
      throw new HttpError(
        400,
        "invalid_request",
        classes.length === 0
          ? `${sent}: ${_noClasses(model)}`
          : `${sent}: needs a label (guidance mixes the prediction for a class with the one ` +
            `for no class); model ${model.name} has the classes ${_classList(classes)}`,
      );
    }
    return { labels: null, guidance: 0, guidanceInterval: null, guided: 0 };
  } else {
    if (classes.length === 0) {
      throw new HttpError(400, "invalid_request", `label: ${_noClasses(model)}`);
    }
    // 3. One class for every image, or one per image.
    let entries: readonly (ClassRef | null)[];
    if (Array.isArray(label)) {
      if (label.length !== n) {
        throw new HttpError(
          400,
          "invalid_request",
          `label: a list needs one entry per image (${n}), got ${label.length}`,
        );
      }
      entries = label;
    } else {
      entries = Array.from({ length: n }, () => label as ClassRef);
    }
    const field = (i: number) => (Array.isArray(label) ? `label.${i}` : "label");
    labels = Int32Array.from(entries, (entry, i) => _classIndex(model, entry, field(i)));
  }
  // 4. The weight and its interval: the request's, or the default for a class.
  const { guidance, interval } = requestedGuidance(request.guidance, request.guidanceInterval, {
    timesteps: model.schedule.timesteps,
    sampler: request.sampler,
    drawn,
  });
  if (request.guidanceInterval !== undefined) _checkInterval(model, request.guidanceInterval);
  // 5. The images guidance evaluates twice; what is reported is what was applied.
  const guided = guidance > 0 ? labels.filter((y) => y !== classes.length).length : 0;
  return guided > 0
    ? { labels, guidance, guidanceInterval: interval, guided }
    : { labels, guidance: 0, guidanceInterval: null, guided };
}

/** An interval within the model's timesteps, its ends in order. */
function _checkInterval(model: ServedModel, [from, to]: readonly [number, number]): void {
  const last = model.schedule.timesteps - 1;
  if (from <= to && to <= last) return;
  throw new HttpError(
    400,
    "invalid_request",
    `guidanceInterval: must be [from, to] with 0 <= from <= to <= ${last} (model ` +
      `${model.name}'s last timestep), got [${from}, ${to}]`,
  );
}

/** The class name of each image, null for no class (all null when `labels` is null). */
export function labelNames(
  model: ServedModel,
  labels: Int32Array | null,
  n: number,
): (string | null)[] {
  return Array.from({ length: n }, (_, i) => (labels ? model.classes[labels[i]] ?? null : null));
}

/**
 * The `X-Labels` header: each image's class index, comma-separated, `none` for no class.
 * Indices rather than names, since a name may hold characters a header cannot.
 */
export function labelsHeader(model: ServedModel, labels: Int32Array): string {
  return Array.from(labels, (y) => (y === model.classes.length ? "none" : String(y))).join(",");
}

/**
 * Refuses a guided request whose network batch, guided images counted twice, is over `max`:
 * guidance doubles the network's work for those images, and the limits bound that work. (An
 * unguided batch is left to the schema's own bounds on n, timesteps, count and lambdas.)
 */
export function checkGuidedBatch(
  field: string,
  images: number,
  guided: number,
  max: number,
): void {
  if (guided === 0 || images + guided <= max) return;
  throw new HttpError(
    400,
    "invalid_request",
    `${field}: guidance evaluates each labelled image twice (with and without its class), so ` +
      `${images} images with ${guided} guided make a batch of ${images + guided}, over the ` +
      `limit of ${max}; ask for at most ${Math.floor(max / 2)} guided images, or guidance 0`,
  );
}

/** The embedding row of one class as a request names it; null is no class. */
function _classIndex(model: ServedModel, entry: ClassRef | null, field: string): number {
  const classes = model.classes;
  if (entry === null) return classes.length;
  if (typeof entry === "number") {
    if (entry < classes.length) return entry;
    throw new HttpError(
      400,
      "invalid_request",
      `${field}: class index ${entry} is out of range for model ${model.name}: must be in ` +
        `0..${classes.length - 1} (${_classList(classes)})`,
    );
  }
  const index = classes.indexOf(entry);
  if (index >= 0) return index;
  throw new HttpError(
    400,
    "invalid_request",
    `${field}: unknown class ${JSON.stringify(entry)} for model ${model.name}; its classes ` +
      `are ${_classList(classes)} (or their indices 0..${classes.length - 1})`,
  );
}

function _noClasses(model: ServedModel): string {
  return `model ${model.name} has no classes (it is unconditional); leave out label and ` +
    "guidance, or pick a conditional model from GET /v1/models";
}

/** `0 "circle", 1 "square", 2 "cross"`, cut short after 20 classes so a detail stays readable. */
function _classList(classes: readonly string[]): string {
  const shown = classes.slice(0, 20).map((name, i) => `${i} ${JSON.stringify(name)}`);
  if (classes.length > 20) shown.push(`... (${classes.length} in all)`);
  return shown.join(", ");
}
