/**
 * The HTTP API as a Hono app, built from its dependencies (the models, the limits, a seed
 * source and a clock) with no listening: `serve/main.ts` and `serve/edge.ts` hand it to
 * `Deno.serve`, and the tests call `app.request()`.
 *
 * Every client mistake gets a 4xx with `{ error, detail, requestId }`; a 500 is a bug. Work
 * that runs the network goes through a bounded {@linkcode JobQueue} (429 and `Retry-After` when
 * full), under a per-request time limit (503), and stops when the client goes away.
 *
 * Every response carries an `X-Request-Id` (the client's own when it sent a sane one), which
 * the error body and the log lines repeat, so a user's report can be matched to the log. CORS
 * is off unless origins are given ({@linkcode AppDependencies.corsOrigins}).
 *
 * @module
 */

import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { requestId, type RequestIdVariables } from "hono/request-id";
import { streamSSE } from "hono/streaming";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import denoJson from "../deno.json" with { type: "json" };
import type { HwcImage } from "../lib/image.ts";
import { encodeApng } from "../lib/png.ts";
import { defaultSteps, SAMPLER_CAPABILITIES, type SamplerKind, SAMPLERS } from "../lib/samplers.ts";
import { spacedTimesteps, type TimestepSpacing } from "../lib/schedule.ts";
import { apiKeyAuth, type AuthVariables } from "./auth.ts";
import { ClientJobs } from "./clients.ts";
import { browserRoutes } from "./browser.ts";
import { corsMiddleware } from "./cors.ts";
import { imageForModelOffThread } from "./decode.ts";
import { describeIssues, type ErrorBody, HttpError } from "./errors.ts";
import { fromBase64, gridImage, gridPng, jsonImages, type ModelImage, toBase64 } from "./images.ts";
import { deadline, JobQueue, QueueFullError } from "./jobs.ts";
import {
  checkGuidedBatch,
  conditioning,
  type LabelField,
  labelNames,
  labelsHeader,
} from "./labels.ts";
import { type Limits, resolveLimits } from "./limits.ts";
import { interpolateImages, noisePreview, sampleImages } from "./pipeline.ts";
import playgroundHtml from "./playground.html" with { type: "text" };
import { type OpenApiDocument, renderReference } from "./reference.ts";
import type { ModelRegistry, ModelSource, ServedModel } from "./registry.ts";
import {
  DEFAULT_SAMPLER,
  ErrorSchema,
  ETA_SAMPLERS,
  HealthSchema,
  InterpolateJsonSchema,
  ModelsSchema,
  NoiseJsonSchema,
  requestSchemas,
  SampleJsonSchema,
  SamplersSchema,
  ScheduleSchema,
} from "./schemas.ts";

/** What {@linkcode createApp} is built from. */
export interface AppDependencies {
  /** The models and their execution provider. */
  readonly registry: ModelRegistry;
  /** Bounds on requests and on concurrent work; unset fields take `DEFAULT_LIMITS`. */
  readonly limits?: Partial<Limits>;
  /** The seed of a request that names none. Default 32 bits from `crypto.getRandomValues`. */
  readonly randomSeed?: () => number;
  /** Milliseconds, for the queue's job-time estimate. Default `performance.now`. */
  readonly now?: () => number;
  /** Where bugs (500s) are reported, with the request's id. Default `console.error`. */
  readonly logError?: (error: unknown, request: Request, requestId: string) => void;
  /**
   * Called once per request when its response (or a stream's first byte) is ready: the
   * access log. Default none; `serve/main.ts` prints one line each.
   */
  readonly logRequest?: (entry: AccessLogEntry) => void;
  /**
   * Origins whose pages may call the API from a browser: `["*"]` for any, a list of origins
   * (`https://app.example.com`), or none (the default: CORS off, same-origin use only).
   */
  readonly corsOrigins?: readonly string[];
  /**
   * API keys, one of which every `/v1/*` request must carry (`Authorization: Bearer <key>` or
   * `X-API-Key`); none (the default) leaves the API open. See `serve/auth.ts`.
   */
  readonly apiKeys?: readonly string[];
  /**
   * The served models' `.onnx` bytes, for the playground's "run in this browser"
   * (`serve/browser.ts`). Default none: the page then cannot sample in the browser.
   */
  readonly modelFiles?: readonly ModelSource[];
}

/** One line of the access log. */
export interface AccessLogEntry {
  /** The id in the response's `X-Request-Id` header and in its error body. */
  readonly requestId: string;
  readonly method: string;
  /** The path, percent-encoded as in the request line, without the query. */
  readonly path: string;
  readonly status: number;
  /** Milliseconds until the response was ready (for a stream: until it started). */
  readonly ms: number;
}

/**
 * `<ISO time> <request id> <method> <path> <status> <ms> ms`. The id and method cannot hold
 * spaces or line breaks (the id is checked, Deno checks methods) and the path is
 * percent-encoded, so a line is one record.
 *
 * @example
 * ```ts
 * import { formatAccessLine } from "./app.ts";
 * const entry = { requestId: "abc-1", method: "GET", path: "/healthz", status: 200, ms: 0.42 };
 * const line = formatAccessLine(entry, new Date(Date.UTC(2026, 0, 1)));
 * console.assert(line === "2026-01-01T00:00:00.000Z abc-1 GET /healthz 200 0.4 ms");
 * ```
 */
export function formatAccessLine(entry: AccessLogEntry, date: Date = new Date()): string {
  const { requestId, method, path, status, ms } = entry;
  return `${date.toISOString()} ${requestId} ${method} ${path} ${status} ${ms.toFixed(1)} ms`;
}

/** Hono's environment of the app: the request id each request is given. */
export type AppEnv = { Variables: RequestIdVariables & AuthVariables };

/** Longest client-sent `X-Request-Id` honoured; a longer one is replaced by a fresh UUID. */
export const MAX_REQUEST_ID_LENGTH = 128;

/** The app with a view of its queue, for health checks and tests. */
export interface DdpmApp {
  readonly app: OpenAPIHono<AppEnv>;
  /** Running and waiting jobs now. */
  readonly queue: JobQueue;
  readonly limits: Limits;
}

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
 * Builds the app.
 *
 * @example
 * ```ts ignore
 * import { createApp } from "./app.ts";
 * const { app } = createApp({ registry });
 * const response = await app.request("/healthz");
 * ```
 */
export function createApp(dependencies: AppDependencies): DdpmApp {
  const { registry } = dependencies;
  const limits = resolveLimits(dependencies.limits);
  const randomSeed = dependencies.randomSeed ??
    (() => crypto.getRandomValues(new Uint32Array(1))[0]);
  const now = dependencies.now ?? (() => performance.now());
  const logError = dependencies.logError ??
    ((error: unknown, request: Request, id: string) =>
      console.error(
        `${new Date().toISOString()} ${id} 500 on ${request.method} ${
          new URL(request.url).pathname
        }:`,
        error,
      ));
  const logRequest = dependencies.logRequest;
  const cors = corsMiddleware(dependencies.corsOrigins ?? []);
  if (registry.models.length === 0) throw new RangeError("the registry has no model");
  const queue = new JobQueue({
    concurrency: limits.concurrency,
    queueSize: limits.queueSize,
    now,
  });
  const schemas = requestSchemas(limits);
  const clientJobs = new ClientJobs(limits.maxJobsPerClient);

  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) {
        throw new HttpError(400, "invalid_request", describeIssues(result.error.issues));
      }
    },
  });

  // 1. Every response: an id (the client's when it is at most 128 word characters, `-` or
  // `=`, so it cannot forge log lines), no content sniffing, the access log, and CORS.
  app.use(requestId({ limitLength: MAX_REQUEST_ID_LENGTH }));
  app.use(async (c, next) => {
    const started = now();
    c.header("X-Content-Type-Options", "nosniff");
    await next();
    logRequest?.({
      requestId: c.get("requestId"),
      method: c.req.method,
      // The URL's own form, percent-encoded; Hono's `c.req.path` is decoded (`%0A` is a
      // line break there).
      path: new URL(c.req.url).pathname,
      status: c.res.status,
      ms: now() - started,
    });
  });
  if (cors) app.use(cors);

  // 2. Errors: every thrown HttpError becomes its status; Hono's own 4xx keep theirs. The body
  // is `{ error, detail, requestId }` and never a stack trace.
  app.onError((error, c) => {
    const id = c.get("requestId");
    if (error instanceof HttpError) {
      return c.json(error.body(id), error.status as ContentfulStatusCode, error.headers);
    }
    if (error instanceof HTTPException && error.status === 415) {
      const type = c.req.header("content-type") ?? "none";
      return c.json({
        error: "unsupported_media_type",
        detail: `Content-Type ${type} is not accepted: send application/json ` +
          "(or multipart/form-data with PNG files to /v1/noise and /v1/interpolate)",
        requestId: id,
      }, 415);
    }
    if (error instanceof HTTPException && error.status < 500) {
      return c.json({ error: "bad_request", detail: error.message, requestId: id }, error.status);
    }
    logError(error, c.req.raw, id);
    return c.json(_internalError(id), 500);
  });
  app.notFound((c) =>
    c.json({
      error: "not_found",
      detail: `no route for ${c.req.method} ${c.req.path}; see /docs for the API`,
      requestId: c.get("requestId"),
    }, 404)
  );

  // 3. The API key, when the server has any; then bodies: a declared type and a bounded
  // size, before anything reads them.
  app.use("/v1/*", apiKeyAuth(dependencies.apiKeys ?? []));
  // The weights the playground downloads to sample in the browser are the model: same keys.
  app.use("/browser/models/*", apiKeyAuth(dependencies.apiKeys ?? []));
  app.use("/v1/*", async (c, next) => {
    if (c.req.method === "POST" && !c.req.header("content-type")) {
      throw new HttpError(
        415,
        "unsupported_media_type",
        "send Content-Type: application/json (or multipart/form-data with PNG files)",
      );
    }
    await next();
  });
  app.use(
    "/v1/*",
    bodyLimit({
      maxSize: limits.maxBodyBytes,
      onError: () => {
        throw new HttpError(
          413,
          "body_too_large",
          `the request body is over the limit of ${limits.maxBodyBytes} bytes`,
        );
      },
    }),
  );

  function findModel(name: string | undefined): ServedModel {
    if (name === undefined) return registry.models[0];
    const model = registry.models.find((m) => m.name === name);
    if (!model) {
      throw new HttpError(
        404,
        "unknown_model",
        `no model named ${JSON.stringify(name)}; available: ${
          registry.models.map((m) => m.name).join(", ")
        }`,
      );
    }
    return model;
  }

  /**
   * Runs network work through the queue, under the time limit, stopped by a disconnect, and
   * within the client's share of the queue (429 when it holds `maxJobsPerClient` already).
   */
  async function runJob<T>(c: Context, job: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const release = clientJobs.take(_client(c), queue.retryAfterSeconds());
    const { signal, dispose } = deadline(c.req.raw.signal, limits.timeoutMs);
    try {
      return await queue.run(signal, () => job(signal));
    } catch (error) {
      throw _jobError(error, signal, queue);
    } finally {
      dispose();
      release();
    }
  }

  // 4. Routes.
  app.get("/", (c) => c.html(playgroundHtml));
  app.route("/browser", browserRoutes(dependencies.modelFiles ?? []));

  app.openapi(
    createRoute({
      method: "get",
      path: "/healthz",
      summary: "Liveness, the provider, and the job queue",
      responses: { 200: _json(HealthSchema, "The server is up.") },
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

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/models",
      summary: "Every model's card and the execution provider in use",
      responses: { 200: _json(ModelsSchema, "The models; the first is the default.") },
    }),
    (c) =>
      c.json({
        provider: registry.provider,
        models: registry.models.map((m, i) => ({
          name: m.name,
          default: i === 0,
          classes: [...m.classes],
          card: m.card as unknown as z.infer<typeof ModelsSchema>["models"][number]["card"],
        })),
      }, 200),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/samplers",
      summary: "The samplers, their default step counts and options, and the default one",
      description: "Read from lib's table (`SAMPLER_CAPABILITIES`), which the request " +
        "validation and the playground's sampler picker also follow.",
      responses: { 200: _json(SamplersSchema, "The samplers.") },
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

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/schedule",
      summary: "A model's noise schedule, for plots",
      description: "Betas, cumulative alphas, the posterior variance (eq. 7) and the " +
        "signal-to-noise ratio, one value per 0-based timestep.",
      request: { query: schemas.ScheduleQuery },
      responses: {
        200: _json(ScheduleSchema, "The schedule."),
        400: _error("A malformed query."),
        404: _error("No such model."),
      },
    }),
    (c) => {
      const model = findModel(c.req.valid("query").model);
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

  /** Checks the sampling fields against the model and fills the defaults. */
  function samplingPlan(body: {
    model?: string;
    n: number;
    sampler: SamplerKind;
    steps?: number;
    eta?: number;
    spacing: TimestepSpacing;
    seed?: number;
    columns?: number;
    every?: number;
    label?: LabelField | null;
    guidance: number;
  }) {
    const model = findModel(body.model);
    const T = model.schedule.timesteps;
    const steps = body.steps ?? Math.min(defaultSteps(body.sampler, T), limits.maxSteps);
    if (steps > T) {
      throw new HttpError(
        400,
        "invalid_request",
        `steps: must be in 1..${T} for model ${model.name} (its T), got ${steps}`,
      );
    }
    _checkEta(body.sampler, body.eta);
    if (body.columns !== undefined && body.columns > body.n) {
      throw new HttpError(
        400,
        "invalid_request",
        `columns: must be in 1..n (${body.n}), got ${body.columns}`,
      );
    }
    const { labels, guidance, guided } = conditioning(model, body.label, body.guidance, body.n);
    checkGuidedBatch("n", body.n, guided, limits.maxImages);
    return {
      model,
      n: body.n,
      sampler: body.sampler,
      steps,
      eta: body.eta ?? 0,
      spacing: body.spacing,
      seed: body.seed ?? randomSeed(),
      columns: body.columns,
      every: body.every ?? Math.ceil(steps / 50),
      labels,
      guidance,
    };
  }

  /** The headers of a sampling response: the seed and model, and the classes when asked for. */
  function samplingHeaders(plan: ReturnType<typeof samplingPlan>): Record<string, string> {
    const headers: Record<string, string> = {
      "X-Seed": String(plan.seed),
      "X-Model": plan.model.name,
    };
    if (plan.labels) {
      headers["X-Labels"] = labelsHeader(plan.model, plan.labels);
      headers["X-Guidance"] = String(plan.guidance);
    }
    return headers;
  }

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/samples",
      summary: "Draw samples: a PNG grid, 8-bit pixels in JSON, or an animated trajectory",
      description: "The seed used is returned in `X-Seed` (and in JSON); the same request with " +
        "the same seed returns the same bytes. `apng` shows `x_t` every `every` steps, then " +
        "the result. A class-conditional model samples the classes in `label`, guided by " +
        "`guidance` (classifier-free guidance); `X-Labels` and `X-Guidance` report them.",
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
            "X-Seed": { schema: { type: "integer" }, description: "The seed used." },
            "X-Model": { schema: { type: "string" }, description: "The model used." },
            ..._classHeaders,
          },
          content: {
            "image/png": { schema: { type: "string", format: "binary" } },
            "image/apng": { schema: { type: "string", format: "binary" } },
            "application/json": { schema: SampleJsonSchema },
          },
        },
        ..._jobErrors,
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const plan = samplingPlan(body);
      if (body.every !== undefined && body.format !== "apng") {
        throw new HttpError(400, "invalid_request", "every: applies to format apng only");
      }
      const { model, n, columns, every } = plan;
      const frames: HwcImage[] = [];
      const x = await runJob(c, (signal) =>
        sampleImages(model, {
          ...plan,
          signal,
          onStep: body.format === "apng"
            ? ({ step, x }) => {
              if (step % every === 0) frames.push(gridImage(model, x, n, columns));
            }
            : undefined,
        }));
      const headers = samplingHeaders(plan);
      switch (body.format) {
        case "png":
          return _binary(c, gridPng(model, x, n, columns), "image/png", headers);
        case "apng": {
          frames.push(gridImage(model, x, n, columns));
          // Each step briefly, the result for 2 s before the loop starts again.
          const delayMs = frames.map((_, i) => (i === frames.length - 1 ? 2000 : 80));
          return _binary(c, encodeApng(frames, { delayMs }), "image/apng", headers);
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
              shape: [n, ...model.imageShape],
              images: jsonImages(model, x, n),
            },
            200,
            headers,
          );
        default: {
          const unknown: never = body.format;
          throw new Error(`unhandled format ${unknown}`);
        }
      }
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/samples/stream",
      summary: "Draw samples and stream progress as server-sent events",
      description: "Events: `start` (the plan and seed, with `labels` and `guidance`), `step` " +
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
          headers: {
            "X-Seed": { schema: { type: "integer" }, description: "The seed used." },
            ..._classHeaders,
          },
          content: { "text/event-stream": { schema: { type: "string" } } },
        },
        ..._jobErrors,
      },
    }),
    (c) => {
      const plan = samplingPlan(c.req.valid("json"));
      const { model, n, columns, every } = plan;
      // The work stops when the client disconnects (the response stream is cancelled) or
      // the request's signal aborts, or at the time limit.
      const disconnect = new AbortController();
      const onClientAbort = () => disconnect.abort(_clientGone());
      c.req.raw.signal.addEventListener("abort", onClientAbort, { once: true });
      const { signal, dispose } = deadline(disconnect.signal, limits.timeoutMs);
      let reservation;
      let releaseClient = () => {};
      try {
        releaseClient = clientJobs.take(_client(c), queue.retryAfterSeconds());
        reservation = queue.reserve(signal);
      } catch (error) {
        releaseClient();
        dispose();
        c.req.raw.signal.removeEventListener("abort", onClientAbort);
        throw _jobError(error, signal, queue);
      }
      const slot = reservation;
      for (const [name, value] of Object.entries(samplingHeaders(plan))) c.header(name, value);
      return streamSSE(c, async (stream) => {
        stream.onAbort(() => disconnect.abort(_clientGone()));
        const send = (event: string, data: unknown) =>
          stream.writeSSE({ event, data: JSON.stringify(data) });
        try {
          await slot.ready;
          const { sampler, steps, eta, seed, guidance } = plan;
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
          });
          const started = performance.now();
          const x = await sampleImages(model, {
            ...plan,
            signal,
            onStep: async ({ step, steps, t, predX0 }) => {
              if (step % every !== 0 && step !== steps - 1) return;
              const png = toBase64(gridPng(model, predX0, n, columns));
              await send("step", { step, steps, t, png });
            },
          });
          const ms = Math.round(performance.now() - started);
          await send("done", { seed, ms, png: toBase64(gridPng(model, x, n, columns)) });
        } catch (error) {
          if (disconnect.signal.aborted) return; // nobody is listening
          const failure = _jobError(error, signal, queue);
          const id = c.get("requestId");
          if (!(failure instanceof HttpError)) logError(failure, c.req.raw, id);
          await send(
            "error",
            failure instanceof HttpError ? failure.body(id) : _internalError(id),
          );
        } finally {
          slot.release();
          releaseClient();
          dispose();
          c.req.raw.signal.removeEventListener("abort", onClientAbort);
        }
      });
    },
  );

  /** The options and uploads of an image endpoint, from JSON (base64) or multipart. */
  async function imageBody<O extends Record<string, unknown>>(
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

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/noise",
      summary: "Forward-process preview: x_t ~ q(x_t | x_0) for a list of timesteps",
      description: "One noise image, drawn from the seed, is shared by every frame, so frames " +
        "differ only by t. The PNG is one row of frames, plus a row of the model's x_0 " +
        "estimates with `reconstruct` (as the class in `label`, guided by `guidance`, for a " +
        "conditional model).",
      request: {
        body: {
          content: {
            "application/json": { schema: schemas.NoiseJson },
            "multipart/form-data": { schema: schemas.NoiseForm },
          },
        },
      },
      responses: {
        200: {
          description: "The strip.",
          headers: { "X-Seed": { schema: { type: "integer" } }, ..._classHeader },
          content: {
            "image/png": { schema: { type: "string", format: "binary" } },
            "application/json": { schema: NoiseJsonSchema },
          },
        },
        ..._jobErrors,
        422: _error("An image that is not a PNG, or of another shape with resize false."),
      },
    }),
    async (c) => {
      const { options, uploads } = await imageBody<
        Omit<z.infer<typeof schemas.NoiseJson>, "image">
      >(c, ["image"]);
      const model = findModel(options.model);
      const T = model.schedule.timesteps;
      if (options.timesteps !== undefined && options.count !== undefined) {
        throw new HttpError(400, "invalid_request", "send timesteps or count, not both");
      }
      const bad = options.timesteps?.find((t) => t >= T);
      if (bad !== undefined) {
        throw new HttpError(
          400,
          "invalid_request",
          `timesteps: each must be in 0..${T - 1} for model ${model.name}, got ${bad}`,
        );
      }
      const count = options.count ?? 10;
      if (count > T) {
        throw new HttpError(400, "invalid_request", `count: must be at most T = ${T}`);
      }
      const timesteps = options.timesteps ?? spacedTimesteps(T, count, "linspace");
      const hasLabel = options.label !== undefined && options.label !== null;
      if (!options.reconstruct && (hasLabel || options.guidance > 0)) {
        const field = hasLabel ? "label" : "guidance";
        throw new HttpError(400, "invalid_request", `${field}: applies with reconstruct only`);
      }
      const k = timesteps.length;
      const { labels, guidance, guided } = conditioning(model, options.label, options.guidance, k);
      checkGuidedBatch(options.timesteps ? "timesteps" : "count", k, guided, limits.maxFrames);
      const image = await _upload(uploads, "image", model, options.resize, limits);
      const seed = options.seed ?? randomSeed();
      const compute = (signal?: AbortSignal) =>
        noisePreview(model, image.x, timesteps, {
          seed,
          reconstruct: options.reconstruct,
          labels,
          guidance,
          signal,
        });
      // Without reconstructions there is no network call: cheap enough to skip the queue.
      const { frames, reconstructions } = options.reconstruct
        ? await runJob(c, compute)
        : await compute();
      const headers: Record<string, string> = {
        "X-Seed": String(seed),
        "X-Model": model.name,
        ..._classHeaderValues(model, labels, guidance),
      };
      if (image.conversion) headers["X-Image-Conversion"] = image.conversion;
      if (options.format === "json") {
        return c.json(
          {
            model: model.name,
            seed,
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
      const png = gridPng(model, both, reconstructions ? 2 * k : k, k);
      return _binary(c, png, "image/png", headers);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/interpolate",
      summary: "Interpolate two images through the diffusion latent at t (paper Fig. 8)",
      description: "Both images are encoded to t with q(x_t | x_0), their latents mixed with " +
        "each lambda (linear or spherical), and every mix decoded from t to 0 with noise " +
        "shared across lambdas. Small t keeps pixel detail; large t blends semantically. A " +
        "conditional model decodes as the class in `label`, guided by `guidance`.",
      request: {
        body: {
          content: {
            "application/json": { schema: schemas.InterpolateJson },
            "multipart/form-data": { schema: schemas.InterpolateForm },
          },
        },
      },
      responses: {
        200: {
          description: "The strip, one image per lambda.",
          headers: { "X-Seed": { schema: { type: "integer" } }, ..._classHeader },
          content: {
            "image/png": { schema: { type: "string", format: "binary" } },
            "application/json": { schema: InterpolateJsonSchema },
          },
        },
        ..._jobErrors,
        422: _error("An image that is not a PNG, or of another shape with resize false."),
      },
    }),
    async (c) => {
      const { options, uploads } = await imageBody<
        Omit<z.infer<typeof schemas.InterpolateJson>, "a" | "b">
      >(c, ["a", "b"]);
      const model = findModel(options.model);
      const T = model.schedule.timesteps;
      const t = options.t ?? Math.floor(T / 2);
      if (t >= T) {
        throw new HttpError(
          400,
          "invalid_request",
          `t: must be in 0..${T - 1} for model ${model.name}, got ${t}`,
        );
      }
      if (options.lambdas !== undefined && options.count !== undefined) {
        throw new HttpError(400, "invalid_request", "send lambdas or count, not both");
      }
      const count = options.count ?? 11;
      const lambdas = options.lambdas ?? Array.from({ length: count }, (_, i) => i / (count - 1));
      const steps = options.steps ?? Math.min(t + 1, 50);
      if (steps > t + 1) {
        throw new HttpError(
          400,
          "invalid_request",
          `steps: must be in 1..${t + 1} (t + 1) for t = ${t}, got ${steps}`,
        );
      }
      _checkEta(options.sampler, options.eta);
      const { labels, guidance, guided } = conditioning(
        model,
        options.label,
        options.guidance,
        lambdas.length,
      );
      checkGuidedBatch(
        options.lambdas ? "lambdas" : "count",
        lambdas.length,
        guided,
        limits.maxFrames,
      );
      const a = await _upload(uploads, "a", model, options.resize, limits);
      const b = await _upload(uploads, "b", model, options.resize, limits);
      const seed = options.seed ?? randomSeed();
      const plan = {
        t,
        lambdas,
        mixing: options.mixing,
        sampler: options.sampler,
        steps,
        eta: options.eta ?? 0,
        seed,
      };
      const images = await runJob(
        c,
        (signal) => interpolateImages(model, a.x, b.x, { ...plan, labels, guidance, signal }),
      );
      const headers: Record<string, string> = {
        "X-Seed": String(seed),
        "X-Model": model.name,
        ..._classHeaderValues(model, labels, guidance),
      };
      const conversions = [
        a.conversion && `a: ${a.conversion}`,
        b.conversion && `b: ${b.conversion}`,
      ]
        .filter(Boolean);
      if (conversions.length > 0) headers["X-Image-Conversion"] = conversions.join("; ");
      if (options.format === "json") {
        return c.json(
          {
            model: model.name,
            ...plan,
            label: labelNames(model, labels, 1)[0],
            guidance,
            conversion: { a: a.conversion, b: b.conversion },
            images: jsonImages(model, images, lambdas.length),
          },
          200,
          headers,
        );
      }
      const png = gridPng(model, images, lambdas.length, lambdas.length);
      return _binary(c, png, "image/png", headers);
    },
  );

  // 5. The contract and its reference pages.
  app.doc("/openapi.json", OPENAPI_CONFIG);
  app.get("/docs", (c) => {
    const document = app.getOpenAPIDocument(OPENAPI_CONFIG);
    return c.html(renderReference(document as unknown as OpenApiDocument));
  });

  return { app, queue, limits };
}

/** The response entry of a JSON body. */
function _json<S extends z.ZodType>(schema: S, description: string) {
  return { description, content: { "application/json": { schema } } };
}

/** The response entry of an error. */
function _error(description: string) {
  return _json(ErrorSchema, description);
}

/** The errors every endpoint that runs the network may answer with. */
const _jobErrors = {
  400: _error("Bad JSON, a wrong type, or a value out of range (`detail` says which)."),
  401: _error("The server has API keys and the request carried none of them."),
  404: _error("No such model."),
  413: _error("The body (or an image's pixel count) is over the limit."),
  415: _error("A content type other than the ones listed."),
  429: _error(
    "The job queue is full, or this client already holds its share of it " +
      "(`too_many_jobs`); `Retry-After` says when to try again.",
  ),
  503: _error("The job ran past the per-request time limit."),
};

/** The response headers of a sampling request with classes. */
const _classHeaders = {
  "X-Labels": {
    schema: { type: "string" as const },
    description: "With a label: each image's class index, comma-separated; `none` for no class.",
  },
  "X-Guidance": {
    schema: { type: "number" as const },
    description: "With a label: the guidance weight used.",
  },
};

/** The response headers of a request with one class for all its images. */
const _classHeader = {
  "X-Label": {
    schema: { type: "integer" as const },
    description: "With a label: its class index.",
  },
  "X-Guidance": _classHeaders["X-Guidance"],
};

/** `X-Label` and `X-Guidance` of a request with one class (all labels the same). */
function _classHeaderValues(
  model: ServedModel,
  labels: Int32Array | null,
  guidance: number,
): Record<string, string> {
  if (!labels || labels[0] === model.classes.length) return {};
  return { "X-Label": String(labels[0]), "X-Guidance": String(guidance) };
}

/**
 * Who a request counts against for per-client limits: its API key (`key 1`, ...) when the
 * server has keys, else its address as `Deno.serve` passes it (`app.fetch(request, info)`
 * makes `info` Hono's `c.env`); `local` for `app.request()` without one.
 */
function _client(c: Context<AppEnv>): string {
  const key = c.get("apiKey");
  if (key) return key;
  const env = c.env as { remoteAddr?: { hostname?: string } } | undefined;
  return env?.remoteAddr?.hostname ?? "local";
}

/** The body of a 500: the id to quote, and nothing of the error itself. */
function _internalError(requestId: string): ErrorBody {
  return {
    error: "internal",
    detail: "an unexpected error (a bug); it was logged with the request id",
    requestId,
  };
}

function _clientGone(): DOMException {
  return new DOMException("the client disconnected", "AbortError");
}

/**
 * What a failed job becomes: a full queue is 429, the time limit 503, a client that left
 * 499 (nginx's "client closed request"; nobody reads it); anything else stays as it is.
 */
function _jobError(error: unknown, signal: AbortSignal, queue: JobQueue): unknown {
  if (error instanceof QueueFullError) {
    return new HttpError(
      429,
      "queue_full",
      `${queue.stats().running} jobs are running and ${queue.stats().waiting} waiting; retry in about ${error.retryAfterSeconds} s`,
      { "Retry-After": String(error.retryAfterSeconds) },
    );
  }
  if (signal.aborted && error === signal.reason) {
    const reason = signal.reason as DOMException;
    if (reason.name === "TimeoutError") {
      return new HttpError(
        503,
        "timeout",
        `${reason.message}; ask for fewer images or steps`,
        { "Retry-After": String(queue.retryAfterSeconds()) },
      );
    }
    return new HttpError(499, "client_closed_request", "the client disconnected");
  }
  return error;
}

/** Decodes and fits one upload; a large one in a Worker (`decode.ts`). */
function _upload(
  uploads: Record<string, Uint8Array>,
  field: string,
  model: ServedModel,
  resize: boolean,
  limits: Limits,
): Promise<ModelImage> {
  return imageForModelOffThread(uploads[field], model, {
    field,
    resize,
    maxPixels: limits.maxImagePixels,
  });
}

/** A 200 with binary content. */
function _binary(
  c: Context,
  bytes: Uint8Array,
  type: string,
  headers: Record<string, string>,
): Response {
  // The encoders return views of plain ArrayBuffers; Hono's type wants that stated.
  return c.body(bytes as Uint8Array<ArrayBuffer>, 200, { ...headers, "Content-Type": type });
}

function _concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** `eta` is for the samplers whose capabilities say so (DDIM's noise scale). */
function _checkEta(sampler: SamplerKind, eta: number | undefined): void {
  if (eta !== undefined && !SAMPLER_CAPABILITIES[sampler].takesEta) {
    throw new HttpError(
      400,
      "invalid_request",
      `eta: applies to the ${ETA_SAMPLERS.join(", ")} sampler only, got sampler ${sampler}`,
    );
  }
}
