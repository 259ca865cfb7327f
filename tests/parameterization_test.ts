import assert from "node:assert/strict";
import type { Shape } from "../lib/forward.ts";
import { qSample } from "../lib/forward.ts";
import {
  learnedRangeLogVariance,
  outputFactor,
  pMeanVariance,
  predictEpsFromV,
  predictEpsFromX0,
  predictV,
  predictX0,
  predictX0FromEps,
  predictX0FromV,
  reverseVariance,
  splitModelOutput,
  trainingTarget,
} from "../lib/parameterization.ts";
import { createRng } from "../lib/rng.ts";
import { makeSchedule, respaceSchedule } from "../lib/schedule.ts";
import { assertClose } from "./_stats.ts";

const schedule = makeSchedule();
const shape: Shape = [4, 2, 3, 3];
const size = 4 * 2 * 3 * 3;
const t = [0, 10, 500, 999];
const rng = createRng(4);
const x0 = rng.uniform(size).map((u) => 2 * u - 1);
const eps = rng.normal(size);
const xt = qSample(schedule, x0, t, eps, shape);

function maxError(a: Float32Array, b: Float32Array): number {
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
}

// Round trips go through float32 tensors. Recovering x0 from eps multiplies x_t's rounding
// error by sqrt(1/abar), up to 157 at t = 999, so x0 is compared relative to that factor;
// eps and v stay O(1) and are compared at a few float32 epsilons.
const F32 = 1.2e-7;

Deno.test("eps <-> x0 round trip is exact to float32 tolerance", () => {
  const x0Hat = predictX0FromEps(schedule, xt, t, eps, shape);
  for (let j = 0; j < size; j++) {
    const n = Math.floor(j / 18);
    assertClose(x0Hat[j], x0[j], 8 * F32 * schedule.sqrtRecipAlphasCumprod[t[n]], `x0[${j}]`);
  }
  const epsHat = predictEpsFromX0(schedule, xt, t, x0, shape);
  // At t = 0 eps is recovered by dividing by sqrt(1/abar - 1) = 0.01: relax by that factor.
  for (let j = 0; j < size; j++) {
    const n = Math.floor(j / 18);
    assertClose(epsHat[j], eps[j], 8 * F32 / schedule.sqrtRecipm1AlphasCumprod[t[n]], `eps[${j}]`);
  }
});

Deno.test("v round trips: v from (x0, eps) gives back x0 and eps", () => {
  const v = predictV(schedule, x0, t, eps, shape);
  assert.ok(maxError(predictX0FromV(schedule, xt, t, v, shape), x0) < 8 * F32);
  assert.ok(maxError(predictEpsFromV(schedule, xt, t, v, shape), eps) < 8 * F32);
  assert.equal(trainingTarget("v", schedule, x0, t, eps, shape).length, size);
  assert.equal(trainingTarget("eps", schedule, x0, t, eps, shape), eps);
  assert.equal(trainingTarget("x0", schedule, x0, t, eps, shape), x0);
});

Deno.test("every prediction type yields the same reverse step when the model is exact", () => {
  const fromEps = pMeanVariance(schedule, eps, xt, t, shape, {
    prediction: "eps",
    clipDenoised: false,
  });
  const fromX0 = pMeanVariance(schedule, x0, xt, t, shape, {
    prediction: "x0",
    clipDenoised: false,
  });
  const v = predictV(schedule, x0, t, eps, shape);
  const fromV = pMeanVariance(schedule, v, xt, t, shape, { prediction: "v", clipDenoised: false });
  // The mean is c1 x0 + c2 x_t; c1 <= 1 damps the x0 error from the eps route.
  assert.ok(maxError(fromEps.mean, fromX0.mean) < 2e-5);
  assert.ok(maxError(fromV.mean, fromX0.mean) < 2e-5);
  // An exact model's mean is the true posterior mean.
  for (let j = 0; j < size; j++) {
    const n = Math.floor(j / 18);
    const expected = schedule.posteriorMeanCoef1[t[n]] * x0[j] +
      schedule.posteriorMeanCoef2[t[n]] * xt[j];
    assertClose(fromX0.mean[j], expected, 4 * F32, `mean[${j}]`);
  }
});

Deno.test("eps-model mean equals eq. 11 when nothing is clipped", () => {
  const step = pMeanVariance(schedule, eps, xt, t, shape, { clipDenoised: false });
  for (let j = 0; j < size; j++) {
    const i = t[Math.floor(j / 18)];
    const eq11 = (xt[j] - (schedule.betas[i] / schedule.sqrtOneMinusAlphasCumprod[i]) * eps[j]) /
      Math.sqrt(schedule.alphas[i]);
    assertClose(step.mean[j], eq11, 2e-5, `mean[${j}] at t=${i}`);
  }
});

Deno.test("clipDenoised clips x0 to [-1, 1] and recomputes eps from the clipped x0", () => {
  const wild = new Float32Array(size).fill(5); // an eps that implies |x0| far above 1
  const step = pMeanVariance(schedule, wild, xt, t, shape, { clipDenoised: true });
  assert.ok(step.predX0.every((v) => v >= -1 && v <= 1));
  const eps2 = predictEpsFromX0(schedule, xt, t, step.predX0, shape);
  assert.ok(maxError(eps2, step.predEps) === 0);
  const raw = predictX0("eps", schedule, xt, t, wild, shape);
  assert.ok(raw.some((v) => Math.abs(v) > 1));
});

Deno.test("fixedsmall is beta_tilde and fixedlarge is beta, with beta_tilde[1] at index 0", () => {
  assert.equal(reverseVariance(schedule, "fixedsmall", 5).variance, schedule.posteriorVariance[5]);
  assert.equal(reverseVariance(schedule, "fixedlarge", 5).variance, schedule.betas[5]);
  assert.equal(reverseVariance(schedule, "fixedlarge", 0).variance, schedule.posteriorVariance[1]);
  assert.equal(
    reverseVariance(schedule, "fixedsmall", 0).logVariance,
    Math.log(schedule.posteriorVariance[1]),
  );
  assert.throws(
    () => reverseVariance(schedule, "learned" as never, 0),
    /variance must be one of fixedsmall, fixedlarge, learned-range, got learned/,
  );
});

/** A learned-range output: per example the prediction `prediction`, then `v` (a number or per element). */
function withV(prediction: Float32Array, v: number | Float32Array, shape: Shape): Float32Array {
  const per = shape[1] * shape[2] * shape[3];
  const out = new Float32Array(2 * prediction.length);
  for (let n = 0; n < shape[0]; n++) {
    out.set(prediction.subarray(n * per, (n + 1) * per), 2 * n * per);
    if (typeof v === "number") out.fill(v, (2 * n + 1) * per, (2 * n + 2) * per);
    else out.set(v.subarray(n * per, (n + 1) * per), (2 * n + 1) * per);
  }
  return out;
}

Deno.test("learned-range v = 1 is beta_t, v = -1 the clipped beta_tilde, v = 0 their geometric mean", () => {
  const options = { variance: "learned-range" as const, clipDenoised: false };
  const large = pMeanVariance(schedule, withV(eps, 1, shape), xt, t, shape, options);
  const small = pMeanVariance(schedule, withV(eps, -1, shape), xt, t, shape, options);
  const middle = pMeanVariance(schedule, withV(eps, 0, shape), xt, t, shape, options);
  const per = size / shape[0];
  for (let j = 0; j < size; j++) {
    const index = t[Math.floor(j / per)];
    // frac is exactly 1 or 0 for v = +-1, so the logs come out exact.
    assert.equal(large.logVariance[j], Math.log(schedule.betas[index]));
    assert.equal(small.logVariance[j], schedule.posteriorLogVarianceClipped[index]);
    // ...and equal the fixed variances' logs, except fixedlarge's beta_tilde[1] at index 0.
    if (index > 0) {
      assert.equal(
        large.logVariance[j],
        reverseVariance(schedule, "fixedlarge", index).logVariance,
      );
    }
    assert.equal(small.logVariance[j], reverseVariance(schedule, "fixedsmall", index).logVariance);
    const geometric = Math.sqrt(schedule.betas[index] * Math.exp(small.logVariance[j]));
    assertClose(middle.variance[j], geometric, 1e-12 * geometric, "v = 0 variance");
    assertClose(large.variance[j], Math.exp(large.logVariance[j]), 0, "variance = exp(log)");
  }
});

Deno.test("learned-range: mean, predX0 and predEps come from the prediction half, as the fixed case's", () => {
  const rngV = createRng(9);
  const v = rngV.normal(size);
  for (const prediction of ["eps", "x0", "v"] as const) {
    for (const clipDenoised of [true, false]) {
      const fixed = pMeanVariance(schedule, eps, xt, t, shape, { prediction, clipDenoised });
      const learned = pMeanVariance(schedule, withV(eps, v, shape), xt, t, shape, {
        prediction,
        clipDenoised,
        variance: "learned-range",
      });
      assert.deepEqual(learned.mean, fixed.mean);
      assert.deepEqual(learned.predX0, fixed.predX0);
      assert.deepEqual(learned.predEps, fixed.predEps);
      assert.equal(learned.variance.length, size);
    }
  }
  // Each element has its own variance, from its own v.
  const step = pMeanVariance(schedule, withV(eps, v, shape), xt, t, shape, {
    variance: "learned-range",
  });
  const expected = learnedRangeLogVariance(schedule, v, t, shape);
  assert.deepEqual(step.logVariance, expected);
  assert.ok(new Set(step.logVariance.subarray(0, size / shape[0])).size > 1);
});

Deno.test("fixed variances are per element too: one value repeated over each example", () => {
  const per = size / shape[0];
  for (const variance of ["fixedsmall", "fixedlarge"] as const) {
    const step = pMeanVariance(schedule, eps, xt, t, shape, { variance });
    assert.equal(step.variance.length, size);
    assert.equal(step.logVariance.length, size);
    for (let j = 0; j < size; j++) {
      const fixed = reverseVariance(schedule, variance, t[Math.floor(j / per)]);
      assert.equal(step.variance[j], fixed.variance);
      assert.equal(step.logVariance[j], fixed.logVariance);
    }
  }
});

Deno.test("learned-range on a respaced schedule interpolates between the respaced betas and beta_tildes", () => {
  const respaced = respaceSchedule(schedule, [0, 250, 500, 750, 999]);
  const one: Shape = [2, 1, 1, 2];
  const k = [1, 4];
  const v = Float32Array.of(1, -1, 1, -1);
  const logs = learnedRangeLogVariance(respaced, v, k, one);
  assert.equal(logs[0], Math.log(respaced.betas[1]));
  assert.equal(logs[1], respaced.posteriorLogVarianceClipped[1]);
  assert.equal(logs[2], Math.log(respaced.betas[4]));
  // The respaced beta spans 250 original steps (Nichol & Dhariwal's respacing), ten times the
  // original beta at 250 and more.
  const spanned = 1 - schedule.alphasCumprod[250] / schedule.alphasCumprod[0];
  assertClose(respaced.betas[1], spanned, 1e-12, "respaced beta");
  assert.ok(respaced.betas[1] > 10 * schedule.betas[250]);
});

Deno.test("splitModelOutput splits [n, 2c, h, w] per example and rejects other lengths by name", () => {
  const one: Shape = [2, 2, 1, 1];
  // Example 0: prediction (1, 2), v (3, 4); example 1: prediction (5, 6), v (7, 8).
  const { prediction, varianceValues } = splitModelOutput(
    Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8),
    one,
    "learned-range",
  );
  assert.deepEqual([...prediction], [1, 2, 5, 6]);
  assert.deepEqual([...(varianceValues ?? [])], [3, 4, 7, 8]);
  const fixed = Float32Array.of(1, 2, 3, 4);
  assert.equal(splitModelOutput(fixed, one, "fixedlarge").prediction, fixed);
  assert.equal(splitModelOutput(fixed, one, "fixedlarge").varianceValues, null);
  assert.equal(outputFactor("learned-range"), 2);
  assert.equal(outputFactor("fixedsmall"), 1);

  assert.throws(
    () => pMeanVariance(schedule, eps, xt, t, shape, { variance: "learned-range" }),
    new RangeError(
      `model output must have 2 x ${size} = ${2 * size} values (the prediction, then v) for ` +
        `shape [4, 2, 3, 3] with variance learned-range, got ${size}`,
    ),
  );
  assert.throws(
    () => pMeanVariance(schedule, withV(eps, 0, shape), xt, t, shape, { variance: "fixedsmall" }),
    /must have 72 values for shape \[4, 2, 3, 3\] with variance fixedsmall, got 144 \(twice the image/,
  );
});
