/**
 * Native onnxruntime (the onnxruntime-node package, which ships its Linux, macOS and Windows
 * libraries inside the package) for self-hosted servers and `deno task eval --provider native`.
 * Only the server's network worker, the evaluation and the benchmarks import this module, and
 * only when the native provider is chosen or probed: the edge entry never reaches it.
 *
 * @module
 */

import * as ortNode from "onnxruntime-node";
import type { OrtRuntime } from "./onnx.ts";

/** onnxruntime-node, as `loadOnnxModel`'s `native` option takes it. */
export const nativeRuntime: OrtRuntime = ortNode as unknown as OrtRuntime;
