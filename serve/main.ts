/**
 * `deno task serve`: serves the models in `weights/` (or `--weights <folder or .onnx file>`)
 * on port 8000 (or `--port`, or `PORT`). The network runs in a worker on every core
 * (`--threads`): on WebGPU when the machine has a hardware adapter, else on native onnxruntime
 * where it loads, else on WebAssembly (`--provider`, or `DDPM_PROVIDER`); concurrent requests'
 * network calls share batches (`--max-batch`, `--batching`). Prints one line per request
 * with its id (`--quiet` turns that off); CORS is off unless `--cors` (or
 * `DDPM_CORS_ORIGINS`) names origins.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createApp, formatAccessLine } from "./app.ts";
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
  let corsOrigins;
  try {
    corsOrigins = parseCorsOrigins(values.cors);
  } catch (error) {
    console.error(`error: --cors: ${(error as Error).message}`);
    return 2;
  }

  let registry;
  try {
    const sources = preferModels(
      await readModelSources(values.weights, {
        onSkip: (file, reason) => console.error(`note: skipping ${file}: ${reason}`),
      }),
      values["default-model"].split(",").map((name) => name.trim()).filter(Boolean),
    );
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
    logRequest: values.quiet ? undefined : (entry) => console.log(formatAccessLine(entry)),
  });
  const names = registry.models.map((m) => m.name).join(", ");
  const server = Deno.serve({
    port,
    hostname: values.hostname,
    onListen: ({ hostname, port }) => {
      console.log(
        `serving ${names} on ${registry.provider.reason}; default ${registry.models[0].name}`,
      );
      console.log(`listening on http://${hostname}:${port}/ (playground at /, API at /docs)`);
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

if (import.meta.main) Deno.exit(await main(Deno.args));
