/**
 * The real gradient worker, except that the second worker of a pool throws an uncaught error
 * on its third step, as a worker that runs out of memory or hits a bug would: the trainer must
 * end the run with a message naming it. Used by `train_workers_test.ts`.
 */

/// <reference lib="deno.worker" />

import "../train/gradient_worker.ts";

const scope = self as unknown as DedicatedWorkerGlobalScope;
const real = scope.onmessage;
let steps = 0;
scope.onmessage = (event: MessageEvent) => {
  if (event.data.kind === "step" && ++steps === 3 && scope.name === "gradient worker 2") {
    setTimeout(() => {
      throw new Error("simulated crash in the worker");
    });
    return;
  }
  return real?.call(scope, event);
};
