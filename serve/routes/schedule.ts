/**
 * `GET /v1/schedule`: a model's noise schedule, for plots.
 *
 * @module
 */

import { createRoute, OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../middleware.ts";
import { findModel } from "../rules.ts";
import { ScheduleSchema } from "../schemas.ts";
import type { RouteContext } from "./_context.ts";
import { errorResponse, jsonResponse } from "./_openapi.ts";

/** The schedule route, mounted under `/v1`. */
export function scheduleRoutes(context: RouteContext): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>();
  app.openapi(
    createRoute({
      method: "get",
      path: "/schedule",
      summary: "A model's noise schedule, for plots",
      description: "Betas, cumulative alphas, the posterior variance (eq. 7) and the " +
        "signal-to-noise ratio, one value per 0-based timestep.",
      request: { query: context.schemas.ScheduleQuery },
      responses: {
        200: jsonResponse(ScheduleSchema, "The schedule."),
        400: errorResponse("A malformed query."),
        404: errorResponse("No such model."),
      },
    }),
    (c) => {
      const model = findModel(context.models, c.req.valid("query").model);
      const s = model.schedule;
      return c.json({
        model: model.name,
        kind: s.kind,
        timesteps: s.timesteps,
        betas: Array.from(s.betas),
        alphasCumprod: Array.from(s.alphasCumprod),
        posteriorVariance: Array.from(s.posteriorVariance),
        snr: Array.from(s.snr),
      }, 200);
    },
  );
  return app;
}
