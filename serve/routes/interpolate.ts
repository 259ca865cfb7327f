/**
 * `POST /v1/interpolate`: two images mixed through the diffusion latent at t (DDPM paper,
 * Fig. 8).
 *
 * @module
 */

import { createRoute, OpenAPIHono, type z } from "@hono/zod-openapi";
import { gridPng, jsonImages } from "../images.ts";
import { labelNames } from "../labels.ts";
import type { AppEnv } from "../middleware.ts";
import { interpolateImages } from "../pipeline.ts";
import { interpolationPlan } from "../rules.ts";
import { InterpolateJsonSchema } from "../schemas.ts";
import type { RouteContext } from "./_context.ts";
import { binaryResponse, resultHeaders } from "./_headers.ts";
import {
  conversionText,
  fitUploads,
  imageRequest,
  imageRequestBody,
  imageResponses,
} from "./_images.ts";

/** The interpolation route, mounted under `/v1`. */
export function interpolateRoutes(context: RouteContext): OpenAPIHono<AppEnv> {
  const { schemas, jobs, limits } = context;
  const app = new OpenAPIHono<AppEnv>();
  app.openapi(
    createRoute({
      method: "post",
      path: "/interpolate",
      summary: "Interpolate two images through the diffusion latent at t (paper Fig. 8)",
      description: "Both images are encoded to t with q(x_t | x_0), their latents mixed with " +
        "each lambda (linear or spherical), and every mix decoded from t to 0 with noise " +
        "shared across lambdas. Small t keeps pixel detail; large t blends semantically. A " +
        "conditional model decodes as the class in `label`, guided by `guidance`.",
      request: imageRequestBody(schemas.InterpolateJson, schemas.InterpolateForm),
      responses: imageResponses("The strip, one image per lambda.", InterpolateJsonSchema),
    }),
    async (c) => {
      const { options, uploads } = await imageRequest<
        Omit<z.infer<typeof schemas.InterpolateJson>, "a" | "b">
      >(c, ["a", "b"]);
      const plan = interpolationPlan(options, context);
      const { model, lambdas } = plan;
      const images = await fitUploads(uploads, {
        model,
        resize: options.resize,
        maxPixels: limits.maxImagePixels,
      });
      const { a, b } = images;
      const x = await jobs.run(
        c,
        (signal) => interpolateImages(model, a.x, b.x, { ...plan, signal }),
      );
      const conversion = conversionText(images);
      const headers = resultHeaders(plan, { report: "shared", conversion });
      if (options.format === "json") {
        const { t, mixing, sampler, steps, eta, seed } = plan;
        return c.json(
          {
            model: model.name,
            t,
            lambdas,
            mixing,
            sampler,
            steps,
            eta,
            seed,
            label: labelNames(model, plan.labels, 1)[0],
            guidance: plan.guidance,
            conversion: { a: a.conversion, b: b.conversion },
            images: jsonImages(model, x, lambdas.length),
          },
          200,
          headers,
        );
      }
      const bytes = gridPng(model, x, lambdas.length, lambdas.length);
      return binaryResponse(c, { bytes, type: "image/png", headers });
    },
  );
  return app;
}
