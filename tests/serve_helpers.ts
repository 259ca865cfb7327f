/**
 * Helpers shared by the server tests: JSON requests, server-sent events, PNG uploads, and
 * servers started as `deno task serve` starts them.
 *
 * @module
 */

import type { HwcImage } from "../lib/image.ts";
import { encodePng } from "../lib/png.ts";
import { createRng } from "../lib/rng.ts";
import { toBase64 } from "../serve/images.ts";

/** Anything that answers requests the way a Hono app does. */
export interface Requester {
  request(input: string, init?: RequestInit): Response | Promise<Response>;
}

/** POSTs `body` as JSON. */
export async function postJson(
  app: Requester,
  path: string,
  body: unknown,
  init: RequestInit = {},
): Promise<Response> {
  return await app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    ...init,
  });
}

/** One server-sent event with its JSON data. */
export interface ServerEvent {
  readonly event: string;
  // deno-lint-ignore no-explicit-any -- each event has its own JSON shape; tests read fields.
  readonly data: any;
}

/**
 * The events of a text/event-stream response, as they arrive. Stopping the loop early
 * cancels the body, which is how a client disconnects.
 */
export async function* readEvents(response: Response): AsyncGenerator<ServerEvent> {
  const reader = (response.body as ReadableStream<Uint8Array>)
    .pipeThrough(new TextDecoderStream())
    .getReader();
  let buffer = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1] ?? "message";
        const data = block.split("\n").filter((line) => line.startsWith("data: "))
          .map((line) => line.slice(6)).join("\n");
        yield { event, data: JSON.parse(data) };
      }
    }
  } finally {
    await reader.cancel();
  }
}

/** An 8-bit image of seeded random pixels. */
export function randomImage(
  width: number,
  height: number,
  channels: 1 | 3 | 4,
  seed = 0,
): HwcImage {
  const data = Uint8Array.from(
    createRng(seed).integers(width * height * channels, 256),
  );
  return { data, width, height, channels };
}

/** A PNG of `image`, base64-encoded for a JSON body. */
export function pngBase64(image: HwcImage): string {
  return toBase64(encodePng(image));
}

/** The repository root. */
export const ROOT: URL = new URL("..", import.meta.url);

/**
 * Broad permissions for `serve/main.ts` and the abort semantics of `deno task serve` (the task
 * itself narrows the permissions to its weights and address: `serve/launch.ts`).
 */
export const SERVE_FLAGS: readonly string[] = [
  "--allow-read",
  "--allow-env",
  "--allow-net",
  "--allow-ffi",
  "--unstable-no-legacy-abort",
];

/** `deno run` of an entry point in this repository, as `deno task serve` runs it. */
export function denoRun(
  entry: string,
  args: string[],
  env: Record<string, string> = {},
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...SERVE_FLAGS, entry, ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** A started server: its base URL, and the reader of the stream that announced it. */
export interface Started {
  readonly base: string;
  readonly reader: ReadableStreamDefaultReader<string>;
  readonly other: ReadableStream<Uint8Array>;
}

/**
 * Reads one of a child's output streams until a line matches `pattern` (its first group is
 * the base URL). Gives up after 30 s, stopping the child, so a server that never starts
 * fails the test instead of hanging it.
 */
export async function waitForServer(
  child: Deno.ChildProcess,
  from: "stdout" | "stderr",
  pattern: RegExp,
): Promise<Started> {
  const reader = child[from].pipeThrough(new TextDecoderStream()).getReader();
  const other = from === "stdout" ? child.stderr : child.stdout;
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  let text = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        const rest = await new Response(other).text();
        throw new Error(`the server exited before printing ${pattern}:\n${text}\n${rest}`);
      }
      text += value;
      const match = pattern.exec(text);
      if (match) return { base: match[1], reader, other };
    }
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `serve/main.ts` as `deno task serve` runs it, on the models in `weights`, on a free port of
 * 127.0.0.1 with WebAssembly, started and announced; `extra` adds flags.
 */
export async function startMainServer(
  weights: string,
  extra: string[] = [],
): Promise<{ child: Deno.ChildProcess; started: Started }> {
  const child = denoRun("serve/main.ts", [
    "--weights",
    weights,
    "--port",
    "0",
    "--hostname",
    "127.0.0.1",
    "--provider",
    "wasm",
    ...extra,
  ]);
  const started = await waitForServer(
    child,
    "stdout",
    /listening on (http:\/\/127\.0\.0\.1:\d+)\//,
  );
  return { child, started };
}

/**
 * Stops a server started here (by its own pid) and drains what it printed; `output` is what
 * the announcing stream printed after the announcement (the access log, for `serve/main.ts`).
 */
export async function stop(
  child: Deno.ChildProcess,
  started: Started,
): Promise<Deno.CommandStatus & { readonly output: string }> {
  child.kill("SIGTERM");
  let output = "";
  for (;;) {
    const { done, value } = await started.reader.read();
    if (done) break;
    output += value;
  }
  await started.other.cancel();
  return { ...(await child.status), output };
}
