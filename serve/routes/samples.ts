/**
 * `POST /v1/samples` (a PNG grid, 8-bit pixels in JSON, or an animated trajectory) and
 * `POST /v1/samples/stream` (progress as server-sent events). Both check the request with the
 * same plan, report it with the same headers, and hold their job the same way; they differ
 * only in how the result leaves.
 *
 * @module
 */

import { createRoute, OpenAPIHono } from "@hono/zod-openapi";
import { streamSSE } from "hono/streaming";
import type { HwcImage } from "../../lib/image.ts";
import { encodeApng } from "../../lib/png.ts";
import { HttpError, internalErrorBody } from "../errors.ts";
import { gridImage, gridPng, jsonImages, toBase64 } from "../images.ts";
import { labelNames } from "../labels.ts";
import type { AppEnv } from "../middleware.ts";
import { sampleImages } from "../pipeline.ts";
import { samplingPlan } from "../rules.ts";
import { DEFAULT_GUIDANCE_TEXT, SampleJsonSchema } from "../schemas.ts";
import type { RouteContext } from "./_context.ts";
import { binaryResponse, HEADER_DOCS, resultHeaders } from "./_headers.ts";
import { JOB_ERRORS } from "./_openapi.ts";

/** The sampling routes, mounted under `/v1`. */
export function samplesRoutes(context: RouteContext): OpenAPIHono<AppEnv> {
  const { schemas, jobs } = context;
  const app = new OpenAPIHono<AppEnv>();

  app.openapi(
    createRoute({
      method: "post",
      path: "/samples",
      summary: "Draw samples: a PNG grid, 8-bit pixels in JSON, or an animated trajectory",
      description: "The seed used is returned in `X-Seed` (and in JSON); the same request with " +
        "the same seed returns the same bytes. `apng` shows `x_t` every `every` steps, then " +
        "the result. A class-conditional model samples the classes in `label` (with no label, " +
        "each image's class drawn from the seed; `null`: no class), guided by `guidance` " +
        "(classifier-free guidance; left out, a named class gets the sampler's default, " +
        `${DEFAULT_GUIDANCE_TEXT}, ` +
        "and drawn classes none); `X-Labels`, `X-Guidance` and " +
        "`X-Guidance-Interval` report them.",
      request: {
        body: {
          required: true,
          content: { "application/json": { schema: schemas.SampleRequest } },
        },
      },
      responses: {
        200: {
          description: "The samples.",
          headers: {
            "X-Seed": HEADER_DOCS.seed,
            "X-Model": HEADER_DOCS.model,
            ...HEADER_DOCS.eachClass,
          },
          content: {
            "image/png": { schema: { type: "string", format: "binary" } },
            "image/apng": { schema: { type: "string", format: "binary" } },
            "application/json": { schema: SampleJsonSchema },
          },
        },
        ...JOB_ERRORS,
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const { format } = body;
      const plan = samplingPlan(body, context);
      const { model, n, columns, every } = plan;
      const frames: HwcImage[] = [];
      const x = await jobs.run(c, (signal) =>
        sampleImages(model, {
          ...plan,
          signal,
          onStep: format === "apng"
            ? ({ step, x }) => {
              if (step % every === 0) frames.push(gridImage(model, x, n, columns));
            }
            : undefined,
        }));
      const headers = resultHeaders(plan, { report: "each" });
      switch (format) {
        case "png":
          return binaryResponse(c, {
            bytes: gridPng(model, x, n, columns),
            type: "image/png",
            headers,
          });
        case "apng": {
          frames.push(gridImage(model, x, n, columns));
          // Each step briefly, the result for 2 s before the loop starts again.
          const delayMs = frames.map((_, i) => (i === frames.length - 1 ? 2000 : 80));
          const bytes = encodeApng(frames, { delayMs });
          return binaryResponse(c, { bytes, type: "image/apng", headers });
        }
        case "json":
          return c.json(
            {
              model: model.name,
              seed: plan.seed,
              sampler: plan.sampler,
              steps: plan.steps,
              eta: plan.eta,
              labels: labelNames(model, plan.labels, n),
              guidance: plan.guidance,
              guidanceInterval: plan.guidanceInterval,
              shape: [n, ...model.imageShape],
              images: jsonImages(model, x, n),
            },
            200,
            headers,
          );
        default: {
          const unknown: never = format;
          throw new Error(`unhandled format ${unknown}`);
        }
      }
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/samples/stream",
      summary: "Draw samples and stream progress as server-sent events",
      description: "Events: `start` (the plan and seed, with `labels`, `guidance` and " +
        "`guidanceInterval`), `step` " +
        "every `every` steps (`t` and a base64 PNG grid of the predicted x_0), `done` (the " +
        "final grid), or `error` (`{ error, detail }`). Closing the connection stops the work.",
      request: {
        body: {
          required: true,
          content: { "application/json": { schema: schemas.StreamRequest } },
        },
      },
      responses: {
        200: {
          description: "A text/event-stream.",
          headers: { "X-Seed": HEADER_DOCS.seed, ...HEADER_DOCS.eachClass },
          content: { "text/event-stream": { schema: { type: "string" } } },
        },
        ...JOB_ERRORS,
      },
    }),
    (c) => {
      const plan = samplingPlan(c.req.valid("json"), context);
      const { model, n, columns, every } = plan;
      // Taken before the stream starts, so a full queue is still a plain 429.
      const job = jobs.open(c);
      for (const [name, value] of Object.entries(resultHeaders(plan, { report: "each" }))) {
        c.header(name, value);
      }
      return streamSSE(c, async (stream) => {
        stream.onAbort(() => job.disconnect());
        const send = (event: string, data: unknown) =>
          stream.writeSSE({ event, data: JSON.stringify(data) });
        try {
          await job.ready;
          const { sampler, steps, eta, seed, guidance, guidanceInterval } = plan;
          const labels = labelNames(model, plan.labels, n);
          await send("start", {
            model: model.name,
            seed,
            sampler,
            steps,
            eta,
            n,
            every,
            labels,
            guidance,
            guidanceInterval,
          });
          const started = performance.now();
          const x = await sampleImages(model, {
            ...plan,
            signal: job.signal,
            onStep: async ({ step, steps, t, predX0 }) => {
              if (step % every !== 0 && step !== steps - 1) return;
              const png = toBase64(gridPng(model, predX0, n, columns));
              await send("step", { step, steps, t, png });
            },
          });
          const ms = Math.round(performance.now() - started);
          await send("done", { seed, ms, png: toBase64(gridPng(model, x, n, columns)) });
        } catch (error) {
          if (job.disconnected()) return; // nobody is listening
          const failure = job.failure(error);
          const id = c.get("requestId");
          if (!(failure instanceof HttpError)) context.logError(failure, c.req.raw, id);
          await send(
            "error",
            failure instanceof HttpError ? failure.body(id) : internalErrorBody(id),
          );
        } finally {
          job.release();
        }
      });
    },
  );

  return app;
}
