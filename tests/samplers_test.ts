import assert from "node:assert/strict";
import { gaussianDenoiser } from "../lib/analytic.ts";
import { createRng } from "../lib/rng.ts";
import {
  defaultSteps,
  type Denoiser,
  sample,
  SAMPLER_CAPABILITIES,
  SAMPLERS,
  type StepInfo,
} from "../lib/samplers.ts";
import { makeSchedule, respaceSchedule, type Schedule, spacedTimesteps } from "../lib/schedule.ts";
import { assertClose, moments } from "./_stats.ts";

const schedule = makeSchedule();
// Data N(mu, s^2) per dimension; the exact denoiser (lib/analytic.ts) is the optimal network.
const MU = 0.2, S = 0.5;
const ideal = gaussianDenoiser(schedule, { mean: MU, std: S });
const N = 20_000; // samples per check: standard errors 0.0035 (mean), 0.0025 (variance)

/**
 * The exact mean and variance a sampler's output has when driven by the ideal denoiser,
 * derived independently of lib/samplers.ts. Every step is affine in x plus Gaussian noise:
 * x0_hat = mu + g (x - sqrt(abar) mu) with g = s^2 sqrt(abar) / (abar s^2 + 1 - abar), so
 * x' = A x + B + sigma z and the moments propagate as m' = A m + B, v' = A^2 v + sigma^2.
 * Starting from N(0, 1), the gap between the result and (mu, s^2) is the sampler's own
 * discretisation error.
 */
function exactMoments(
  sampler: "ddpm" | "ddim",
  kept: number[],
  options: { variance?: "fixedsmall" | "fixedlarge" | "optimal"; eta?: number } = {},
): { mean: number; variance: number } {
  const r: Schedule = respaceSchedule(schedule, kept);
  let m = 0, v = 1;
  for (let k = r.timesteps - 1; k >= 0; k--) {
    const abar = r.alphasCumprod[k], sa = Math.sqrt(abar), sn = Math.sqrt(1 - abar);
    const g = (S * S * sa) / (abar * S * S + 1 - abar);
    let cx0: number, cx: number, sigma2: number;
    if (sampler === "ddpm") {
      cx0 = r.posteriorMeanCoef1[k];
      cx = r.posteriorMeanCoef2[k];
      // "optimal": the true reverse variance beta_tilde + c1^2 Var(x0 | x_t), what the
      // learned-range ideal denoiser outputs.
      sigma2 = options.variance === "fixedsmall"
        ? r.posteriorVariance[k]
        : options.variance === "optimal"
        ? r.posteriorVariance[k] +
          cx0 * cx0 * (S * S * (1 - abar)) / (abar * S * S + 1 - abar)
        : r.betas[k];
    } else {
      const prev = r.alphasCumprodPrev[k];
      const eta = options.eta ?? 0;
      sigma2 = eta * eta * ((1 - prev) / (1 - abar)) * (1 - abar / prev);
      const b = Math.sqrt(1 - prev - sigma2);
      // x' = sqrt(prev) x0_hat + b (x - sa x0_hat) / sn
      cx0 = Math.sqrt(prev) - (b * sa) / sn;
      cx = b / sn;
    }
    if (k === 0) sigma2 = 0;
    const A = cx0 * g + cx;
    m = A * m + cx0 * (MU - g * sa * MU);
    v = A * A * v + sigma2;
  }
  return { mean: m, variance: v };
}

async function check(
  name: string,
  options: Parameters<typeof sample>[1],
  expected: { mean: number; variance: number },
  discretisation: { mean: number; variance: number },
  denoiser: Denoiser = ideal,
): Promise<void> {
  const x = await sample(denoiser, { ...options, clipDenoised: false });
  const m = moments(x);
  // 1. The implementation: samples match the exact moments of this sampler within 4 SE.
  assertClose(m.mean, expected.mean, 4 * m.meanSe, `${name}: mean vs exact sampler mean`);
  assertClose(m.variance, expected.variance, 4 * m.varianceSe, `${name}: variance vs exact`);
  // 2. The data: samples match (mu, s^2) within 4 SE plus the stated discretisation error.
  assert.ok(Math.abs(expected.mean - MU) <= discretisation.mean, `${name}: mean bias`);
  assert.ok(
    Math.abs(expected.variance - S * S) <= discretisation.variance,
    `${name}: variance bias`,
  );
  assertClose(m.mean, MU, 4 * m.meanSe + discretisation.mean, `${name}: mean vs data`);
  assertClose(
    m.variance,
    S * S,
    4 * m.varianceSe + discretisation.variance,
    `${name}: variance vs data`,
  );
}

const all = spacedTimesteps(1000, 1000);

Deno.test("DDPM, 1000 steps, exact denoiser: samples have the data's mean and variance", async () => {
  // Fixed (not learned) variances leave a small bias: +0.3% (fixedlarge), -1.5% (fixedsmall).
  await check(
    "ddpm fixedlarge",
    { schedule, shape: [N, 1, 1, 1], sampler: "ddpm", seed: 1, variance: "fixedlarge" },
    exactMoments("ddpm", all),
    { mean: 1e-4, variance: 0.001 },
  );
  await check(
    "ddpm fixedsmall",
    { schedule, shape: [N, 1, 1, 1], sampler: "ddpm", seed: 2, variance: "fixedsmall" },
    exactMoments("ddpm", all, { variance: "fixedsmall" }),
    { mean: 1e-4, variance: 0.004 },
  );
});

Deno.test("DDIM, 50 steps, eta 0: samples match the data up to DDIM's first-order error", async () => {
  // Deterministic DDIM is an Euler step of the probability-flow ODE; on Gaussian data each
  // step scales the spread by the cosine of an angle, so 50 steps give 11% less variance.
  const kept = spacedTimesteps(1000, 50, "leading");
  await check(
    "ddim 50",
    { schedule, shape: [N, 1, 1, 1], sampler: "ddim", steps: 50, seed: 3 },
    exactMoments("ddim", kept),
    { mean: 0.001, variance: 0.03 },
  );
});

Deno.test("DDIM's variance deficit halves when the step count doubles (first-order method)", () => {
  const deficit = (steps: number) =>
    S * S - exactMoments("ddim", spacedTimesteps(1000, steps, "linspace")).variance;
  for (const steps of [50, 100, 200]) {
    const ratio = deficit(steps) / deficit(2 * steps);
    assert.ok(ratio > 1.8 && ratio < 2.2, `deficit ratio ${steps} -> ${2 * steps}: ${ratio}`);
  }
});

Deno.test("DDIM eta 1 and respaced DDPM match their exact moments", async () => {
  const kept = spacedTimesteps(1000, 50, "trailing");
  const ddim = exactMoments("ddim", kept, { eta: 1 });
  const x = await sample(ideal, {
    schedule,
    shape: [N, 1, 1, 1],
    sampler: "ddim",
    steps: 50,
    eta: 1,
    spacing: "trailing",
    seed: 4,
    clipDenoised: false,
  });
  const m = moments(x);
  assertClose(m.mean, ddim.mean, 4 * m.meanSe, "ddim eta 1 mean");
  assertClose(m.variance, ddim.variance, 4 * m.varianceSe, "ddim eta 1 variance");

  const respaced = exactMoments("ddpm", spacedTimesteps(1000, 100, "linspace"));
  const y = moments(
    await sample(ideal, {
      schedule,
      shape: [N, 1, 1, 1],
      sampler: "ddpm",
      steps: 100,
      spacing: "linspace",
      seed: 5,
      clipDenoised: false,
    }),
  );
  assertClose(y.mean, respaced.mean, 4 * y.meanSe, "respaced ddpm mean");
  assertClose(y.variance, respaced.variance, 4 * y.varianceSe, "respaced ddpm variance");
  // Respaced DDPM at 100 steps is within 4% of the data variance.
  assert.ok(Math.abs(respaced.variance - S * S) < 0.04 * S * S);
});

Deno.test("every prediction type samples the same distribution", async () => {
  const results = [];
  for (const prediction of ["eps", "x0", "v"] as const) {
    const denoiser = gaussianDenoiser(schedule, { mean: MU, std: S, prediction });
    results.push(
      await sample(denoiser, {
        schedule,
        shape: [64, 1, 4, 4],
        sampler: "ddim",
        steps: 20,
        seed: 9,
        prediction,
        clipDenoised: false,
      }),
    );
  }
  // Same seed, deterministic sampler: identical up to float32 rounding along 20 steps.
  for (const other of results.slice(1)) {
    assert.ok(results[0].every((v, i) => Math.abs(v - other[i]) < 1e-4));
  }
});

Deno.test("DDPM with the optimal learned variance samples the data with no variance bias", async () => {
  // With the exact mean and the true reverse variance each step is the true reverse kernel of
  // Gaussian data, so only the prior's mismatch and the noiseless last step remain: the 0.3%
  // and 1.5% variance biases of the fixed variances above shrink to -0.04% (-1e-4 of 0.25).
  const learned = gaussianDenoiser(schedule, { mean: MU, std: S, learnVariance: true });
  const options = { schedule, shape: [N, 1, 1, 1] as const, sampler: "ddpm" as const, seed: 1 };
  await check(
    "ddpm learned-range",
    { ...options, variance: "learned-range" },
    exactMoments("ddpm", all, { variance: "optimal" }),
    { mean: 1e-4, variance: 1.2e-4 },
    learned,
  );
});

/** `denoiser` with learned-range values after each example's prediction: `v` or one per element. */
function withV(denoiser: Denoiser, v: number | ((size: number) => Float32Array)): Denoiser {
  return async (x, t, shape) => {
    const prediction = await denoiser(x, t, shape);
    const per = x.length / shape[0];
    const values = typeof v === "number" ? new Float32Array(x.length).fill(v) : v(x.length);
    const out = new Float32Array(2 * x.length);
    for (let i = 0; i < shape[0]; i++) {
      out.set(prediction.subarray(i * per, (i + 1) * per), 2 * i * per);
      out.set(values.subarray(i * per, (i + 1) * per), (2 * i + 1) * per);
    }
    return out;
  };
}

Deno.test("DDPM with learned v = +1 draws fixedlarge's samples for the same seed, respaced too", async () => {
  // v = +1 gives log beta_k at every kept step k; fixedlarge differs only at k = 0 (beta_tilde
  // of index 1 there), where no noise is added, and the mean does not depend on the variance.
  // Both draw the same noise in the same order, so the samples agree; sigma differs at most
  // by the float64 rounding of exp(log beta) against beta, which leaves every float32 sample
  // as it is here.
  for (const steps of [1000, 40]) {
    const options = { schedule, shape: [4, 1, 4, 4] as const, sampler: "ddpm" as const, steps };
    const fixed = await sample(ideal, { ...options, seed: 7, variance: "fixedlarge" });
    const learned = await sample(withV(ideal, 1), {
      ...options,
      seed: 7,
      variance: "learned-range",
    });
    assert.deepEqual(learned, fixed, `v = +1, ${steps} steps`);
    // And v = -1 is fixedsmall.
    const small = await sample(ideal, { ...options, seed: 7, variance: "fixedsmall" });
    const minusOne = await sample(withV(ideal, -1), {
      ...options,
      seed: 7,
      variance: "learned-range",
    });
    assert.deepEqual(minusOne, small, `v = -1, ${steps} steps`);
  }
});

Deno.test("DDPM uses each element's own learned sigma", async () => {
  // Element 0 of each image gets v = +1, element 1 v = -1. From x_T = 0 with a network whose
  // x0 is 0, the mean stays 0, so after the first of two steps (kept [0, 500], respaced) x is
  // sigma z alone: variance beta'_1 for element 0, beta_tilde'_1 for element 1.
  const n = 4000, per = 2;
  const vs = (size: number) => Float32Array.from({ length: size }, (_, j) => j % per ? -1 : 1);
  const zeroX0: Denoiser = (x) => new Float32Array(x.length);
  let afterFirst = new Float32Array(0);
  await sample(withV(zeroX0, vs), {
    schedule,
    shape: [n, 1, 1, per],
    sampler: "ddpm",
    steps: 2,
    prediction: "x0",
    variance: "learned-range",
    initialNoise: new Float32Array(n * per),
    seed: 3,
    onStep: ({ step, x }) => {
      if (step === 1) afterFirst = x.slice();
    },
  });
  const r = respaceSchedule(schedule, spacedTimesteps(1000, 2));
  const large = moments(Array.from({ length: n }, (_, i) => afterFirst[i * per]));
  const small = moments(Array.from({ length: n }, (_, i) => afterFirst[i * per + 1]));
  assertClose(large.variance, r.betas[1], 4 * large.varianceSe, "v = +1 element");
  assertClose(small.variance, r.posteriorVariance[1], 4 * small.varianceSe, "v = -1 element");
  // The two differ by far more than the test's resolution.
  assert.ok(r.betas[1] > 1.5 * r.posteriorVariance[1]);
});

Deno.test("DDIM, DPM-Solver++ and UniPC ignore the learned variance: only x0 and eps move them", async () => {
  const rng = createRng(11);
  const anyV = (size: number) => rng.normal(size);
  const options = { schedule, shape: [2, 1, 4, 4] as const, steps: 12, seed: 5 };
  for (const sampler of ["ddim", "dpmpp-2m", "unipc"] as const) {
    for (const eta of sampler === "ddim" ? [0, 1] : [0]) {
      const fixed = await sample(ideal, { ...options, sampler, eta });
      const learned = await sample(withV(ideal, anyV), {
        ...options,
        sampler,
        eta,
        variance: "learned-range",
      });
      assert.deepEqual(learned, fixed, `${sampler} eta ${eta}`);
    }
  }
});

Deno.test("a learned-range sampler needs twice the values, a fixed one exactly the image's", async () => {
  const base = { schedule, shape: [1, 1, 2, 2] as const, sampler: "ddim" as const, steps: 2 };
  await assert.rejects(
    sample(ideal, { ...base, variance: "learned-range" }),
    new RangeError(
      "denoiser must return a Float32Array of 8 values (2 x 4: the prediction, then v), " +
        "got 4 (variance learned-range)",
    ),
  );
  await assert.rejects(
    sample(withV(ideal, 0), { ...base, variance: "fixedsmall" }),
    new RangeError("denoiser must return a Float32Array of 4 values, got 8 (variance fixedsmall)"),
  );
});

Deno.test("same seed gives identical samples; different seeds differ", async () => {
  const options = { schedule, shape: [2, 1, 4, 4] as const, sampler: "ddpm" as const, steps: 30 };
  const a = await sample(ideal, { ...options, seed: 42 });
  const b = await sample(ideal, { ...options, seed: 42 });
  const c = await sample(ideal, { ...options, seed: 43 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

Deno.test("onStep sees every step in order with t, x_t and the predicted x0", async () => {
  const seen: StepInfo[] = [];
  const calls: number[] = [];
  const spy: Denoiser = (x, t, shape) => {
    calls.push(t[0]);
    return ideal(x, t, shape);
  };
  await sample(spy, {
    schedule,
    shape: [2, 1, 2, 2],
    sampler: "ddim",
    steps: 4,
    spacing: "trailing",
    onStep: (info) => {
      seen.push(info);
    },
  });
  assert.deepEqual(calls, [999, 749, 499, 249]);
  assert.deepEqual(seen.map((s) => [s.step, s.steps, s.t]), [
    [0, 4, 999],
    [1, 4, 749],
    [2, 4, 499],
    [3, 4, 249],
  ]);
  assert.ok(seen.every((s) => s.x.length === 8 && s.predX0.length === 8));
});

Deno.test("aborting stops the run before the next network call", async () => {
  const controller = new AbortController();
  let calls = 0;
  const counting: Denoiser = (x, t, shape) => {
    calls++;
    return ideal(x, t, shape);
  };
  await assert.rejects(
    sample(counting, {
      schedule,
      shape: [1, 1, 2, 2],
      sampler: "ddpm",
      signal: controller.signal,
      onStep: ({ step }) => {
        if (step === 2) controller.abort(new Error("client went away"));
      },
    }),
    /client went away/,
  );
  assert.equal(calls, 3);
});

Deno.test("bad sampler options name the value and the allowed range", async () => {
  const base = { schedule, shape: [1, 1, 2, 2] as const };
  await assert.rejects(
    sample(ideal, { ...base, sampler: "ddim", steps: 0 }),
    /steps must be an integer in 1\.\.1000, got 0/,
  );
  await assert.rejects(
    sample(ideal, { ...base, sampler: "ddim", eta: 1.5 }),
    /eta must be in \[0, 1\], got 1.5/,
  );
  await assert.rejects(
    sample(ideal, { ...base, sampler: "euler" as never }),
    /sampler must be one of ddpm, ddim, dpmpp-2m, dpmpp-2m-sde, unipc, got euler/,
  );
  await assert.rejects(
    sample(() => new Float32Array(3), { ...base, sampler: "ddim", steps: 2 }),
    /denoiser must return a Float32Array of 4 values, got 3/,
  );
  await assert.rejects(
    sample(ideal, { ...base, sampler: "ddpm", seed: -3 }),
    /seed must be an integer/,
  );
});

Deno.test("initialNoise fixes x_T: DDIM eta 0 is then independent of the seed", async () => {
  const initialNoise = createRng(100).normal(16);
  const options = {
    schedule,
    shape: [1, 1, 4, 4] as const,
    sampler: "ddim" as const,
    steps: 10,
    initialNoise,
  };
  assert.deepEqual(
    await sample(ideal, { ...options, seed: 1 }),
    await sample(ideal, { ...options, seed: 2 }),
  );
});

// The probability-flow ODE of Gaussian data N(mu, s^2) in closed form. Its marginal at t is
// N(sqrt(abar_t) mu, abar_t s^2 + 1 - abar_t), and in one dimension the flow is the monotone
// map between marginals, which for Gaussians is affine: each pixel keeps its standard score,
// x_t = sqrt(abar_t) mu + (x_T - sqrt(abar_T) mu) sd_t / sd_T, sd_t^2 = abar_t s^2 + 1 - abar_t.
// At the clean end (abar = 1) it is mu + (x_T - sqrt(abar_T) mu) s / sd_T. (Writing mu for
// sqrt(abar_t) mu, as a short form does, is right only when mu = 0.)
function exactFlow(xT: Float32Array, from: number, abarTo: number): Float64Array {
  const sd = (abar: number) => Math.sqrt(abar * S * S + 1 - abar);
  const abarFrom = schedule.alphasCumprod[from];
  return Float64Array.from(
    xT,
    (v) => Math.sqrt(abarTo) * MU + (v - Math.sqrt(abarFrom) * MU) * sd(abarTo) / sd(abarFrom),
  );
}

function rmsError(x: ArrayLike<number>, exact: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < exact.length; i++) sum += (x[i] - exact[i]) ** 2;
  return Math.sqrt(sum / exact.length);
}

const flowNoise = createRng(7).normal(1000);

/** The deterministic sampler's x at timestep `at` (after UniPC's correction), from x_999. */
async function stateAt(
  sampler: "ddim" | "dpmpp-2m" | "unipc",
  steps: number,
  at: number,
): Promise<Float32Array> {
  let state: Float32Array | undefined;
  await sample(ideal, {
    schedule,
    shape: [flowNoise.length, 1, 1, 1],
    sampler,
    steps,
    spacing: "trailing",
    initialNoise: flowNoise,
    clipDenoised: false,
    onStep: ({ t, x }) => {
      if (t === at) state = x.slice();
    },
  });
  assert.ok(state, `${sampler} at ${steps} steps never visited t = ${at}`);
  return state;
}

Deno.test("the ODE solvers' error against the exact flow falls 4x (dpmpp-2m) and 6-8x (unipc) per doubling of steps, DDIM's 2x", async () => {
  // Trailing spacing with 10, 20, 40, 80 steps visits t = 199 every time (999 - 100k, 999 - 50k,
  // ...), so the state there is compared with the exact flow from the same x_999, away from the
  // lower-order final steps. Measured ratios (10->20, 20->40, 40->80): DDIM 1.96, 1.99, 1.99;
  // dpmpp-2m 3.94, 4.07, 4.05; unipc 6.17, 7.29, 7.76 (UniC lifts the order to three, as Zhao
  // et al. prove). Bounds: a first-order method 2 +- 10%, a second-order one 4 +- 12.5%, and
  // UniPC at least the second-order 3.5 (its errors reach 2e-6 at 80 steps, near the float32
  // rounding of the states, so its last ratio is not held to third order).
  const at = 199;
  const exact = exactFlow(flowNoise, 999, schedule.alphasCumprod[at]);
  const errors = async (sampler: "ddim" | "dpmpp-2m" | "unipc") => {
    const out: number[] = [];
    for (const steps of [10, 20, 40, 80]) {
      out.push(rmsError(await stateAt(sampler, steps, at), exact));
    }
    return out;
  };
  const ratios = (e: number[]) => e.slice(1).map((v, i) => e[i] / v);
  for (const r of ratios(await errors("ddim"))) assert.ok(r > 1.8 && r < 2.2, `ddim ratio ${r}`);
  for (const r of ratios(await errors("dpmpp-2m"))) {
    assert.ok(r > 3.5 && r < 4.5, `dpmpp-2m ratio ${r}`);
  }
  for (const r of ratios(await errors("unipc"))) assert.ok(r > 3.5, `unipc ratio ${r}`);
});

Deno.test("at 10 and 20 steps both ODE solvers end closer to the exact flow's image than DDIM", async () => {
  // End to end, from the first kept step to the clean image, with every spacing. Measured with
  // linspace (RMS error, DDIM / dpmpp-2m / unipc): 10 steps 0.143 / 0.111 / 0.106, 20 steps
  // 0.072 / 0.024 / 0.023. The ODE solvers' advantage at 10 steps is small: three of their ten
  // steps are first order (the first and the last two).
  for (const spacing of ["leading", "linspace", "trailing"] as const) {
    for (const steps of [10, 20]) {
      const kept = spacedTimesteps(1000, steps, spacing);
      const exact = exactFlow(flowNoise, kept[kept.length - 1], 1);
      const run = async (sampler: "ddim" | "dpmpp-2m" | "unipc") =>
        rmsError(
          await sample(ideal, {
            schedule,
            shape: [flowNoise.length, 1, 1, 1],
            sampler,
            steps,
            spacing,
            initialNoise: flowNoise,
            clipDenoised: false,
          }),
          exact,
        );
      const ddim = await run("ddim");
      for (const sampler of ["dpmpp-2m", "unipc"] as const) {
        const error = await run(sampler);
        assert.ok(error < ddim, `${spacing}, ${steps} steps: ${sampler} ${error} vs ddim ${ddim}`);
      }
    }
  }
});

Deno.test("with 2 steps the multistep solvers take only first-order steps: DDIM's, eta 0 for the ODE, 1 for the SDE", async () => {
  // DPM-Solver++'s first-order update is DDIM with eta 0 (Lu et al. 2022, sec. 4.1), and the
  // last step returns the x0 prediction, as DDIM's does; UniPC's one correction lands on the
  // sample whose x0 prediction is already taken. SDE-DPM-Solver++'s adds sigma_t^2 (1 - e^{-2h})
  // of fresh noise, DDIM's sigma^2 at eta 1, drawn as DDIM draws it (one normal per element per
  // noisy step). Float32 rounding of two different algebraic forms of one update: 1e-5
  // absolute on values of size ~2.
  const options = {
    schedule,
    shape: [4, 1, 4, 4] as const,
    steps: 2,
    seed: 3,
    clipDenoised: false,
  };
  for (const [sampler, eta] of [["dpmpp-2m", 0], ["unipc", 0], ["dpmpp-2m-sde", 1]] as const) {
    const ddim = await sample(ideal, { ...options, sampler: "ddim", eta });
    const out = await sample(ideal, { ...options, sampler });
    assert.ok(out.every((v, i) => Math.abs(v - ddim[i]) < 1e-5), sampler);
  }
});

/**
 * The exact moments of SDE-DPM-Solver++(2M)'s output with the ideal denoiser, derived apart from
 * lib/samplers.ts as `exactMoments` is. A second-order step reads the previous x0 prediction,
 * itself affine in the previous state, so the recursion carries the joint moments of the
 * current and the previous state: x_t = a1 x_s + a2 x_prev + b + noise.
 */
function exactSdeMoments(kept: number[], firstOrder = false): { mean: number; variance: number } {
  const r = respaceSchedule(schedule, kept);
  const lambda = (abar: number) => 0.5 * Math.log(abar / (1 - abar));
  let [m, mPrev, v, vPrev, cov] = [0, 0, 1, 0, 0];
  let previous: { abar: number; g: number; c: number } | null = null;
  for (let k = r.timesteps - 1; k >= 0; k--) {
    const abar = r.alphasCumprod[k], sa = Math.sqrt(abar);
    // x0_hat = g x + c for the Gaussian data.
    const g = (S * S * sa) / (abar * S * S + 1 - abar);
    const c = MU * (1 - g * sa);
    if (k === 0) return { mean: g * m + c, variance: g * g * v };
    const to = r.alphasCumprodPrev[k];
    const h = lambda(to) - lambda(abar);
    const decay = Math.sqrt((1 - to) / (1 - abar)) * Math.exp(-h);
    const x0Weight = Math.sqrt(to) * (1 - Math.exp(-2 * h));
    const noise = (1 - to) * (1 - Math.exp(-2 * h));
    const half = previous && k >= 2 && !firstOrder
      ? 1 / (2 * ((lambda(abar) - lambda(previous.abar)) / h))
      : 0;
    const a1 = decay + x0Weight * (1 + half) * g;
    const a2 = previous ? -x0Weight * half * previous.g : 0;
    const b = x0Weight * ((1 + half) * c - (previous ? half * previous.c : 0));
    const next = {
      m: a1 * m + a2 * mPrev + b,
      v: a1 * a1 * v + a2 * a2 * vPrev + 2 * a1 * a2 * cov + noise,
      cov: a1 * v + a2 * cov,
    };
    [mPrev, vPrev, m, v, cov] = [m, v, next.m, next.v, next.cov];
    previous = { abar, g, c };
  }
  throw new Error("unreachable: the loop returns at k = 0");
}

Deno.test("SDE-DPM-Solver++(2M) matches its exact moments, and its error falls about 4x per doubling, DDIM eta 1's 2x", async () => {
  // 1. The implementation: 15 and 40 steps against the recursion above, within 4 SE.
  for (const steps of [15, 40]) {
    const expected = exactSdeMoments(spacedTimesteps(1000, steps, "leading"));
    const m = moments(
      await sample(ideal, {
        schedule,
        shape: [N, 1, 1, 1],
        sampler: "dpmpp-2m-sde",
        steps,
        spacing: "leading",
        seed: 6,
        clipDenoised: false,
      }),
    );
    assertClose(m.mean, expected.mean, 4 * m.meanSe, `${steps} steps: mean`);
    assertClose(m.variance, expected.variance, 4 * m.varianceSe, `${steps} steps: variance`);
  }
  // 2. The method: its variance error against the data's is below the first-order update's
  // (DDIM with eta 1, the same recursion without the previous x0) at every step count, and
  // falls 3.5x from 160 to 320 steps where the first-order error halves. Measured (linspace,
  // variance error, 2M / first order): 10 steps -0.115 / -0.146, 20 -0.021 / -0.100, 40 0.013 /
  // -0.063, 80 0.0091 / -0.037, 160 0.0039 / -0.021, 320 0.0011 / -0.011. The error changes sign
  // between 20 and 40 steps, so the ratio is read where it has settled.
  const error = (steps: number, firstOrder = false) =>
    Math.abs(
      exactSdeMoments(spacedTimesteps(1000, steps, "linspace"), firstOrder).variance - S * S,
    );
  for (const steps of [10, 20, 40, 80, 160, 320]) {
    assert.ok(error(steps) < error(steps, true), `${steps} steps`);
    // The first-order recursion is DDIM's with eta 1, derived the other way (exactMoments).
    const kept = spacedTimesteps(1000, steps, "linspace");
    const [sde, ddim] = [exactSdeMoments(kept, true), exactMoments("ddim", kept, { eta: 1 })];
    assert.ok(
      Math.abs(sde.mean - ddim.mean) < 1e-12,
      `${steps} steps: ${sde.mean} vs ${ddim.mean}`,
    );
    assert.ok(Math.abs(sde.variance - ddim.variance) < 1e-12, `${steps} steps: variance`);
  }
  const second = error(160) / error(320), first = error(160, true) / error(320, true);
  assert.ok(second > 3, `2M ratio 160 -> 320: ${second}`);
  assert.ok(first > 1.8 && first < 2.2, `first-order ratio 160 -> 320: ${first}`);
});

Deno.test("the ODE solvers give the same samples for eps, x0 and v networks", async () => {
  for (const sampler of ["dpmpp-2m", "unipc"] as const) {
    const results = [];
    for (const prediction of ["eps", "x0", "v"] as const) {
      const denoiser = gaussianDenoiser(schedule, { mean: MU, std: S, prediction });
      results.push(
        await sample(denoiser, {
          schedule,
          shape: [64, 1, 4, 4],
          sampler,
          steps: 15,
          seed: 9,
          prediction,
          clipDenoised: false,
        }),
      );
    }
    // Deterministic: identical up to float32 rounding along 15 steps, as DDIM's are above.
    for (const other of results.slice(1)) {
      assert.ok(results[0].every((v, i) => Math.abs(v - other[i]) < 1e-4), sampler);
    }
  }
});

Deno.test("clipDenoised keeps the ODE solvers' x0 in [-1, 1]; without it they follow the data out", async () => {
  // Data N(1.5, 0.5^2) lies mostly above 1: clipping (pixel-space thresholding) bounds every
  // x0 the solvers extrapolate from, and the last step returns a clipped x0.
  const outside = gaussianDenoiser(schedule, { mean: 1.5, std: 0.5 });
  for (const sampler of ["dpmpp-2m", "unipc"] as const) {
    const options = { schedule, shape: [256, 1, 1, 1] as const, sampler, steps: 10, seed: 4 };
    const predicted: number[] = [];
    const clipped = await sample(outside, {
      ...options,
      onStep: ({ predX0 }) => {
        predicted.push(...predX0);
      },
    });
    assert.ok(clipped.every((v) => v >= -1 && v <= 1), `${sampler}: clipped samples`);
    assert.ok(predicted.every((v) => v >= -1 && v <= 1), `${sampler}: clipped x0`);
    const free = moments(await sample(outside, { ...options, clipDenoised: false }));
    // 10 steps: the mean is 1.5 within 4 standard errors (0.13) plus a 2% discretisation bias.
    assertClose(free.mean, 1.5, 4 * free.meanSe + 0.03, `${sampler}: unclipped mean`);
  }
});

Deno.test("every sampler calls the network steps times, in order, and reports each step", async () => {
  for (const sampler of SAMPLERS) {
    const calls: number[] = [];
    const seen: number[][] = [];
    const spy: Denoiser = (x, t, shape) => {
      calls.push(t[0]);
      return ideal(x, t, shape);
    };
    await sample(spy, {
      schedule,
      shape: [2, 1, 2, 2],
      sampler,
      steps: 4,
      spacing: "trailing",
      onStep: ({ step, steps, t, x, predX0 }) => {
        assert.ok(x.length === 8 && predX0.length === 8);
        seen.push([step, steps, t]);
      },
    });
    assert.deepEqual(calls, [999, 749, 499, 249], sampler);
    assert.deepEqual(seen, [[0, 4, 999], [1, 4, 749], [2, 4, 499], [3, 4, 249]], sampler);
  }
});

Deno.test("each sampler's default step count comes from SAMPLER_CAPABILITIES, at most T", async () => {
  const short = makeSchedule({ timesteps: 30 });
  const shortIdeal = gaussianDenoiser(short, { mean: MU, std: S });
  for (const sampler of SAMPLERS) {
    for (const s of [schedule, short]) {
      let calls = 0;
      const counting: Denoiser = (x, t, shape) => {
        calls++;
        return (s === short ? shortIdeal : ideal)(x, t, shape);
      };
      await sample(counting, { schedule: s, shape: [1, 1, 1, 1], sampler });
      const expected = SAMPLER_CAPABILITIES[sampler].defaultSteps;
      assert.equal(calls, expected === "T" ? s.timesteps : Math.min(expected, s.timesteps));
      assert.equal(calls, defaultSteps(sampler, s.timesteps));
    }
  }
  assert.equal(defaultSteps("dpmpp-2m", 1000), 15);
});

Deno.test("eta is refused by the samplers that do not take it, naming them", async () => {
  for (const sampler of SAMPLERS.filter((s) => !SAMPLER_CAPABILITIES[s].takesEta)) {
    await assert.rejects(
      sample(ideal, { schedule, shape: [1, 1, 2, 2], sampler, steps: 3, eta: 0.5 }),
      new RegExp(`eta applies to ddim only, got eta 0.5 for ${sampler}`),
    );
  }
});
