/**
 * Choosing and starting a TensorFlow.js backend, and saying honestly what was found.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import "@tensorflow/tfjs-backend-webgpu";
import { type AdapterInfo, adapterName, findWebGpuAdapter } from "../model/webgpu.ts";
import { registerWasmKernels } from "./wasm_kernels.ts";

/** What `--backend` accepts. */
export type BackendChoice = "auto" | "webgpu" | "wasm" | "cpu";
/** Every choice, for validation and help text. */
export const BACKEND_CHOICES: readonly BackendChoice[] = ["auto", "webgpu", "wasm", "cpu"];

/** The backend that was started. */
export interface BackendInfo {
  readonly name: "webgpu" | "wasm" | "cpu";
  readonly adapter?: AdapterInfo;
  /** One line for a person: the backend, the adapter and any warning. */
  readonly summary: string;
}

/**
 * Starts a backend. `auto` takes WebGPU on a hardware adapter; with only a software adapter
 * (or none) it takes WebAssembly, whose XNNPACK convolutions (with the gradient kernels of
 * `wasm_kernels.ts`) train about 10x faster than WebGPU on a CPU.
 */
export async function initBackend(choice: BackendChoice): Promise<BackendInfo> {
  if (!BACKEND_CHOICES.includes(choice)) {
    throw new RangeError(`backend must be one of ${BACKEND_CHOICES.join(", ")}, got ${choice}`);
  }
  // Warnings such as tfjs's advice to install its Node.js add-on do not apply under Deno.
  tf.enableProdMode();
  registerWasmKernels();
  const adapter = choice === "auto" || choice === "webgpu" ? await findWebGpuAdapter() : null;
  let name: BackendInfo["name"];
  if (choice === "webgpu" || (choice === "auto" && adapter && !adapter.software)) {
    if (!adapter) {
      throw new Error("--backend webgpu: no WebGPU adapter found (navigator.gpu gave none)");
    }
    name = "webgpu";
  } else if (choice === "cpu") {
    name = "cpu";
  } else {
    name = "wasm";
  }
  if (!(await tf.setBackend(name))) throw new Error(`the tfjs ${name} backend failed to start`);
  await tf.ready();

  let summary = `backend ${name}`;
  if (name === "webgpu" && adapter) {
    summary += ` on ${adapterName(adapter)}`;
    if (adapter.software) summary += " (a software adapter: correct but slow, about 1 GFLOP/s)";
  } else if (name === "wasm") {
    summary += choice === "auto"
      ? adapter
        ? ` (WebGPU has only the software adapter ${adapter.description}; WebAssembly is faster)`
        : " (no WebGPU adapter)"
      : "";
    summary += `, ${
      tf.env().getBool("WASM_HAS_MULTITHREAD_SUPPORT") ? "multi" : "single"
    }-threaded`;
  } else if (name === "cpu") {
    summary += " (very slow: tens of MFLOP/s)";
  }
  return { name, adapter: name === "webgpu" ? adapter ?? undefined : undefined, summary };
}

/**
 * How many gradient workers to train with. They run tfjs's WebAssembly backend (its threaded
 * build cannot start under Deno, so threads come from workers instead): `auto` is one per core
 * on `wasm` and none on WebGPU (one device) or the plain CPU backend; a number above 0 needs
 * `wasm`.
 */
export function gradientWorkers(
  requested: number | "auto",
  backend: BackendInfo["name"],
): number {
  if (requested === "auto") {
    return backend === "wasm" ? Math.max(1, navigator.hardwareConcurrency || 1) : 0;
  }
  if (!Number.isInteger(requested) || requested < 0) {
    throw new RangeError(`--workers must be auto or an integer >= 0, got ${requested}`);
  }
  if (requested > 0 && backend !== "wasm") {
    throw new RangeError(
      `--workers ${requested} needs the wasm backend (gradient workers run tfjs on WebAssembly); ` +
        `the ${backend} backend trains in the main thread: use --workers 0 or --backend wasm`,
    );
  }
  return requested;
}
