/**
 * Which execution provider the server runs on. `auto` tries, in order: onnxruntime-web on WebGPU
 * when the machine has a hardware adapter, native onnxruntime (onnxruntime-node) where it loads,
 * then onnxruntime-web on WebAssembly. A software adapter (Mesa's llvmpipe, SwiftShader, a
 * fallback adapter) counts as none: it computes correctly but far slower than WebAssembly.
 *
 * The probe is the trainer's too (`model/webgpu.ts`), so the two agree on what a software
 * adapter is.
 *
 * @module
 */

import type { ExecutionProvider } from "../model/onnx.ts";
import { adapterName, findWebGpuAdapter } from "../model/webgpu.ts";

/** What `--provider` and `DDPM_PROVIDER` accept. */
export type ProviderChoice = "auto" | ExecutionProvider;
/** Every choice, for validation and help text. */
export const PROVIDER_CHOICES: readonly ProviderChoice[] = ["auto", "wasm", "webgpu", "native"];

/** A WebGPU adapter as the runtime describes it. */
export interface GpuAdapterSummary {
  /** The adapter's description, device or vendor, whichever the runtime fills in. */
  readonly name: string;
  /** A CPU implementation of WebGPU: correct, slow. */
  readonly software: boolean;
}

/** The provider the server uses and why; `GET /v1/models` reports it. */
export interface ProviderInfo {
  readonly name: ExecutionProvider;
  /** What was asked for. */
  readonly requested: ProviderChoice;
  /** The WebGPU adapter found, or null when there is none (or none was looked for). */
  readonly adapter: GpuAdapterSummary | null;
  /** One line for a person. */
  readonly reason: string;
  /** Threads the network computes with (WebAssembly threads, or native intra-op threads). */
  readonly threads?: number;
}

/** Asks the runtime for a WebGPU adapter; null when WebGPU or an adapter is missing. */
export async function probeWebGpu(): Promise<GpuAdapterSummary | null> {
  const adapter = await findWebGpuAdapter();
  return adapter && { name: adapterName(adapter), software: adapter.software };
}

/**
 * Chooses the execution provider for a runtime without native code (the edge entry, tests):
 * `auto` takes WebGPU only on a hardware adapter, else WebAssembly; `webgpu` insists (a
 * software adapter is accepted when asked for by name, so it can be tested); `wasm` and
 * `native` never probe. `probe` is injectable for tests. The server's worker runtime tries
 * {@linkcode providerCandidates} instead, which puts native before WebAssembly.
 *
 * @example
 * ```ts
 * import { chooseProvider } from "./provider.ts";
 * const info = await chooseProvider("auto", () => Promise.resolve(null));
 * console.assert(info.name === "wasm");
 * ```
 */
export async function chooseProvider(
  requested: ProviderChoice,
  probe: () => Promise<GpuAdapterSummary | null> = probeWebGpu,
): Promise<ProviderInfo> {
  if (!PROVIDER_CHOICES.includes(requested)) {
    throw new RangeError(
      `provider must be one of ${PROVIDER_CHOICES.join(", ")}, got ${requested}`,
    );
  }
  switch (requested) {
    case "wasm":
      return { name: "wasm", requested, adapter: null, reason: "WebAssembly, as asked" };
    case "native":
      return { name: "native", requested, adapter: null, reason: "onnxruntime-node, as asked" };
    case "webgpu": {
      const adapter = await probe();
      if (!adapter) {
        throw new Error(
          "--provider webgpu: no WebGPU adapter found; use --provider wasm or auto",
        );
      }
      const note = adapter.software ? " (a software adapter: slower than WebAssembly)" : "";
      return { name: "webgpu", requested, adapter, reason: `WebGPU on ${adapter.name}${note}` };
    }
    case "auto": {
      const adapter = await probe();
      if (adapter && !adapter.software) {
        return { name: "webgpu", requested, adapter, reason: `WebGPU on ${adapter.name}` };
      }
      const reason = adapter
        ? `WebAssembly: the only WebGPU adapter, ${adapter.name}, is a software one`
        : "WebAssembly: no WebGPU adapter";
      return { name: "wasm", requested, adapter, reason };
    }
    default: {
      const unknown: never = requested;
      throw new RangeError(`unknown provider ${unknown}`);
    }
  }
}

/**
 * The providers to try, in order, for `requested`: `auto` gives WebGPU on a hardware adapter,
 * then native onnxruntime, then WebAssembly; a named provider gives itself alone. Each
 * candidate's reason says why it is tried; the loader (`serve/worker.ts`) takes the first whose
 * sessions start and appends why the earlier ones failed.
 *
 * @example
 * ```ts
 * import { providerCandidates } from "./provider.ts";
 * const order = await providerCandidates("auto", () => Promise.resolve(null));
 * console.assert(order.map((p) => p.name).join() === "native,wasm");
 * ```
 */
export async function providerCandidates(
  requested: ProviderChoice,
  probe: () => Promise<GpuAdapterSummary | null> = probeWebGpu,
): Promise<ProviderInfo[]> {
  if (requested !== "auto") return [await chooseProvider(requested, probe)];
  const adapter = await probe();
  const gpu = adapter === null
    ? "no WebGPU adapter"
    : adapter.software
    ? `the only WebGPU adapter, ${adapter.name}, is a software one`
    : null;
  const candidates: ProviderInfo[] = [];
  if (adapter && !adapter.software) {
    candidates.push({ name: "webgpu", requested, adapter, reason: `WebGPU on ${adapter.name}` });
  }
  candidates.push(
    { name: "native", requested, adapter, reason: `onnxruntime-node: ${gpu ?? "after WebGPU"}` },
    { name: "wasm", requested, adapter, reason: `WebAssembly: ${gpu ?? "after WebGPU"}` },
  );
  return candidates;
}
