import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createRng } from "../lib/rng.ts";
import { initBackend } from "../train/backend.ts";
import { PRESETS } from "../train/network.ts";
import {
  adamEmaUpdate,
  flattenTensors,
  globalNorm,
  paramLayout,
  unflattenTensors,
} from "../train/optimizer.ts";

const layout = paramLayout(PRESETS.tiny);

/** Buffers of random values: weights and gradients of mixed scales, a non-negative v. */
function randomBuffers(seed: number) {
  const rng = createRng(seed);
  const scaled = (s: number) => rng.normal(layout.total).map((z) => z * s);
  return {
    params: scaled(0.3),
    grads: scaled(0.02).map((g, i) => (i % 97 === 0 ? g * 1e4 : g)), // a few large entries
    m: scaled(0.01),
    v: scaled(0.001).map((x) => x * x),
    ema: scaled(0.3),
  };
}

const settings = {
  gradClip: 1,
  beta1: 0.9,
  beta2: 0.999,
  epsilon: 1e-8,
  stepSize: 2e-4 * Math.sqrt(1 - 0.999 ** 7) / (1 - 0.9 ** 7),
  emaDecay: 0.95,
};

Deno.test("the fused update follows Adam, clipping and the EMA (float64 reference)", () => {
  const b = randomBuffers(1);
  const before = structuredClone(b);
  const gradNorm = globalNorm(layout, b.grads);
  adamEmaUpdate(b, { ...settings, gradNorm });
  // The same formulas in float64 from the same inputs. Each float32 operation rounds with
  // relative error 2^-24; a chain of about ten of them is within 1e-6 of the sum of the absolute
  // values of the terms (a sum of terms of opposite signs can cancel, so the bound is on the
  // terms, not on the result).
  const scale = settings.gradClip / Math.max(gradNorm, settings.gradClip);
  const close = (name: string, i: number, got: number, want: number, terms: number) =>
    assert.ok(Math.abs(got - want) <= 1e-6 * terms, `${name}[${i}]: ${got} vs ${want}`);
  for (let i = 0; i < layout.total; i += 13) {
    const g = before.grads[i] * scale;
    const m = 0.9 * before.m[i] + 0.1 * g;
    const v = 0.999 * before.v[i] + 0.001 * g * g;
    const step = settings.stepSize * m / (Math.sqrt(v) + 1e-8);
    const p = before.params[i] - step;
    const e = 0.95 * before.ema[i] + 0.05 * p;
    close("m", i, b.m[i], m, Math.abs(0.9 * before.m[i]) + Math.abs(0.1 * g));
    close("v", i, b.v[i], v, v);
    close("p", i, b.params[i], p, Math.abs(before.params[i]) + Math.abs(step));
    close("ema", i, b.ema[i], e, Math.abs(0.95 * before.ema[i]) + Math.abs(0.05 * p));
  }
  // The norm itself: sum of squares of all gradients.
  let sum = 0;
  for (const g of before.grads) sum += g * g;
  assert.ok(Math.abs(gradNorm - Math.sqrt(sum)) <= 1e-5 * Math.sqrt(sum));
  assert.ok(gradNorm > 1, "the test clips");
});

Deno.test("the fused update is bit-identical to the tfjs kernel sequence on WebAssembly", async () => {
  await initBackend("wasm");
  const b = randomBuffers(2);
  const named = (flat: Float32Array) => unflattenTensors(layout, flat);
  const vars = Object.fromEntries(
    (["params", "m", "v", "ema"] as const).map((k) => [
      k,
      Object.values(named(b[k])).map(({ data, shape }) => tf.variable(tf.tensor(data, shape))),
    ]),
  );
  const grads = Object.values(named(b.grads)).map(({ data, shape }) => tf.tensor(data, shape));
  // The in-thread trainer's kernels: per-tensor sums of squares added pairwise, then Adam.
  tf.tidy(() => {
    let level = grads.map((g) => tf.sum(tf.square(g)));
    while (level.length > 1) {
      const next = [];
      for (let i = 0; i < level.length; i += 2) {
        next.push(i + 1 < level.length ? tf.add(level[i], level[i + 1]) : level[i]);
      }
      level = next;
    }
    const norm = tf.sqrt(level[0]);
    assert.equal(norm.dataSync()[0], globalNorm(layout, b.grads), "gradient norm");
    const clip = tf.div(settings.gradClip, tf.maximum(norm, settings.gradClip));
    grads.forEach((g0, i) => {
      const [p, m, v, e] = [vars.params[i], vars.m[i], vars.v[i], vars.ema[i]];
      const g = tf.mul(g0, clip);
      m.assign(tf.add(tf.mul(m, settings.beta1), tf.mul(g, 1 - settings.beta1)));
      v.assign(tf.add(tf.mul(v, settings.beta2), tf.mul(tf.square(g), 1 - settings.beta2)));
      p.assign(
        tf.sub(p, tf.mul(settings.stepSize, tf.div(m, tf.add(tf.sqrt(v), settings.epsilon)))),
      );
      e.assign(tf.add(tf.mul(e, settings.emaDecay), tf.mul(p, 1 - settings.emaDecay)));
    });
  });
  adamEmaUpdate(b, { ...settings, gradNorm: globalNorm(layout, b.grads) });
  for (const k of ["params", "m", "v", "ema"] as const) {
    const kernels = flattenTensors(
      layout,
      Object.fromEntries(layout.names.map((name, i) => [name, {
        shape: [...layout.shapes[i]],
        data: vars[k][i].dataSync() as Float32Array,
      }])),
    );
    assert.deepEqual(b[k], kernels, k);
  }
  tf.dispose([...grads, ...Object.values(vars).flat()]);
  await initBackend("cpu");
});

Deno.test("flat layouts round-trip and name what is missing or extra", () => {
  const b = randomBuffers(3);
  const named = unflattenTensors(layout, b.params);
  assert.deepEqual(flattenTensors(layout, named), b.params);
  const { ["conv_out.b"]: _dropped, ...missing } = named;
  assert.throws(
    () => flattenTensors(layout, missing, { what: "ema" }),
    /ema has no tensor conv_out.b/,
  );
  assert.throws(
    () => flattenTensors(layout, { ...named, extra: { shape: [1], data: new Float32Array(1) } }),
    /tensors the network lacks: extra/,
  );
});
