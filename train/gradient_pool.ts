/**
 * Data-parallel gradients on every core: a pool of gradient workers (`gradient_worker.ts`), each
 * with its own tfjs WebAssembly backend, that split each batch into contiguous shares and return
 * their gradients through shared memory. The trainer reduces them in a fixed order (worker 1,
 * then 2, ...), so the same seed, data and worker count give the same bits on every run.
 *
 * A worker that fails (an error in its step, or the thread dying) fails the step with a message
 * naming it, and the pool refuses every later step: the caller ends the run, and the checkpoints
 * already written are untouched.
 *
 * @module
 */

import { newWebWorker } from "../model/web_worker.ts";
import type { ParamLayout } from "./optimizer.ts";
import { type LossSetup, type LossValues, sliceInputs, type StepInputs } from "./step.ts";
import type { WorkerInit, WorkerReply, WorkerStep } from "./gradient_worker.ts";

/** Options of {@linkcode GradientPool.start}. */
export interface GradientPoolOptions {
  /** Worker threads. */
  workers: number;
  setup: LossSetup;
  layout: ParamLayout;
  /** The weights, flat in `layout` order, in a `SharedArrayBuffer` the caller keeps updating. */
  params: Float32Array;
  /** The worker's module; tests substitute one that fails on purpose. */
  workerModule?: URL;
}

/** A batch's share for each worker: contiguous, sizes differing by at most one. */
export function shareBatch(n: number, workers: number): { start: number; end: number }[] {
  const shares = [];
  let start = 0;
  for (let k = 0; k < workers; k++) {
    const size = Math.floor(n / workers) + (k < n % workers ? 1 : 0);
    shares.push({ start, end: start + size });
    start += size;
  }
  return shares;
}

interface Pending {
  resolve: (losses: LossValues) => void;
  reject: (error: Error) => void;
}

/** Running gradient workers. */
export class GradientPool {
  /** Each worker's gradients, flat in layout order (shared with the worker). */
  readonly #grads: Float32Array[];
  readonly #workers: Worker[];
  readonly #pending: (Pending | null)[];
  #nextId = 0;
  #failure: Error | null = null;

  private constructor(workers: Worker[], grads: Float32Array[]) {
    this.#workers = workers;
    this.#grads = grads;
    this.#pending = workers.map(() => null);
    workers.forEach((worker, k) => {
      worker.onmessage = (event: MessageEvent<WorkerReply>) => this.#onReply(k, event.data);
      worker.onerror = (event: ErrorEvent) => {
        event.preventDefault(); // the pool reports it; the process goes on to save nothing new
        this.#fail(k, `stopped: ${event.message}`);
      };
      worker.onmessageerror = () => this.#fail(k, "sent a message that could not be read");
    });
  }

  /** Starts the workers and waits until each has its backend and weights. */
  static async start(options: GradientPoolOptions): Promise<GradientPool> {
    const { workers: count, layout, setup, params } = options;
    if (!Number.isInteger(count) || count < 1) {
      throw new RangeError(`workers must be an integer >= 1, got ${count}`);
    }
    if (!(params.buffer instanceof SharedArrayBuffer) || params.length !== layout.total) {
      throw new RangeError(`params must be a shared buffer of ${layout.total} values`);
    }
    const url = options.workerModule ?? new URL("./gradient_worker.ts", import.meta.url);
    const workers: Worker[] = [];
    const grads: Float32Array[] = [];
    try {
      const started = [];
      for (let k = 0; k < count; k++) {
        const worker = newWebWorker(url.href, {
          type: "module",
          name: `gradient worker ${k + 1}`,
        });
        workers.push(worker);
        const buffer = new SharedArrayBuffer(layout.total * 4);
        grads.push(new Float32Array(buffer));
        started.push(
          new Promise<void>((resolve, reject) => {
            worker.onmessage = (event: MessageEvent<WorkerReply>) => {
              const reply = event.data;
              if (reply.kind === "ready") resolve();
              else reject(new Error(`gradient worker ${k + 1} of ${count}: ${_text(reply)}`));
            };
            worker.onerror = (event: ErrorEvent) => {
              event.preventDefault();
              reject(new Error(`gradient worker ${k + 1} of ${count} failed: ${event.message}`));
            };
          }),
        );
        const init: WorkerInit = {
          kind: "init",
          setup,
          layout,
          params: params.buffer as SharedArrayBuffer,
          grads: buffer,
        };
        worker.postMessage(init);
      }
      await Promise.all(started);
      return new GradientPool(workers, grads);
    } catch (error) {
      workers.forEach((w) => w.terminate());
      throw error;
    }
  }

  /** Number of workers. */
  get size(): number {
    return this.#workers.length;
  }

  /**
   * The loss of `inputs` (its parts, see `LossValues`) and its gradient, written to `into`
   * (flat, layout order): each worker computes the mean loss of its share, and the batch's gradient is their sum weighted by the
   * shares' sizes, accumulated in float32 in worker order. With one worker, `into` holds exactly
   * that worker's gradient.
   */
  async gradients(inputs: StepInputs, into: Float32Array): Promise<LossValues> {
    if (this.#failure) throw this.#failure;
    const n = inputs.shape[0];
    const shares = shareBatch(n, this.size).map((share, k) => ({ ...share, k }))
      .filter(({ start, end }) => end > start);
    const losses = await Promise.all(
      shares.map(({ start, end, k }) =>
        new Promise<LossValues>((resolve, reject) => {
          this.#pending[k] = { resolve, reject };
          const step: WorkerStep = {
            kind: "step",
            id: this.#nextId++,
            inputs: sliceInputs(inputs, start, end),
          };
          this.#workers[k].postMessage(step);
        })
      ),
    );
    const f = Math.fround;
    let loss = 0, vb = 0;
    shares.forEach(({ start, end, k }, i) => {
      const weight = f((end - start) / n);
      const grads = this.#grads[k];
      loss += ((end - start) / n) * losses[i].loss;
      vb += ((end - start) / n) * (losses[i].vb ?? 0);
      if (i === 0) {
        for (let j = 0; j < into.length; j++) into[j] = f(grads[j] * weight);
      } else {
        for (let j = 0; j < into.length; j++) into[j] = f(into[j] + f(grads[j] * weight));
      }
    });
    return losses[0].vb === undefined ? { loss } : { loss, vb };
  }

  /** Stops every worker. */
  terminate(): void {
    this.#workers.forEach((w) => w.terminate());
    this.#fail(-1, "was stopped");
  }

  #onReply(k: number, reply: WorkerReply): void {
    if (reply.kind !== "done") return this.#fail(k, _text(reply));
    this.#pending[k]?.resolve(reply.losses);
    this.#pending[k] = null;
  }

  /** Marks the pool failed (worker `k`, or the whole pool for -1) and rejects what waits. */
  #fail(k: number, what: string): void {
    const error = this.#failure ??
      new Error(
        k < 0 ? `the gradient pool ${what}` : `gradient worker ${k + 1} of ${this.size} ${what}`,
      );
    this.#failure = error;
    this.#pending.forEach((p) => p?.reject(error));
    this.#pending.fill(null);
    if (k >= 0) this.#workers.forEach((w) => w.terminate());
  }
}

function _text(reply: WorkerReply): string {
  return reply.kind === "failed"
    ? `failed: ${reply.message}`
    : `answered ${reply.kind} unexpectedly`;
}
