/**
 * The headers a result carries, in one place for what the routes set and what the OpenAPI
 * document says of them: `X-Seed` and `X-Model` on every result; with a class, `X-Labels`
 * (one per image) or `X-Label` (one for the request) and `X-Guidance`; `X-Image-Conversion`
 * when an upload was converted to the model's shape.
 *
 * @module
 */

import type { Context } from "hono";
import { labelsHeader } from "../labels.ts";
import type { ServedModel } from "../registry.ts";

/** What the headers report of a request's run. */
export interface RunHeaders {
  readonly model: ServedModel;
  readonly seed: number;
  /**
   * Class index of each image, `model.classes.length` for none; null when the network ran
   * without classes (an unconditional model, `label: null`, or no label outside sampling).
   */
  readonly labels: Int32Array | null;
  readonly guidance: number;
  /** The timesteps guidance applied at, when limited; null or absent: every step. */
  readonly guidanceInterval?: readonly [number, number] | null;
}

/**
 * How the classes are reported: `each` image's in `X-Labels` (sampling, where a request may
 * name one class per image), or the `shared` one in `X-Label` (one class for the request).
 */
export type ClassReport = "each" | "shared";

/**
 * `X-Seed`, `X-Model`, the classes as `report` says (when the run had any: named, or drawn for
 * a sample with no label), and
 * `X-Image-Conversion` when `conversion` says what was done to an upload.
 */
export function resultHeaders(
  run: RunHeaders,
  options: { report: ClassReport; conversion?: string | null },
): Record<string, string> {
  const { model, labels, guidance } = run;
  const headers: Record<string, string> = { "X-Seed": String(run.seed), "X-Model": model.name };
  switch (options.report) {
    case "each":
      if (labels) {
        headers["X-Labels"] = labelsHeader(model, labels);
        headers["X-Guidance"] = String(guidance);
        if (run.guidanceInterval) headers["X-Guidance-Interval"] = run.guidanceInterval.join("-");
      }
      break;
    case "shared":
      if (labels && labels[0] !== model.classes.length) {
        headers["X-Label"] = String(labels[0]);
        headers["X-Guidance"] = String(guidance);
      }
      break;
    default: {
      const unknown: never = options.report;
      throw new Error(`unhandled class report ${unknown}`);
    }
  }
  if (options.conversion) headers["X-Image-Conversion"] = options.conversion;
  return headers;
}

/** A 200 with binary content: an encoded image of `type`, with the result's headers. */
export function binaryResponse(
  c: Context,
  body: { bytes: Uint8Array; type: string; headers: Record<string, string> },
): Response {
  // The encoders return views of plain ArrayBuffers; Hono's type wants that stated.
  return c.body(body.bytes as Uint8Array<ArrayBuffer>, 200, {
    ...body.headers,
    "Content-Type": body.type,
  });
}

const _guidanceDoc = {
  schema: { type: "number" as const },
  description: "With a class (a label, or classes drawn for a sample with no label): the " +
    "guidance weight used.",
};

/** The OpenAPI entries of the headers, as the routes document them. */
export const HEADER_DOCS = {
  seed: { schema: { type: "integer" as const }, description: "The seed used." },
  model: { schema: { type: "string" as const }, description: "The model used." },
  /** The classes of a sampling request (`report: "each"`). */
  eachClass: {
    "X-Labels": {
      schema: { type: "string" as const },
      description: "With a label, or classes drawn for a conditional model's sample with no " +
        "label: each image's class index, comma-separated; `none` for no class.",
    },
    "X-Guidance": _guidanceDoc,
    "X-Guidance-Interval": {
      schema: { type: "string" as const },
      description: "When guidance applied at some timesteps only: `from-to`, inclusive.",
    },
  },
  /** The class of a request with one class for all its images (`report: "shared"`). */
  sharedClass: {
    "X-Label": {
      schema: { type: "integer" as const },
      description: "With a label: its class index.",
    },
    "X-Guidance": _guidanceDoc,
  },
};
