/**
 * The inputs of one call of an exported network, as `train/export.ts` names and types them:
 * float32 `x` NCHW `[n, c, h, w]`, float32 `t` `[n]`, and for a class-conditional network int64
 * `y` `[n]`. The server's adapter (`model/onnx.ts`) and the browser playground
 * (`serve/browser/local.ts`) both feed the network through this.
 *
 * Only onnxruntime's types are imported: the browser bundle, which loads onnxruntime-web from
 * the server at run time, imports this module.
 *
 * @module
 */

import type * as Ort from "onnxruntime-web";
import type { Shape } from "../lib/forward.ts";

/** One network call: images NCHW `[n, c, h, w]`, a timestep and a class index per image. */
export interface NetworkInputs {
  readonly x: Float32Array;
  readonly t: Float32Array;
  /** Class indices, `numClasses` for no class; unused by an unconditional network. */
  readonly labels: ArrayLike<number>;
  readonly shape: Shape;
}

/**
 * The feeds of a session `run` for `inputs`, made with the session's own `Tensor` class; `y`
 * only when `numClasses` > 0 (an unconditional graph has no input `y`).
 */
export function networkFeeds(
  tensor: typeof Ort.Tensor,
  inputs: NetworkInputs,
  numClasses: number,
): Record<string, Ort.Tensor> {
  const { x, t, labels, shape } = inputs;
  const n = shape[0];
  const feeds: Record<string, Ort.Tensor> = {
    x: new tensor("float32", x, [...shape]),
    t: new tensor("float32", t, [n]),
  };
  if (numClasses > 0) {
    feeds.y = new tensor("int64", BigInt64Array.from(labels, (l) => BigInt(l)), [n]);
  }
  return feeds;
}
