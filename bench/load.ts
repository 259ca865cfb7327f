/**
 * The server under load: starts `serve/main.ts` as a second process on 127.0.0.1 with an
 * exported model (random weights) in a temporary folder, drives it for a bounded time with a
 * mix of cheap requests (`GET /healthz`, `GET /v1/schedule`) and sampling jobs beyond the
 * queue's capacity (plain, streamed, and clients that hang up mid-job), then prints Markdown
 * tables: requests/s, p50/p99 latency per kind, 429s, 5xx, dropped connections, and the
 * server's memory over the run: resident (VmRSS of /proc/<pid>/status), and V8's live heap
 * after a full collection, asked for through the server's inspector (it runs with
 * `--inspect` on a loopback port; nothing else attaches). Resident memory grows while V8
 * sizes its heap to the allocation rate; the live heap is what a leak would grow.
 *
 *   deno task bench:load [--duration 30] [--clients 8] [--samplers 24] [--preset tiny]
 *                        [--images 8] [--steps 50]
 *
 * Exits with 1 when any response is a 5xx, any connection drops (a request fails without the
 * client having aborted it), the queue has not drained after the load stops (a slot that was
 * never freed), or the server does not shut down cleanly. Every request goes to 127.0.0.1;
 * every loop stops at the deadline by itself, and a watchdog stops the server if not.
 */

import { parseArgs } from "node:util";
import { PRESETS } from "../train/network.ts";
import { randomOnnxModel } from "../tests/_models.ts";

/** A sampling client backs off this long after a 429 (it ignores Retry-After to keep pushing). */
const BACKOFF_MS = 100;
/** A client that hangs up on a plain request does so this long after sending it. */
const HANG_UP_MS = 50;
/** After the deadline, the queue gets this long to drain. */
const DRAIN_MS = 20_000;

interface Options {
  readonly durationS: number;
  readonly clients: number;
  readonly samplers: number;
  readonly preset: keyof typeof PRESETS;
  readonly images: number;
  readonly steps: number;
}

function parseOptions(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      duration: { type: "string", default: "30" },
      clients: { type: "string", default: "8" },
      samplers: { type: "string", default: "24" },
      preset: { type: "string", default: "tiny" },
      images: { type: "string", default: "8" },
      steps: { type: "string", default: "50" },
    },
  });
  if (!(values.preset in PRESETS)) {
    throw new RangeError(`--preset must be one of ${Object.keys(PRESETS).join(", ")}`);
  }
  const integer = (name: keyof typeof values) => {
    const value = Number(values[name]);
    if (!Number.isInteger(value) || value < 1) {
      throw new RangeError(`--${name} must be an integer >= 1, got ${values[name]}`);
    }
    return value;
  };
  return {
    durationS: integer("duration"),
    clients: integer("clients"),
    samplers: integer("samplers"),
    preset: values.preset as keyof typeof PRESETS,
    images: integer("images"),
    steps: integer("steps"),
  };
}

// 1. The server: a second process, on loopback, printing a line per request.

/** A started `serve/main.ts`, with its output read as it comes. */
interface Server {
  readonly process: Deno.ChildProcess;
  readonly base: string;
  /** Access-log lines by status. */
  readonly logged: Map<string, number>;
  /** V8's live heap in MiB after a full collection, through the inspector. */
  liveHeapMiB(): Promise<number>;
  /** Detaches from the inspector: the server waits for that before it exits. */
  detach(): void;
  /** What it printed to stderr so far. */
  stderr(): string;
  /** Resolves when both output streams have ended. */
  readonly drained: Promise<unknown>;
}

async function startServer(weights: string): Promise<Server> {
  // A free loopback port for the inspector (Deno takes no port 0 for it).
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const inspectorPort = probe.addr.port;
  probe.close();
  const process = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      "--allow-net=127.0.0.1",
      "--allow-ffi",
      "--unstable-no-legacy-abort",
      `--inspect=127.0.0.1:${inspectorPort}`,
      "serve/main.ts",
      ...["--weights", weights, "--port", "0", "--hostname", "127.0.0.1", "--provider", "wasm"],
    ],
    cwd: new URL("..", import.meta.url),
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const logged = new Map<string, number>();
  const listening = Promise.withResolvers<string>();
  const stdoutDone = (async () => {
    let buffer = "";
    for await (const text of process.stdout.pipeThrough(new TextDecoderStream())) {
      buffer += text;
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        const announced = /listening on (http:\/\/127\.0\.0\.1:\d+)\//.exec(line);
        if (announced) listening.resolve(announced[1]);
        // `<time> <id> <method> <path> <status> <ms> ms` (formatAccessLine, serve/middleware.ts)
        const status = /^\S+Z \S+ \S+ \S+ (\d{3}) [\d.]+ ms$/.exec(line)?.[1];
        if (status) logged.set(status, (logged.get(status) ?? 0) + 1);
      }
    }
  })();
  let stderr = "";
  const inspector = Promise.withResolvers<string>();
  const stderrDone = (async () => {
    for await (const text of process.stderr.pipeThrough(new TextDecoderStream())) {
      stderr += text;
      const url = /Debugger listening on (ws:\/\/127\.0\.0\.1:\d+\/\S+)/.exec(stderr)?.[1];
      if (url) inspector.resolve(url);
    }
  })();
  process.status.then(() => listening.reject(new Error(`the server exited:\n${stderr}`)));
  const timer = setTimeout(() => listening.reject(new Error("no server within 60 s")), 60_000);
  try {
    const base = await listening.promise;
    const devtools = await DevTools.connect(await inspector.promise);
    return {
      process,
      base,
      logged,
      liveHeapMiB: async () => {
        await devtools.call("HeapProfiler.collectGarbage");
        const usage = await devtools.call("Runtime.getHeapUsage");
        return (usage.usedSize as number) / 2 ** 20;
      },
      detach: () => devtools.socket.close(),
      stderr: () => stderr,
      drained: Promise.all([stdoutDone, stderrDone]),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** A minimal client of the DevTools protocol: one request at a time, answers by id. */
class DevTools {
  #next = 1;
  readonly #pending = new Map<number, (result: Record<string, unknown>) => void>();

  private constructor(readonly socket: WebSocket) {
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data as string);
      this.#pending.get(message.id)?.(message.result ?? {});
      this.#pending.delete(message.id);
    };
  }

  static async connect(url: string): Promise<DevTools> {
    const socket = new WebSocket(url);
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = () => reject(new Error(`cannot reach the inspector at ${url}`));
    });
    return new DevTools(socket);
  }

  call(method: string): Promise<Record<string, unknown>> {
    const id = this.#next++;
    const answer = new Promise<Record<string, unknown>>((resolve) =>
      this.#pending.set(id, resolve)
    );
    this.socket.send(JSON.stringify({ id, method }));
    return answer;
  }
}

/**
 * The server's resident memory in MiB, from /proc/<pid>/status (Linux). Read with `cat`:
 * Deno grants another process's /proc entries only with --allow-all.
 */
async function residentMiB(pid: number): Promise<number> {
  const output = await new Deno.Command("cat", { args: [`/proc/${pid}/status`] }).output();
  const status = new TextDecoder().decode(output.stdout);
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]) / 1024;
}

// 2. The clients.

type Kind = "healthz" | "schedule" | "samples" | "stream" | "refused";

const KIND_NAMES: Record<Kind, string> = {
  healthz: "GET /healthz",
  schedule: "GET /v1/schedule",
  samples: "POST /v1/samples, 200",
  stream: "POST /v1/samples/stream, to done",
  refused: "POST /v1/samples*, 429",
};

/** What the clients saw. */
class Tally {
  readonly latencies: Record<Kind, number[]> = {
    healthz: [],
    schedule: [],
    samples: [],
    stream: [],
    refused: [],
  };
  readonly statuses = new Map<number, number>();
  readonly dropped: string[] = [];
  hangUps = 0;
  responses = 0;

  count(status: number): void {
    this.responses++;
    this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
  }
}

/** The load: cheap clients and sampling clients, until the deadline. */
class Load {
  constructor(
    readonly base: string,
    readonly options: Options,
    readonly tally: Tally,
  ) {}

  #post(path: string, seed: number, signal?: AbortSignal): Promise<Response> {
    const { images: n, steps } = this.options;
    return fetch(`${this.base}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ n, sampler: "ddim", steps, seed }),
      signal,
    });
  }

  /** Runs one request; a failure the client did not cause is a dropped connection. */
  async #attempt(what: string, request: () => Promise<void>): Promise<void> {
    try {
      await request();
    } catch (error) {
      this.tally.dropped.push(`${what}: ${(error as Error).message}`);
    }
  }

  /** Cheap requests back to back, alternating the two kinds. */
  async cheapClient(deadline: number): Promise<void> {
    for (let i = 0; performance.now() < deadline; i++) {
      const kind = i % 2 === 0 ? "healthz" : "schedule";
      await this.#attempt(kind, async () => {
        const started = performance.now();
        const response = await fetch(`${this.base}/${kind === "healthz" ? kind : "v1/schedule"}`);
        await response.arrayBuffer();
        this.tally.latencies[kind].push(performance.now() - started);
        this.tally.count(response.status);
      });
    }
  }

  /**
   * Sampling requests back to back: of every 8, six plain PNG requests, one stream read to
   * its end, and one client that hangs up (a plain request or a stream, in turn).
   */
  async samplingClient(index: number, deadline: number): Promise<void> {
    for (let i = 0; performance.now() < deadline; i++) {
      const seed = index * 1_000_000 + i;
      const turn = i % 8;
      if (turn === 7) {
        await this.#hangUp(i % 16 === 7 ? "/v1/samples" : "/v1/samples/stream", seed);
        continue;
      }
      const path = turn === 3 ? "/v1/samples/stream" : "/v1/samples";
      let refused = false;
      await this.#attempt(path, async () => {
        const started = performance.now();
        const response = await this.#post(path, seed);
        const text = await response.text();
        this.tally.count(response.status);
        refused = response.status === 429;
        if (path === "/v1/samples/stream" && !refused && !text.includes("event: done")) {
          throw new Error(`the stream ended without done: ${text.slice(-200)}`);
        }
        const kind = refused ? "refused" : path === "/v1/samples" ? "samples" : "stream";
        this.tally.latencies[kind].push(performance.now() - started);
      });
      if (refused) await new Promise((resolve) => setTimeout(resolve, BACKOFF_MS));
    }
  }

  /**
   * A client that loses patience: a plain request aborted after {@linkcode HANG_UP_MS} (while
   * its job waits or runs), or a stream cancelled after its first event. Only the client's own
   * abort may fail the fetch; anything else is a dropped connection.
   */
  async #hangUp(path: "/v1/samples" | "/v1/samples/stream", seed: number): Promise<void> {
    this.tally.hangUps++;
    const controller = new AbortController();
    const timer = path === "/v1/samples"
      ? setTimeout(() => controller.abort(), HANG_UP_MS)
      : undefined;
    try {
      const response = await this.#post(path, seed, controller.signal);
      this.tally.count(response.status);
      if (response.status !== 200 || !response.body) {
        await response.body?.cancel();
        return;
      }
      const reader = response.body.getReader();
      await reader.read();
      await reader.cancel();
    } catch (error) {
      if (!controller.signal.aborted) {
        this.tally.dropped.push(`hang-up on ${path}: ${(error as Error).message}`);
      }
    } finally {
      clearTimeout(timer);
    }
  }
}

// 3. The run.

async function main(): Promise<number> {
  const options = parseOptions(Deno.args);
  const { durationS, clients, samplers, preset, images, steps } = options;
  const dir = await Deno.makeTempDir({ prefix: "ddpm-load-" });
  let server: Server | undefined;
  let exited = false;
  // A hard stop in case anything below hangs: the server is killed and the bench fails.
  const watchdog = setTimeout(() => {
    console.error(`error: the bench ran past ${durationS + 120} s; stopping the server`);
    if (server && !exited) server.process.kill("SIGKILL");
    Deno.removeSync(dir, { recursive: true });
    Deno.exit(1);
  }, (durationS + 120) * 1000);
  try {
    await Deno.writeFile(`${dir}/${preset}.onnx`, randomOnnxModel(PRESETS[preset]));
    server = await startServer(dir);
    const { base, process } = server;
    const health = await (await fetch(`${base}/healthz`)).json();
    const capacity = `${health.queue.concurrency} running + ${health.queue.queueSize} waiting`;

    // Memory: at the start, after one warm-up job (session start-up, JIT), after the first
    // minute or, in a shorter run, its first third, and at the end; resident memory also every
    // second, for the peak. Resident first: the full collection may hand pages back.
    const read = async () => ({
      rss: await residentMiB(process.pid),
      heap: await server?.liveHeapMiB() ?? NaN,
    });
    const atStart = await read();
    await (await fetch(`${base}/v1/samples`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ n: images, sampler: "ddim", steps, seed: 0 }),
    })).arrayBuffer();
    const afterWarmUp = await read();
    const tally = new Tally();
    const load = new Load(base, options, tally);
    const started = performance.now();
    const deadline = started + durationS * 1000;
    const markMs = Math.min(60_000, (durationS * 1000) / 3);
    let atMark: Promise<{ rss: number; heap: number }> | undefined;
    let rssPeak = afterWarmUp.rss;
    const reader = setInterval(async () => {
      if (!atMark && performance.now() - started >= markMs) atMark = read();
      rssPeak = Math.max(rssPeak, await residentMiB(process.pid));
    }, 1000);
    await Promise.all([
      ...Array.from({ length: clients }, () => load.cheapClient(deadline)),
      ...Array.from({ length: samplers }, (_, i) => load.samplingClient(i, deadline)),
    ]);
    const seconds = (performance.now() - started) / 1000;
    clearInterval(reader);

    // After the load every slot must come back, hang-ups included.
    let queue = { running: -1, waiting: -1 };
    for (const until = performance.now() + DRAIN_MS; performance.now() < until;) {
      queue = (await (await fetch(`${base}/healthz`)).json()).queue;
      if (queue.running === 0 && queue.waiting === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const mid = await atMark ?? { rss: NaN, heap: NaN };
    const atEnd = await read();
    rssPeak = Math.max(rssPeak, atEnd.rss);
    server.detach();
    process.kill("SIGTERM");
    const exit = await process.status;
    exited = true;
    await server.drained;

    // The report.
    const fixed = (v: number, digits = 1) => (Number.isNaN(v) ? "-" : v.toFixed(digits));
    const percentile = (sorted: number[], p: number) =>
      sorted.length === 0
        ? NaN
        : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
    const { statuses, dropped } = tally;
    const fivexx = [...statuses].filter(([s]) => s >= 500).reduce((sum, [, n]) => sum + n, 0);
    const load1 = Deno.loadavg().map((l) => l.toFixed(2)).join(", ");
    console.log(
      `${preset} preset, ${images} images x ${steps} DDIM steps per job; ${clients} cheap and ` +
        `${samplers} sampling clients for ${fixed(seconds)} s against ${capacity} jobs; ` +
        `${navigator.hardwareConcurrency} cores (${Deno.build.target}), load average ${load1}`,
    );
    console.log("");
    console.log("| request | count | per s | p50 ms | p99 ms |");
    console.log("| ------- | ----- | ----- | ------ | ------ |");
    for (const kind of Object.keys(KIND_NAMES) as Kind[]) {
      const sorted = tally.latencies[kind].toSorted((a, b) => a - b);
      const cells = [
        KIND_NAMES[kind],
        sorted.length,
        fixed(sorted.length / seconds),
        fixed(percentile(sorted, 0.5)),
        fixed(percentile(sorted, 0.99)),
      ];
      console.log(`| ${cells.join(" | ")} |`);
    }
    console.log("");
    console.log("| responses/s | 429s | 5xx | dropped | hang-ups | queue after | statuses |");
    console.log("| ----------- | ---- | --- | ------- | -------- | ----------- | -------- |");
    const statusList = [...statuses].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}: ${n}`);
    console.log(
      `| ${fixed(tally.responses / seconds)} | ${statuses.get(429) ?? 0} | ${fivexx} | ` +
        `${dropped.length} | ${tally.hangUps} | ${queue.running} running, ${queue.waiting} ` +
        `waiting | ${statusList.join(", ")} |`,
    );
    console.log("");
    const mark = `after ${fixed(markMs / 1000, 0)} s`;
    console.log(`| server memory, MiB | start | after warm-up | ${mark} | end | peak |`);
    console.log(
      `| ------------------ | ----- | ------------- | ${"-".repeat(mark.length)} | --- | ---- |`,
    );
    for (const [name, key] of [["resident (VmRSS)", "rss"], ["V8 live heap", "heap"]] as const) {
      const cells = [atStart, afterWarmUp, mid, atEnd].map((reading) => fixed(reading[key]));
      const peak = key === "rss" ? fixed(rssPeak) : "-";
      console.log(`| ${name} | ${cells.join(" | ")} | ${peak} |`);
    }
    console.log("");
    const logged = [...server.logged].sort().map(([s, n]) => `${s}: ${n}`).join(", ");
    console.log(`The server's access log: ${logged} (499: a client that hung up mid-job).`);

    const problems: string[] = [];
    if (fivexx > 0) problems.push(`${fivexx} responses were 5xx`);
    if (dropped.length > 0) {
      problems.push(
        `${dropped.length} connections dropped, e.g. ${dropped.slice(0, 3).join("; ")}`,
      );
    }
    if (queue.running !== 0 || queue.waiting !== 0) {
      problems.push(`the queue had not drained ${DRAIN_MS / 1000} s after the load stopped`);
    }
    if (exit.code !== 0) problems.push(`the server exited with ${exit.code}`);
    if (/\b500 on\b/.test(server.stderr())) problems.push("the server logged bugs");
    if (problems.length > 0) {
      console.error(`\nFAILED:\n- ${problems.join("\n- ")}\n\nserver stderr:\n${server.stderr()}`);
      return 1;
    }
    return 0;
  } finally {
    clearTimeout(watchdog);
    if (server && !exited) {
      server.process.kill("SIGKILL");
      await server.process.status;
    }
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.exit(await main());
