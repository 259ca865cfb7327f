/**
 * Fairness between clients: at most `maxJobsPerClient` jobs running and waiting per client, so
 * one client cannot take every place in the job queue. A client is its API key when the
 * server has keys, else its network address.
 *
 * @module
 */

import { HttpError } from "./errors.ts";

/**
 * Jobs held per client. {@linkcode take} counts one more or throws a 429 `HttpError`; the
 * function it returns gives the place back (once, however often it is called).
 *
 * @example
 * ```ts
 * import { ClientJobs } from "./clients.ts";
 * const jobs = new ClientJobs(1);
 * const release = jobs.take("10.0.0.1");
 * release();
 * console.assert(jobs.held("10.0.0.1") === 0);
 * ```
 */
export class ClientJobs {
  readonly #max: number;
  readonly #held = new Map<string, number>();

  constructor(maxJobsPerClient: number) {
    if (!Number.isInteger(maxJobsPerClient) || maxJobsPerClient < 1) {
      throw new RangeError(`maxJobsPerClient must be an integer >= 1, got ${maxJobsPerClient}`);
    }
    this.#max = maxJobsPerClient;
  }

  /** Jobs `client` holds now. */
  held(client: string): number {
    return this.#held.get(client) ?? 0;
  }

  /** Takes a place for `client`, or throws 429 when it already holds the most allowed. */
  take(client: string, retryAfterSeconds = 1): () => void {
    const held = this.held(client);
    if (held >= this.#max) {
      throw new HttpError(
        429,
        "too_many_jobs",
        `this client (${client}) already has ${held} jobs running or waiting, the most allowed per client; retry when one finishes`,
        { "Retry-After": String(retryAfterSeconds) },
      );
    }
    this.#held.set(client, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = this.held(client) - 1;
      if (left > 0) this.#held.set(client, left);
      else this.#held.delete(client);
    };
  }
}
