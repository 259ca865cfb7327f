/**
 * The serving runtime, from one run, on a shipped model (`weights/mnist.onnx`, or `--model`):
 *
 * 1. The network per call at batch 1, 16 and 64 on each provider the server can use: onnxruntime-
 *    web WebAssembly on one thread in-process (the server before it had a worker), WebAssembly on
 *    `--threads` threads in the network worker, native onnxruntime in the worker, and the peer:
 *    onnxruntime-node called directly in this process, whose time is the ruler (ratio column).
 * 2. End to end, `POST /v1/samples` for 16 images at the API's defaults and with `"steps": 20`,
 *    through `Deno.serve` on 127.0.0.1 as `deno task serve` runs it (worker, provider `auto`).
 * 3. `GET /healthz` latency while the job queue is full (every slot running, every place
 *    waiting, 64-image jobs), p50 and p99 of `--probes` requests.
 * 4. Images per second with 1, 4 and 8 concurrent 4-image requests (default sampler and
 *    steps), batching across requests on and off.
 *
 *   deno task bench:serve [--model weights/mnist.onnx] [--threads <cores>] [--runs 3]
 *
 * Figures track the machine's load: the load average is printed with them.
 */

import { parseArgs } from "node:util";
import { createApp } from "../serve/app.ts";
import { DEFAULT_LIMITS } from "../serve/limits.ts";
import { nativeRuntime } from "../model/native.ts";
import { loadOnnxModel, type OnnxModel, onnxNetworkCall, readModelCard } from "../model/onnx.ts";
import type { NetworkCall } from "../model/batcher.ts";
import type { ModelRegistry } from "../serve/registry.ts";
import { loadWorkerRegistry, startNetworkWorker } from "../serve/worker.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string", default: "weights/mnist.onnx" },
    threads: { type: "string", default: String(navigator.hardwareConcurrency) },
    runs: { type: "string", default: "3" },
    probes: { type: "string", default: "200" },
  },
});
const threads = Number(values.threads);
const runs = Number(values.runs);
const probes = Number(values.probes);
for (const [name, value] of [["threads", threads], ["runs", runs], ["probes", probes]] as const) {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`--${name} must be a positive integer, got ${values[name]}`);
  }
}
const bytes = await Deno.readFile(values.model);
const name = values.model.replace(/^.*\//, "").replace(/\.onnx$/, "");
const sources = [{ name, bytes }];
const noGpu = () => Promise.resolve(null);

const load = () => Deno.loadavg().map((l) => l.toFixed(2)).join(", ");
console.log(
  `${values.model}; ${navigator.hardwareConcurrency} cores (${Deno.build.target}), ` +
    `load average ${load()} at the start; --threads ${threads}; median of ${runs} runs`,
);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

// 1. The network per call.
const batches = [1, 16, 64];
const card = readModelCard(bytes, name);
const [c, h, w] = [card.channels, card.imageSize, card.imageSize];

/** Median ms of one call at batch `n`, over enough calls to last about a second. */
async function timeCalls(call: NetworkCall, n: number): Promise<number> {
  const input = () => ({
    x: Float32Array.from({ length: n * c * h * w }, (_, i) => Math.sin(i)),
    t: new Float32Array(n).fill(500),
    labels: new Int32Array(n).fill(card.config.numClasses ?? 0),
  });
  const once = async () => {
    const { x, t, labels } = input();
    const start = performance.now();
    await call(x, t, labels, [n, c, h, w]);
    return performance.now() - start;
  };
  await once(); // warm-up: kernels, allocations
  const first = await once();
  const count = Math.max(3, Math.min(50, Math.round(1000 / first)));
  const times = [first];
  for (let i = 1; i < count; i++) times.push(await once());
  return median(times);
}

const runtimes: {
  label: string;
  open(): Promise<{ call: NetworkCall; close(): Promise<void> }>;
}[] = [
  {
    label: "onnxruntime-node, direct call (peer)",
    open: async () => {
      const model: OnnxModel = await loadOnnxModel(bytes, "native", name, {
        threads,
        native: nativeRuntime,
      });
      return { call: onnxNetworkCall(model), close: () => model.session.release() };
    },
  },
  {
    label: "server: native, worker",
    open: async () => {
      const worker = await startNetworkWorker(sources, "native", threads);
      return { call: worker.network(0), close: () => worker.close() };
    },
  },
  {
    label: `server: wasm, worker, ${threads} threads`,
    open: async () => {
      const worker = await startNetworkWorker(sources, "wasm", threads);
      return { call: worker.network(0), close: () => worker.close() };
    },
  },
  {
    label: "before: wasm, in-process, 1 thread",
    open: async () => {
      const model = await loadOnnxModel(bytes, "wasm", name, { threads: 1 });
      return { call: onnxNetworkCall(model), close: () => model.session.release() };
    },
  },
];
const perCall: number[][] = [];
for (const runtime of runtimes) {
  const { call, close } = await runtime.open();
  perCall.push([]);
  for (const n of batches) perCall[perCall.length - 1].push(await timeCalls(call, n));
  await close();
}
console.log("");
console.log("| runtime | batch | ms per call | images/s | x peer's time |");
console.log("| ------- | ----- | ----------- | -------- | ------------- |");
for (const [r, runtime] of runtimes.entries()) {
  for (const [b, n] of batches.entries()) {
    const ms = perCall[r][b];
    const cells = [
      runtime.label,
      n,
      ms.toFixed(1),
      (n / (ms / 1000)).toFixed(0),
      (ms / perCall[0][b]).toFixed(2),
    ];
    console.log(`| ${cells.join(" | ")} |`);
  }
}

// 2 to 4 go through a real socket, as `deno task serve` runs (worker, auto provider).
interface Server {
  readonly base: string;
  readonly registry: ModelRegistry;
  close(): Promise<void>;
}

async function startServer(merge: boolean): Promise<Server> {
  const registry = await loadWorkerRegistry(sources, "auto", { threads, merge, probe: noGpu });
  // One client (this process) fills every slot and place below: lift the per-client cap.
  const { app } = createApp({
    registry,
    limits: { maxJobsPerClient: DEFAULT_LIMITS.concurrency + DEFAULT_LIMITS.queueSize + 1 },
  });
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, app.fetch);
  return {
    base: `http://127.0.0.1:${server.addr.port}`,
    registry,
    close: async () => {
      await server.shutdown();
      await Promise.all(registry.models.map((m) => m.close()));
    },
  };
}

async function post(base: string, body: unknown, signal?: AbortSignal): Promise<number> {
  const start = performance.now();
  const response = await fetch(`${base}/v1/samples`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  await response.arrayBuffer();
  if (response.status !== 200) throw new Error(`HTTP ${response.status}`);
  return performance.now() - start;
}

const server = await startServer(true);
await post(server.base, { n: 2, steps: 2 }); // warm-up
console.log("");
console.log(`End to end through the server (${server.registry.provider.reason}):`);
console.log("");
console.log("| request | median s | min s |");
console.log("| ------- | -------- | ----- |");
for (const body of [{ n: 16 }, { n: 16, sampler: "ddim", steps: 20 }]) {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) times.push(await post(server.base, { ...body, seed: i }));
  const cells = [
    `\`${JSON.stringify(body)}\``,
    (median(times) / 1000).toFixed(2),
    (Math.min(...times) / 1000).toFixed(2),
  ];
  console.log(`| ${cells.join(" | ")} |`);
}

// 3. /healthz with the queue full: every slot and waiting place taken by 64-image jobs with
// more steps than the probes outlast; then the clients hang up and the queue drains.
const hangUp = new AbortController();
const slots = DEFAULT_LIMITS.concurrency + DEFAULT_LIMITS.queueSize;
const jobs = Array.from(
  { length: slots },
  (_, i) => post(server.base, { n: 64, steps: 1000, seed: i }, hangUp.signal).catch(() => 0),
);
const health = async () => (await (await fetch(`${server.base}/healthz`)).json()).queue;
while ((await health()).waiting < DEFAULT_LIMITS.queueSize) {
  await new Promise((resolve) => setTimeout(resolve, 20));
}
const refused = await fetch(`${server.base}/v1/samples`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ n: 1 }),
});
await refused.arrayBuffer();
const latencies: number[] = [];
for (let i = 0; i < probes; i++) {
  const start = performance.now();
  const response = await fetch(`${server.base}/healthz`);
  await response.arrayBuffer();
  latencies.push(performance.now() - start);
  await new Promise((resolve) => setTimeout(resolve, 10));
}
const queue = await health();
hangUp.abort();
await Promise.all(jobs);
while ((await health()).running > 0) await new Promise((resolve) => setTimeout(resolve, 20));
await server.close();
console.log("");
console.log(
  `GET /healthz with the queue full (${queue.running} running, ${queue.waiting} waiting 64-image ` +
    `jobs; one more got ${refused.status}), ${probes} probes 10 ms apart:`,
);
console.log("");
console.log("| p50 ms | p99 ms | max ms |");
console.log("| ------ | ------ | ------ |");
console.log(
  `| ${percentile(latencies, 0.5).toFixed(1)} | ${percentile(latencies, 0.99).toFixed(1)} | ${
    Math.max(...latencies).toFixed(1)
  } |`,
);

// 4. Throughput of concurrent 4-image requests, batching on and off.
const levels = [1, 4, 8];
const rows: string[] = [];
const throughput: Record<string, number> = {};
for (const merge of [true, false]) {
  const server = await startServer(merge);
  await post(server.base, { n: 2, steps: 2 });
  for (const clients of levels) {
    const requests = 8 * runs; // the same requests at every level
    let next = 0;
    const start = performance.now();
    await Promise.all(Array.from({ length: clients }, async () => {
      while (next < requests) {
        const seed = next++;
        await post(server.base, { n: 4, seed });
      }
    }));
    const seconds = (performance.now() - start) / 1000;
    const perSecond = (4 * requests) / seconds;
    throughput[`${merge}-${clients}`] = perSecond;
    const gain = perSecond / throughput[`${merge}-1`];
    rows.push(
      `| ${clients} | ${merge ? "on" : "off"} | ${requests} | ${seconds.toFixed(2)} | ` +
        `${perSecond.toFixed(1)} | ${gain.toFixed(2)} |`,
    );
  }
  await server.close();
}
console.log("");
console.log("Concurrent 4-image requests at the API's default sampler and steps:");
console.log("");
console.log("| clients | batching | requests | s | images/s | x one at a time |");
console.log("| ------- | -------- | -------- | - | -------- | --------------- |");
for (const row of rows) console.log(row);
console.log("");
console.log(`load average ${load()} at the end`);
