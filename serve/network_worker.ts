/**
 * The worker that owns the inference sessions (started by `serve/worker.ts`): it loads the
 * models on the provider it is told, then answers one network call at a time, so the server's
 * event loop only parses, queues and streams. Native onnxruntime is imported here, and only
 * when the native provider is asked for.
 *
 * @module
 */

import type { Shape } from "../lib/forward.ts";
import type { ModelCard } from "../model/card.ts";
import type { NetworkCall } from "../model/batcher.ts";
import {
  type ExecutionProvider,
  loadOnnxModel,
  type OnnxModel,
  onnxNetworkCall,
} from "../model/onnx.ts";

/** A message to the worker. */
export type WorkerRequest =
  | {
    readonly kind: "load";
    readonly id: number;
    readonly provider: ExecutionProvider;
    readonly threads: number;
    readonly models: readonly { readonly name: string; readonly bytes: Uint8Array }[];
  }
  | {
    readonly kind: "run";
    readonly id: number;
    /** Index of the model in the load request. */
    readonly model: number;
    readonly x: Float32Array;
    readonly t: Float32Array;
    readonly labels: Int32Array;
    readonly shape: Shape;
  }
  | { readonly kind: "close"; readonly id: number };

/** A message from the worker, answering the request with the same id. */
export type WorkerReply =
  | { readonly kind: "loaded"; readonly id: number; readonly cards: readonly ModelCard[] }
  | { readonly kind: "result"; readonly id: number; readonly out: Float32Array }
  | { readonly kind: "closed"; readonly id: number }
  | { readonly kind: "error"; readonly id: number; readonly message: string };

/** The worker's global scope, as far as this module uses it. */
const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(message: WorkerReply, transfer?: Transferable[]): void;
};

let models: OnnxModel[] = [];
let calls: NetworkCall[] = [];

async function _release(): Promise<void> {
  const loaded = models;
  models = [];
  calls = [];
  await Promise.all(loaded.map((m) => m.session.release()));
}

async function _handle(request: WorkerRequest): Promise<void> {
  switch (request.kind) {
    case "load": {
      await _release();
      const native = request.provider === "native"
        ? (await import("../model/native.ts")).nativeRuntime
        : undefined;
      for (const { name, bytes } of request.models) {
        const options = { threads: request.threads, native };
        models.push(await loadOnnxModel(bytes, request.provider, name, options));
      }
      calls = models.map((m) => onnxNetworkCall(m));
      scope.postMessage({ kind: "loaded", id: request.id, cards: models.map((m) => m.card) });
      return;
    }
    case "run": {
      const call = calls[request.model];
      if (!call) throw new RangeError(`no model ${request.model} is loaded in the worker`);
      const out = await call(request.x, request.t, request.labels, request.shape);
      scope.postMessage({ kind: "result", id: request.id, out }, [out.buffer as ArrayBuffer]);
      return;
    }
    case "close": {
      await _release();
      scope.postMessage({ kind: "closed", id: request.id });
      return;
    }
    default: {
      const unknown: never = request;
      throw new TypeError(`unknown worker request ${JSON.stringify(unknown)}`);
    }
  }
}

// Requests are handled one at a time, in order: a load finishes before the first run starts,
// and network calls do not overlap (the sessions share the worker's threads).
let tail: Promise<void> = Promise.resolve();
scope.onmessage = (event) => {
  const request = event.data;
  tail = tail.then(() => _handle(request)).catch(async (error: unknown) => {
    if (request.kind === "load") await _release().catch(() => {});
    const message = error instanceof Error ? error.message : String(error);
    scope.postMessage({ kind: "error", id: request.id, message });
  });
};
