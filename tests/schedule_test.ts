import assert from "node:assert/strict";
import {
  makeSchedule,
  respaceSchedule,
  SCHEDULE_KINDS,
  scheduleFromBetas,
  spacedTimesteps,
} from "../lib/schedule.ts";
import { assertClose } from "./_stats.ts";

// Tables are float64 built from a handful of operations, so relative agreement to 1e-12
// leaves room for a few hundred roundings.
const RTOL = 1e-12;

function isMonotone(a: Float64Array, direction: 1 | -1): boolean {
  for (let i = 1; i < a.length; i++) if ((a[i] - a[i - 1]) * direction < 0) return false;
  return true;
}

Deno.test("paper's linear schedule: betas 1e-4 to 0.02 and abar at the last step about 4.0e-5", () => {
  const s = makeSchedule();
  assert.equal(s.timesteps, 1000);
  assert.equal(s.betas[0], 1e-4);
  assertClose(s.betas[999], 0.02, 1e-17, "last beta");
  // DDPM sec. 4 / the reference: abar_T = prod(1 - beta) = 4.036e-5 for this schedule.
  assertClose(s.alphasCumprod[999], 4.0e-5, 0.1e-5, "abar at T");
});

Deno.test("every kind: betas in (0, 1) (jsd's last is exactly 1), abar non-increasing", () => {
  for (const kind of SCHEDULE_KINDS) {
    const s = makeSchedule({ kind, timesteps: 1000 });
    for (let i = 0; i < 1000; i++) {
      const upper = kind === "jsd" && i === 999 ? 1 : 0.999 + 1e-15;
      assert.ok(s.betas[i] > 0 && s.betas[i] <= upper, `${kind} beta[${i}] = ${s.betas[i]}`);
    }
    if (kind !== "constant" && kind !== "warmup10" && kind !== "warmup50") {
      assert.ok(isMonotone(s.betas, 1), `${kind} betas increase`);
    }
    assert.ok(isMonotone(s.alphasCumprod, -1), `${kind} abar decreases`);
    assert.equal(s.alphasCumprodPrev[0], 1);
  }
});

Deno.test("endpoints of each family follow their definitions", () => {
  const T = 1000;
  const quad = makeSchedule({ kind: "quadratic" });
  assertClose(quad.betas[0], 1e-4, 1e-4 * RTOL, "quadratic start");
  assertClose(quad.betas[T - 1], 0.02, 0.02 * RTOL, "quadratic end");
  assert.ok(makeSchedule({ kind: "constant" }).betas.every((b) => b === 0.02));
  for (const [kind, warm] of [["warmup10", 100], ["warmup50", 500]] as const) {
    const s = makeSchedule({ kind });
    assert.equal(s.betas[0], 1e-4);
    assertClose(s.betas[warm - 1], 0.02, 1e-17, `${kind} end of warm-up`);
    assert.ok(s.betas.subarray(warm).every((b) => b === 0.02), `${kind} flat after warm-up`);
  }
  const jsd = makeSchedule({ kind: "jsd" });
  assertClose(jsd.betas[0], 1 / T, RTOL, "jsd start");
  assert.equal(jsd.betas[T - 1], 1);
  assert.equal(jsd.alphasCumprod[T - 1], 0);
  // jsd makes abar_t = 1 - (t + 1) / T exactly: a telescoping product.
  assertClose(jsd.alphasCumprod[499], 0.5, 1e-12, "jsd abar at the middle");
});

Deno.test("cosine and sigmoid abar match their closed forms wherever beta is not clipped", () => {
  const T = 1000;
  const f = (u: number) => Math.cos(((u + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  const cosine = makeSchedule({ kind: "cosine" });
  const sig = (x: number) => 1 / (1 + Math.exp(-x));
  const g = (u: number) => (sig(3) - sig(6 * u - 3)) / (sig(3) - sig(-3));
  const sigmoid = makeSchedule({ kind: "sigmoid" });
  for (const i of [0, 10, 250, 500, 900, 990]) {
    assertClose(cosine.alphasCumprod[i], f((i + 1) / T) / f(0), 1e-10, `cosine abar[${i}]`);
    assertClose(sigmoid.alphasCumprod[i], g((i + 1) / T), 1e-10, `sigmoid abar[${i}]`);
  }
  // Both reach abar = 0 at u = 1, so the last beta is the 0.999 clip.
  assertClose(cosine.betas[T - 1], 0.999, 1e-15, "cosine clip");
  assertClose(sigmoid.betas[T - 1], 0.999, 1e-15, "sigmoid clip");
});

Deno.test("derived tables agree with their definitions at every step", () => {
  const s = makeSchedule({ kind: "cosine", timesteps: 200 });
  for (let i = 0; i < 200; i++) {
    const abar = s.alphasCumprod[i];
    const prev = i === 0 ? 1 : s.alphasCumprod[i - 1];
    assertClose(abar, prev * (1 - s.betas[i]), abar * RTOL, "cumprod");
    assertClose(s.alphasCumprodPrev[i], prev, RTOL, "prev");
    assertClose(s.sqrtAlphasCumprod[i] ** 2, abar, RTOL, "sqrt abar");
    assertClose(s.sqrtOneMinusAlphasCumprod[i] ** 2, 1 - abar, RTOL, "sqrt(1 - abar)");
    assertClose(s.sqrtRecipAlphasCumprod[i] * s.sqrtAlphasCumprod[i], 1, RTOL, "sqrt(1/abar)");
    assertClose(
      s.sqrtRecipm1AlphasCumprod[i] ** 2,
      1 / abar - 1,
      (1 / abar) * RTOL,
      "sqrt(1/abar - 1)",
    );
    assertClose(s.snr[i], abar / (1 - abar), s.snr[i] * RTOL, "snr");
    const bt = (s.betas[i] * (1 - prev)) / (1 - abar);
    assertClose(s.posteriorVariance[i], bt, bt * RTOL + 1e-300, "beta tilde");
    assertClose(
      s.posteriorLogVarianceClipped[i],
      Math.log(i === 0 ? s.posteriorVariance[1] : bt),
      RTOL * 10,
      "clipped log variance",
    );
    // Eq. 7 coefficients: with no noise, x_t = sqrt(abar_t) x0 and the posterior mean must be
    // sqrt(abar_{t-1}) x0, so c1 + c2 sqrt(abar_t) = sqrt(abar_{t-1}).
    assertClose(
      s.posteriorMeanCoef1[i] + s.posteriorMeanCoef2[i] * s.sqrtAlphasCumprod[i],
      Math.sqrt(prev),
      RTOL * 10,
      "c1 + c2 sqrt(abar) = sqrt(abar_prev)",
    );
  }
  assert.equal(s.posteriorVariance[0], 0);
});

Deno.test("timestep spacings give the documented subsequences", () => {
  assert.deepEqual(spacedTimesteps(1000, 4, "leading"), [0, 250, 500, 750]);
  assert.deepEqual(spacedTimesteps(1000, 4, "linspace"), [0, 333, 666, 999]);
  assert.deepEqual(spacedTimesteps(1000, 4, "trailing"), [249, 499, 749, 999]);
  for (const spacing of ["leading", "linspace", "trailing"] as const) {
    for (const steps of [1, 7, 50, 999, 1000]) {
      const kept = spacedTimesteps(1000, steps, spacing);
      assert.equal(kept.length, steps);
      assert.ok(kept.every((t, k) => t >= 0 && t < 1000 && (k === 0 || t > kept[k - 1])));
    }
    assert.deepEqual(
      spacedTimesteps(1000, 1000, spacing),
      Array.from({ length: 1000 }, (_, i) => i),
    );
  }
  assert.throws(() => spacedTimesteps(1000, 0), /steps must be an integer in 1\.\.1000, got 0/);
  assert.throws(() => spacedTimesteps(1000, 1001), RangeError);
});

Deno.test("respacing keeps abar at the kept steps and maps back to model timesteps", () => {
  const s = makeSchedule();
  const kept = spacedTimesteps(1000, 50, "trailing");
  const r = respaceSchedule(s, kept);
  assert.equal(r.timesteps, 50);
  kept.forEach((t, k) => {
    assertClose(r.alphasCumprod[k], s.alphasCumprod[t], s.alphasCumprod[t] * RTOL, "abar kept");
    assert.equal(r.modelTimesteps[k], t);
  });
  // Keeping every step reproduces the schedule.
  const full = respaceSchedule(s, spacedTimesteps(1000, 1000));
  full.betas.forEach((b, i) => assertClose(b, s.betas[i], 1e-15, "betas"));
});

Deno.test("bad schedule options name the value and the allowed range", () => {
  assert.throws(
    () => makeSchedule({ timesteps: 1 }),
    /timesteps must be an integer in 2\.\.100000, got 1/,
  );
  assert.throws(() => makeSchedule({ betaEnd: 1.5 }), /betaEnd must be in \(0, 1\), got 1.5/);
  assert.throws(
    () => makeSchedule({ kind: "cubic" as never }),
    /schedule kind must be one of linear, .* got cubic/,
  );
  assert.throws(() => scheduleFromBetas([0.1, 0]), /betas\[1\] must be in \(0, 1\], got 0/);
  assert.throws(() => respaceSchedule(makeSchedule(), [5, 5]), /increase strictly/);
});
