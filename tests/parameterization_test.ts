import assert from "node:assert/strict";
import type { Shape } from "../lib/forward.ts";
import { qSample } from "../lib/forward.ts";
import {
  pMeanVariance,
  predictEpsFromV,
  predictEpsFromX0,
  predictV,
  predictX0,
  predictX0FromEps,
  predictX0FromV,
  reverseVariance,
  trainingTarget,
} from "../lib/parameterization.ts";
import { createRng } from "../lib/rng.ts";
import { makeSchedule } from "../lib/schedule.ts";
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
    /variance must be one of fixedsmall, fixedlarge, got learned/,
  );
});
