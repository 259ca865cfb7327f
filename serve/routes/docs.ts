/**
 * The contract and its reference pages: `GET /openapi.json` (the OpenAPI document generated
 * from the routes' schemas) and `GET /docs` (the same, rendered as HTML).
 *
 * @module
 */

import { Hono } from "hono";
import type { OpenAPIHono } from "@hono/zod-openapi";
import denoJson from "../../deno.json" with { type: "json" };
import type { AppEnv } from "../middleware.ts";
import { type OpenApiDocument, renderReference } from "../reference.ts";

const OPENAPI_CONFIG = {
  openapi: "3.0.0",
  info: {
    title: "ddpm-toolkit",
    version: denoJson.version,
    description: "Sampling, noising previews and interpolation with DDPM models exported to " +
      "ONNX, on onnxruntime-web. Errors are JSON `{ error, detail, requestId }`; every " +
      "response has an `X-Request-Id`.",
  },
};

/**
 * The document routes of `api`, mounted at the root. The document is built per request from
 * `api`'s routes, so it lists every route mounted before or after these.
 */
export function docsRoutes(api: OpenAPIHono<AppEnv>): Hono {
  const app = new Hono();
  app.get("/openapi.json", (c) => c.json(api.getOpenAPIDocument(OPENAPI_CONFIG)));
  app.get("/docs", (c) => {
    const document = api.getOpenAPIDocument(OPENAPI_CONFIG);
    return c.html(renderReference(document as unknown as OpenApiDocument));
  });
  return app;
}
