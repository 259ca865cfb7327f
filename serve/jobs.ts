/**
 * A bounded job queue: at most `concurrency` jobs run, at most `queueSize` wait, and one more
 * is refused at once with an estimate of when to retry. A job whose signal aborts while it
 * waits leaves the queue; one that aborts while it runs frees its slot as soon as it returns.
 *
 * @module
 */

/** Thrown when every running slot and every waiting place is taken. */
export class QueueFullError extends Error {
  /** @param retryAfterSeconds when a slot is likely to be free, a whole number >= 1 */
  constructor(readonly retryAfterSeconds: number) {
    super(`the job queue is full; retry in about ${retryAfterSeconds} s`);
    this.name = "QueueFullError";
  }
}

/** Options of {@linkcode JobQueue}. */
export interface JobQueueOptions {
  /** Jobs running at once, >= 1. */
  readonly concurrency: number;
  /** Jobs waiting for a slot, >= 0. */
  readonly queueSize: number;
  /** Milliseconds since some origin. Default `performance.now`. */
  readonly now?: () => number;
  /** The job duration assumed before any job has finished, in seconds. Default 5. */
  readonly initialJobSeconds?: number;
}

/** What the queue holds now (`GET /healthz` reports it). */
export interface QueueStats {
  readonly running: number;
  readonly waiting: number;
  readonly concurrency: number;
  readonly queueSize: number;
}

/** A place in the queue: wait for `ready`, do the work, then `release` (idempotent). */
export interface Reservation {
  /** Resolves when the job may start; rejects with the signal's reason if it aborts first. */
  readonly ready: Promise<void>;
  /** Frees the slot (or the waiting place). Safe to call more than once. */
  release(): void;
}

interface _Waiter {
  start(): void;
}

/**
 * The queue. Durations of finished jobs feed a running mean that sets `Retry-After`.
 *
 * @example
 * ```ts
 * import { JobQueue } from "./jobs.ts";
 * const queue = new JobQueue({ concurrency: 1, queueSize: 0 });
 * const result = await queue.run(new AbortController().signal, () => Promise.resolve(42));
 * console.assert(result === 42);
 * ```
 */
export class JobQueue {
  readonly #concurrency: number;
  readonly #queueSize: number;
  readonly #now: () => number;
  readonly #waiting: _Waiter[] = [];
  #running = 0;
  #meanJobSeconds: number;

  constructor(options: JobQueueOptions) {
    const { concurrency, queueSize } = options;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError(`concurrency must be an integer >= 1, got ${concurrency}`);
    }
    if (!Number.isInteger(queueSize) || queueSize < 0) {
      throw new RangeError(`queueSize must be an integer >= 0, got ${queueSize}`);
    }
    this.#concurrency = concurrency;
    this.#queueSize = queueSize;
    this.#now = options.now ?? (() => performance.now());
    this.#meanJobSeconds = options.initialJobSeconds ?? 5;
  }

  /** Running and waiting jobs. */
  stats(): QueueStats {
    return {
      running: this.#running,
      waiting: this.#waiting.length,
      concurrency: this.#concurrency,
      queueSize: this.#queueSize,
    };
  }

  /**
   * Seconds until a slot is likely to be free: the mean job time, times the rounds of jobs
   * ahead (the waiting ones spread over the slots, plus the running round).
   */
  retryAfterSeconds(): number {
    const rounds = 1 + this.#waiting.length / this.#concurrency;
    return Math.max(1, Math.ceil(this.#meanJobSeconds * rounds));
  }

  /**
   * Takes a place now or throws {@linkcode QueueFullError}, synchronously, so a caller can
   * answer 429 before it starts a response.
   */
  reserve(signal: AbortSignal): Reservation {
    signal.throwIfAborted();
    let state: "waiting" | "running" | "done" = "waiting";
    let startedAt = 0;
    const start = () => {
      state = "running";
      this.#running++;
      startedAt = this.#now();
    };
    const release = () => {
      if (state === "running") {
        this.#running--;
        // An exponential mean over the last ~5 jobs follows load changes without jitter.
        const seconds = (this.#now() - startedAt) / 1000;
        this.#meanJobSeconds += 0.2 * (seconds - this.#meanJobSeconds);
        this.#startNext();
      } else if (state === "waiting") {
        const index = this.#waiting.indexOf(waiter);
        if (index >= 0) this.#waiting.splice(index, 1);
      }
      state = "done";
    };
    let waiter: _Waiter = { start };
    if (this.#running < this.#concurrency) {
      start();
      return { ready: Promise.resolve(), release };
    }
    if (this.#waiting.length >= this.#queueSize) {
      throw new QueueFullError(this.retryAfterSeconds());
    }
    const ready = new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        release();
        reject(signal.reason);
      };
      waiter = {
        start: () => {
          signal.removeEventListener("abort", onAbort);
          start();
          resolve();
        },
      };
      signal.addEventListener("abort", onAbort, { once: true });
    });
    this.#waiting.push(waiter);
    return { ready, release };
  }

  /** Reserves a place (or throws {@linkcode QueueFullError}), waits for it, runs `job`, frees it. */
  async run<T>(signal: AbortSignal, job: () => Promise<T>): Promise<T> {
    const reservation = this.reserve(signal);
    try {
      await reservation.ready;
      return await job();
    } finally {
      reservation.release();
    }
  }

  #startNext(): void {
    while (this.#running < this.#concurrency && this.#waiting.length > 0) {
      const next = this.#waiting.shift() as _Waiter;
      next.start();
    }
  }
}

/**
 * A signal that aborts when `parent` does or after `ms` milliseconds, whichever comes first,
 * with a `TimeoutError` `DOMException` in the second case. Call `dispose` when done so no timer
 * outlives the request.
 */
export function deadline(
  parent: AbortSignal,
  ms: number,
): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const onAbort = () => controller.abort(parent.reason);
  if (parent.aborted) onAbort();
  else parent.addEventListener("abort", onAbort, { once: true });
  const timer = setTimeout(
    () => controller.abort(new DOMException(`the job ran past its ${ms} ms limit`, "TimeoutError")),
    ms,
  );
  return {
    signal: controller.signal,
    dispose: () => {
      clearTimeout(timer);
      parent.removeEventListener("abort", onAbort);
    },
  };
}
