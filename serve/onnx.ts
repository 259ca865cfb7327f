/**
 * Exported models on onnxruntime-web: sessions on the WebAssembly or WebGPU execution provider,
 * the model card read from the file, and the network as a `Denoiser` for the samplers.
 *
 * The package's default (Node) build has WebAssembly only; the WebGPU provider comes from
 * `onnxruntime-web/webgpu`, loaded only when asked for.
 *
 * @module
 */

import { fromBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema } from "onnx-buf";
import * as ortWasm from "onnxruntime-web";
import type { Denoiser } from "../lib/samplers.ts";
import type { ModelCard } from "../train/export.ts";

/** Execution providers this toolkit uses. */
export type ExecutionProvider = "wasm" | "webgpu";

/** A loaded model: the session, its provider and its card. */
export interface OnnxModel {
  readonly session: ortWasm.InferenceSession;
  readonly provider: ExecutionProvider;
  readonly card: ModelCard;
  /** The ort module the session belongs to (its `Tensor` class must be used for inputs). */
  readonly ort: typeof ortWasm;
}

/** Reads the model card from an exported model's `metadata_props` (`ddpm.card`). */
export function readModelCard(bytes: Uint8Array, source = "model"): ModelCard {
  let model;
  try {
    model = fromBinary(ModelProtoSchema, bytes);
  } catch (error) {
    throw new TypeError(`${source} is not an ONNX model: ${(error as Error).message}`);
  }
  const entry = model.metadataProps.find((p) => p.key === "ddpm.card");
  if (!entry) {
    throw new TypeError(`${source} has no ddpm.card metadata: not exported by this toolkit`);
  }
  try {
    return JSON.parse(entry.value) as ModelCard;
  } catch (error) {
    throw new TypeError(`${source} has a malformed ddpm.card: ${(error as Error).message}`);
  }
}

/** Creates a session on the chosen provider; the card comes from the same bytes. */
export async function loadOnnxModel(
  bytes: Uint8Array,
  provider: ExecutionProvider = "wasm",
  source = "model",
): Promise<OnnxModel> {
  const card = readModelCard(bytes, source);
  const ort: typeof ortWasm = provider === "webgpu"
    ? await import("onnxruntime-web/webgpu")
    : ortWasm;
  // Threads need cross-origin isolation in browsers and workers in Deno; one thread is
  // predictable everywhere (the server runs requests concurrently instead).
  ort.env.wasm.numThreads = 1;
  const session = await ort.InferenceSession.create(bytes, { executionProviders: [provider] });
  return { session, provider, card, ort };
}

/**
 * The model as a `Denoiser`: NCHW `x` and timesteps `t` in, the model's prediction out.
 * Batches larger than `maxBatch` run as several calls. Calls on one session run one at a time,
 * in the order they were made, so several requests may share a model safely.
 */
export function onnxDenoiser(model: OnnxModel, options: { maxBatch?: number } = {}): Denoiser {
  const maxBatch = options.maxBatch ?? 64;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) {
    throw new RangeError(`maxBatch must be a positive integer, got ${maxBatch}`);
  }
  const { ort, session } = model;
  return async (x, t, shape) => {
    const [n, c, h, w] = shape;
    const per = c * h * w;
    const out = new Float32Array(x.length);
    for (let start = 0; start < n; start += maxBatch) {
      const count = Math.min(maxBatch, n - start);
      const feeds = {
        x: new ort.Tensor("float32", x.subarray(start * per, (start + count) * per), [
          count,
          c,
          h,
          w,
        ]),
        t: new ort.Tensor("float32", t.subarray(start, start + count), [count]),
      };
      const result = await _exclusive(session, () => session.run(feeds));
      const data = result.out.data as Float32Array;
      out.set(data, start * per);
      result.out.dispose();
    }
    return out;
  };
}

/** The last queued `run` of each session, so the next one waits for it. */
const _sessionTails = new WeakMap<object, Promise<unknown>>();

/**
 * Runs `fn` after every earlier call made for `session` has settled. onnxruntime-web does not
 * promise that `run` is re-entrant (the WebGPU provider shares one command queue), and
 * interleaved sampling jobs would otherwise overlap their calls.
 */
function _exclusive<T>(session: object, fn: () => Promise<T>): Promise<T> {
  const previous = _sessionTails.get(session) ?? Promise.resolve();
  const result = previous.then(fn, fn);
  _sessionTails.set(session, result.catch(() => {}));
  return result;
}
