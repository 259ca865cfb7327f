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

import { OpenAPIHono } from "@hono/zod-openapi";
import { requestId } from "hono/request-id";
import { apiKeyAuth } from "./auth.ts";
import { corsMiddleware } from "./cors.ts";
import { describeIssues, HttpError } from "./errors.ts";
import { JobQueue } from "./jobs.ts";
import { type Limits, resolveLimits } from "./limits.ts";
import {
  accessLog,
  type AccessLogEntry,
  type AppEnv,
  checkedBody,
  errorResponse,
  type LogError,
  MAX_REQUEST_ID_LENGTH,
  notFound,
} from "./middleware.ts";
import type { ModelRegistry, ModelSource } from "./registry.ts";
import { requestSchemas } from "./schemas.ts";
import type { RouteContext } from "./routes/_context.ts";
import { Jobs } from "./routes/_jobs.ts";
import { docsRoutes } from "./routes/docs.ts";
import { healthRoutes } from "./routes/health.ts";
import { interpolateRoutes } from "./routes/interpolate.ts";
import { modelsRoutes } from "./routes/models.ts";
import { noiseRoutes } from "./routes/noise.ts";
import { playgroundRoutes } from "./routes/playground.ts";
import { samplersRoutes } from "./routes/samplers.ts";
import { samplesRoutes } from "./routes/samples.ts";
import { scheduleRoutes } from "./routes/schedule.ts";

export {
  type AccessLogEntry,
  type AppEnv,
  formatAccessLine,
  MAX_REQUEST_ID_LENGTH,
} from "./middleware.ts";

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
  readonly logError?: LogError;
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
   * (`serve/routes/browser.ts`). Default none: the page then cannot sample in the browser.
   */
  readonly modelFiles?: readonly ModelSource[];
}

/** The app with a view of its queue, for health checks and tests. */
export interface DdpmApp {
  readonly app: OpenAPIHono<AppEnv>;
  /** Running and waiting jobs now. */
  readonly queue: JobQueue;
  readonly limits: Limits;
}

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
  const cors = corsMiddleware(dependencies.corsOrigins ?? []);
  if (registry.models.length === 0) throw new RangeError("the registry has no model");
  const now = dependencies.now ?? (() => performance.now());
  const queue = new JobQueue({
    concurrency: limits.concurrency,
    queueSize: limits.queueSize,
    now,
  });
  const context: RouteContext = {
    registry,
    models: registry.models,
    limits,
    schemas: requestSchemas(limits),
    randomSeed: dependencies.randomSeed ?? (() => crypto.getRandomValues(new Uint32Array(1))[0]),
    queue,
    jobs: new Jobs(queue, limits),
    logError: dependencies.logError ?? _logError,
  };
  const app = new OpenAPIHono<AppEnv>({
    // Every route's schema refusal, in the sub-apps too (they inherit this hook).
    defaultHook: (result) => {
      if (!result.success) {
        throw new HttpError(400, "invalid_request", describeIssues(result.error.issues));
      }
    },
  });

  // 1. Every response: an id (the client's when it is at most 128 word characters, `-` or
  // `=`, so it cannot forge log lines), no content sniffing, the access log, and CORS.
  app.use(requestId({ limitLength: MAX_REQUEST_ID_LENGTH }));
  app.use(accessLog({ now, logRequest: dependencies.logRequest }));
  if (cors) app.use(cors);

  // 2. Errors: `{ error, detail, requestId }`, a 4xx for a client's mistake, a logged 500 else.
  app.onError(errorResponse(context.logError));
  app.notFound(notFound);

  // 3. The API key, when the server has any; then bodies: a declared type and a bounded
  // size, before anything reads them. The weights the playground downloads to sample in the
  // browser are the model: same keys.
  const auth = apiKeyAuth(dependencies.apiKeys ?? []);
  app.use("/v1/*", auth);
  app.use("/browser/models/*", auth);
  app.use("/v1/*", ...checkedBody(limits.maxBodyBytes));

  // 4. Routes, in the order the OpenAPI document lists them.
  app.route("/", playgroundRoutes(dependencies.modelFiles ?? []));
  app.route("/", healthRoutes(context));
  app.route("/v1", modelsRoutes(context));
  app.route("/v1", samplersRoutes(context));
  app.route("/v1", scheduleRoutes(context));
  app.route("/v1", samplesRoutes(context));
  app.route("/v1", noiseRoutes(context));
  app.route("/v1", interpolateRoutes(context));

  // 5. The contract and its reference pages.
  app.route("/", docsRoutes(app));

  return { app, queue, limits };
}

/** The default {@linkcode AppDependencies.logError}: a line on stderr with the id. */
const _logError: LogError = (error, request, id) =>
  console.error(
    `${new Date().toISOString()} ${id} 500 on ${request.method} ${new URL(request.url).pathname}:`,
    error,
  );
