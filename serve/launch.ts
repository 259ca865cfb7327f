/**
 * `deno task serve`: starts `serve/main.ts` in a process that may read only the weights it
 * serves and the code it runs (Deno's npm cache, for onnxruntime-web's WebAssembly, and `serve/`,
 * `lib/` and `model/`, for the Workers that decode large uploads and compute the network), listen
 * only at the `--hostname` and `--port` it is given (plus the loopback relay of
 * `serve/listener.ts`), and read only the environment variables it documents. This launcher
 * itself may only read `PORT` and run `deno`.
 *
 * Every flag is passed on to `serve/main.ts` unchanged; `--weights`, `--port` and `--hostname`
 * are also read here, to write the permissions. `deno run --allow-read --allow-net ...
 * serve/main.ts` still works for those who want to grant more.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** The environment variables `serve/main.ts` reads (`XDG_RUNTIME_DIR` it may also set). */
export const SERVE_ENV = [
  "PORT",
  "DDPM_PROVIDER",
  "DDPM_DEFAULT_MODEL",
  "DDPM_CORS_ORIGINS",
  "DDPM_API_KEYS",
  "DDPM_THREADS",
  "XDG_RUNTIME_DIR",
] as const;

/**
 * This project's code directories, which the Workers read their modules from: the decoding
 * Worker `serve/`'s and `lib/`'s, the network Worker also the ONNX runtime adapter in `model/`.
 */
const _CODE_DIRS = [
  new URL(".", import.meta.url).pathname,
  new URL("../lib/", import.meta.url).pathname,
  new URL("../model/", import.meta.url).pathname,
];

/** The `deno run` permission flags of the server for its command-line flags. */
export function servePermissions(
  args: readonly string[],
  options: { port?: string; npmCache: string },
): string[] {
  const { values } = parseArgs({
    args: [...args],
    options: {
      weights: { type: "string", default: "weights/" },
      port: { type: "string", default: options.port ?? "8000" },
      hostname: { type: "string", default: "0.0.0.0" },
    },
    strict: false,
    allowPositionals: true,
  });
  const weights = String(values.weights);
  const hostname = String(values.hostname);
  const port = String(values.port);
  for (const [flag, value] of [["--weights", weights], ["--hostname", hostname]]) {
    if (value.includes(",")) {
      throw new RangeError(`${flag} must not contain a comma, got ${value}`);
    }
  }
  // onnxruntime-web fetches its .wasm next to its own module in the npm cache; the Worker that
  // decodes large uploads (`decode.ts`) and the network's (`worker.ts`) load their modules
  // (serve/, lib/, model/, npm) with read checks.
  const code = [options.npmCache, ..._CODE_DIRS];
  // Port 0 picks a free port: the host, any port. The relay's inner server is on 127.0.0.1.
  const listen = port === "0" ? hostname : `${hostname}:${port}`;
  return [
    "--no-prompt",
    `--allow-read=${[weights, ...code].join(",")}`,
    `--allow-net=${listen},127.0.0.1`,
    `--allow-env=${SERVE_ENV.join(",")}`,
    // The native provider's library (onnxruntime-node ships it inside its npm package).
    `--allow-ffi=${options.npmCache}`,
  ];
}

/**
 * `deno` as found on the PATH, which is what the task's `--allow-run=deno` grants (by its
 * path there; `Deno.execPath()` may be the same binary under another path).
 */
const _DENO = "deno";

async function _npmCache(): Promise<string> {
  const output = await new Deno.Command(_DENO, {
    args: ["info", "--json"],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!output.success) throw new Error("deno info --json failed: cannot find the npm cache");
  return JSON.parse(new TextDecoder().decode(output.stdout)).npmCache;
}

async function main(args: string[]): Promise<number> {
  let permissions;
  try {
    permissions = servePermissions(args, {
      port: Deno.env.get("PORT"),
      npmCache: await _npmCache(),
    });
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    return 2;
  }
  const child = new Deno.Command(_DENO, {
    args: [
      "run",
      ...permissions,
      "--unstable-no-legacy-abort",
      new URL("main.ts", import.meta.url).pathname,
      ...args,
    ],
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  // The server stops on SIGINT and SIGTERM; pass them on and wait for it.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(signal, () => {
        try {
          child.kill(signal);
        } catch {
          // it has exited
        }
      });
    } catch {
      // Windows has no SIGTERM listener
    }
  }
  return (await child.status).code;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
