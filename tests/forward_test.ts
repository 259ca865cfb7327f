import assert from "node:assert/strict";
import { qMeanVariance, qPosterior, qSample } from "../lib/forward.ts";
import { createRng } from "../lib/rng.ts";
import { makeSchedule } from "../lib/schedule.ts";
import { assertClose, moments } from "./_stats.ts";

const schedule = makeSchedule();

Deno.test("closed-form q(x_t | x_0) agrees with composing the one-step transitions (eq. 2 vs eq. 4)", () => {
  // Chains of eq. 2 steps x_s = sqrt(1 - beta_s) x_{s-1} + sqrt(beta_s) z from a fixed x0,
  // compared at several t with the eq. 4 mean and variance; 4 standard errors each.
  const chains = 20_000;
  const x0 = 0.7;
  const rng = createRng(21);
  const x = new Float64Array(chains).fill(x0);
  const checkpoints = new Set([0, 9, 99, 499, 999]);
  for (let s = 0; s < 1000; s++) {
    const a = Math.sqrt(1 - schedule.betas[s]);
    const b = Math.sqrt(schedule.betas[s]);
    const z = rng.normal64(chains);
    for (let i = 0; i < chains; i++) x[i] = a * x[i] + b * z[i];
    if (checkpoints.has(s)) {
      const m = moments(x);
      const q = qMeanVariance(schedule, new Float32Array([x0]), [s], [1, 1, 1, 1]);
      assertClose(m.mean, q.mean[0], 4 * m.meanSe + 1e-7, `mean at t=${s}`);
      assertClose(m.variance, q.variance[0], 4 * m.varianceSe, `variance at t=${s}`);
    }
  }
});

Deno.test("qSample() is sqrt(abar) x0 + sqrt(1 - abar) eps per example timestep", () => {
  const x0 = Float32Array.from({ length: 2 * 3 * 2 * 2 }, (_, i) => (i % 7) / 7 - 0.5);
  const noise = createRng(1).normal(x0.length);
  const t = [3, 800];
  const xt = qSample(schedule, x0, t, noise, [2, 3, 2, 2]);
  for (let j = 0; j < x0.length; j++) {
    const n = Math.floor(j / 12);
    const expected = schedule.sqrtAlphasCumprod[t[n]] * x0[j] +
      schedule.sqrtOneMinusAlphasCumprod[t[n]] * noise[j];
    assertClose(xt[j], expected, 1e-6, `x_t[${j}]`); // float32 rounding of the result
  }
  assert.throws(
    () => qSample(schedule, x0, [3, 1000], noise, [2, 3, 2, 2]),
    /t\[1\] must be an integer in 0\.\.999, got 1000/,
  );
  assert.throws(
    () => qSample(schedule, x0, [3], noise, [2, 3, 2, 2]),
    /one timestep per example \(2\), got 1/,
  );
  assert.throws(
    () => qSample(schedule, x0.subarray(1), t, noise, [2, 3, 2, 2]),
    /x0 must have 24 elements/,
  );
});

Deno.test("qPosterior() matches Bayes' rule evaluated numerically on a grid", () => {
  // q(x_{t-1} | x_t, x_0) is proportional to q(x_t | x_{t-1}) q(x_{t-1} | x_0). Normalise
  // the product on a fine grid and take its mean and variance. A grid of 1e5 points over
  // +-12 standard deviations integrates a Gaussian to far below the 1e-6 relative tolerance.
  const normalPdf = (x: number, m: number, v: number) => Math.exp(-((x - m) ** 2) / (2 * v));
  for (const [t, x0, xt] of [[1, 0.3, 0.25], [10, -0.8, 0.1], [500, 0.5, -1.2], [999, 1, 2]]) {
    const beta = schedule.betas[t];
    const abarPrev = schedule.alphasCumprod[t - 1];
    const post = qPosterior(schedule, new Float32Array([x0]), new Float32Array([xt]), [t], [
      1,
      1,
      1,
      1,
    ]);
    const centre = post.mean[0], sd = Math.sqrt(post.variance[0]);
    const points = 100_000;
    let z = 0, m1 = 0, m2 = 0;
    for (let k = 0; k <= points; k++) {
      const y = centre + sd * (-12 + (24 * k) / points);
      const w = normalPdf(xt, Math.sqrt(1 - beta) * y, beta) *
        normalPdf(y, Math.sqrt(abarPrev) * Math.fround(x0), 1 - abarPrev);
      z += w;
      m1 += w * y;
      m2 += w * y * y;
    }
    const mean = m1 / z, variance = m2 / z - mean * mean;
    // The posterior mean is stored in float32: allow its rounding.
    assertClose(post.mean[0], mean, 1e-6 * Math.max(1, Math.abs(mean)), `posterior mean at t=${t}`);
    assertClose(post.variance[0], variance, 1e-6 * variance, `posterior variance at t=${t}`);
  }
});

Deno.test("qPosterior() at t = 0 has zero variance and returns x_0, with the clipped log-variance", () => {
  const post = qPosterior(schedule, new Float32Array([0.4]), new Float32Array([0.41]), [0], [
    1,
    1,
    1,
    1,
  ]);
  assertClose(post.mean[0], 0.4, 1e-7, "mean");
  assert.equal(post.variance[0], 0);
  assert.equal(post.logVariance[0], Math.log(schedule.posteriorVariance[1]));
});
