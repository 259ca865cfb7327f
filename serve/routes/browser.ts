/**
 * The static files behind the playground's "run in this browser", under `/browser`: the page's
 * module with `lib/` bundled in (`/browser/local.js`, built by `deno task build:browser`),
 * onnxruntime-web's browser builds and WebAssembly from its npm package (`/browser/ort/...`)
 * and each served model's `.onnx` (`/browser/models/<name>.onnx`). Nothing here computes
 * anything: the page samples on its own.
 *
 * @module
 */

import { Hono } from "hono";
import localBundle from "../browser/local.bundle.js" with { type: "text" };
import { HttpError } from "../errors.ts";
import type { ModelSource } from "../registry.ts";

/**
 * The onnxruntime-web files the page loads, and their types: the two browser builds
 * `serve/browser/local.ts` imports and the WebAssembly binary each fetches.
 */
export const ORT_FILES: Readonly<Record<string, string>> = {
  "ort.wasm.bundle.min.mjs": "text/javascript; charset=utf-8",
  "ort.webgpu.bundle.min.mjs": "text/javascript; charset=utf-8",
  "ort-wasm-simd-threaded.wasm": "application/wasm",
  "ort-wasm-simd-threaded.asyncify.wasm": "application/wasm",
};

/**
 * The `/browser` routes. `models` are the bytes of the served `.onnx` files (the server has
 * read them already); without them, `/browser/models/*` answers 404 and the page says so.
 */
export function browserRoutes(models: readonly ModelSource[]): Hono {
  const app = new Hono();
  app.get("/local.js", (c) => {
    c.header("Content-Type", "text/javascript; charset=utf-8");
    return c.body(localBundle);
  });
  app.get("/ort/:file", async (c) => {
    const file = c.req.param("file");
    const type = ORT_FILES[file];
    const bytes = type === undefined ? null : await _ortFile(file);
    if (!bytes) {
      throw new HttpError(
        404,
        "not_found",
        `no onnxruntime-web file ${file} here; the page loads ${Object.keys(ORT_FILES).join(", ")}`,
      );
    }
    return c.body(bytes, 200, {
      "Content-Type": type,
      // The package version is pinned, so a file under a name never changes within it.
      "Cache-Control": "public, max-age=3600",
    });
  });
  app.get("/models/:file", (c) => {
    const file = c.req.param("file");
    const model = models.find((m) => `${m.name}.onnx` === file);
    if (!model) {
      throw new HttpError(
        404,
        "unknown_model",
        `no model file ${file}; available: ${models.map((m) => `${m.name}.onnx`).join(", ")}`,
      );
    }
    return c.body(model.bytes as Uint8Array<ArrayBuffer>, 200, {
      "Content-Type": "application/octet-stream",
    });
  });
  return app;
}

/**
 * A file of onnxruntime-web's `dist/` folder, found beside the module Deno resolves for
 * `onnxruntime-web/webgpu`; null where that is no local file (an edge runtime, say).
 */
async function _ortFile(name: string): Promise<Uint8Array<ArrayBuffer> | null> {
  let url: URL;
  try {
    url = new URL(name, import.meta.resolve("onnxruntime-web/webgpu"));
  } catch {
    return null;
  }
  if (url.protocol !== "file:") return null;
  try {
    return await Deno.readFile(url);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotCapable) {
      return null;
    }
    throw error;
  }
}
