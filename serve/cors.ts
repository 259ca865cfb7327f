/**
 * Cross-origin access for browsers on other sites. Off unless origins are given: the
 * playground and the reference pages are served from the API's own origin and need none.
 *
 * The API uses no cookies or credentials, so `*` (any origin) exposes nothing a page could
 * not fetch through a server of its own; a list of origins narrows it to known front ends.
 *
 * @module
 */

import { cors } from "hono/cors";
import type { MiddlewareHandler } from "hono";

/** Response headers a cross-origin page may read: the request id, the seed, the model... */
export const EXPOSED_HEADERS: readonly string[] = [
  "X-Request-Id",
  "X-Seed",
  "X-Model",
  "X-Image-Conversion",
  "Retry-After",
];

/**
 * The origins of a `--cors` flag or `DDPM_CORS_ORIGINS`: a comma-separated list of origins
 * (`https://app.example.com`), or `*` for any. Blank entries are dropped; an empty list turns
 * CORS off.
 *
 * @example
 * ```ts
 * import { parseCorsOrigins } from "./cors.ts";
 * parseCorsOrigins("https://a.example, http://localhost:5173"); // both origins
 * parseCorsOrigins("*"); // ["*"]
 * ```
 */
export function parseCorsOrigins(text: string): string[] {
  const origins = text.split(",").map((entry) => entry.trim()).filter((entry) => entry !== "");
  checkCorsOrigins(origins);
  return origins;
}

/**
 * Throws a `RangeError` naming the first entry that is neither `*` nor an origin
 * (`scheme://host[:port]`, with no path or trailing slash), or `*` mixed with others.
 */
export function checkCorsOrigins(origins: readonly string[]): void {
  for (const origin of origins) {
    if (origin === "*") {
      if (origins.length > 1) {
        throw new RangeError(`CORS origins: "*" allows every origin; list it alone`);
      }
      continue;
    }
    let parsed: string | null = null;
    try {
      parsed = new URL(origin).origin;
    } catch {
      // Not a URL: reported below.
    }
    if (parsed !== origin || parsed === "null") {
      throw new RangeError(
        `CORS origins: ${
          JSON.stringify(origin)
        } is not an origin; write scheme://host[:port] with no path, e.g. https://app.example.com`,
      );
    }
  }
}

/**
 * The middleware for `origins` (checked with {@linkcode checkCorsOrigins}): preflight
 * requests answered with 204, the allowed origin echoed (or `*`), the headers above exposed.
 * Null for an empty list, which leaves CORS off.
 */
export function corsMiddleware(origins: readonly string[]): MiddlewareHandler | null {
  checkCorsOrigins(origins);
  if (origins.length === 0) return null;
  return cors({
    origin: origins[0] === "*" ? "*" : [...origins],
    allowMethods: ["GET", "HEAD", "POST", "OPTIONS"],
    allowHeaders: ["Content-Type", "X-Request-Id"],
    exposeHeaders: [...EXPOSED_HEADERS],
    maxAge: 600,
  });
}
