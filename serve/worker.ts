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

import type { ModelCard } from "../model/card.ts";
import type { WorkerReply, WorkerRequest } from "./network_worker.ts";
import { batchedDenoiser, type NetworkCall } from "../model/batcher.ts";
import type { ExecutionProvider } from "../model/onnx.ts";
import { newWebWorker } from "../model/web_worker.ts";
import {
  type GpuAdapterSummary,
  probeWebGpu,
  providerCandidates,
  type ProviderChoice,
  type ProviderInfo,
} from "./provider.ts";
import { type ModelRegistry, type ModelSource, servedModel } from "./registry.ts";

/** Options of {@linkcode loadWorkerRegistry}. */
export interface WorkerRegistryOptions {
  /** Most images in one network call, >= 1. Default 64. */
  readonly maxBatch?: number;
  /** Merge concurrent requests' network calls. Default true. */
  readonly merge?: boolean;
  /** Threads the network computes with, >= 1. Default: the machine's cores. */
  readonly threads?: number;
  /** Called before each network call with its model, rows and how many calls share it. */
  readonly onBatch?: (model: string, rows: number, callers: number) => void;
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
  const passedOver: string[] = [];
  for (const candidate of candidates) {
    let worker: NetworkWorker;
    try {
      worker = await startNetworkWorker(sources, candidate.name, threads);
    } catch (error) {
      passedOver.push(`${candidate.name} failed to start (${(error as Error).message})`);
      continue;
    }
    const reason = [candidate.reason, ...passedOver].join("; ") +
      `; ${threads} thread${threads === 1 ? "" : "s"}`;
    const provider: ProviderInfo = { ...candidate, reason, threads };
    let open = sources.length;
    try {
      const models = sources.map(({ name }, index) => {
        const card = worker.cards[index];
        const onBatch = options.onBatch;
        const denoiser = batchedDenoiser(worker.network(index), {
          maxBatch,
          merge: options.merge,
          nullLabel: card.config.numClasses ?? 0,
          onBatch: onBatch && ((rows, callers) => onBatch(name, rows, callers)),
        });
        let closed = false;
        const close = async () => {
          if (closed) return;
          closed = true;
          if (--open === 0) await worker.close();
        };
        return servedModel(name, card, denoiser, close);
      });
      return { provider, models };
    } catch (error) {
      await worker.close();
      throw error;
    }
  }
  throw new Error(`no execution provider started: ${passedOver.join("; ")}`);
}

/** A worker with every model's session loaded. */
export interface NetworkWorker {
  /** The models' cards, in the order of the sources. */
  readonly cards: readonly ModelCard[];
  /** Model `index`'s network, one call per message, unbatched and unpadded. */
  network(index: number): NetworkCall;
  /** Releases the sessions and stops the worker. */
  close(): Promise<void>;
}

/**
 * Starts a worker and loads every model's session there on `provider` with `threads` threads;
 * rejects with the worker's error (and stops it) when a session does not start.
 */
export async function startNetworkWorker(
  sources: readonly ModelSource[],
  provider: ExecutionProvider,
  threads: number,
): Promise<NetworkWorker> {
  const client = new _WorkerClient();
  let reply;
  try {
    reply = await client.request({ kind: "load", id: 0, provider, threads, models: sources });
  } catch (error) {
    client.terminate();
    throw error;
  }
  return {
    cards: (reply as { cards: readonly ModelCard[] }).cards,
    network: (index) => async (x, t, labels, shape) => {
      const result = await client.request(
        { kind: "run", id: 0, model: index, x, t, labels, shape },
        [x.buffer, t.buffer, labels.buffer] as ArrayBuffer[],
      );
      return (result as { out: Float32Array }).out;
    },
    close: async () => {
      await client.request({ kind: "close", id: 0 }).catch(() => {});
      client.terminate();
    },
  };
}

/** Requests to the worker and their replies, matched by id. */
class _WorkerClient {
  readonly #worker = newWebWorker(new URL("./network_worker.ts", import.meta.url), {
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
