/**
 * Exported models on onnxruntime-web: sessions on the WebAssembly or WebGPU execution provider,
 * the model card read from the file, and the network as a `Denoiser` for the samplers. The
 * server (`serve/`) and the evaluation (`train/eval.ts`) both run models through it.
 *
 * The package's default (Node) build has WebAssembly only; the WebGPU provider comes from
 * `onnxruntime-web/webgpu`, loaded only when asked for. The native provider's package is handed
 * in by the caller (`model/native.ts`), so nothing here loads native code.
 *
 * @module
 */

import { fromBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema } from "onnx-buf";
import * as ortWasm from "onnxruntime-web";
import type { ConditionalDenoiser } from "../lib/guidance.ts";
import { batchedDenoiser, type NetworkCall } from "./batcher.ts";
import type { ModelCard } from "./card.ts";
import { classCount } from "./config.ts";
import { networkFeeds } from "./feeds.ts";

/**
 * Execution providers this toolkit uses: onnxruntime-web on WebAssembly or WebGPU, or native
 * onnxruntime (onnxruntime-node, `model/native.ts`) on the CPU.
 */
export type ExecutionProvider = "wasm" | "webgpu" | "native";

/**
 * The part of an onnxruntime package this module uses. onnxruntime-web and onnxruntime-node
 * both re-export it from onnxruntime-common.
 */
export interface OrtRuntime {
  readonly InferenceSession: Pick<typeof ortWasm.InferenceSession, "create">;
  readonly Tensor: typeof ortWasm.Tensor;
}

/** A loaded model: the session, its provider and its card. */
export interface OnnxModel {
  readonly session: ortWasm.InferenceSession;
  readonly provider: ExecutionProvider;
  readonly card: ModelCard;
  /** The ort module the session belongs to (its `Tensor` class must be used for inputs). */
  readonly ort: OrtRuntime;
}

/** Options of {@linkcode loadOnnxModel}. */
export interface LoadOnnxOptions {
  /**
   * Threads a session computes with, >= 1. Default 1: WebAssembly threads in Deno need the
   * session to live in a worker (`serve/worker.ts` sets the cores), and one thread is
   * predictable everywhere.
   */
  readonly threads?: number;
  /**
   * The onnxruntime-node module, for `provider: "native"`. It is passed in rather than imported
   * here so that the edge entry, which imports this module, never loads native code.
   */
  readonly native?: OrtRuntime;
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
  options: LoadOnnxOptions = {},
): Promise<OnnxModel> {
  const card = readModelCard(bytes, source);
  return { ...(await createSession(bytes, provider, options)), provider, card };
}

/**
 * A session over any ONNX graph (a model card is not needed: the evaluation's classifier has
 * none) on the chosen provider, with the ort module its inputs must be built with.
 */
export async function createSession(
  bytes: Uint8Array,
  provider: ExecutionProvider,
  options: LoadOnnxOptions = {},
): Promise<Pick<OnnxModel, "session" | "ort">> {
  const threads = options.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1) {
    throw new RangeError(`threads must be a positive integer, got ${threads}`);
  }
  switch (provider) {
    case "native": {
      const ort = options.native;
      if (!ort) {
        throw new TypeError(
          "the native provider needs onnxruntime-node: load it with model/native.ts",
        );
      }
      const session = await ort.InferenceSession.create(bytes, {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
      });
      return { session, ort };
    }
    case "wasm":
    case "webgpu": {
      const ort: typeof ortWasm = provider === "webgpu"
        ? await import("onnxruntime-web/webgpu")
        : ortWasm;
      // Set explicitly: left unset, onnxruntime-web picks half the cores and, in Deno, falls
      // back to one thread.
      ort.env.wasm.numThreads = threads;
      const session = await ort.InferenceSession.create(bytes, {
        executionProviders: [provider],
      });
      return { session, ort };
    }
    default: {
      const unknown: never = provider;
      throw new RangeError(`unknown execution provider ${unknown}`);
    }
  }
}

/**
 * One network call on the model's session, as {@linkcode batchedDenoiser} makes them: NCHW `x`
 * `[n, c, h, w]`, one timestep and one class index per image (`numClasses` for no class; an
 * unconditional model has no `y` input and ignores them). Calls on one session run one at a
 * time, in the order they were made.
 */
export function onnxNetworkCall(model: OnnxModel): NetworkCall {
  const { ort, session } = model;
  const numClasses = classCount(model.card.config);
  return async (x, t, labels, shape) => {
    const feeds = networkFeeds(ort.Tensor, { x, t, labels, shape }, numClasses);
    const result = await _exclusive(session, () => session.run(feeds));
    // Copied: onnxruntime-node's output may be a view of a larger buffer, and a copy can be
    // transferred to another thread.
    const out = new Float32Array(result.out.data as Float32Array);
    result.out.dispose();
    return out;
  };
}

/**
 * The model as a `ConditionalDenoiser` on this thread: NCHW `x`, timesteps `t` and, for a
 * conditional model, class indices in, the model's prediction out, followed in each row by `v`
 * when the network learns its variance (labels left out mean "no class"; an unconditional
 * model ignores them). Concurrent calls are batched together up to
 * `maxBatch` rows and larger ones split ({@linkcode batchedDenoiser}); after each network call
 * the event loop gets a turn.
 */
export function onnxDenoiser(
  model: OnnxModel,
  options: { maxBatch?: number; merge?: boolean } = {},
): ConditionalDenoiser {
  const call = onnxNetworkCall(model);
  return batchedDenoiser(async (x, t, labels, shape) => {
    const out = await call(x, t, labels, shape);
    await _yieldToEventLoop();
    return out;
  }, { ...options, nullLabel: classCount(model.card.config) });
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
