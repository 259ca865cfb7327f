/**
 * `deno task serve`: serves the models in `weights/` (or `--weights <folder or .onnx file>`)
 * on port 8000 (or `--port`, or `PORT`). The network runs in a worker on every core
 * (`--threads`): on WebGPU when the machine has a hardware adapter, else on native onnxruntime
 * where it loads, else on WebAssembly (`--provider`, or `DDPM_PROVIDER`); concurrent requests'
 * network calls share batches (`--max-batch`, `--batching`). Prints one line per request
 * with its id (`--quiet` turns that off); CORS is off unless `--cors` (or
 * `DDPM_CORS_ORIGINS`) names origins. `--api-key` (or `DDPM_API_KEYS`) closes the API to
 * requests without a key; connections whose request headers take over `--header-timeout`
 * seconds are closed (`serve/listener.ts`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createApp, formatAccessLine } from "./app.ts";
import { parseApiKeys } from "./auth.ts";
import { DEFAULT_LIMITS } from "./limits.ts";
import { DEFAULT_HEADER_TIMEOUT_MS, serveWithTimeouts } from "./listener.ts";
import { parseCorsOrigins } from "./cors.ts";
import { PROVIDER_CHOICES, type ProviderChoice } from "./provider.ts";
import { NoModelError, preferModels, readModelSources } from "./sources.ts";
import { loadWorkerRegistry } from "./worker.ts";

/** The shipped models, in order of preference as the default. */
const DEFAULT_MODELS = "mnist-cond,mnist";

const USAGE = `Usage: deno task serve [options]

  --weights <path>    a folder of .onnx models or one .onnx file (default weights/)
  --port <n>          port to listen on; 0 picks a free one (default $PORT or 8000)
  --hostname <name>   interface to listen on (default 0.0.0.0)
  --provider <p>      auto | wasm | webgpu | native (default $DDPM_PROVIDER or auto: WebGPU
                      on a hardware adapter, else native onnxruntime where it loads, else
                      WebAssembly)
  --threads <n>       threads the network computes with (default $DDPM_THREADS or the
                      cores, ${navigator.hardwareConcurrency} here)
  --default-model <names>
                      the model a request that names none gets: the first of these
                      comma-separated names that is served, else the first model by name
                      (default $DDPM_DEFAULT_MODEL or ${DEFAULT_MODELS})
  --max-batch <n>     images per network call: concurrent requests share calls up to this
                      many images; larger batches are split (default 64)
  --batching <on|off> merge concurrent requests' network calls (default on)
  --cors <origins>    origins whose pages may call the API from a browser: * for any, or a
                      comma-separated list such as https://app.example.com (default
                      $DDPM_CORS_ORIGINS or none: CORS off)
  --api-key <keys>    API keys, comma-separated, at least 16 characters each: every /v1
                      request must send one (Authorization: Bearer <key> or X-API-Key)
                      (default $DDPM_API_KEYS or none: the API is open)
  --max-jobs-per-client <n>
                      jobs one client (an API key, else an address) may have running and
                      waiting; the next gets 429 (default ${DEFAULT_LIMITS.maxJobsPerClient})
  --header-timeout <s>
                      seconds a request's headers may take to arrive before the
                      connection is closed (default ${DEFAULT_HEADER_TIMEOUT_MS / 1000})
  --quiet             no log line per request (errors are still logged)
  --help              this text`;

async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        weights: { type: "string", default: "weights/" },
        port: { type: "string", default: Deno.env.get("PORT") ?? "8000" },
        hostname: { type: "string", default: "0.0.0.0" },
        provider: { type: "string", default: Deno.env.get("DDPM_PROVIDER") ?? "auto" },
        threads: {
          type: "string",
          default: Deno.env.get("DDPM_THREADS") ?? String(navigator.hardwareConcurrency),
        },
        "max-batch": { type: "string", default: "64" },
        batching: { type: "string", default: "on" },
        "default-model": {
          type: "string",
          default: Deno.env.get("DDPM_DEFAULT_MODEL") ?? DEFAULT_MODELS,
        },
        cors: { type: "string", default: Deno.env.get("DDPM_CORS_ORIGINS") ?? "" },
        "api-key": { type: "string", default: Deno.env.get("DDPM_API_KEYS") ?? "" },
        "max-jobs-per-client": { type: "string", default: String(DEFAULT_LIMITS.maxJobsPerClient) },
        "header-timeout": { type: "string", default: String(DEFAULT_HEADER_TIMEOUT_MS / 1000) },
        quiet: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
    }));
  } catch (error) {
    console.error(`error: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const port = Number(values.port);
  const maxBatch = Number(values["max-batch"]);
  const provider = values.provider as ProviderChoice;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`error: --port must be an integer in 0..65535, got ${values.port}`);
    return 2;
  }
  if (!Number.isInteger(maxBatch) || maxBatch < 1) {
    console.error(`error: --max-batch must be a positive integer, got ${values["max-batch"]}`);
    return 2;
  }
  const threads = Number(values.threads);
  if (!Number.isInteger(threads) || threads < 1 || threads > 256) {
    console.error(`error: --threads must be an integer in 1..256, got ${values.threads}`);
    return 2;
  }
  if (values.batching !== "on" && values.batching !== "off") {
    console.error(`error: --batching must be on or off, got ${values.batching}`);
    return 2;
  }
  if (!PROVIDER_CHOICES.includes(provider)) {
    console.error(
      `error: --provider must be one of ${PROVIDER_CHOICES.join(", ")}, got ${values.provider}`,
    );
    return 2;
  }
  const maxJobsPerClient = Number(values["max-jobs-per-client"]);
  if (!Number.isInteger(maxJobsPerClient) || maxJobsPerClient < 1) {
    console.error(
      `error: --max-jobs-per-client must be a positive integer, got ${
        values["max-jobs-per-client"]
      }`,
    );
    return 2;
  }
  const headerTimeoutMs = Math.round(Number(values["header-timeout"]) * 1000);
  if (!(headerTimeoutMs >= 1 && headerTimeoutMs <= 3_600_000)) {
    console.error(
      `error: --header-timeout must be a number of seconds in 0.001..3600, got ${
        values["header-timeout"]
      }`,
    );
    return 2;
  }
  let apiKeys;
  try {
    apiKeys = parseApiKeys(values["api-key"]);
  } catch (error) {
    console.error(`error: --api-key: ${(error as Error).message}`);
    return 2;
  }
  let corsOrigins;
  try {
    corsOrigins = parseCorsOrigins(values.cors);
  } catch (error) {
    console.error(`error: --cors: ${(error as Error).message}`);
    return 2;
  }

  let registry;
  let sources;
  try {
    sources = preferModels(
      await readModelSources(values.weights, {
        onSkip: (file, reason) => console.error(`note: skipping ${file}: ${reason}`),
      }),
      values["default-model"].split(",").map((name) => name.trim()).filter(Boolean),
    );
    _quietDisplayLookup();
    registry = await loadWorkerRegistry(sources, provider, {
      maxBatch,
      threads,
      merge: values.batching === "on",
    });
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    return error instanceof NoModelError ? 1 : 2;
  }

  const { app } = createApp({
    registry,
    corsOrigins,
    apiKeys,
    limits: { maxJobsPerClient },
    modelFiles: sources,
    logRequest: values.quiet ? undefined : (entry) => console.log(formatAccessLine(entry)),
  });
  const names = registry.models.map((m) => m.name).join(", ");
  const server = serveWithTimeouts({
    port,
    hostname: values.hostname,
    headerTimeoutMs,
    onListen: ({ hostname, port }) => {
      console.log(
        `serving ${names} on ${registry.provider.reason}; default ${registry.models[0].name}`,
      );
      console.log(`listening on http://${hostname}:${port}/ (playground at /, API at /docs)`);
      if (apiKeys.length > 0) console.log(`the API needs one of ${apiKeys.length} API key(s)`);
    },
  }, app.fetch);
  const stop = () => server.shutdown();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(signal, stop);
    } catch {
      // Windows has no SIGTERM; Ctrl-C still ends the process there.
    }
  }
  await server.finished;
  await Promise.all(registry.models.map((m) => m.close()));
  return 0;
}

/**
 * Probing for a WebGPU adapter loads the system's Vulkan drivers, whose Wayland support prints
 * `error: XDG_RUNTIME_DIR is invalid or not set` (twice) when that variable is unset, as on a
 * server with no desktop session; nothing is wrong, since no display is needed. An absolute
 * path with no display socket in it keeps the lookup quiet (this process only).
 */
function _quietDisplayLookup(): void {
  if (Deno.build.os !== "linux" || Deno.env.get("XDG_RUNTIME_DIR")) return;
  Deno.env.set("XDG_RUNTIME_DIR", "/nonexistent/ddpm-serve-has-no-display");
}

if (import.meta.main) Deno.exit(await main(Deno.args));
