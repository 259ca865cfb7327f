/**
 * The edge entry, for Deno Deploy: no files written, models fetched by URL, WebAssembly only
 * (edge isolates have no GPU).
 *
 * The models are `DDPM_MODEL_URLS` (comma-separated URLs, or paths relative to this file; the
 * first is the default), or the shipped models next to the deployed code when that is unset:
 * the conditional MNIST model (the default), the unconditional one and the conditional
 * Fashion-MNIST one. CORS origins come from
 * `DDPM_CORS_ORIGINS` as in `serve/main.ts`, API keys from `DDPM_API_KEYS`; each request is
 * logged with its id.
 *
 * The module's default export is `{ fetch }`, the form `deno serve` and Deno Deploy run (they
 * own the listener, its address and its timeouts):
 *
 *   deno task serve:edge                     # deno serve on port 8000, as Deploy runs it
 *   deno deploy --entrypoint serve/edge.ts
 *
 * @module
 */

import { createApp, formatAccessLine } from "./app.ts";
import { parseApiKeys } from "./auth.ts";
import { parseCorsOrigins } from "./cors.ts";
import { chooseProvider } from "./provider.ts";
import { loadRegistry } from "./registry.ts";
import { fetchModelSources } from "./sources.ts";

const SHIPPED = [
  "../weights/mnist-cond.onnx",
  "../weights/mnist.onnx",
  "../weights/fashion-cond.onnx",
].join(",");
const listed = Deno.env.get("DDPM_MODEL_URLS") ?? SHIPPED;
const urls = listed.split(",").map((entry) => new URL(entry.trim(), import.meta.url));
const registry = await loadRegistry(await fetchModelSources(urls), await chooseProvider("wasm"));
const { app } = createApp({
  registry,
  corsOrigins: parseCorsOrigins(Deno.env.get("DDPM_CORS_ORIGINS") ?? ""),
  apiKeys: parseApiKeys(Deno.env.get("DDPM_API_KEYS") ?? ""),
  logRequest: (entry) => console.log(formatAccessLine(entry)),
});

export default { fetch: app.fetch } satisfies Deno.ServeDefaultExport;
