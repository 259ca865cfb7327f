/**
 * The life of a job that runs the network, the same for a plain response and a stream: a
 * place in the client's share of the queue and in the queue itself, taken before any response
 * starts (so a refusal is an ordinary 429), a deadline, a stop when the client goes, and a
 * release on every path. A plain response holds its job while the handler awaits it
 * ({@linkcode Jobs.run}); a stream holds it for the stream's life ({@linkcode Jobs.open}).
 *
 * @module
 */

import type { Context } from "hono";
import { ClientJobs } from "../clients.ts";
import { HttpError } from "../errors.ts";
import { deadline, JobQueue, QueueFullError, type Reservation } from "../jobs.ts";
import type { Limits } from "../limits.ts";
import type { AppEnv } from "../middleware.ts";

/** One job's hold on the server, from {@linkcode Jobs.open} until `release`. */
export interface Job {
  /** Aborts at the time limit, or when the client goes. */
  readonly signal: AbortSignal;
  /** Resolves when the job may start; rejects with the signal's reason if it aborts first. */
  readonly ready: Promise<void>;
  /** True once the client has gone, so nobody reads an answer. */
  disconnected(): boolean;
  /** Stops the job because the client went (a stream whose reader cancelled). */
  disconnect(): void;
  /**
   * What a failure of this job becomes: a full queue is 429, the time limit 503, a client that
   * left 499 (nginx's "client closed request"; nobody reads it); anything else stays as it is.
   */
  failure(error: unknown): unknown;
  /** Frees the queue place, the client's share, the timer and the listener. Idempotent. */
  release(): void;
}

/** The jobs of one server: its queue, each client's share of it, and the time limit. */
export class Jobs {
  readonly #queue: JobQueue;
  readonly #clients: ClientJobs;
  readonly #timeoutMs: number;

  constructor(queue: JobQueue, limits: Pick<Limits, "maxJobsPerClient" | "timeoutMs">) {
    this.#queue = queue;
    this.#clients = new ClientJobs(limits.maxJobsPerClient);
    this.#timeoutMs = limits.timeoutMs;
  }

  /**
   * Takes the client's place and a queue place for the request in `c`, or throws its 429 at
   * once (`too_many_jobs`, `queue_full`).
   */
  open(c: Context<AppEnv>): Job {
    const queue = this.#queue;
    const request = c.req.raw.signal;
    const gone = new AbortController();
    const onRequestAbort = () => gone.abort(request.reason);
    if (request.aborted) onRequestAbort();
    else request.addEventListener("abort", onRequestAbort, { once: true });
    const { signal, dispose } = deadline(gone.signal, this.#timeoutMs);
    const failure = (error: unknown) => _jobError(error, signal, queue);
    let reservation: Reservation | undefined;
    let releaseClient = () => {};
    const release = () => {
      reservation?.release();
      releaseClient();
      dispose();
      request.removeEventListener("abort", onRequestAbort);
    };
    try {
      releaseClient = this.#clients.take(_client(c), queue.retryAfterSeconds());
      reservation = queue.reserve(signal);
    } catch (error) {
      release();
      throw failure(error);
    }
    return {
      signal,
      ready: reservation.ready,
      disconnected: () => gone.signal.aborted,
      disconnect: () => gone.abort(new DOMException("the client disconnected", "AbortError")),
      failure,
      release,
    };
  }

  /** Runs `work` as a job of the request in `c`: queued, under the time limit, then released. */
  async run<T>(c: Context<AppEnv>, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const job = this.open(c);
    try {
      await job.ready;
      return await work(job.signal);
    } catch (error) {
      throw job.failure(error);
    } finally {
      job.release();
    }
  }
}

/**
 * Who a request counts against for per-client limits: its API key (`key 1`, ...) when the
 * server has keys, else its address as `Deno.serve` passes it (`app.fetch(request, info)`
 * makes `info` Hono's `c.env`); `local` for `app.request()` without one.
 */
function _client(c: Context<AppEnv>): string {
  const key = c.get("apiKey");
  if (key) return key;
  const env = c.env as { remoteAddr?: { hostname?: string } } | undefined;
  return env?.remoteAddr?.hostname ?? "local";
}

function _jobError(error: unknown, signal: AbortSignal, queue: JobQueue): unknown {
  if (error instanceof QueueFullError) {
    return new HttpError(
      429,
      "queue_full",
      `${queue.stats().running} jobs are running and ${queue.stats().waiting} waiting; retry in about ${error.retryAfterSeconds} s`,
      { "Retry-After": String(error.retryAfterSeconds) },
    );
  }
  if (signal.aborted && error === signal.reason) {
    const reason = signal.reason as DOMException;
    if (reason.name === "TimeoutError") {
      return new HttpError(
        503,
        "timeout",
        `${reason.message}; ask for fewer images or steps`,
        { "Retry-After": String(queue.retryAfterSeconds()) },
      );
    }
    return new HttpError(499, "client_closed_request", "the client disconnected");
  }
  return error;
}
