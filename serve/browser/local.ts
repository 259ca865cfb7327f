/**
 * The playground's "run in this browser": the model's `.onnx` runs in the page on
 * onnxruntime-web (WebGPU when the browser has an adapter, WebAssembly otherwise) and `lib/`
 * samples with it, so the server only hands out static files. `deno task build:browser`
 * bundles this module with `lib/` into `local.bundle.js`, which the server serves at
 * `/browser/local.js`; onnxruntime-web's own files come from its npm package at
 * `/browser/ort/` and the models at `/browser/models/<name>.onnx`.
 *
 * Everything between the card and the PNG is what `POST /v1/samples` does
 * (`serve/registry.ts`, `serve/pipeline.ts`, `serve/images.ts`, `model/onnx.ts`), with the
 * same `lib/` functions in the same order and the same model contract (`model/`: the card's
 * pixel range, the network's feeds), so on WebAssembly the page's PNG is the server's, byte for
 * byte (`tests/serve_browser_test.ts` checks it).
 *
 * @module
 */

import type * as Ort from "onnxruntime-web";
import {
  classifierFreeGuidance,
  type ConditionalDenoiser,
  drawClasses,
  requestedGuidance,
} from "../../lib/guidance.ts";
import { makeGrid, toUint8 } from "../../lib/image.ts";
import { encodePng } from "../../lib/png.ts";
import {
  type Denoiser,
  sample,
  SAMPLER_CAPABILITIES,
  type SamplerKind,
} from "../../lib/samplers.ts";
import { makeSchedule, type TimestepSpacing } from "../../lib/schedule.ts";
// Types only from the card's schema: a value import would bundle zod.
import type { SamplingCard } from "../../model/card.ts";
import { networkFeeds } from "../../model/feeds.ts";
import { cardPixelRange } from "../../model/scaling.ts";

/** Where the network runs: `auto` is WebGPU when the browser offers an adapter. */
export type BrowserProvider = "auto" | "webgpu" | "wasm";

/** A session in the page, with the module it came from and the provider it runs on. */
export interface BrowserModel {
  readonly name: string;
  readonly card: SamplingCard;
  readonly session: Ort.InferenceSession;
  readonly ort: typeof Ort;
  readonly provider: "webgpu" | "wasm";
}

/** onnxruntime-web's builds as the server hands them out (`serve/routes/browser.ts`). */
const ORT_BASE = "/browser/ort/";
const ORT_BUILDS = {
  // The WebAssembly build loads ort-wasm-simd-threaded.wasm, the binary the server runs.
  wasm: "ort.wasm.bundle.min.mjs",
  webgpu: "ort.webgpu.bundle.min.mjs",
} as const;

/**
 * Fetches the model's `.onnx` (with `headers`: the API key of a server that has them) and starts
 * a session on `provider`.
 */
export async function loadBrowserModel(
  name: string,
  card: SamplingCard,
  options: { provider: BrowserProvider; headers?: Record<string, string> },
): Promise<BrowserModel> {
  const { provider, headers = {} } = options;
  // 1. WebGPU only when asked for (or on auto) and an adapter is there.
  const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  let chosen: "webgpu" | "wasm" = provider === "auto" ? "webgpu" : provider;
  if (chosen === "webgpu" && !(gpu && await gpu.requestAdapter().catch(() => null))) {
    if (provider === "webgpu") throw new Error("this browser offers no WebGPU adapter");
    chosen = "wasm";
  }
  // 2. The build (a variable URL, so the bundler leaves the import to the browser).
  const url = ORT_BASE + ORT_BUILDS[chosen];
  const ort: typeof Ort = await import(url);
  // The build fetches its .wasm beside itself (from import.meta.url), so wasmPaths stays unset.
  // One thread, as on the server (threads need cross-origin isolation in a page anyway).
  ort.env.wasm.numThreads = 1;
  // 3. The model bytes.
  const response = await fetch(`/browser/models/${encodeURIComponent(name)}.onnx`, { headers });
  if (!response.ok) throw new Error(`GET the model ${name}: ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const session = await ort.InferenceSession.create(bytes, { executionProviders: [chosen] });
  return { name, card, session, ort, provider: chosen };
}

/**
 * The network as a `ConditionalDenoiser`, fed as `model/onnx.ts`'s `onnxDenoiser` feeds it
 * ({@linkcode networkFeeds}), with `numClasses` for no class; batches above 64 images are split
 * as the server's default `--max-batch` splits them.
 */
export function browserDenoiser(model: BrowserModel): ConditionalDenoiser {
  const { ort, session } = model;
  const numClasses = model.card.config?.numClasses ?? 0;
  const maxBatch = 64;
  return async (x, t, shape, labels) => {
    const [n, c, h, w] = shape;
    const per = c * h * w;
    // An output row is the image's size, or twice it for a network that learns its variance:
    // sized from the first result.
    let out = new Float32Array(0);
    for (let start = 0; start < n; start += maxBatch) {
      const count = Math.min(maxBatch, n - start);
      const feeds = networkFeeds(ort.Tensor, {
        x: x.subarray(start * per, (start + count) * per),
        t: t.subarray(start, start + count),
        labels: Array.from({ length: count }, (_, i) => labels?.[start + i] ?? numClasses),
        shape: [count, c, h, w],
      }, numClasses);
      const result = await session.run(feeds);
      const data = result.out.data as Float32Array;
      const outPer = data.length / count;
      if (start === 0) out = new Float32Array(n * outPer);
      out.set(data, start * outPer);
      result.out.dispose();
    }
    return out;
  };
}

/** The settings of one run, as `POST /v1/samples` takes them. */
export interface BrowserSampleOptions {
  readonly n: number;
  readonly sampler: SamplerKind;
  readonly steps: number;
  readonly eta: number;
  readonly seed: number;
  /** Default `leading`, the server's default. */
  readonly spacing?: TimestepSpacing;
  /**
   * One class for every image, null for none; left out, a conditional model draws each
   * image's class from the seed, as `POST /v1/samples` does with no label.
   */
  readonly label?: number | null;
  /** Left out: a class gets the model's default guidance, as on the server. */
  readonly guidance?: number;
  /** The timesteps guidance applies at, as `POST /v1/samples`'s `guidanceInterval`. */
  readonly guidanceInterval?: readonly [number, number];
  /** Called after each step with the PNG grid of the current estimate of x_0. */
  readonly onStep?: (png: Uint8Array, step: number, steps: number) => void | Promise<void>;
  readonly signal?: AbortSignal;
}

/** Samples `n` images in the page; returns the PNG grid `POST /v1/samples` would return. */
export async function sampleInBrowser(
  model: BrowserModel,
  options: BrowserSampleOptions,
): Promise<Uint8Array> {
  const { card } = model;
  // 1. The card's settings, as serve/registry.ts's servedModel reads them.
  const { kind, timesteps, betaStart, betaEnd } = card.schedule;
  const schedule = makeSchedule({ kind, timesteps, betaStart, betaEnd });
  const shape = [options.n, card.channels, card.imageSize, card.imageSize] as const;
  const range = cardPixelRange(card, model.name);
  const grid = (x: Float32Array) => encodePng(makeGrid(toUint8(x, { range }), shape));
  // 2. The classes, as serve/pipeline.ts's conditionedDenoiser joins them.
  const network = browserDenoiser(model);
  const numClasses = card.classNames?.length ?? 0;
  if (numClasses === 0 && typeof options.label === "number") {
    throw new RangeError(`label: model ${model.name} has no classes, got ${options.label}`);
  }
  const labels = options.label === null || numClasses === 0
    ? null
    : options.label === undefined
    ? drawClasses(options.seed, options.n, numClasses, card.classCounts)
    : new Int32Array(options.n).fill(options.label);
  const { guidance, interval } = requestedGuidance(options.guidance, options.guidanceInterval, {
    timesteps,
    sampler: options.sampler,
    drawn: options.label === undefined,
  });
  const denoiser: Denoiser = labels === null
    ? (x, t, s) => network(x, t, s)
    : classifierFreeGuidance(network, {
      labels,
      nullClass: numClasses,
      guidance,
      interval: interval ?? undefined,
    });
  // 3. The samplers.
  const x = await sample(denoiser, {
    schedule,
    shape,
    sampler: options.sampler,
    steps: options.steps,
    eta: options.eta,
    spacing: options.spacing ?? "leading",
    seed: options.seed,
    prediction: card.prediction,
    variance: card.variance,
    signal: options.signal,
    onStep: options.onStep &&
      ((info) => options.onStep?.(grid(info.predX0), info.step, info.steps)),
  });
  return grid(x);
}

/**
 * The few DOM members this module touches. Deno's type library has no DOM, and a
 * `lib="dom"` reference here would change the types of every module checked beside this one.
 */
interface _Element {
  value: string;
  disabled: boolean;
  hidden: boolean;
  textContent: string | null;
  className: string;
  src: string;
  width: number;
  readonly naturalWidth: number;
  readonly dataset: Record<string, string | undefined>;
  onclick: (() => void) | null;
  decode(): Promise<void>;
}
declare const document: { getElementById(id: string): _Element | null } | undefined;
declare const localStorage: { getItem(key: string): string | null };
declare const location: { hash: string };

/** An element of the page by id: the playground's model, class, sampler and seed fields. */
function _byId(id: string): _Element {
  const element = document?.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element;
}

interface _ModelsResponse {
  readonly models: readonly { name: string; card: SamplingCard; classes: string[] }[];
}

/** Wires the "Run in this browser" section of the playground. */
function _wire(): void {
  const value = (id: string) => _byId(id).value;
  const status = _byId("local-status");
  const image = _byId("local-image");
  const button = _byId("local-button");
  const setStatus = (text: string, isError = false) => {
    status.textContent = text;
    status.className = isError ? "status error" : "status";
  };
  const show = async (png: Uint8Array) => {
    if (image.src.startsWith("blob:")) URL.revokeObjectURL(image.src);
    image.src = URL.createObjectURL(
      new Blob([png as Uint8Array<ArrayBuffer>], { type: "image/png" }),
    );
    await image.decode();
    image.width = image.naturalWidth * Math.max(3, Math.floor(240 / image.naturalWidth));
    image.hidden = false;
  };
  const sessions = new Map<string, Promise<BrowserModel>>();
  let models: Promise<_ModelsResponse> | undefined;

  button.onclick = async () => {
    button.disabled = true;
    delete image.dataset.seed;
    try {
      // A server started with --api-key needs the key the playground keeps (or #key=<key>).
      const apiKey = new URLSearchParams(location.hash.slice(1)).get("key") ??
        localStorage.getItem("ddpm-api-key");
      const headers: Record<string, string> = apiKey ? { authorization: `Bearer ${apiKey}` } : {};
      models ??= fetch("/v1/models", { headers }).then((r) => {
        if (!r.ok) throw new Error(`GET /v1/models: ${r.status}`);
        return r.json();
      }).catch((error) => {
        models = undefined; // ask again on the next click
        throw error;
      });
      const name = value("model");
      const entry = (await models).models.find((m) => m.name === name);
      if (!entry) throw new Error(`no model ${name}`);
      const provider = value("local-provider") as BrowserProvider;
      const key = `${name}/${provider}`;
      let loading = sessions.get(key);
      if (!loading) {
        loading = loadBrowserModel(name, entry.card, { provider, headers });
        sessions.set(key, loading);
      }
      setStatus(`Loading ${name} and onnxruntime-web...`);
      const model = await loading.catch((error) => {
        sessions.delete(key);
        throw error;
      });
      const seedField = value("seed");
      const seed = seedField === ""
        ? crypto.getRandomValues(new Uint32Array(1))[0]
        : Number(seedField);
      const sampler = value("sampler") as SamplerKind;
      // The picker: "" any class (drawn), "none" no class, or a class index.
      const picked = value("label");
      const label = picked === "" ? undefined : picked === "none" ? null : Number(picked);
      const started = performance.now();
      const where = model.provider === "webgpu" ? "WebGPU" : "WebAssembly";
      const png = await sampleInBrowser(model, {
        n: Number(value("n")),
        sampler,
        steps: Number(value("steps")),
        eta: SAMPLER_CAPABILITIES[sampler].takesEta ? Number(value("eta")) : 0,
        seed,
        label,
        // An untouched slider sends no weight: the model's default, as the server applies it.
        guidance: label === null
          ? 0
          : _byId("guidance").dataset.untouched === "true"
          ? undefined
          : Number(value("guidance")),
        onStep: async (grid, step, steps) => {
          await show(grid);
          setStatus(`Step ${step + 1}/${steps} on ${where}: the current guess of x_0`);
        },
      });
      await show(png);
      image.dataset.seed = String(seed);
      image.dataset.provider = model.provider;
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      setStatus(`Done in ${seconds} s in this browser on ${where}, seed ${seed}.`);
    } catch (error) {
      setStatus(`In this browser: ${(error as Error).message}`, true);
    } finally {
      button.disabled = false;
    }
  };
}

if (typeof document !== "undefined" && document?.getElementById("local-button")) _wire();
