import assert from "node:assert/strict";
import { deadline, JobQueue, QueueFullError } from "../serve/jobs.ts";
import { sampleImages } from "../serve/pipeline.ts";
import { chooseProvider, probeWebGpu } from "../serve/provider.ts";
import { dataRange } from "../model/scaling.ts";
import { servedModel } from "../serve/registry.ts";
import { fetchModelSources, NoModelError, readModelSources } from "../serve/sources.ts";
import { gridImage } from "../serve/images.ts";
import { PRESETS } from "../train/network.ts";
import { card, randomOnnxModel } from "./_models.ts";

const tinyCard = card(PRESETS.tiny);
const never = new AbortController().signal;

Deno.test("auto takes WebGPU only on a hardware adapter; a software one means WebAssembly", async () => {
  const hardware = () => Promise.resolve({ name: "Some GPU", software: false });
  const software = () => Promise.resolve({ name: "llvmpipe (LLVM 15)", software: true });
  const none = () => Promise.resolve(null);
  assert.equal((await chooseProvider("auto", hardware)).name, "webgpu");
  const soft = await chooseProvider("auto", software);
  assert.equal(soft.name, "wasm");
  assert.match(soft.reason, /llvmpipe.*software/);
  assert.equal((await chooseProvider("auto", none)).name, "wasm");
  // Asking for WebGPU by name takes even a software adapter (so it can be tested), not none.
  assert.equal((await chooseProvider("webgpu", software)).name, "webgpu");
  await assert.rejects(chooseProvider("webgpu", none), /no WebGPU adapter/);
  let probed = false;
  const spy = () => {
    probed = true;
    return none();
  };
  assert.equal((await chooseProvider("wasm", spy)).name, "wasm");
  assert.equal(probed, false, "wasm must not probe for a GPU");
  await assert.rejects(
    chooseProvider("cuda" as "wasm"),
    /provider must be one of auto, wasm, webgpu/,
  );
  const here = await probeWebGpu();
  console.log(`this machine's WebGPU adapter: ${here ? JSON.stringify(here) : "none"}`);
});

Deno.test("the pixel range is read from the card's dataScaling text", () => {
  assert.deepEqual(dataRange("x = pixel / 127.5 - 1 (8-bit pixels to [-1, 1])"), [-1, 1]);
  assert.deepEqual(dataRange("[0, 1]"), [0, 1]);
  assert.throws(() => dataRange("pixels as they are", "m"), /model m: dataScaling must name/);
});

Deno.test("a card that cannot be sampled from is refused with the field's name", () => {
  const zero = (x: Float32Array) => new Float32Array(x.length);
  assert.throws(
    () => servedModel("m", { ...tinyCard, prediction: "noise" }, zero),
    /model m: its card cannot be sampled from: prediction/,
  );
  assert.throws(() => servedModel("m", { ...tinyCard, channels: 2 }, zero), /channels/);
  assert.throws(
    () => servedModel("m", { ...tinyCard, schedule: { kind: "linear", timesteps: 1 } }, zero),
    /schedule\.timesteps/,
  );
});

Deno.test("sampling takes T, the prediction and the pixel range from the card", async () => {
  // A network that predicts x0 = 0.5 everywhere. With x0 prediction, DDIM's last step
  // (abar_prev = 1) returns the predicted x0 itself, so every pixel is 0.5 in model space:
  // 0.5 on [0, 1] is 8-bit round(0.5 * 255) = 128; on [-1, 1] it is round(1.5 * 127.5) = 191.
  const calls: number[] = [];
  const half = (x: Float32Array, t: Float32Array) => {
    calls.push(t[0]);
    return new Float32Array(x.length).fill(0.5);
  };
  const schedule = { kind: "cosine", timesteps: 40, betaStart: 1e-4, betaEnd: 0.02 };
  for (const [dataScaling, pixel] of [["[0, 1]", 128], ["[-1, 1]", 191]] as const) {
    calls.length = 0;
    const model = servedModel(
      "m",
      { ...tinyCard, schedule, prediction: "x0", dataScaling },
      half,
    );
    assert.equal(model.schedule.timesteps, 40);
    assert.equal(model.schedule.kind, "cosine");
    const options = { n: 2, eta: 0, spacing: "leading", seed: 0, signal: never } as const;
    await sampleImages(model, { ...options, sampler: "ddpm", steps: 40 });
    // DDPM over the card's T visits every timestep, T - 1 down to 0.
    assert.deepEqual(calls, Array.from({ length: 40 }, (_, i) => 39 - i));
    const x = await sampleImages(model, { ...options, sampler: "ddim", steps: 5 });
    assert.ok(x.every((v) => Math.abs(v - 0.5) < 1e-6), "DDIM's last step returns x0_hat");
    // Grid padding is 0; every image pixel maps through the card's range.
    const grid = gridImage(model, x, 2, 2);
    assert.deepEqual(new Set(grid.data), new Set([0, pixel]));
  }
});

Deno.test("readModelSources: every DDPM model of a folder, sorted; no model is a clear NoModelError", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const error = await readModelSources(dir).catch((e) => e);
    assert.ok(error instanceof NoModelError);
    assert.match(error.message, /no model in .* \(no \.onnx file\)/);
    assert.match(error.message, /deno task export --ckpt/);
    await assert.rejects(readModelSources(`${dir}/missing`), /it does not exist/);
    // An ONNX file without a model card (a classifier, say) is skipped, and said to be.
    await Deno.writeFile(`${dir}/classifier.onnx`, new Uint8Array([1, 2, 3]));
    const skipped: string[] = [];
    const onSkip = (file: string) => skipped.push(file);
    await assert.rejects(
      readModelSources(dir, { onSkip }),
      /no model in .* \(no DDPM model; skipped classifier\.onnx\)/,
    );
    assert.deepEqual(skipped, [`${dir}/classifier.onnx`]);
    const b = randomOnnxModel(PRESETS.tiny, 2), a = randomOnnxModel(PRESETS.tiny, 1);
    await Deno.writeFile(`${dir}/b.onnx`, b);
    await Deno.writeFile(`${dir}/a.onnx`, a);
    await Deno.writeTextFile(`${dir}/a.json`, "{}");
    const sources = await readModelSources(dir, { onSkip });
    assert.deepEqual(sources.map((s) => s.name), ["a", "b"]);
    assert.deepEqual(sources[0].bytes, a);
    assert.deepEqual((await readModelSources(`${dir}/b.onnx`)).map((s) => s.name), ["b"]);
    await assert.rejects(readModelSources(`${dir}/a.json`), /a folder or a \.onnx file/);
    // The edge entry reads the same bytes through fetch.
    const fetched = await fetchModelSources([new URL(`file://${dir}/a.onnx`)]);
    assert.deepEqual(fetched.map((s) => [s.name, s.bytes]), [["a", a]]);
    await assert.rejects(fetchModelSources([new URL(`file://${dir}/none.onnx`)]), NoModelError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("JobQueue: runs at most `concurrency`, queues `queueSize` in order, refuses the next", async () => {
  const queue = new JobQueue({ concurrency: 1, queueSize: 2 });
  const order: string[] = [];
  const gate = Promise.withResolvers<void>();
  const first = queue.run(never, () => {
    order.push("a");
    return gate.promise;
  });
  const second = queue.run(never, () => Promise.resolve(order.push("b")));
  const third = queue.run(never, () => Promise.resolve(order.push("c")));
  assert.deepEqual(queue.stats(), { running: 1, waiting: 2, concurrency: 1, queueSize: 2 });
  assert.throws(() => queue.reserve(never), QueueFullError);
  gate.resolve();
  await Promise.all([first, second, third]);
  assert.deepEqual(order, ["a", "b", "c"]);
  assert.deepEqual(queue.stats(), { running: 0, waiting: 0, concurrency: 1, queueSize: 2 });
});

Deno.test("JobQueue: a job aborted while waiting leaves the queue; Retry-After follows job time", async () => {
  let clock = 0;
  const queue = new JobQueue({ concurrency: 1, queueSize: 1, now: () => clock });
  const held = queue.reserve(never);
  const controller = new AbortController();
  const waiting = queue.reserve(controller.signal);
  assert.equal(queue.stats().waiting, 1);
  controller.abort(new Error("gone"));
  await assert.rejects(waiting.ready, /gone/);
  assert.equal(queue.stats().waiting, 0);
  waiting.release(); // a no-op after the abort
  assert.equal(queue.stats().running, 1);
  // Jobs of 30 s: the running mean (initially 5 s, 20% per job) moves towards 30 s.
  clock = 30_000;
  held.release();
  held.release(); // idempotent
  assert.equal(queue.stats().running, 0);
  assert.equal(queue.retryAfterSeconds(), 10); // 5 + 0.2 * (30 - 5) = 10 s, one round ahead
  const a = queue.reserve(never);
  queue.reserve(never); // waits
  // One running, one waiting, one slot: two rounds of 10 s.
  let full: unknown = null;
  try {
    queue.reserve(never);
  } catch (error) {
    full = error;
  }
  assert.ok(full instanceof QueueFullError);
  assert.equal(full.retryAfterSeconds, 20);
  a.release();
});

Deno.test("deadline() aborts with a TimeoutError, or with the parent's reason first", async () => {
  const timed = deadline(never, 10);
  await new Promise((resolve) => timed.signal.addEventListener("abort", resolve));
  assert.equal((timed.signal.reason as DOMException).name, "TimeoutError");
  timed.dispose();
  const parent = new AbortController();
  const child = deadline(parent.signal, 60_000);
  const reason = new Error("client left");
  parent.abort(reason);
  assert.equal(child.signal.reason, reason);
  child.dispose();
});
