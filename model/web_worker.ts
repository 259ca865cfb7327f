/**
 * Workers made with the runtime's own web `Worker` constructor, taken when this module is first
 * loaded, for every module that starts workers: the server's network and decoding workers and
 * the trainer's gradient workers.
 *
 * Why it is kept: onnxruntime-web's WebAssembly set-up takes Deno for Node (its Emscripten build)
 * and replaces `globalThis.Worker` with Deno's `node:worker_threads` adapter, whose workers have
 * no `self` and never answer `postMessage` from a web worker module (measured with
 * onnxruntime-web 1.30.0: a worker made after an in-process session never replied). A process
 * that has run a session (the edge entry, tests, `deno task eval`, which may train afterwards)
 * would otherwise start its next workers broken. Importing this module before any session
 * starts, as a static import does, keeps the real one.
 *
 * @module
 */

const _WebWorker: typeof Worker | undefined = globalThis.Worker;

/**
 * `new Worker(specifier, options)` with the runtime's own web `Worker`; throws a `TypeError` on
 * a runtime without workers.
 */
export function newWebWorker(specifier: string | URL, options?: WorkerOptions): Worker {
  if (_WebWorker === undefined) throw new TypeError("this runtime has no web Worker");
  return new _WebWorker(specifier, options);
}
