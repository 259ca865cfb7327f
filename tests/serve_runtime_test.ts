import assert from "node:assert/strict";
import { decodePng } from "../lib/png.ts";
import { createApp } from "../serve/app.ts";
import { batchedDenoiser } from "../model/batcher.ts";
import type { ExecutionProvider } from "../model/onnx.ts";
import { providerCandidates } from "../serve/provider.ts";
import type { ModelRegistry } from "../serve/registry.ts";
import { readModelSources } from "../serve/sources.ts";
import { loadWorkerRegistry, startNetworkWorker } from "../serve/worker.ts";
import { postJson } from "./serve_helpers.ts";

const WEIGHTS = new URL("../weights/", import.meta.url).pathname;
const SHIPPED = (await readModelSources(WEIGHTS)).filter((s) =>
  ["mnist", "mnist-cond", "fashion-cond"].includes(s.name)
);
const mnist = SHIPPED.filter((s) => s.name === "mnist");
const none = () => Promise.resolve(null);

/** A network whose output row is its input row plus its timestep, so a misplaced row shows. */
function recordingNetwork(sizes: number[][]) {
  return (x: Float32Array, t: Float32Array, _labels: Int32Array, shape: readonly number[]) => {
    const per = x.length / shape[0];
    sizes.push([shape[0]]);
    return Promise.resolve(x.map((v, i) => v + t[Math.floor(i / per)]));
  };
}

Deno.test("batchedDenoiser merges concurrent calls up to maxBatch and hands each its rows", async () => {
  const sizes: number[][] = [];
  const callers: number[] = [];
  const denoiser = batchedDenoiser(recordingNetwork(sizes), {
    maxBatch: 4,
    onBatch: (_rows, n) => callers.push(n),
  });
  // Three callers of 3, 2 and 1 two-value images, all queued before the first call returns.
  const call = (n: number, base: number) =>
    denoiser(
      Float32Array.from({ length: 2 * n }, (_, i) => base + i),
      Float32Array.from({ length: n }, (_, i) => 100 * (i + 1)),
      [n, 1, 1, 2],
    );
  const [a, b, c] = await Promise.all([call(3, 0), call(2, 10), call(1, 20)]);
  // Row j of a caller gets its own x plus its own timestep 100 (j + 1), wherever it ran.
  assert.deepEqual([...a], [100, 101, 202, 203, 304, 305]);
  assert.deepEqual([...b], [110, 111, 212, 213]);
  assert.deepEqual([...c], [120, 121]);
  // The first call goes at once (3 rows, alone); the other two queue behind it and share the
  // next; the 4-row limit is never passed.
  assert.deepEqual(sizes.map((s) => s[0]), [3, 3]);
  assert.deepEqual(callers, [1, 2]);
});

Deno.test("batchedDenoiser splits a call larger than maxBatch and runs a lone row as two", async () => {
  const sizes: number[][] = [];
  const denoiser = batchedDenoiser(recordingNetwork(sizes), { maxBatch: 2 });
  const x = Float32Array.from({ length: 5 }, (_, i) => i);
  const out = await denoiser(x, new Float32Array(5).fill(1), [5, 1, 1, 1]);
  assert.deepEqual([...out], [1, 2, 3, 4, 5]);
  // 2 + 2 + 1, the last padded with a copy of its row (batch-size invariance, model/batcher.ts).
  assert.deepEqual(sizes.map((s) => s[0]), [2, 2, 2]);
});

/**
 * A learned-variance network: each output row is twice its input row, the input plus its
 * timestep, then the input minus it (as a prediction and then v would be), so a misplaced or
 * mis-split row shows.
 */
function learnedNetwork(sizes: number[]) {
  return (x: Float32Array, t: Float32Array, _labels: Int32Array, shape: readonly number[]) => {
    const per = x.length / shape[0];
    sizes.push(shape[0]);
    const out = new Float32Array(2 * x.length);
    for (let i = 0; i < shape[0]; i++) {
      for (let j = 0; j < per; j++) {
        out[2 * i * per + j] = x[i * per + j] + t[i];
        out[(2 * i + 1) * per + j] = x[i * per + j] - t[i];
      }
    }
    return Promise.resolve(out);
  };
}

Deno.test("batchedDenoiser hands each caller its rows of a network that outputs twice its input", async () => {
  const sizes: number[] = [];
  const denoiser = batchedDenoiser(learnedNetwork(sizes), { maxBatch: 4 });
  const call = (n: number, base: number) =>
    denoiser(
      Float32Array.from({ length: 2 * n }, (_, i) => base + i),
      Float32Array.from({ length: n }, (_, i) => 100 * (i + 1)),
      [n, 1, 1, 2],
    );
  // 3 rows alone, then 5 rows split 4 + 1 (the 1 padded to 2) with the lone row of the third.
  const [a, b, c] = await Promise.all([call(3, 0), call(5, 10), call(1, 20)]);
  assert.deepEqual(sizes, [3, 4, 2]);
  // Per row: x + t, then x - t.
  assert.deepEqual([...a], [100, 101, -100, -99, 202, 203, -198, -197, 304, 305, -296, -295]);
  assert.deepEqual([...c], [120, 121, -80, -79]);
  assert.equal(b.length, 2 * 2 * 5);
  for (let i = 0; i < 5; i++) {
    const x = [10 + 2 * i, 11 + 2 * i], t = 100 * (i + 1);
    assert.deepEqual([...b.subarray(4 * i, 4 * i + 4)], [x[0] + t, x[1] + t, x[0] - t, x[1] - t]);
  }
});

Deno.test("batchedDenoiser rejects a network output that is not whole rows, naming the sizes", async () => {
  const denoiser = batchedDenoiser((x) => Promise.resolve(new Float32Array(x.length + 1)));
  await assert.rejects(
    async () => await denoiser(new Float32Array(4), new Float32Array(2), [2, 1, 1, 2]),
    new RangeError("the network returned 5 values for 2 rows of 2; expected a multiple of 2"),
  );
});

Deno.test("batchedDenoiser with merge off runs each caller's rows on their own", async () => {
  const sizes: number[][] = [];
  const denoiser = batchedDenoiser(recordingNetwork(sizes), { maxBatch: 8, merge: false });
  const one = (n: number) => denoiser(new Float32Array(n), new Float32Array(n), [n, 1, 1, 1]);
  await Promise.all([one(3), one(3), one(4)]);
  assert.deepEqual(sizes.map((s) => s[0]), [3, 3, 4]);
});

Deno.test("batchedDenoiser rejects every caller of a failed network call, and recovers", async () => {
  let fail = true;
  const denoiser = batchedDenoiser((x) => {
    if (fail) return Promise.reject(new Error("boom"));
    return Promise.resolve(x.slice());
  });
  const one = () => denoiser(new Float32Array(2), new Float32Array(2), [2, 1, 1, 1]);
  const results = await Promise.allSettled([one(), one()]);
  assert.deepEqual(results.map((r) => r.status), ["rejected", "rejected"]);
  fail = false;
  assert.equal((await one()).length, 2);
  assert.throws(
    () => denoiser(new Float32Array(4), new Float32Array(1), [1, 1, 2, 2]),
    /images must be 1x1x1 for this network, got 1x2x2/,
  );
});

/**
 * Each row of a batch is computed on its own: in any batch of 2 to 64 rows a row comes out
 * bit for bit the same. This is what lets `model/batcher.ts` merge requests without changing
 * their bytes; a lone row is the exception on multi-threaded WebAssembly (checked below so a
 * runtime upgrade that changes it shows up here).
 */
for (const provider of ["wasm", "native"] as const) {
  Deno.test(`${provider}: a row's output does not depend on the batch around it (2..64 rows)`, async () => {
    // In the worker, as the server runs it (multi-threaded WebAssembly on the main thread
    // would also hang later workers' WebAssembly threads in this process).
    const worker = await startNetworkWorker(mnist, provider, 2);
    try {
      const call = worker.network(0);
      const per = 28 * 28;
      const all = 64;
      const x = Float32Array.from({ length: all * per }, (_, i) => Math.sin(i * 0.37));
      const t = Float32Array.from({ length: all }, (_, i) => (i * 37) % 1000);
      const run = (from: number, n: number) =>
        call(
          x.slice(from * per, (from + n) * per),
          t.slice(from, from + n),
          new Int32Array(n),
          [n, 1, 28, 28],
        );
      const reference = await run(0, all);
      for (const [from, n] of [[0, 2], [62, 2], [5, 3], [17, 16], [31, 33]]) {
        const got = await run(from, n);
        const want = reference.subarray(from * per, (from + n) * per);
        assert.ok(got.every((v, i) => v === want[i]), `rows ${from}..${from + n - 1} alone differ`);
      }
      const lone = await run(9, 1);
      const gap = Math.max(...lone.map((v, i) => Math.abs(v - reference[9 * per + i])));
      console.log(`${provider}: a lone row differs from the same row in a batch by ${gap}`);
      assert.ok(gap < 1e-5, `a lone row differs by ${gap}`);
    } finally {
      await worker.close();
    }
  });
}

/** `n` PNG grids as bytes, requested at the same time. */
async function samples(
  registry: ModelRegistry,
  bodies: Record<string, unknown>[],
): Promise<Uint8Array[]> {
  const { app } = createApp({ registry });
  const responses = await Promise.all(bodies.map((body) => postJson(app, "/v1/samples", body)));
  return await Promise.all(responses.map(async (response) => {
    assert.equal(response.status, 200, await response.clone().text());
    return new Uint8Array(await response.arrayBuffer());
  }));
}

for (const provider of ["wasm", "native"] as const) {
  Deno.test(`${provider} worker: a request alone and beside others gives the same PNG bytes`, async () => {
    const batches: [number, number][] = [];
    const registry = await loadWorkerRegistry(SHIPPED, provider, {
      threads: 2,
      probe: none,
      onBatch: (_model, rows, callers) => batches.push([rows, callers]),
    });
    try {
      assert.equal(registry.provider.name, provider);
      const request = { model: "mnist-cond", n: 3, steps: 4, seed: 11, label: 7, guidance: 2 };
      const [alone] = await samples(registry, [request]);
      assert.ok(batches.every(([, callers]) => callers === 1));
      batches.length = 0;
      // Beside a 1-image and a 5-image request with other steps, seeds and classes, started
      // first so the three are at different steps when their calls merge.
      const [, , beside] = await samples(registry, [
        // No class, and no guidance, as these were written before classes were drawn and
        // guided by default: the merge depends on when each call reaches the queue.
        { model: "mnist-cond", n: 1, steps: 7, seed: 1, label: null },
        { model: "mnist-cond", n: 5, steps: 3, seed: 2, label: 3, guidance: 0 },
        request,
      ]);
      assert.ok(batches.some(([, callers]) => callers === 3), "the three requests shared a call");
      assert.deepEqual(beside, alone);
    } finally {
      await Promise.all(registry.models.map((m) => m.close()));
    }
  });
}

Deno.test("native onnxruntime agrees with WebAssembly on the shipped models, to 1e-4 and the 8-bit grid", async () => {
  const outputs: Record<ExecutionProvider, Float32Array[]> = { wasm: [], webgpu: [], native: [] };
  const pngs: Record<ExecutionProvider, Uint8Array[]> = { wasm: [], webgpu: [], native: [] };
  for (const provider of ["wasm", "native"] as const) {
    const registry = await loadWorkerRegistry(SHIPPED, provider, { threads: 2, probe: none });
    try {
      for (const model of registry.models) {
        const n = 8;
        const [c, h, w] = model.imageShape;
        const x = Float32Array.from({ length: n * c * h * w }, (_, i) => Math.cos(i * 0.11));
        const t = Float32Array.from({ length: n }, (_, i) => 1 + i * 133);
        const labels = model.classes.length > 0
          ? Int32Array.from({ length: n }, (_, i) => i % (model.classes.length + 1))
          : undefined;
        outputs[provider].push(await model.denoiser(x, t, [n, c, h, w], labels));
      }
      pngs[provider] = await samples(
        registry,
        SHIPPED.map(({ name }) => ({ model: name, n: 4, steps: 10, seed: 3 })),
      );
    } finally {
      await Promise.all(registry.models.map((m) => m.close()));
    }
  }
  for (const [i, { name }] of SHIPPED.entries()) {
    const wasm = outputs.wasm[i];
    const native = outputs.native[i];
    // 1e-4 of the output's scale (its largest magnitude): both run the same float32 graph,
    // differing only in kernel order of summation and fused multiply-adds, whose relative
    // error over the network's ~10^4-term sums is about 10^4 * 6e-8 = 6e-4 at worst and far
    // less in practice (errors cancel); measured gaps are below 1e-5 of the scale.
    const scale = Math.max(...wasm.map(Math.abs));
    const gap = Math.max(...wasm.map((v, j) => Math.abs(v - native[j])));
    console.log(
      `${name}: native - wasm at most ${gap.toExponential(2)} (scale ${scale.toFixed(2)})`,
    );
    assert.ok(gap <= 1e-4 * scale, `${name}: ${gap} > 1e-4 x ${scale}`);
    // The same seed gives the same bytes where every pixel lands in the same 8-bit bin. A gap
    // of ~1e-6 cannot always do that: a pixel within 1e-6 of a rounding boundary goes either
    // way (measured: mnist and mnist-cond identical, fashion-cond one pixel of 3,844 one level
    // apart). So the pixels must agree to within one level, in at most 1 in 1,000, and the
    // bytes must be identical whenever the pixels are (the encoder is deterministic).
    const wasmPixels = decodePng(pngs.wasm[i]).data;
    const nativePixels = decodePng(pngs.native[i]).data;
    let off = 0;
    for (const [j, v] of wasmPixels.entries()) {
      const levels = Math.abs(v - nativePixels[j]);
      assert.ok(levels <= 1, `${name}: pixel ${j} is ${levels} levels apart`);
      off += levels;
    }
    console.log(`${name}: ${off} of ${wasmPixels.length} pixels one level apart`);
    assert.ok(off <= wasmPixels.length / 1000, `${name}: ${off} pixels differ`);
    if (off === 0) assert.deepEqual(pngs.native[i], pngs.wasm[i], `${name}: other PNG bytes`);
  }
});

Deno.test("the worker falls back past a provider that will not start, and says why", async () => {
  const candidates = await providerCandidates("auto", none);
  assert.deepEqual(candidates.map((c) => c.name), ["native", "wasm"]);
  const registry = await loadWorkerRegistry(mnist, "auto", {
    threads: 1,
    probe: () => Promise.resolve({ name: "Test GPU", software: false }),
  });
  try {
    // A "hardware" adapter that the worker's WebGPU cannot open: native comes next.
    assert.ok(["webgpu", "native"].includes(registry.provider.name));
    if (registry.provider.name === "native") {
      assert.match(registry.provider.reason, /webgpu failed to start/);
    }
    assert.match(registry.provider.reason, /; 1 thread$/);
  } finally {
    await Promise.all(registry.models.map((m) => m.close()));
  }
});

Deno.test("GET /healthz answers while the worker computes and jobs wait", async () => {
  const registry = await loadWorkerRegistry(mnist, "wasm", { threads: 2, probe: none });
  try {
    const { app, queue } = createApp({ registry, limits: { concurrency: 1, queueSize: 1 } });
    const body = { n: 64, steps: 200, seed: 0 };
    const controller = new AbortController();
    const jobs = [0, 1].map(() =>
      postJson(app, "/v1/samples", body, { signal: controller.signal }).then(
        (r) => r.status,
        (e: Error) => e.name,
      )
    );
    while (queue.stats().waiting < 1) await new Promise((r) => setTimeout(r, 5));
    // The queue is full: a third job is refused at once, and /healthz answers, both while the
    // first job's 200 network calls are still ahead of it.
    const refused = await postJson(app, "/v1/samples", body);
    assert.equal(refused.status, 429);
    await refused.body?.cancel();
    const health = await (await app.request("/healthz")).json();
    assert.deepEqual(health.queue, { running: 1, waiting: 1, concurrency: 1, queueSize: 1 });
    // Hanging up stops both jobs (the waiting one leaves the queue, the running one stops at
    // its next step) and frees the queue.
    controller.abort();
    await Promise.all(jobs);
    while (queue.stats().running > 0) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(queue.stats(), { running: 0, waiting: 0, concurrency: 1, queueSize: 1 });
  } finally {
    await Promise.all(registry.models.map((m) => m.close()));
  }
});

Deno.test("the edge entry's module graph has no onnxruntime-node and no worker", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "serve/edge.ts"],
    cwd: new URL("..", import.meta.url),
  }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  const graph = JSON.parse(new TextDecoder().decode(output.stdout));
  const specifiers: string[] = graph.modules.map((m: { specifier: string }) => m.specifier);
  assert.ok(specifiers.some((s) => s.endsWith("serve/registry.ts")));
  const native = specifiers.filter((s) =>
    /onnxruntime-node|model\/native\.ts$|serve\/(worker|network_worker)\.ts$/.test(s)
  );
  assert.deepEqual(native, []);
});
