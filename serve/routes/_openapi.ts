/**
 * The pieces of the routes' OpenAPI entries that several routes share: a JSON response, an
 * error response, and the errors every endpoint that runs the network may answer with.
 *
 * @module
 */

import type { z } from "@hono/zod-openapi";
import { ErrorSchema } from "../schemas.ts";

/** The response entry of a JSON body. */
export function jsonResponse<S extends z.ZodType>(
  schema: S,
  description: string,
): { description: string; content: { "application/json": { schema: S } } } {
  return { description, content: { "application/json": { schema } } };
}

/** The response entry of an error. */
export function errorResponse(
  description: string,
): ReturnType<typeof jsonResponse<typeof ErrorSchema>> {
  return jsonResponse(ErrorSchema, description);
}

/** The errors every endpoint that runs the network may answer with. */
export const JOB_ERRORS = {
  400: errorResponse("Bad JSON, a wrong type, or a value out of range (`detail` says which)."),
  401: errorResponse("The server has API keys and the request carried none of them."),
  404: errorResponse("No such model."),
  413: errorResponse("The body (or an image's pixel count) is over the limit."),
  415: errorResponse("A content type other than the ones listed."),
  429: errorResponse(
    "The job queue is full, or this client already holds its share of it " +
      "(`too_many_jobs`); `Retry-After` says when to try again.",
  ),
  503: errorResponse("The job ran past the per-request time limit."),
};
