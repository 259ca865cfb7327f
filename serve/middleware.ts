/**
 * What every request passes through before and after its route: the access log, the checks
 * on a `/v1/*` body before anything reads it, and the mapping of errors to JSON responses
 * (`{ error, detail, requestId }`: a client mistake is a 4xx, a 500 is a bug and is logged).
 *
 * @module
 */

import type { Context, ErrorHandler, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import type { RequestIdVariables } from "hono/request-id";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { AuthVariables } from "./auth.ts";
import { HttpError, internalErrorBody } from "./errors.ts";

/** Hono's environment of the app: the request id each request is given, and its API key. */
export type AppEnv = { Variables: RequestIdVariables & AuthVariables };

/** Longest client-sent `X-Request-Id` honoured; a longer one is replaced by a fresh UUID. */
export const MAX_REQUEST_ID_LENGTH = 128;

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
 * import { formatAccessLine } from "./middleware.ts";
 * const entry = { requestId: "abc-1", method: "GET", path: "/healthz", status: 200, ms: 0.42 };
 * const line = formatAccessLine(entry, new Date(Date.UTC(2026, 0, 1)));
 * console.assert(line === "2026-01-01T00:00:00.000Z abc-1 GET /healthz 200 0.4 ms");
 * ```
 */
export function formatAccessLine(entry: AccessLogEntry, date: Date = new Date()): string {
  const { requestId, method, path, status, ms } = entry;
  return `${date.toISOString()} ${requestId} ${method} ${path} ${status} ${ms.toFixed(1)} ms`;
}

/** Options of {@linkcode accessLog}. */
export interface AccessLogOptions {
  /** Milliseconds since some origin. */
  readonly now: () => number;
  /** Called once per request when its response (or a stream's first byte) is ready. */
  readonly logRequest?: (entry: AccessLogEntry) => void;
}

/** Marks every response `nosniff` and hands an {@linkcode AccessLogEntry} to `logRequest`. */
export function accessLog(options: AccessLogOptions): MiddlewareHandler<AppEnv> {
  const { now, logRequest } = options;
  return async (c, next) => {
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
  };
}

/**
 * Refuses a POST without a Content-Type (415) and a body over `maxBytes` (413), before any
 * route reads it.
 */
export function checkedBody(maxBytes: number): MiddlewareHandler<AppEnv>[] {
  return [
    async (c, next) => {
      if (c.req.method === "POST" && !c.req.header("content-type")) {
        throw new HttpError(
          415,
          "unsupported_media_type",
          "send Content-Type: application/json (or multipart/form-data with PNG files)",
        );
      }
      await next();
    },
    bodyLimit({
      maxSize: maxBytes,
      onError: () => {
        throw new HttpError(
          413,
          "body_too_large",
          `the request body is over the limit of ${maxBytes} bytes`,
        );
      },
    }),
  ];
}

/** Where bugs (500s) are reported, with the request's id. */
export type LogError = (error: unknown, request: Request, requestId: string) => void;

/**
 * Every thrown `HttpError` becomes its status; Hono's own 4xx keep theirs (a 415 says what is
 * accepted). Anything else is a bug: logged with `logError`, answered 500 with only the id.
 * The body is `{ error, detail, requestId }` and never a stack trace.
 */
export function errorResponse(logError: LogError): ErrorHandler<AppEnv> {
  return (error, c) => {
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
    return c.json(internalErrorBody(id), 500);
  };
}

/** A 404 that names the method and path and points to the reference. */
export function notFound(c: Context<AppEnv>): Response {
  return c.json({
    error: "not_found",
    detail: `no route for ${c.req.method} ${c.req.path}; see /docs for the API`,
    requestId: c.get("requestId"),
  }, 404);
}
