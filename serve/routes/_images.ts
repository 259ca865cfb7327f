/**
 * What the two endpoints that take images (`/v1/noise`, `/v1/interpolate`) share: a body as
 * JSON with base64 PNGs or as `multipart/form-data` with PNG files, each upload fitted to the
 * model (a large one decoded in a Worker), and the OpenAPI entries of both.
 *
 * @module
 */

import type { z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { imageForModelOffThread } from "../decode.ts";
import { fromBase64, type ModelImage } from "../images.ts";
import type { ServedModel } from "../registry.ts";
import { HEADER_DOCS } from "./_headers.ts";
import { errorResponse, JOB_ERRORS } from "./_openapi.ts";

/** The options and uploads of an image endpoint, from JSON (base64) or multipart. */
export async function imageRequest<O extends Record<string, unknown>>(
  c: Context,
  files: readonly string[],
): Promise<{ options: O; uploads: Record<string, Uint8Array> }> {
  const type = c.req.header("content-type") ?? "";
  const uploads: Record<string, Uint8Array> = {};
  // Both schemas share every option field (the form one is derived from the JSON one),
  // so their outputs agree apart from the file fields.
  if (/^multipart\/form-data/i.test(type)) {
    const form = (c.req as unknown as { valid(t: "form"): Record<string, unknown> }).valid(
      "form",
    );
    for (const name of files) {
      uploads[name] = new Uint8Array(await (form[name] as File).arrayBuffer());
    }
    return { options: form as O, uploads };
  }
  const json = (c.req as unknown as { valid(t: "json"): Record<string, unknown> }).valid("json");
  for (const name of files) uploads[name] = fromBase64(json[name] as string, name);
  return { options: json as O, uploads };
}

/**
 * Every upload decoded and fitted to `model`, one after another in the order of `uploads` (so
 * the first bad one is the one reported).
 */
export async function fitUploads(
  uploads: Record<string, Uint8Array>,
  options: { model: ServedModel; resize: boolean; maxPixels: number },
): Promise<Record<string, ModelImage>> {
  const { model, resize, maxPixels } = options;
  const images: Record<string, ModelImage> = {};
  for (const [field, bytes] of Object.entries(uploads)) {
    images[field] = await imageForModelOffThread(bytes, model, { field, resize, maxPixels });
  }
  return images;
}

/**
 * The `X-Image-Conversion` text of the uploads that were converted, or null: a lone upload's
 * conversion as it is, each of several named by its field (`a: ...; b: ...`).
 */
export function conversionText(images: Record<string, ModelImage>): string | null {
  const entries = Object.entries(images);
  if (entries.length === 1) return entries[0][1].conversion;
  const converted = entries
    .filter(([, image]) => image.conversion)
    .map(([field, image]) => `${field}: ${image.conversion}`);
  return converted.length > 0 ? converted.join("; ") : null;
}

/** The request body entry of an image endpoint: the JSON schema and its form twin. */
export function imageRequestBody<J extends z.ZodType, F extends z.ZodType>(
  json: J,
  form: F,
): {
  body: {
    content: { "application/json": { schema: J }; "multipart/form-data": { schema: F } };
  };
} {
  return {
    body: {
      content: { "application/json": { schema: json }, "multipart/form-data": { schema: form } },
    },
  };
}

/** The OpenAPI responses of an image endpoint whose JSON result has the schema `J`. */
export type ImageResponses<J extends z.ZodType> = typeof JOB_ERRORS & {
  200: {
    description: string;
    headers: { "X-Seed": { schema: { type: "integer" } } } & typeof HEADER_DOCS.sharedClass;
    content: {
      "image/png": { schema: { type: "string"; format: string } };
      "application/json": { schema: J };
    };
  };
  422: ReturnType<typeof errorResponse>;
};

/** The responses of an image endpoint: a PNG strip or its JSON, and the errors. */
export function imageResponses<J extends z.ZodType>(
  description: string,
  json: J,
): ImageResponses<J> {
  return {
    200: {
      description,
      headers: { "X-Seed": { schema: HEADER_DOCS.seed.schema }, ...HEADER_DOCS.sharedClass },
      content: {
        "image/png": { schema: { type: "string" as const, format: "binary" } },
        "application/json": { schema: json },
      },
    },
    ...JOB_ERRORS,
    422: errorResponse("An image that is not a PNG, or of another shape with resize false."),
  };
}
