/**
 * `POST /v1/noise`: the forward process as a strip of frames x_t ~ q(x_t | x_0), optionally
 * with the model's x_0 estimate from each.
 *
 * @module
 */

import { createRoute, OpenAPIHono, type z } from "@hono/zod-openapi";
import { gridPng, jsonImages } from "../images.ts";
import { labelNames } from "../labels.ts";
import type { AppEnv } from "../middleware.ts";
import { noisePreview } from "../pipeline.ts";
import { noisePlan } from "../rules.ts";
import { NoiseJsonSchema } from "../schemas.ts";
import type { RouteContext } from "./_context.ts";
import { binaryResponse, resultHeaders } from "./_headers.ts";
import { fitUploads, imageRequest, imageRequestBody, imageResponses } from "./_images.ts";

/** The noising route, mounted under `/v1`. */
export function noiseRoutes(context: RouteContext): OpenAPIHono<AppEnv> {
  const { schemas, jobs, limits } = context;
  const app = new OpenAPIHono<AppEnv>();
  app.openapi(
    createRoute({
      method: "post",
      path: "/noise",
      summary: "Forward-process preview: x_t ~ q(x_t | x_0) for a list of timesteps",
      description: "One noise image, drawn from the seed, is shared by every frame, so frames " +
        "differ only by t. The PNG is one row of frames, plus a row of the model's x_0 " +
        "estimates with `reconstruct` (as the class in `label`, guided by `guidance`, for a " +
        "conditional model).",
      request: imageRequestBody(schemas.NoiseJson, schemas.NoiseForm),
      responses: imageResponses("The strip.", NoiseJsonSchema),
    }),
    async (c) => {
      const { options, uploads } = await imageRequest<
        Omit<z.infer<typeof schemas.NoiseJson>, "image">
      >(c, ["image"]);
      const plan = noisePlan(options, context);
      const { model, timesteps, labels, guidance } = plan;
      const k = timesteps.length;
      const { image } = await fitUploads(uploads, {
        model,
        resize: options.resize,
        maxPixels: limits.maxImagePixels,
      });
      const compute = (signal?: AbortSignal) =>
        noisePreview(model, image.x, timesteps, { ...plan, signal });
      // Without reconstructions there is no network call: cheap enough to skip the queue.
      const { frames, reconstructions } = plan.reconstruct
        ? await jobs.run(c, compute)
        : await compute();
      const headers = resultHeaders(plan, { report: "shared", conversion: image.conversion });
      if (options.format === "json") {
        return c.json(
          {
            model: model.name,
            seed: plan.seed,
            timesteps: [...timesteps],
            label: labelNames(model, labels, 1)[0],
            guidance,
            conversion: image.conversion,
            frames: jsonImages(model, frames, k),
            ...(reconstructions ? { reconstructions: jsonImages(model, reconstructions, k) } : {}),
          },
          200,
          headers,
        );
      }
      const both = reconstructions ? _concat(frames, reconstructions) : frames;
      const bytes = gridPng(model, both, reconstructions ? 2 * k : k, k);
      return binaryResponse(c, { bytes, type: "image/png", headers });
    },
  );
  return app;
}

function _concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
