/**
 * The models served from a worker: one worker (`serve/network_worker.ts`) owns every inference
 * session and computes the network on all the threads it is given, while the event loop only
 * parses, queues and streams, so `/healthz` and 429s answer at once whatever the queue holds.
 * Each model's calls are batched across requests on this side ({@linkcode batchedDenoiser}), so
 * one message carries one merged batch.
 *
 * `serve/main.ts` uses this; the edge entry keeps its sessions in-process (`loadRegistry`).
 *
 * @module
 */

import type { Shape } from "../lib/forward.ts";
import type { ModelCard } from "../train/export.ts";
import { batchedDenoiser } from "./batcher.ts";
import type { ExecutionProvider } from "./onnx.ts";
import {
  type GpuAdapterSummary,
  probeWebGpu,
  providerCandidates,
  type ProviderChoice,
  type ProviderInfo,
} from "./provider.ts";
import { type ModelRegistry, type ModelSource, servedModel } from "./registry.ts";

/** A message to the worker. */
export type WorkerRequest =
  | {
    readonly kind: "load";
    readonly id: number;
    readonly provider: ExecutionProvider;
    readonly threads: number;
    readonly models: readonly ModelSource[];
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

/** Options of {@linkcode loadWorkerRegistry}. */
export interface WorkerRegistryOptions {
  /** Most images in one network call, >= 1. Default 64. */
  readonly maxBatch?: number;
  /** Merge concurrent requests' network calls. Default true. */
  readonly merge?: boolean;
  /** Threads the network computes with, >= 1. Default: the machine's cores. */
  readonly threads?: number;
  /** The WebGPU probe, injectable for tests. */
  readonly probe?: () => Promise<GpuAdapterSummary | null>;
}

/**
 * Starts the worker and loads every model there on the first provider of
 * {@linkcode providerCandidates} whose sessions start; the registry's provider says which, with
 * how many threads, and why the ones before it were passed over. Closing every model stops the
 * worker.
 */
export async function loadWorkerRegistry(
  sources: readonly ModelSource[],
  requested: ProviderChoice,
  options: WorkerRegistryOptions = {},
): Promise<ModelRegistry> {
  const threads = options.threads ?? navigator.hardwareConcurrency;
  const maxBatch = options.maxBatch ?? 64;
  if (!Number.isInteger(threads) || threads < 1) {
    throw new RangeError(`threads must be a positive integer, got ${threads}`);
  }
  if (!Number.isInteger(maxBatch) || maxBatch < 1) {
    throw new RangeError(`maxBatch must be a positive integer, got ${maxBatch}`);
  }
  if (sources.length === 0) throw new RangeError("loadWorkerRegistry needs at least one model");
  const names = new Set(sources.map((s) => s.name));
  if (names.size !== sources.length) throw new RangeError("two models have the same name");

  const candidates = await providerCandidates(requested, options.probe ?? probeWebGpu);
  const worker = new _WorkerClient();
  const passedOver: string[] = [];
  for (const candidate of candidates) {
    let reply;
    try {
      reply = await worker.request({
        kind: "load",
        id: 0,
        provider: candidate.name,
        threads,
        models: sources,
      });
    } catch (error) {
      passedOver.push(`${candidate.name} failed to start (${(error as Error).message})`);
      continue;
    }
    const cards = (reply as { cards: readonly ModelCard[] }).cards;
    const reason = [candidate.reason, ...passedOver].join("; ") +
      `; ${threads} thread${threads === 1 ? "" : "s"}`;
    const provider: ProviderInfo = { ...candidate, reason, threads };
    let open = sources.length;
    const close = async () => {
      if (--open > 0) return;
      await worker.request({ kind: "close", id: 0 }).catch(() => {});
      worker.terminate();
    };
    try {
      const models = sources.map(({ name }, index) => {
        const nullLabel = cards[index].config.numClasses ?? 0;
        const network = async (
          x: Float32Array,
          t: Float32Array,
          labels: Int32Array,
          shape: Shape,
        ) => {
          const result = await worker.request(
            { kind: "run", id: 0, model: index, x, t, labels, shape },
            [x.buffer, t.buffer, labels.buffer] as ArrayBuffer[],
          );
          return (result as { out: Float32Array }).out;
        };
        let closed = false;
        const closeOnce = () => {
          if (closed) return Promise.resolve();
          closed = true;
          return close();
        };
        const denoiser = batchedDenoiser(network, { maxBatch, merge: options.merge, nullLabel });
        return servedModel(name, cards[index], denoiser, closeOnce);
      });
      return { provider, models };
    } catch (error) {
      open = 1;
      await close();
      throw error;
    }
  }
  worker.terminate();
  throw new Error(`no execution provider started: ${passedOver.join("; ")}`);
}

/** Requests to the worker and their replies, matched by id. */
class _WorkerClient {
  readonly #worker = new Worker(new URL("./network_worker.ts", import.meta.url), {
    type: "module",
    name: "ddpm-network",
  });
  readonly #pending = new Map<
    number,
    { resolve(reply: WorkerReply): void; reject(error: Error): void }
  >();
  #nextId = 1;
  #failure: Error | null = null;

  constructor() {
    this.#worker.onmessage = (event: MessageEvent<WorkerReply>) => {
      const reply = event.data;
      const waiter = this.#pending.get(reply.id);
      if (!waiter) return;
      this.#pending.delete(reply.id);
      if (reply.kind === "error") waiter.reject(new Error(reply.message));
      else waiter.resolve(reply);
    };
    this.#worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      this.#fail(new Error(`the network worker failed: ${event.message}`));
    };
  }

  /** Sends `request` (its id replaced) and waits for the matching reply. */
  request(request: WorkerRequest, transfer: Transferable[] = []): Promise<WorkerReply> {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ ...request, id }, transfer);
    });
  }

  terminate(): void {
    this.#worker.terminate();
    this.#fail(new Error("the network worker was stopped"));
  }

  #fail(error: Error): void {
    this.#failure ??= error;
    for (const waiter of this.#pending.values()) waiter.reject(error);
    this.#pending.clear();
  }
}
