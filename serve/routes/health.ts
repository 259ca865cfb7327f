/**
 * `GET /healthz`: liveness, the execution provider, and the job queue.
 *
 * @module
 */

import { createRoute, OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../middleware.ts";
import { HealthSchema } from "../schemas.ts";
import type { RouteContext } from "./_context.ts";
import { jsonResponse } from "./_openapi.ts";

/** The health route, mounted at the root. */
export function healthRoutes(context: RouteContext): OpenAPIHono<AppEnv> {
  const { registry, queue } = context;
  const app = new OpenAPIHono<AppEnv>();
  app.openapi(
    createRoute({
      method: "get",
      path: "/healthz",
      summary: "Liveness, the provider, and the job queue",
      responses: { 200: jsonResponse(HealthSchema, "The server is up.") },
    }),
    (c) =>
      c.json({
        status: "ok" as const,
        models: registry.models.length,
        provider: registry.provider.name,
        providerReason: registry.provider.reason,
        queue: queue.stats(),
      }, 200),
  );
  return app;
}
