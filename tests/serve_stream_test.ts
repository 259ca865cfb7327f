import assert from "node:assert/strict";
import { decodePng } from "../lib/png.ts";
import type { Denoiser } from "../lib/samplers.ts";
import { createApp } from "../serve/app.ts";
import { fromBase64 } from "../serve/images.ts";
import { chooseProvider } from "../serve/provider.ts";
import { type ModelRegistry, servedModel } from "../serve/registry.ts";
import { PRESETS } from "../train/network.ts";
import { card, tinyRegistry } from "./_models.ts";
import { postJson, readEvents } from "./serve_helpers.ts";

const wasm = await chooseProvider("wasm");

/**
 * A registry whose one model is a network that takes `ms` per call and predicts zero noise,
 * counting its calls: slow enough to hold a slot, with no onnxruntime in the way.
 */
function slowRegistry(ms: number): { registry: ModelRegistry; calls: () => number } {
  let count = 0;
  const denoiser: Denoiser = async (x) => {
    count++;
    await new Promise((resolve) => setTimeout(resolve, ms));
    return new Float32Array(x.length);
  };
  const model = servedModel("slow", card(PRESETS.tiny), denoiser);
  return { registry: { provider: wasm, models: [model] }, calls: () => count };
}

/**
 * A registry whose one model's network waits, on every call, until `release()`, counting its
 * calls: a job holds its slot for as long as a test needs.
 */
function heldRegistry(): { registry: ModelRegistry; release: () => void; calls: () => number } {
  const gate = Promise.withResolvers<void>();
  let count = 0;
  const denoiser: Denoiser = async (x) => {
    count++;
    await gate.promise;
    return new Float32Array(x.length);
  };
  const model = servedModel("held", card(PRESETS.tiny), denoiser);
  return {
    registry: { provider: wasm, models: [model] },
    release: () => gate.resolve(),
    calls: () => count,
  };
}

/** Waits until `condition` holds, checking every 5 ms, for at most `ms`. */
async function until(condition: () => boolean, ms = 2000): Promise<void> {
  const end = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

Deno.test("POST /v1/samples/stream: start, a step event every k steps with a predicted-x0 PNG, done", async () => {
  const registry = await tinyRegistry();
  const { app } = createApp({ registry });
  const body = { n: 4, sampler: "ddim", steps: 7, every: 3, seed: 21 };
  const response = await postJson(app, "/v1/samples/stream", body);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/event-stream");
  assert.equal(response.headers.get("x-seed"), "21");
  const events = [];
  for await (const event of readEvents(response)) events.push(event);
  assert.deepEqual(events.map((e) => e.event), ["start", "step", "step", "step", "done"]);
  assert.deepEqual(events[0].data, {
    model: "tiny",
    seed: 21,
    sampler: "ddim",
    steps: 7,
    eta: 0,
    n: 4,
    every: 3,
    labels: [null, null, null, null], // an unconditional model: no class for any image
    guidance: 0,
    guidanceInterval: null,
  });
  // Steps 0, 3 and 6 (the last); DDIM-7 with leading spacing visits t = 852, 710, ..., 0.
  const steps = events.slice(1, -1).map((e) => e.data);
  assert.deepEqual(steps.map((s) => [s.step, s.steps, s.t]), [[0, 7, 852], [3, 7, 426], [6, 7, 0]]);
  for (const s of steps) {
    const grid = decodePng(fromBase64(s.png, "png"));
    assert.deepEqual([grid.width, grid.height], [22, 22]); // 2 x 2 tiles of 8 x 8
  }
  // The streamed result is the very grid POST /v1/samples returns for the same request.
  const done = fromBase64(events.at(-1)?.data.png, "png");
  const whole = await postJson(app, "/v1/samples", { n: 4, sampler: "ddim", steps: 7, seed: 21 });
  assert.deepEqual(done, new Uint8Array(await whole.arrayBuffer()));
  await Promise.all(registry.models.map((m) => m.close()));
});

Deno.test("a client that disconnects from the stream stops the work and frees its slot", async () => {
  const { registry, calls } = slowRegistry(5);
  const { app, queue } = createApp({ registry, limits: { concurrency: 1, queueSize: 0 } });
  const response = await postJson(app, "/v1/samples/stream", { n: 1, steps: 1000, every: 1 });
  assert.equal(response.status, 200);
  let seen = 0;
  for await (const event of readEvents(response)) {
    if (event.event === "step" && ++seen === 3) break; // leaving the loop cancels the body
  }
  await until(() => queue.stats().running === 0);
  const after = calls();
  assert.ok(after < 20, `the network ran ${after} times; 1000 steps were asked for`);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(calls(), after, "no network call after the slot was freed");
  // The slot is free: a new job runs at once.
  const next = await postJson(app, "/v1/samples", { n: 1, steps: 2 });
  assert.equal(next.status, 200);
  await next.body?.cancel();
});

Deno.test("a request aborted mid-job stops the network too", async () => {
  const { registry, calls } = slowRegistry(5);
  const { app, queue } = createApp({ registry });
  const controller = new AbortController();
  const request = new Request("http://localhost/v1/samples", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ n: 1, steps: 1000 }),
    signal: controller.signal,
  });
  const pending = app.request(request);
  await until(() => calls() >= 3);
  controller.abort();
  const response = await pending;
  assert.equal(response.status, 499);
  assert.equal((await response.json()).error, "client_closed_request");
  assert.equal(queue.stats().running, 0);
  assert.ok(calls() < 20, `the network ran ${calls()} times`);
});

Deno.test("a request aborted while it waits in the queue leaves the queue", async () => {
  const { registry, release } = heldRegistry();
  const { app, queue } = createApp({
    registry,
    limits: { concurrency: 1, queueSize: 1 },
  });
  const body = { n: 1, steps: 2 };
  const running = postJson(app, "/v1/samples", body);
  const controller = new AbortController();
  const waiting = postJson(app, "/v1/samples", body, { signal: controller.signal });
  await until(() => queue.stats().running === 1 && queue.stats().waiting === 1);
  controller.abort();
  const aborted = await waiting;
  assert.equal(aborted.status, 499);
  assert.equal(queue.stats().waiting, 0, "the waiting place is free");
  // So another job can wait again instead of getting 429.
  const next = postJson(app, "/v1/samples", body);
  await until(() => queue.stats().waiting === 1);
  release();
  assert.deepEqual([(await running).status, (await next).status], [200, 200]);
  assert.deepEqual(queue.stats(), { running: 0, waiting: 0, concurrency: 1, queueSize: 1 });
});

Deno.test("a job that times out while it waits in the queue gets 503 and leaves the queue", async () => {
  const { registry, release } = heldRegistry();
  const { app, queue } = createApp({
    registry,
    limits: { concurrency: 1, queueSize: 2, timeoutMs: 80 },
  });
  const running = postJson(app, "/v1/samples", { n: 1, steps: 2 });
  await until(() => queue.stats().running === 1);
  for (const path of ["/v1/samples", "/v1/samples/stream"]) {
    const waited = await postJson(app, path, { n: 1, steps: 2 });
    if (path === "/v1/samples") {
      assert.equal(waited.status, 503);
      assert.equal((await waited.json()).error, "timeout");
    } else {
      const events = [];
      for await (const event of readEvents(waited)) events.push(event);
      assert.deepEqual(events.map((e) => [e.event, e.data.error]), [["error", "timeout"]]);
    }
    assert.equal(queue.stats().waiting, 0, `${path}: the waiting place is free`);
  }
  release();
  assert.equal((await running).status, 503, "the running job ran past its limit too");
  assert.deepEqual(queue.stats(), { running: 0, waiting: 0, concurrency: 1, queueSize: 2 });
});

Deno.test("over a socket, a client that hangs up frees the slot: plain and streamed requests", async () => {
  const { registry, calls } = slowRegistry(5);
  const { app, queue } = createApp({ registry, limits: { concurrency: 1, queueSize: 0 } });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, app.fetch);
  const base = `http://127.0.0.1:${server.addr.port}`;
  const post = (path: string, body: unknown, signal?: AbortSignal) =>
    fetch(`${base}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal,
    });
  try {
    // 1. A plain request: the client gives up (aborts) while the network runs.
    const controller = new AbortController();
    const plain = post("/v1/samples", { n: 1, steps: 1000 }, controller.signal);
    await until(() => calls() >= 3);
    controller.abort();
    await assert.rejects(plain, (error: Error) => error.name === "AbortError");
    await until(() => queue.stats().running === 0);
    const afterPlain = calls();
    assert.ok(afterPlain < 100, `the network ran ${afterPlain} times; 1000 steps were asked for`);
    // 2. A stream: the client reads two events, then cancels the body.
    const stream = await post("/v1/samples/stream", { n: 1, steps: 1000, every: 1 });
    assert.equal(stream.status, 200);
    let seen = 0;
    for await (const event of readEvents(stream)) {
      if (event.event === "step" && ++seen === 2) break;
    }
    await until(() => queue.stats().running === 0);
    const afterStream = calls();
    assert.ok(afterStream - afterPlain < 100, `the stream ran ${afterStream - afterPlain} steps`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(calls(), afterStream, "no network call after the slot was freed");
    // 3. The one slot is free again.
    const next = await post("/v1/samples", { n: 1, steps: 2 });
    assert.equal(next.status, 200);
    await next.body?.cancel();
  } finally {
    await server.shutdown();
  }
});

Deno.test("a full queue answers 429 with Retry-After; queued jobs then run in turn", async () => {
  const { registry, release, calls } = heldRegistry();
  const { app, queue } = createApp({
    registry,
    limits: { concurrency: 1, queueSize: 1 },
  });
  const body = { n: 1, steps: 2 };
  const first = postJson(app, "/v1/samples", body);
  const second = postJson(app, "/v1/samples", body);
  await until(() => calls() === 1 && queue.stats().waiting === 1);
  for (const path of ["/v1/samples", "/v1/samples/stream"]) {
    const refused = await postJson(app, path, body);
    assert.equal(refused.status, 429);
    const retry = Number(refused.headers.get("retry-after"));
    assert.ok(Number.isInteger(retry) && retry >= 1, `Retry-After ${retry}`);
    const error = await refused.json();
    assert.equal(error.error, "queue_full");
    assert.match(error.detail, /1 jobs are running and 1 waiting; retry in about \d+ s/);
  }
  release();
  assert.deepEqual([(await first).status, (await second).status], [200, 200]);
  assert.deepEqual(queue.stats(), { running: 0, waiting: 0, concurrency: 1, queueSize: 1 });
});

Deno.test("a job past the time limit gets 503 (or an error event) and frees its slot", async () => {
  const { registry, calls } = slowRegistry(10);
  const { app, queue } = createApp({ registry, limits: { timeoutMs: 60 } });
  const response = await postJson(app, "/v1/samples", { n: 1, steps: 1000 });
  assert.equal(response.status, 503);
  assert.ok(Number(response.headers.get("retry-after")) >= 1);
  const body = await response.json();
  assert.equal(body.error, "timeout");
  assert.match(body.detail, /60 ms limit; ask for fewer images or steps/);
  assert.ok(calls() < 20);
  const stream = await postJson(app, "/v1/samples/stream", { n: 1, steps: 1000, every: 100 });
  const events = [];
  for await (const event of readEvents(stream)) events.push(event);
  assert.deepEqual(events.at(-1), {
    event: "error",
    data: {
      error: "timeout",
      detail: "the job ran past its 60 ms limit; ask for fewer images or steps",
      requestId: stream.headers.get("x-request-id"),
    },
  });
  assert.equal(queue.stats().running, 0);
});

Deno.test("on the exported ONNX network a job lets the event loop run: its time limit stops it", async () => {
  // onnxruntime-web on WebAssembly settles `run` through microtasks alone; unless the
  // denoiser yields, the deadline's timer (and every other request) waits for the whole job.
  const registry = await tinyRegistry();
  const { app, queue } = createApp({ registry, limits: { timeoutMs: 100 } });
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 5);
  try {
    const response = await postJson(app, "/v1/samples", { n: 4, steps: 1000, seed: 3 });
    assert.equal(response.status, 503, "the 100 ms limit stopped a 1000-step job");
    assert.equal((await response.json()).error, "timeout");
    assert.ok(ticks >= 2, `a 5 ms interval fired ${ticks} times during the job`);
    assert.equal(queue.stats().running, 0);
  } finally {
    clearInterval(ticker);
    await Promise.all(registry.models.map((m) => m.close()));
  }
});

Deno.test("a stream request with bad input gets a JSON 4xx, not a stream", async () => {
  const { registry } = slowRegistry(0);
  const { app } = createApp({ registry });
  const response = await postJson(app, "/v1/samples/stream", { n: 1, format: "png" });
  assert.equal(response.status, 400);
  assert.match((await response.json()).detail, /Unrecognized key.*format/);
});
