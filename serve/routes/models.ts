/**
 * `GET /v1/models`: every model's card and the execution provider in use.
 *
 * @module
 */

import { createRoute, OpenAPIHono, type z } from "@hono/zod-openapi";
import type { AppEnv } from "../middleware.ts";
import { ModelsSchema } from "../schemas.ts";
import type { RouteContext } from "./_context.ts";
import { jsonResponse } from "./_openapi.ts";

type _Card = z.infer<typeof ModelsSchema>["models"][number]["card"];

/** The models route, mounted under `/v1`. */
export function modelsRoutes(context: RouteContext): OpenAPIHono<AppEnv> {
  const { registry } = context;
  const app = new OpenAPIHono<AppEnv>();
  app.openapi(
    createRoute({
      method: "get",
      path: "/models",
      summary: "Every model's card and the execution provider in use",
      responses: { 200: jsonResponse(ModelsSchema, "The models; the first is the default.") },
    }),
    (c) =>
      c.json({
        provider: registry.provider,
        models: registry.models.map((m, i) => ({
          name: m.name,
          default: i === 0,
          classes: [...m.classes],
          card: m.card as unknown as _Card,
        })),
      }, 200),
  );
  return app;
}
