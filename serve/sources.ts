/**
 * Where model bytes come from: a weights folder or `.onnx` file on disk (`serve/main.ts`), or
 * URLs read with `fetch` (the edge entry, which has no file system to write to).
 *
 * @module
 */

import { readModelCard } from "../model/onnx.ts";
import type { ModelSource } from "./registry.ts";

/** No model where one was expected; the message says how to make one. */
export class NoModelError extends Error {
  constructor(where: string) {
    super(
      `no model in ${where}: the server needs an ONNX model exported by this toolkit.\n` +
        `  Train one:   deno task train            (writes checkpoints to runs/mnist-mnist/)\n` +
        `  Export it:   deno task export --ckpt runs/mnist-mnist --out weights/mnist.onnx\n` +
        `  Or point the server at one: deno task serve --weights <folder or file.onnx>`,
    );
    this.name = "NoModelError";
  }
}

/** Options of {@linkcode readModelSources}. */
export interface ReadModelSourcesOptions {
  /** Told about each `.onnx` file of a folder that is not a DDPM model, which is skipped. */
  readonly onSkip?: (file: string, reason: string) => void;
}

/**
 * Reads every DDPM model of a folder (sorted by name) or one `.onnx` file. The model's name is
 * the file name without `.onnx`. A folder's other ONNX files (the evaluation's classifier, say)
 * have no model card and are skipped; a file named on its own must be a DDPM model.
 */
export async function readModelSources(
  path: string,
  options: ReadModelSourcesOptions = {},
): Promise<ModelSource[]> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new NoModelError(`${path} (it does not exist)`);
    }
    throw error;
  }
  const files: string[] = [];
  if (info.isDirectory) {
    for await (const entry of Deno.readDir(path)) {
      if (entry.isFile && entry.name.endsWith(".onnx")) files.push(entry.name);
    }
    files.sort();
    if (files.length === 0) throw new NoModelError(`${path} (no .onnx file)`);
    const dir = path.replace(/\/+$/, "");
    const sources: ModelSource[] = [];
    const skipped: string[] = [];
    for (const file of files) {
      const bytes = await Deno.readFile(`${dir}/${file}`);
      try {
        readModelCard(bytes, file);
        sources.push({ name: _modelName(file), bytes });
      } catch (error) {
        skipped.push(file);
        const message = (error as Error).message;
        const reason = /no ddpm\.card/.test(message)
          ? "not a DDPM model (it has no ddpm.card metadata)"
          : message;
        options.onSkip?.(`${dir}/${file}`, reason);
      }
    }
    if (sources.length === 0) {
      throw new NoModelError(`${path} (no DDPM model; skipped ${skipped.join(", ")})`);
    }
    return sources;
  }
  if (!path.endsWith(".onnx")) {
    throw new RangeError(`--weights must be a folder or a .onnx file, got ${path}`);
  }
  return [{ name: _modelName(path), bytes: await Deno.readFile(path) }];
}

/** Fetches models by URL (`file:` URLs too, relative to `import.meta.url`, say). */
export async function fetchModelSources(urls: readonly URL[]): Promise<ModelSource[]> {
  if (urls.length === 0) throw new NoModelError("the model URL list (it is empty)");
  return await Promise.all(urls.map(async (url) => {
    let response: Response;
    try {
      response = await fetch(url);
    } catch (error) {
      throw new NoModelError(`${url} (${(error as Error).message})`);
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new NoModelError(`${url} (HTTP ${response.status})`);
    }
    return { name: _modelName(url.pathname), bytes: new Uint8Array(await response.arrayBuffer()) };
  }));
}

/**
 * The sources with the first of `preferred` that is among them moved to the front (the
 * server's default model); the others keep their order. None of them present: unchanged.
 *
 * @example
 * ```ts
 * import { preferModels } from "./sources.ts";
 * const bytes = new Uint8Array();
 * const sources = [{ name: "a", bytes }, { name: "b", bytes }, { name: "c", bytes }];
 * const names = preferModels(sources, ["x", "c", "b"]).map((s) => s.name);
 * console.assert(names.join() === "c,a,b");
 * ```
 */
export function preferModels(
  sources: readonly ModelSource[],
  preferred: readonly string[],
): ModelSource[] {
  const first = preferred.map((name) => sources.find((s) => s.name === name)).find(Boolean);
  return first ? [first, ...sources.filter((s) => s !== first)] : [...sources];
}

function _modelName(path: string): string {
  const file = path.split(/[\\/]/).pop() ?? path;
  return decodeURIComponent(file.replace(/\.onnx$/, ""));
}
