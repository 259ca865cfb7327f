import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createRng } from "../lib/rng.ts";
import { makeSchedule } from "../lib/schedule.ts";
import { initBackend } from "../train/backend.ts";
import { PRESETS } from "../train/network.ts";
import { TfjsOps } from "../train/tfjs_ops.ts";
import { Trainer } from "../train/trainer.ts";

type Shape4 = [number, number, number, number];

/** Largest absolute difference, and the largest magnitude of the reference. */
function compare(reference: Float32Array, got: Float32Array): { error: number; scale: number } {
  let error = 0, scale = 0;
  reference.forEach((v, i) => {
    error = Math.max(error, Math.abs(v - got[i]));
    scale = Math.max(scale, Math.abs(v));
  });
  return { error, scale };
}

// Gradients are sums of up to n * h * w products computed in float32 in different orders on
// the two backends; 1e-5 of the largest magnitude is a few hundred float32 epsilons.
const RELATIVE = 1e-5;

async function convGradients(
  backend: "cpu" | "wasm",
  xShape: Shape4,
  filterShape: Shape4,
  stride: number,
  pad: "same" | "valid",
): Promise<Float32Array[]> {
  await initBackend(backend);
  const rng = createRng(xShape.reduce((a, b) => a * b) + stride);
  const x = tf.tensor4d(rng.normal(xShape.reduce((a, b) => a * b)), xShape);
  const w = tf.tensor4d(rng.normal(filterShape.reduce((a, b) => a * b)), filterShape);
  // A weighted sum makes dy non-uniform, so every position of the gradient is exercised.
  const weights = tf.tensor(
    rng.normal(tf.conv2d(x, w, stride, pad).size),
    tf.conv2d(x, w, stride, pad).shape,
  );
  const f = (a: tf.Tensor, b: tf.Tensor) =>
    tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad), weights));
  const [dx, dw] = tf.grads(f)([x, w]);
  const out = [(await dx.data()) as Float32Array, (await dw.data()) as Float32Array];
  tf.dispose([x, w, weights, dx, dw]);
  return out;
}

Deno.test("wasm Conv2DBackpropFilter and Conv2DBackpropInput match the CPU backend's gradients", async () => {
  const cases: { x: Shape4; f: Shape4; stride: number; pad: "same" | "valid" }[] = [
    { x: [2, 7, 7, 3], f: [3, 3, 3, 4], stride: 1, pad: "same" },
    { x: [2, 8, 8, 3], f: [3, 3, 3, 4], stride: 2, pad: "same" },
    { x: [3, 7, 9, 5], f: [3, 3, 5, 2], stride: 2, pad: "same" },
    { x: [2, 6, 5, 4], f: [1, 1, 4, 3], stride: 1, pad: "same" },
    { x: [1, 9, 9, 2], f: [3, 3, 2, 3], stride: 2, pad: "valid" },
    { x: [4, 5, 5, 16], f: [3, 3, 16, 8], stride: 1, pad: "valid" },
  ];
  for (const c of cases) {
    const [cpuDx, cpuDw] = await convGradients("cpu", c.x, c.f, c.stride, c.pad);
    const [wasmDx, wasmDw] = await convGradients("wasm", c.x, c.f, c.stride, c.pad);
    for (const [what, ref, got] of [["input", cpuDx, wasmDx], ["filter", cpuDw, wasmDw]] as const) {
      const { error, scale } = compare(ref, got);
      assert.ok(
        error <= RELATIVE * scale,
        `${what} gradient ${JSON.stringify(c)}: ${error} of ${scale}`,
      );
    }
  }
});

Deno.test("GroupNorm and upsampling hand-written gradients equal autodiff of their definitions", async () => {
  await initBackend("cpu");
  const rng = createRng(3);
  const shape: Shape4 = [2, 4, 4, 8];
  const x = tf.tensor4d(rng.normal(2 * 4 * 4 * 8), shape);
  const g = tf.tensor1d(rng.normal(8).map((v) => 1 + 0.2 * v));
  const b = tf.tensor1d(rng.normal(8));
  const weights = tf.tensor4d(rng.normal(2 * 4 * 4 * 8), shape);
  const ops = new TfjsOps(new Map([["n.g", g], ["n.b", b]]));
  // GroupNorm by its definition, differentiated by tfjs.
  const reference = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) => {
    const grouped = tf.reshape(xi, [2, 4, 4, 4, 2]);
    const { mean, variance } = tf.moments(grouped, [1, 2, 4], true);
    const normed = tf.div(tf.sub(grouped, mean), tf.sqrt(tf.add(variance, 1e-6)));
    return tf.sum(tf.mul(tf.add(tf.mul(tf.reshape(normed, shape), gi), bi), weights));
  };
  const custom = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) =>
    tf.sum(tf.mul(new TfjsOps(new Map([["n.g", gi], ["n.b", bi]])).groupNorm(xi, "n", 4), weights));
  const expected = tf.grads(reference)([x, g, b]);
  const got = tf.grads(custom)([x, g, b]);
  for (let i = 0; i < 3; i++) {
    const { error, scale } = compare(
      (await expected[i].data()) as Float32Array,
      (await got[i].data()) as Float32Array,
    );
    assert.ok(error <= RELATIVE * scale, `GroupNorm gradient ${i}: ${error} of ${scale}`);
  }
  // Upsampling: the gradient of "repeat each pixel into a 2x2 block" is the block sum.
  const up =
    tf.grads((xi: tf.Tensor) =>
      tf.sum(tf.mul(ops.upsampleNearest2x(xi), tf.tile(weights, [1, 2, 2, 1])))
    )([x])[0];
  const upData = (await up.data()) as Float32Array;
  // The expected gradient by a direct loop over output pixels: input (y/2, x/2) collects them.
  const w = (await tf.tile(weights, [1, 2, 2, 1]).data()) as Float32Array;
  const direct = new Float32Array(upData.length);
  for (let n = 0; n < 2; n++) {
    for (let y = 0; y < 8; y++) {
      for (let xx = 0; xx < 8; xx++) {
        for (let c = 0; c < 8; c++) {
          direct[((n * 4 + (y >> 1)) * 4 + (xx >> 1)) * 8 + c] += w[((n * 8 + y) * 8 + xx) * 8 + c];
        }
      }
    }
  }
  const { error, scale } = compare(direct, upData);
  assert.ok(error <= RELATIVE * scale, `upsampling gradient: ${error} of ${scale}`);
  tf.dispose([x, g, b, weights, up, ...expected, ...got]);
});

Deno.test("a full U-Net training step gives the same loss and update on wasm and cpu", async () => {
  const config = { ...PRESETS.tiny, dropout: 0 };
  const schedule = makeSchedule();
  const batch = createRng(5).uniform(4 * 64).map((u) => 2 * u - 1);
  const results = [];
  for (const backend of ["cpu", "wasm"] as const) {
    await initBackend(backend);
    const trainer = await Trainer.create(
      { config, schedule, optimizer: { warmupSteps: 0, lr: 1e-3 } },
      7,
    );
    try {
      // Two steps: the first moves the zero-initialised output layers, the second then
      // sends gradients through every layer.
      await trainer.trainStep(batch, [4, 1, 8, 8], createRng(1));
      const step = await trainer.trainStep(batch, [4, 1, 8, 8], createRng(2));
      results.push({ step, state: await trainer.state() });
    } finally {
      trainer.dispose();
    }
  }
  const [cpu, wasm] = results;
  assert.ok(
    Math.abs(cpu.step.loss - wasm.step.loss) <= 1e-5 * cpu.step.loss,
    `loss ${cpu.step.loss} vs ${wasm.step.loss}`,
  );
  assert.ok(Math.abs(cpu.step.gradNorm - wasm.step.gradNorm) <= 1e-4 * cpu.step.gradNorm);
  // Adam normalises each update to about lr per weight, so compare the updates' difference
  // with lr: a wrong gradient changes them by O(lr).
  for (const [name, tensor] of Object.entries(cpu.state.params)) {
    const { error } = compare(tensor.data, wasm.state.params[name].data);
    assert.ok(error <= 1e-5, `${name}: parameters differ by ${error} after two steps of lr 1e-3`);
  }
  await initBackend("cpu");
});

Deno.test("wasm Transpose over the heap moves every value where the CPU backend does", async () => {
  const rng = createRng(21);
  const cases: [number[], number[]][] = [
    [[7], [0]],
    [[3, 5], [1, 0]],
    [[2, 3, 4], [2, 0, 1]],
    [[4, 5, 6, 3], [3, 1, 2, 0]], // the filter gradient's input: channels to the front
    [[4, 5, 6, 3], [1, 2, 0, 3]],
    [[3, 3, 4, 5], [0, 1, 3, 2]], // the input gradient's filter: in and out channels swapped
    [[2, 1, 5, 3], [2, 3, 0, 1]], // a size-one axis
    [[2, 3, 2, 2, 3], [4, 0, 1, 2, 3]], // 5 axes: the shipped kernel
  ];
  for (const [shape, perm] of cases) {
    for (const dtype of ["float32", "int32"] as const) {
      const size = shape.reduce((a, b) => a * b, 1);
      const values = rng.normal(size).map((z) => (dtype === "int32" ? Math.round(z * 100) : z));
      const results = [];
      for (const backend of ["cpu", "wasm"] as const) {
        await initBackend(backend);
        const x = tf.tensor(values, shape, dtype);
        const y = tf.transpose(x, perm);
        results.push({ shape: y.shape, data: await y.data() });
        tf.dispose([x, y]);
      }
      assert.deepEqual(results[1], results[0], `${dtype} [${shape}] by [${perm}]`);
    }
  }
  await initBackend("cpu");
});

Deno.test("wasm Identity shares memory: a clone outlives its source and gradients are unchanged", async () => {
  await initBackend("wasm");
  const buffers = () => tf.backend().numDataIds();
  const before = buffers();
  const x = tf.tensor([1, 2, 3, 4], [2, 2]);
  const y = tf.clone(x);
  assert.equal(buffers(), before + 1, "one buffer for both");
  x.dispose();
  assert.deepEqual(await y.data(), Float32Array.of(1, 2, 3, 4));
  y.dispose();
  assert.equal(buffers(), before, "freed with its last reference");
  // A gradient that saves its inputs for the backward pass (clones, then frees them).
  const a = tf.tensor([0.5, -1, 2]);
  const g = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.sigmoid(v), v)))(a);
  const s = [0.5, -1, 2].map((v) => 1 / (1 + Math.exp(-v)));
  const expected = s.map((si, i) => si + [0.5, -1, 2][i] * si * (1 - si));
  (await g.data()).forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-6));
  tf.dispose([a, g]);
  await initBackend("cpu");
});
