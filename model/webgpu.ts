/**
 * The WebGPU adapter probe of both the trainer (`train/backend.ts`, which picks a tfjs backend)
 * and the server (`serve/provider.ts`, which picks an onnxruntime execution provider). Both ask
 * the same question, whether there is a hardware adapter, and must answer it alike: a software
 * adapter (Mesa's llvmpipe, SwiftShader, a fallback adapter) computes correctly but far slower
 * than WebAssembly, so it counts as none when choosing automatically.
 *
 * No tfjs and no onnxruntime here: the server must not load tfjs.
 *
 * @module
 */

/** The WebGPU adapter as the runtime describes it. */
export interface AdapterInfo {
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
  /** A CPU implementation of WebGPU (llvmpipe, SwiftShader, a fallback adapter): correct, slow. */
  readonly software: boolean;
}

const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|swiftshader|software|softpipe/i;

/** Describes the system's WebGPU adapter, or returns null when WebGPU or an adapter is missing. */
export async function findWebGpuAdapter(): Promise<AdapterInfo | null> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) return null;
  const adapter = await gpu.requestAdapter().catch(() => null);
  if (!adapter) return null;
  const info = adapter.info;
  const text = [info.vendor, info.architecture, info.device, info.description].join(" ");
  // `isFallbackAdapter` is the standard flag; Deno reports llvmpipe only by name.
  const fallback = (info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter ??
    false;
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    software: fallback || SOFTWARE_ADAPTER.test(text),
  };
}

/** The adapter's name for a person: its description, device or vendor, whichever is filled in. */
export function adapterName(adapter: AdapterInfo): string {
  return adapter.description || adapter.device || adapter.vendor || "an unnamed adapter";
}
