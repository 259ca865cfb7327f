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
import type { ConditionalDenoiser } from "../lib/guidance.ts";
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
 * The model as a `ConditionalDenoiser`: NCHW `x`, timesteps `t` and, for a conditional model,
 * class indices in, the model's prediction out (labels left out mean "no class"; an
 * unconditional model ignores them). Batches larger than `maxBatch` run as several calls.
 * Calls on one session run one at a time, in the order they were made, so several requests
 * may share a model safely.
 */
export function onnxDenoiser(
  model: OnnxModel,
  options: { maxBatch?: number } = {},
): ConditionalDenoiser {
  const maxBatch = options.maxBatch ?? 64;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) {
    throw new RangeError(`maxBatch must be a positive integer, got ${maxBatch}`);
  }
  const { ort, session } = model;
  const numClasses = model.card.config.numClasses ?? 0; // 0: unconditional, no input y
  return async (x, t, shape, labels) => {
    const [n, c, h, w] = shape;
    const per = c * h * w;
    if (labels && labels.length !== n) {
      throw new RangeError(`the batch has ${n} images but ${labels.length} labels`);
    }
    const out = new Float32Array(x.length);
    for (let start = 0; start < n; start += maxBatch) {
      const count = Math.min(maxBatch, n - start);
      const feeds: Record<string, ortWasm.Tensor> = {
        x: new ort.Tensor("float32", x.subarray(start * per, (start + count) * per), [
          count,
          c,
          h,
          w,
        ]),
        t: new ort.Tensor("float32", t.subarray(start, start + count), [count]),
      };
      if (numClasses > 0) {
        const y = BigInt64Array.from(
          { length: count },
          (_, i) => BigInt(labels?.[start + i] ?? numClasses),
        );
        feeds.y = new ort.Tensor("int64", y, [count]);
      }
      const result = await _exclusive(session, () => session.run(feeds));
      const data = result.out.data as Float32Array;
      out.set(data, start * per);
      result.out.dispose();
      await _yieldToEventLoop();
    }
    return out;
  };
}

/**
 * A real turn of the event loop, sockets included. On WebAssembly, onnxruntime-web computes
 * inside `run` and settles through microtasks alone, so a sampling loop would hold the event
 * loop for its whole job and the next queued one: no connection accepted, no `/healthz`
 * answered, no time limit or hang-up noticed until the queue is empty (`bench/load.ts` showed
 * `/healthz` waiting 1.6 s). `setImmediate` lets timers in but polls sockets only now and then
 * (`/healthz` still took 440 ms beside 4-image mnist jobs); a timer makes the runtime idle
 * long enough to poll them (72 ms, about one network call). It costs 1 to 4 ms a call: 2% of
 * a 16-image mnist call, a quarter of a 1-image one.
 */
function _yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
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
