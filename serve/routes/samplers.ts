/**
 * `GET /v1/samplers`: lib's samplers, their default step counts and options, and the default.
 *
 * @module
 */

import { createRoute, OpenAPIHono } from "@hono/zod-openapi";
import { defaultSteps, SAMPLER_CAPABILITIES, SAMPLERS } from "../../lib/samplers.ts";
import type { AppEnv } from "../middleware.ts";
import { DEFAULT_SAMPLER, SamplersSchema } from "../schemas.ts";
import type { RouteContext } from "./_context.ts";
import { jsonResponse } from "./_openapi.ts";

/** The samplers route, mounted under `/v1`. */
export function samplersRoutes(context: RouteContext): OpenAPIHono<AppEnv> {
  const { limits } = context;
  const app = new OpenAPIHono<AppEnv>();
  app.openapi(
    createRoute({
      method: "get",
      path: "/samplers",
      summary: "The samplers, their default step counts and options, and the default one",
      description: "Read from lib's table (`SAMPLER_CAPABILITIES`), which the request " +
        "validation and the playground's sampler picker also follow.",
      responses: { 200: jsonResponse(SamplersSchema, "The samplers.") },
    }),
    (c) =>
      c.json({
        default: {
          sampler: DEFAULT_SAMPLER,
          steps: Math.min(defaultSteps(DEFAULT_SAMPLER, 1000), limits.maxSteps),
        },
        samplers: SAMPLERS.map((name) => ({ name, ...SAMPLER_CAPABILITIES[name] })),
      }, 200),
  );
  return app;
}
