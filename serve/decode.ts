/**
 * Uploads decoded off the event loop: a PNG over {@linkcode OFF_THREAD_PIXELS} is decoded and
 * fitted to the model ({@linkcode imageForModel}) in a Worker started for it, so a 4-megapixel
 * upload (seconds of inflating and unfiltering on a busy core) does not hold up other requests.
 * Smaller ones, such as a 28x28 digit, are decoded in place, where a Worker's start-up (tens of
 * ms) would cost more than the decoding. Where there is no Worker, everything is decoded in
 * place.
 *
 * @module
 */

import { readPngHeader } from "../lib/png.ts";
import { newWebWorker } from "../model/web_worker.ts";
import { HttpError } from "./errors.ts";
import {
  imageForModel,
  type ImageForModelOptions,
  type ImageTarget,
  type ModelImage,
} from "./uploads.ts";

/** The Worker's module; `deno task serve` grants read access to it (`launch.ts`). */
export const DECODE_WORKER: URL = new URL("./decode_worker.ts", import.meta.url);

/** How long the Worker may take: decoding 4 megapixels takes seconds on a busy core. */
const WORKER_TIMEOUT_MS = 60_000;

/** Pixels above which an upload is decoded in a Worker: 256x256. */
export const OFF_THREAD_PIXELS = 256 * 256;

/** A request to the decoding worker. */
export interface DecodeRequest {
  readonly bytes: Uint8Array;
  readonly model: ImageTarget;
  readonly options: ImageForModelOptions;
}

/** The worker's answer: the image, a client error to re-throw, or another error. */
export type DecodeResponse =
  | { readonly image: ModelImage }
  | { readonly http: { status: number; error: string; detail: string } }
  | { readonly failure: { name: string; message: string } };

/**
 * {@linkcode imageForModel}, in a Worker when the header declares more than `offThreadPixels`
 * pixels (default {@linkcode OFF_THREAD_PIXELS}). Errors are the same: an `HttpError` for a
 * client's mistake.
 */
export async function imageForModelOffThread(
  bytes: Uint8Array,
  model: ImageTarget,
  options: ImageForModelOptions & { readonly offThreadPixels?: number },
): Promise<ModelImage> {
  let pixels = 0;
  try {
    const header = readPngHeader(bytes);
    pixels = header.width * header.height;
  } catch {
    // Not a PNG: imageForModel says so, in place.
  }
  const small = pixels <= (options.offThreadPixels ?? OFF_THREAD_PIXELS);
  // Over the limit: refused from the header, in place, without a Worker.
  if (small || pixels > options.maxPixels) {
    return imageForModel(bytes, model, options);
  }
  let worker: Worker;
  try {
    worker = newWebWorker(DECODE_WORKER, { type: "module" });
  } catch {
    // No permission to load the worker's module (run with narrower --allow-read than
    // `deno task serve` grants), or no Workers on this runtime: decode in place.
    return imageForModel(bytes, model, options);
  }
  try {
    const answer = await new Promise<DecodeResponse>((resolve, reject) => {
      // A worker that cannot start (its modules unreadable, say) may never answer: give up.
      const timer = setTimeout(
        () => reject(new Error(`the decoding worker did not answer in ${WORKER_TIMEOUT_MS} ms`)),
        WORKER_TIMEOUT_MS,
      );
      worker.onmessage = (event: MessageEvent<DecodeResponse>) => {
        clearTimeout(timer);
        resolve(event.data);
      };
      worker.onerror = (event) => {
        clearTimeout(timer);
        event.preventDefault();
        reject(new Error(`the decoding worker failed: ${event.message}`));
      };
      const request: DecodeRequest = {
        bytes,
        model: { imageShape: model.imageShape, range: model.range },
        options: { field: options.field, resize: options.resize, maxPixels: options.maxPixels },
      };
      worker.postMessage(request);
    });
    if ("image" in answer) return answer.image;
    if ("http" in answer) {
      throw new HttpError(answer.http.status, answer.http.error, answer.http.detail);
    }
    const error = new Error(answer.failure.message);
    error.name = answer.failure.name;
    throw error;
  } finally {
    worker.terminate();
  }
}
