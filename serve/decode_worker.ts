/**
 * The Worker of {@linkcode imageForModelOffThread} (`decode.ts`): decodes and fits one upload
 * and posts the result back.
 *
 * @module
 */

import type { DecodeRequest, DecodeResponse } from "./decode.ts";
import { HttpError } from "./errors.ts";
import { imageForModel } from "./uploads.ts";

// The worker's global scope, typed here: the window lib the rest of the code is checked
// with does not describe it (and a `deno.worker` lib reference fails in a worker under test).
const scope = self as unknown as {
  onmessage: (event: MessageEvent<DecodeRequest>) => void;
  postMessage(message: DecodeResponse, transfer?: Transferable[]): void;
};

scope.onmessage = (event) => {
  const { bytes, model, options } = event.data;
  let answer: DecodeResponse;
  try {
    answer = { image: imageForModel(bytes, model, options) };
  } catch (error) {
    answer = error instanceof HttpError
      ? { http: { status: error.status, error: error.error, detail: error.detail } }
      : { failure: { name: (error as Error).name, message: (error as Error).message } };
  }
  // The pixels are moved, not copied; they are a plain ArrayBuffer (`_toModel` allocates it).
  if ("image" in answer) scope.postMessage(answer, [answer.image.x.buffer as ArrayBuffer]);
  else scope.postMessage(answer);
};
