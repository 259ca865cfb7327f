/**
 * Access control for a public deployment: optional API keys, required on every `/v1/*` route
 * when any is set, sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Keys are
 * compared in constant time (SHA-256 of each side, then every byte XORed), so the answer's
 * timing says nothing about how much of a key was right. A missing or wrong key is a 401
 * with the JSON error body and `WWW-Authenticate: Bearer`.
 *
 * @module
 */

import type { MiddlewareHandler } from "hono";
import { HttpError } from "./errors.ts";

/** Shortest key accepted: 16 characters (96 bits as base64) resist guessing over HTTP. */
export const MIN_API_KEY_LENGTH = 16;

/**
 * The keys in a comma-separated list (`--api-key`, `DDPM_API_KEYS`); an empty list is none.
 * Throws a `RangeError` naming a key that is too short or holds whitespace (only its length
 * and position are named, never the key).
 *
 * @example
 * ```ts
 * import { parseApiKeys } from "./auth.ts";
 * console.assert(parseApiKeys("").length === 0);
 * console.assert(parseApiKeys("0123456789abcdef, fedcba9876543210").length === 2);
 * ```
 */
export function parseApiKeys(text: string): string[] {
  const keys = text.split(",").map((key) => key.trim()).filter(Boolean);
  keys.forEach((key, i) => {
    if (key.length < MIN_API_KEY_LENGTH || /\s/.test(key)) {
      throw new RangeError(
        `API key ${
          i + 1
        } of ${keys.length} must be at least ${MIN_API_KEY_LENGTH} characters without spaces, got ${key.length} characters`,
      );
    }
  });
  return keys;
}

/** The context variable that names the key a request was let in with (`key 1`, ...). */
export type AuthVariables = { apiKey?: string };

/**
 * Middleware that lets a request through when it carries one of `keys`, and sets `apiKey` to
 * `key <i>` (1-based), which names the client for per-client limits without repeating the
 * key. With no keys it lets everything through.
 */
export function apiKeyAuth(
  keys: readonly string[],
): MiddlewareHandler<{ Variables: AuthVariables }> {
  const digests = Promise.all(keys.map(_sha256));
  return async (c, next) => {
    if (keys.length === 0) return await next();
    const sent = _sentKey(c.req.header("authorization"), c.req.header("x-api-key"));
    if (sent === null) {
      throw new HttpError(
        401,
        "unauthorized",
        "this server needs an API key: send Authorization: Bearer <key> or X-API-Key: <key>",
        { "WWW-Authenticate": 'Bearer realm="ddpm"' },
      );
    }
    const digest = await _sha256(sent);
    let found = -1;
    // Every key is compared in full whatever matched, so the time does not depend on which.
    (await digests).forEach((known, i) => {
      if (_equalBytes(known, digest) && found < 0) found = i;
    });
    if (found < 0) {
      throw new HttpError(401, "unauthorized", "the API key is not valid", {
        "WWW-Authenticate": 'Bearer realm="ddpm", error="invalid_token"',
      });
    }
    c.set("apiKey", `key ${found + 1}`);
    await next();
  };
}

/** The key in `Authorization: Bearer <key>` or `X-API-Key`, or null when neither is sent. */
function _sentKey(authorization: string | undefined, header: string | undefined): string | null {
  const bearer = authorization && /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1];
  return bearer || header?.trim() || null;
}

async function _sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/** Constant-time equality of two 32-byte digests. */
function _equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a[i] ^ b[i];
  return difference === 0;
}
