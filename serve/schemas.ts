/**
 * The API's contract in zod: request bodies (built from the server's {@linkcode Limits}, so
 * the OpenAPI document states the real maxima) and JSON responses, the model card's among them
 * (its schema is the exporter's, `model/card.ts`). The OpenAPI document at `/openapi.json` is
 * generated from these.
 *
 * Image endpoints take JSON with base64 PNGs or `multipart/form-data` with PNG files; the
 * multipart schema is derived from the JSON one ({@linkcode formSchema}), so the two cannot
 * disagree.
 *
 * @module
 */

import { z } from "@hono/zod-openapi";
import {
  DEFAULT_SAMPLER_GUIDANCE,
  SAMPLER_GUIDANCE,
  type SamplerGuidance,
} from "../lib/guidance.ts";
import { SAMPLER_CAPABILITIES, type SamplerKind, SAMPLERS } from "../lib/samplers.ts";
import { TIMESTEP_SPACINGS } from "../lib/schedule.ts";
import { SamplingCardSchema } from "../model/card.ts";
import type { Limits } from "./limits.ts";

/**
 * The sampler of a `/v1/samples` or `/v1/samples/stream` request that names none; its step
 * count is the sampler's default in lib's {@linkcode SAMPLER_CAPABILITIES} (15 for
 * `dpmpp-2m-sde`). The README chose it by measurement ("The API's default sampler"): on the
 * shipped models the SDE solver at 15 steps, with its own default guidance (w = 0.3 over 80-470
 * then; lib's `SAMPLER_GUIDANCE` now), draws named classes closer to the data than
 * DPM-Solver++(2M) with w = 1 at a higher class accuracy, on digits and on clothes, and drawn
 * classes as close on digits and closer on clothes, for the same network calls.
 */
export const DEFAULT_SAMPLER: SamplerKind = "dpmpp-2m-sde";

/** The samplers that take `eta`, from lib's table: `ddim`. */
export const ETA_SAMPLERS: readonly SamplerKind[] = SAMPLERS.filter((s) =>
  SAMPLER_CAPABILITIES[s].takesEta
);

/** `sampler` and `steps` described from lib's table, so a new sampler documents itself. */
function _samplerText(): string {
  return SAMPLERS.map((s) => `\`${s}\`: ${SAMPLER_CAPABILITIES[s].description}.`).join(" ");
}

function _defaultStepsOf(sampler: SamplerKind): string {
  const steps = SAMPLER_CAPABILITIES[sampler].defaultSteps;
  return steps === "T" ? "T" : String(steps);
}

function _stepsText(): string {
  return SAMPLERS.map((s) => `${_defaultStepsOf(s)} for ${s}`).join(", ");
}

/** Every error response: `{ error, detail, requestId }`. */
export const ErrorSchema = z
  .object({
    error: z.string().openapi({ example: "invalid_request" }),
    detail: z.string().openapi({ example: "n: Too big: expected number to be <=64" }),
    requestId: z.string().openapi({
      description: "The request's id, as in the X-Request-Id header and the server's log.",
      example: "0f8fad5b-d9cb-469f-a165-70867728950e",
    }),
  })
  .openapi("Error");

const Seed = z
  .number()
  .int()
  .min(0)
  .max(Number.MAX_SAFE_INTEGER)
  .optional()
  .openapi({ description: "Seed of every random draw; one is picked and returned when absent." });
const ModelName = z
  .string()
  .min(1)
  .optional()
  .openapi({ description: "A name from GET /v1/models; default the first model." });
const Resize = z.boolean().default(true).openapi({
  description:
    "Convert an image of another size or channel count to the model's (area/bilinear resize, " +
    "BT.601 grey or grey-to-RGB) and report it; false refuses such an image with 422.",
});
/**
 * Largest classifier-free guidance weight a request may take. Ho & Salimans (2022) report w
 * from 0 to 4; far beyond that the guided prediction leaves the range the network was trained
 * on and samples saturate. 20 leaves room to see that happen and refuses a slip such as 200.
 */
export const MAX_GUIDANCE = 20;

/** One class: its 0-based index or its name, as `GET /v1/models` lists them. */
const ClassRef = z.union([z.number().int().min(0), z.string().min(1)]);
const LABEL_TEXT = "a class index (0-based) or a class name from GET /v1/models `classes`";
/** The weight's range and meaning, shared by the decoders' `guidance` and sampling's. */
const GuidanceWeight = z.number().min(0).max(MAX_GUIDANCE);
const GUIDANCE_TEXT = `Classifier-free guidance weight w in 0..${MAX_GUIDANCE} (Ho & Salimans ` +
  "2022): the network's prediction becomes (1 + w) eps(x, label) - w eps(x, no class)";
const Guidance = GuidanceWeight.default(0).openapi({
  description: `${GUIDANCE_TEXT}. 0 (the default) samples the label unguided; larger w ` +
    "gives images more typical of their class and less varied. Needs a label and a conditional model. Each guided image is evaluated " +
    "twice per step, with and without its class, so it counts twice against the limit on " +
    "frames.",
});
/**
 * Each sampler's default guidance of a named class, in words, read from lib's table so that the
 * API's text follows it: "w = 0.5 over 8% to 33% under dpmpp-2m-sde, 0.5 over 8% to 47% under
 * ddpm and 1 over 8% to 47% under the other samplers (fractions of T)".
 */
export const DEFAULT_GUIDANCE_TEXT = (() => {
  const percent = (f: number) => `${Math.round(100 * f)}%`;
  const words = ({ weight, span }: SamplerGuidance) =>
    `${weight} over ${percent(span[0])} to ${percent(span[1])}`;
  const parts = [
    ...Object.entries(SAMPLER_GUIDANCE).map(([sampler, g]) => `${words(g)} under ${sampler}`),
    `${words(DEFAULT_SAMPLER_GUIDANCE)} under the other samplers`,
  ];
  return `w = ${parts.slice(0, -1).join(", ")} and ${parts.at(-1)} (fractions of T)`;
})();

/**
 * The guidance of a sampling request: left out, an image of a named class gets the default of
 * its sampler (`defaultGuidance`, {@linkcode DEFAULT_GUIDANCE_TEXT}), a drawn one none.
 */
const SampleGuidance = GuidanceWeight.optional().openapi({
  description: `${GUIDANCE_TEXT} at the steps of guidanceInterval (every step if that is ` +
    "left out). Left out, an image of a named " +
    `class is guided with ${DEFAULT_GUIDANCE_TEXT}, the defaults measured on the shipped ` +
    "models, and classes drawn for a request with no label are unguided (guided with that " +
    "default weight if guidanceInterval is sent); 0 samples " +
    "the class unguided. Each guided image is evaluated twice per guided step, with and " +
    "without its class, so a sent weight or interval counts it twice against the limit on " +
    "images (the default does not).",
});
const GuidanceInterval = z.tuple([z.number().int().min(0), z.number().int().min(0)])
  .optional()
  .openapi({
    description: "The timesteps [from, to] (0-based, inclusive, below the model's T) at which " +
      "guidance applies; at the others the class is sampled unguided (Kynkäänniemi et al. " +
      "2024). Default every step when guidance is sent; when it is left out, a named class " +
      "gets its sampler's default span (see guidance) and drawn ones no guidance.",
    example: [80, 470],
  });

/** A single class for a whole request (`/v1/noise`, `/v1/interpolate`); null is no class. */
const SingleLabel = ClassRef.nullable().optional().openapi({
  description: `The class of a conditional model to decode with: ${LABEL_TEXT}. ` +
    "Default none (null): the model's unconditional prediction. In a form, a number is an " +
    'index; send a name that looks like a number JSON-quoted ("7").',
});

const Base64Png = z.string().min(1).openapi({
  description: "A PNG, base64-encoded; a `data:image/png;base64,` prefix is allowed.",
});

/**
 * The request schemas of a server, one set per {@linkcode Limits}. The type is the schemas'
 * own inferred one: the routes' handler types are derived from it field by field.
 */
export type RequestSchemas = ReturnType<typeof _requestSchemas>;

/** The request schemas of a server with the given limits. */
export function requestSchemas(limits: Limits): RequestSchemas {
  return _requestSchemas(limits);
}

function _requestSchemas(limits: Limits) {
  const sampling = {
    model: ModelName,
    n: z.number().int().min(1).max(limits.maxImages).default(16).openapi({
      description: "Number of images.",
    }),
    sampler: z.enum(SAMPLERS).default(DEFAULT_SAMPLER).openapi({
      description:
        `Default ${DEFAULT_SAMPLER} (at ${
          _defaultStepsOf(DEFAULT_SAMPLER)
        } steps: closer to the data than the ODE solvers at the same steps on the shipped ` +
        "models; see the README's \"The API's default sampler\"). " +
        `${_samplerText()} GET /v1/samplers lists them.`,
    }),
    steps: z.number().int().min(1).max(limits.maxSteps).optional().openapi({
      description: "Network evaluations, at most the model's T (and this server's limit). " +
        `Default ${_stepsText()}.`,
    }),
    eta: z.number().min(0).max(1).optional().openapi({
      description: "DDIM noise scale: 0 deterministic (default), 1 DDPM-like. " +
        `${ETA_SAMPLERS.join(", ")} only.`,
    }),
    spacing: z.enum(TIMESTEP_SPACINGS).default("leading").openapi({
      description: "Which timesteps a shortened run visits.",
    }),
    seed: Seed,
    columns: z.number().int().min(1).max(limits.maxImages).optional().openapi({
      description: "Tiles per row of the grid; default the squarest grid.",
    }),
    every: z.number().int().min(1).max(limits.maxSteps).optional().openapi({
      description:
        "Keep every k-th step for the animation or the stream; default ceil(steps / 50).",
    }),
    label: z
      .union([ClassRef, z.array(ClassRef.nullable()).min(1).max(limits.maxImages)])
      .nullable()
      .optional()
      .openapi({
        description: `The class to sample, for a conditional model: ${LABEL_TEXT}, for every ` +
          "image; or a list with one entry per image (its length is n), where null is no " +
          "class. Left out, each image's class is drawn from the seed in the proportions the " +
          "model's training classes had (its card's classCounts; uniformly for a card " +
          "without them), so the images follow the model's p(x), the mixture of its " +
          "classes; the response lists them; null: no class, the network's own " +
          "unconditional prediction. A model without classes refuses a label with 400.",
        example: "circle",
      }),
    guidance: SampleGuidance,
    guidanceInterval: GuidanceInterval,
  };
  const SampleRequest = z
    .strictObject({
      ...sampling,
      format: z.enum(["png", "json", "apng"]).default("png").openapi({
        description: "`png`: a grid. `json`: 8-bit pixels per image. `apng`: the trajectory.",
      }),
    })
    .openapi("SampleRequest");
  const StreamRequest = z.strictObject(sampling).openapi("StreamRequest");

  const noise = {
    model: ModelName,
    timesteps: z.array(z.number().int().min(0)).min(1).max(limits.maxFrames).optional().openapi({
      description: "0-based timesteps of the frames, each below T.",
    }),
    count: z.number().int().min(1).max(limits.maxFrames).optional().openapi({
      description: "Instead of timesteps: this many, spread evenly over [0, T - 1]. Default 10.",
    }),
    seed: Seed,
    reconstruct: z.boolean().default(false).openapi({
      description: "Also return the model's estimate of x_0 from every frame (a second row).",
    }),
    label: SingleLabel.openapi({
      description: `With reconstruct, the class to estimate x_0 as: ${LABEL_TEXT}. Default ` +
        "none (null). In a form, a number is an index.",
    }),
    guidance: Guidance,
    resize: Resize,
    format: z.enum(["png", "json"]).default("png"),
  };
  const NoiseJson = z.strictObject({ ...noise, image: Base64Png }).openapi("NoiseRequest");
  const NoiseForm = formSchema(noise, ["image"]).openapi("NoiseUpload");

  const interpolation = {
    model: ModelName,
    t: z.number().int().min(0).optional().openapi({
      description: "0-based timestep to encode to and decode from; default T / 2 (paper: 500).",
    }),
    lambdas: z.array(z.number().min(0).max(1)).min(1).max(limits.maxFrames).optional().openapi({
      description: "Mixing weights; 0 is image a.",
    }),
    count: z.number().int().min(2).max(limits.maxFrames).optional().openapi({
      description: "Instead of lambdas: this many, evenly from 0 to 1. Default 11.",
    }),
    mixing: z.enum(["linear", "spherical"]).default("linear"),
    sampler: z.enum(SAMPLERS).default("ddpm").openapi({
      description: "Decoder from x_t; the paper's is ddpm. Any sampler of GET /v1/samplers " +
        "decodes: the ODE solvers (ddim with eta 0, dpmpp-2m, unipc) make the mixes a " +
        "deterministic function of the two latents.",
    }),
    steps: z.number().int().min(1).max(limits.maxSteps).optional().openapi({
      description: "Decoder steps in 1..t+1, spread from t down to 0; default min(t + 1, 50).",
    }),
    eta: z.number().min(0).max(1).optional().openapi({
      description: `Decoder noise scale, ${ETA_SAMPLERS.join(", ")} only; default 0.`,
    }),
    label: SingleLabel,
    guidance: Guidance,
    seed: Seed,
    resize: Resize,
    format: z.enum(["png", "json"]).default("png"),
  };
  const InterpolateJson = z
    .strictObject({ ...interpolation, a: Base64Png, b: Base64Png })
    .openapi("InterpolateRequest");
  const InterpolateForm = formSchema(interpolation, ["a", "b"]).openapi("InterpolateUpload");

  const ScheduleQuery = z.object({
    model: z.string().min(1).optional().openapi({
      param: { name: "model", in: "query" },
      description: "A name from GET /v1/models; default the first model.",
    }),
  });

  return {
    SampleRequest,
    StreamRequest,
    NoiseJson,
    NoiseForm,
    InterpolateJson,
    InterpolateForm,
    ScheduleQuery,
  };
}

/**
 * The multipart form of a JSON request: the named file fields become PNG uploads, and every
 * other field is sent as text that holds its JSON value (`12`, `true`, `[0, 250, 999]`); lists
 * of numbers may also be written `0,250,999` and plain words such as `png` may go unquoted.
 */
export function formSchema<S extends z.ZodRawShape>(
  fields: S,
  files: readonly string[],
): z.ZodObject {
  const shape: Record<string, z.ZodType> = {};
  for (const [name, schema] of Object.entries(fields)) {
    shape[name] = z.preprocess(_fieldText, schema);
  }
  for (const name of files) {
    shape[name] = z.file().openapi({ type: "string", format: "binary", description: "A PNG." });
  }
  return z.strictObject(shape);
}

/**
 * A form field's value: its text read as JSON when it is JSON, a comma-separated list of
 * numbers as an array, else the text itself.
 */
function _fieldText(value: unknown): unknown {
  if (typeof value !== "string") return value;
  // One short pattern per item: a single pattern over the whole list backtracks through a
  // group per item and overflows the stack at about a million items (a 2.4 MB field).
  if (value.includes(",")) {
    const items = value.split(",");
    if (items.every((item) => _NUMBER_ITEM.test(item))) return items.map(Number);
  }
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

/** One item of a comma-separated list of numbers in a form field. */
const _NUMBER_ITEM = /^\s*-?[\d.]+\s*$/;

/** One 8-bit image in JSON. */
export const ImageJsonSchema = z
  .object({
    width: z.number().int(),
    height: z.number().int(),
    channels: z.number().int().openapi({ description: "1 grey, 3 RGB." }),
    pixels: z.array(z.number().int()).openapi({
      description: "8-bit values, row by row, channels interleaved (HWC).",
    }),
  })
  .openapi("Image");

/** `GET /v1/samplers`: lib's capabilities table and this server's default. */
export const SamplersSchema = z
  .object({
    default: z.object({
      sampler: z.enum(SAMPLERS),
      steps: z.number().int().openapi({
        description: "Its step count on a model with T = 1000 (at most T and maxSteps).",
      }),
    }),
    samplers: z.array(
      z.object({
        name: z.enum(SAMPLERS),
        description: z.string(),
        defaultSteps: z.union([z.number().int(), z.literal("T")]).openapi({
          description: "Steps when none are asked for; T: every timestep of the model.",
        }),
        takesEta: z.boolean(),
        stochastic: z.boolean().openapi({
          description: "Draws fresh noise at every step (beyond x_T).",
        }),
        order: z.number().int().openapi({
          description: "Order of the deterministic update in the step size; 0 for ddpm.",
        }),
      }),
    ),
  })
  .openapi("Samplers");

/** `POST /v1/samples` with `format: "json"`. */
export const SampleJsonSchema = z
  .object({
    model: z.string(),
    seed: z.number().int(),
    sampler: z.enum(SAMPLERS),
    steps: z.number().int(),
    eta: z.number(),
    labels: z.array(z.string().nullable()).openapi({
      description: "The class name of each image; null for no class (every image of an " +
        "unconditional model).",
    }),
    guidance: z.number(),
    guidanceInterval: z.tuple([z.number().int(), z.number().int()]).nullable().openapi({
      description: "The timesteps [from, to] guidance applied at; null for every step, or " +
        "no guidance.",
    }),
    shape: z.array(z.number().int()).openapi({ description: "NCHW [n, c, h, w]." }),
    images: z.array(ImageJsonSchema),
  })
  .openapi("Samples");

/** `POST /v1/noise` with `format: "json"`. */
export const NoiseJsonSchema = z
  .object({
    model: z.string(),
    seed: z.number().int(),
    timesteps: z.array(z.number().int()),
    label: z.string().nullable().openapi({
      description: "The class name the reconstructions were estimated as; null for none.",
    }),
    guidance: z.number(),
    conversion: z.string().nullable().openapi({
      description: "How the upload was converted to the model's size and channels, if it was.",
    }),
    frames: z.array(ImageJsonSchema).openapi({ description: "x_t ~ q(x_t | x_0), one per t." }),
    reconstructions: z.array(ImageJsonSchema).optional().openapi({
      description: "The model's x_0 estimate from each frame, when asked for.",
    }),
  })
  .openapi("NoisePreview");

/** `POST /v1/interpolate` with `format: "json"`. */
export const InterpolateJsonSchema = z
  .object({
    model: z.string(),
    seed: z.number().int(),
    t: z.number().int(),
    lambdas: z.array(z.number()),
    mixing: z.enum(["linear", "spherical"]),
    sampler: z.enum(SAMPLERS),
    steps: z.number().int(),
    eta: z.number(),
    label: z.string().nullable().openapi({
      description: "The class name the mixes were decoded as; null for none.",
    }),
    guidance: z.number(),
    conversion: z.object({ a: z.string().nullable(), b: z.string().nullable() }),
    images: z.array(ImageJsonSchema),
  })
  .openapi("Interpolation");

/** `GET /v1/models`. */
export const ModelsSchema = z
  .object({
    provider: z.object({
      name: z.enum(["wasm", "webgpu", "native"]),
      requested: z.enum(["auto", "wasm", "webgpu", "native"]),
      adapter: z.object({ name: z.string(), software: z.boolean() }).nullable(),
      reason: z.string(),
      threads: z.number().int().optional().openapi({
        description: "Threads the network computes with.",
      }),
    }),
    models: z.array(z.object({
      name: z.string(),
      default: z.boolean(),
      classes: z.array(z.string()).openapi({
        description: "The class names of a conditional model, index by index: what `label` " +
          "takes. Empty for an unconditional model.",
        example: ["circle", "square", "cross"],
      }),
      // A new object over the same fields: a schema built before @hono/zod-openapi extended zod
      // (model/ imports plain zod) has no .openapi of its own.
      card: z.looseObject(SamplingCardSchema.shape).openapi("ModelCard"),
    })),
  })
  .openapi("Models");

/** `GET /v1/schedule`. */
export const ScheduleSchema = z
  .object({
    model: z.string(),
    kind: z.string(),
    timesteps: z.number().int(),
    betas: z.array(z.number()),
    alphasCumprod: z.array(z.number()),
    posteriorVariance: z.array(z.number()),
    snr: z.array(z.number()).openapi({ description: "abar / (1 - abar)." }),
  })
  .openapi("Schedule");

/** `GET /healthz`. */
export const HealthSchema = z
  .object({
    status: z.literal("ok"),
    models: z.number().int(),
    provider: z.enum(["wasm", "webgpu", "native"]),
    providerReason: z.string().openapi({ description: "Why this provider: what was tried." }),
    queue: z.object({
      running: z.number().int(),
      waiting: z.number().int(),
      concurrency: z.number().int(),
      queueSize: z.number().int(),
    }),
  })
  .openapi("Health");
