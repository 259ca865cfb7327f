/**
 * The bounds on the work one request may ask for and on the work the server takes on at once.
 * Every request schema and the job queue read them, so the OpenAPI document states the real
 * maxima.
 *
 * @module
 */

/** Bounds of the server; see {@linkcode DEFAULT_LIMITS} for the defaults. */
export interface Limits {
  /**
   * Images per sampling request (`n`): the network's batch. A guided image (a class and
   * guidance > 0) is evaluated with and without its class, so it counts twice.
   */
  readonly maxImages: number;
  /** Network evaluations per sampling or interpolation request (`steps`). */
  readonly maxSteps: number;
  /**
   * Frames of a noising strip (timesteps) or an interpolation (lambdas); a guided frame counts
   * twice, as a guided image does in `maxImages`.
   */
  readonly maxFrames: number;
  /** Request body size in bytes (uploads included). */
  readonly maxBodyBytes: number;
  /** Pixels of an uploaded image, checked from its header before it is decoded. */
  readonly maxImagePixels: number;
  /**
   * Jobs that run the network at the same time. Their network calls are merged into shared
   * batches (`model/batcher.ts`), so more running jobs means larger, cheaper-per-image calls.
   */
  readonly concurrency: number;
  /** Jobs that may wait for a free slot; one more gets 429. */
  readonly queueSize: number;
  /** Time a job may take, waiting in the queue included, in milliseconds. */
  readonly timeoutMs: number;
  /**
   * Jobs one client (an API key, else an address) may have running and waiting at once; one
   * more gets 429 `too_many_jobs`, so no client holds every place in the queue.
   */
  readonly maxJobsPerClient: number;
}

/**
 * The defaults: 64 images, 1000 steps (the paper's T), 32 frames, 8 MiB bodies, 4 megapixel
 * uploads, 8 jobs running (eight 4-image requests fill half of a 64-image batch) and 8
 * waiting, 2 minutes per job, 4 jobs per client. On two CPU cores a 16-image, 50-step DDIM
 * request on the mnist network takes about a second on native onnxruntime (README, Serving).
 */
export const DEFAULT_LIMITS: Limits = {
  maxImages: 64,
  maxSteps: 1000,
  maxFrames: 32,
  maxBodyBytes: 8 * 1024 * 1024,
  maxImagePixels: 2048 * 2048,
  concurrency: 8,
  queueSize: 8,
  timeoutMs: 120_000,
  maxJobsPerClient: 4,
};

/** Fills the unset fields from {@linkcode DEFAULT_LIMITS} and checks each is a positive integer. */
export function resolveLimits(limits: Partial<Limits> = {}): Limits {
  const resolved: Limits = { ...DEFAULT_LIMITS, ...limits };
  for (const [name, value] of Object.entries(resolved)) {
    const least = name === "queueSize" ? 0 : 1;
    if (!Number.isInteger(value) || value < least) {
      throw new RangeError(`limits.${name} must be an integer >= ${least}, got ${value}`);
    }
  }
  return resolved;
}
