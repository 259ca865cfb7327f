import assert from "node:assert/strict";
import { gaussianDenoiser } from "../lib/analytic.ts";
import {
  classifierFreeGuidance,
  type ConditionalDenoiser,
  defaultGuidance,
  drawClasses,
  requestedGuidance,
} from "../lib/guidance.ts";
import { predictV, predictX0FromEps } from "../lib/parameterization.ts";
import type { Shape } from "../lib/forward.ts";
import { createRng } from "../lib/rng.ts";
import { sample, SAMPLERS } from "../lib/samplers.ts";
import { makeSchedule } from "../lib/schedule.ts";
import { assertClose, moments } from "./_stats.ts";

const schedule = makeSchedule();
// Class-conditional Gaussian data: class y has x0 ~ N(MEANS[y], S^2); "no class" (index 3)
// is N(MEANS[3], S^2). With equal variances the ideal eps is affine in the mean, so guidance
// with weight w is exactly the ideal denoiser of N((1 + w) mu_y - w mu_none, S^2).
const MEANS = [-0.4, 0.1, 0.5, 0.05];
const S = 0.3;
const NULL_CLASS = 3;
const perClass = MEANS.map((mean) => gaussianDenoiser(schedule, { mean, std: S }));

/** The ideal conditional network; records the batch sizes it was called with. */
function idealConditional(calls: number[] = []): ConditionalDenoiser {
  return async (x, t, shape, labels) => {
    calls.push(shape[0]);
    assert.ok(labels, "labels reach the network");
    const per = x.length / shape[0];
    const out = new Float32Array(x.length);
    for (let i = 0; i < shape[0]; i++) {
      const one = await perClass[labels[i]](
        x.subarray(i * per, (i + 1) * per),
        t.subarray(i, i + 1),
        [1, shape[1], shape[2], shape[3]],
      );
      out.set(one, i * per);
    }
    return out;
  };
}

const shape = [4, 1, 2, 2] as const;
const rng = createRng(5);
const x = rng.normal(16);
const t = Float32Array.of(0, 10, 500, 999);

Deno.test("classifierFreeGuidance() with weight 0 is the conditional prediction, in one call", async () => {
  const calls: number[] = [];
  const model = idealConditional(calls);
  const labels = Int32Array.of(0, 1, 2, NULL_CLASS);
  const guided = await classifierFreeGuidance(model, { labels, nullClass: NULL_CLASS })(
    x,
    t,
    shape,
  );
  assert.deepEqual(guided, await model(x, t, shape, labels));
  assert.deepEqual(calls, [4, 4], "one batch of 4, no unconditional half");
});

Deno.test("classifierFreeGuidance() mixes (1 + w) eps(x, y) - w eps(x, none) in one batched call", async () => {
  const calls: number[] = [];
  const model = idealConditional(calls);
  const labels = Int32Array.of(2, NULL_CLASS, 0, 1);
  const w = 1.5;
  const guided = await classifierFreeGuidance(model, {
    labels,
    nullClass: NULL_CLASS,
    guidance: w,
  })(
    x,
    t,
    shape,
  );
  assert.deepEqual(calls, [7], "4 labelled rows + 3 unconditional copies in one call");
  const conditional = await model(x, t, shape, labels);
  const unconditional = await model(x, t, shape, new Int32Array(4).fill(NULL_CLASS));
  for (let j = 0; j < 16; j++) {
    const expected = labels[j >> 2] === NULL_CLASS
      ? conditional[j]
      : (1 + w) * conditional[j] - w * unconditional[j];
    // float32 outputs mixed in float64: a few float32 ulps of values of order 1.
    assertClose(guided[j], expected, 1e-6, `value ${j}`);
  }
  // "No class" asked for directly is the unconditional prediction.
  assert.deepEqual(guided.subarray(4, 8), unconditional.subarray(4, 8));
});

Deno.test("classifierFreeGuidance() with an interval guides the examples whose t lies in it, and only those", async () => {
  // t = 0, 10, 500, 999 and the interval [10, 500]: examples 1 and 2 are guided.
  const calls: number[] = [];
  const model = idealConditional(calls);
  const labels = Int32Array.of(0, 1, 2, 1);
  const w = 2;
  const denoiser = classifierFreeGuidance(model, {
    labels,
    nullClass: NULL_CLASS,
    guidance: w,
    interval: [10, 500],
  });
  const out = await denoiser(x, t, shape);
  assert.deepEqual(calls, [6], "4 labelled rows + the 2 in the interval again with no class");
  const conditional = await model(x, t, shape, labels);
  const unconditional = await model(x, t, shape, new Int32Array(4).fill(NULL_CLASS));
  for (let j = 0; j < 16; j++) {
    const inside = t[j >> 2] >= 10 && t[j >> 2] <= 500;
    const expected = inside ? (1 + w) * conditional[j] - w * unconditional[j] : conditional[j];
    assertClose(out[j], expected, 1e-6, `value ${j}`);
  }
  // Outside the interval an example is exactly the unguided conditional prediction.
  assert.deepEqual(out.subarray(0, 4), conditional.subarray(0, 4));
  assert.deepEqual(out.subarray(12, 16), conditional.subarray(12, 16));
  // No t in the interval: one call of 4, as w = 0 makes.
  calls.length = 0;
  await classifierFreeGuidance(model, {
    labels,
    nullClass: NULL_CLASS,
    guidance: w,
    interval: [600, 900],
  })(x, t, shape);
  assert.deepEqual(calls, [4]);
  assert.throws(
    () =>
      classifierFreeGuidance(model, {
        labels,
        nullClass: NULL_CLASS,
        guidance: 1,
        interval: [500, 10],
      }),
    /interval must be \[from, to\] with from <= to, got \[500, 10\]/,
  );
});

Deno.test("interval guidance on Gaussian classes: the shifts of two intervals add up to full guidance", async () => {
  // With Gaussian classes every DDPM step is affine in x_t and in the mean the denoiser
  // assumes, so x_0 is the noise's contribution plus sum_t c_t mu_t. Guiding the steps of an
  // interval moves mu_t there, so with the same noise (seed) the mean's shifts of two
  // complementary intervals add up to full guidance's, up to float32 rounding.
  const n = 400, w = 2, y = 2;
  const run = async (interval?: readonly [number, number], guidance = w) => {
    const x0 = await sample(
      classifierFreeGuidance(idealConditional(), {
        labels: new Int32Array(n).fill(y),
        nullClass: NULL_CLASS,
        guidance,
        interval,
      }),
      { schedule, shape: [n, 1, 1, 1], sampler: "ddpm", seed: 11, clipDenoised: false },
    );
    return moments(x0).mean;
  };
  const plain = await run(undefined, 0);
  const full = await run();
  const [low, high] = [await run([0, 400]), await run([401, 999])];
  // float32 steps of values ~1: 1e-4 over 1000 steps is ~100 ulps of headroom.
  assertClose((low - plain) + (high - plain), full - plain, 1e-4, "shifts add up");
  // Each interval moves the mean part of the way, both the same direction.
  assert.ok(low > plain && low < full && high > plain && high < full, `${low} ${high}`);
});

Deno.test("guidance on Gaussian classes is the ideal denoiser of the tilted mean, at every t", async () => {
  const w = 2;
  const labels = Int32Array.of(0, 1, 2, 2);
  const guided = classifierFreeGuidance(idealConditional(), {
    labels,
    nullClass: NULL_CLASS,
    guidance: w,
  });
  const out = await guided(x, t, shape);
  for (let i = 0; i < 4; i++) {
    const tilted = gaussianDenoiser(schedule, {
      mean: (1 + w) * MEANS[labels[i]] - w * MEANS[NULL_CLASS],
      std: S,
    });
    const expected = await tilted(x.subarray(4 * i, 4 * i + 4), t.subarray(i, i + 1), [1, 1, 2, 2]);
    for (let j = 0; j < 4; j++) {
      // Exact algebra evaluated in float32 with outputs up to ~3 in size: 1e-5 absolute.
      assertClose(out[4 * i + j], expected[j], 1e-5, `example ${i} value ${j}`);
    }
  }
});

Deno.test("guided DDPM samples Gaussian classes at the tilted mean (1 + w) mu_y - w mu_none", async () => {
  const n = 4000, w = 2, y = 2;
  const x0 = await sample(
    classifierFreeGuidance(idealConditional(), {
      labels: new Int32Array(n).fill(y),
      nullClass: NULL_CLASS,
      guidance: w,
    }),
    { schedule, shape: [n, 1, 1, 1], sampler: "ddpm", seed: 11, clipDenoised: false },
  );
  const m = moments(x0);
  const tiltedMean = (1 + w) * MEANS[y] - w * MEANS[NULL_CLASS]; // 1.4: far from every class
  // 4 standard errors; DDPM with all 1000 steps adds well under 1% (tests/samplers_test.ts).
  assertClose(m.mean, tiltedMean, 4 * m.meanSe + 0.01 * tiltedMean, "mean");
  assertClose(m.variance, S * S, 4 * m.varianceSe + 0.01 * S * S, "variance");
});

Deno.test("guidance gives the same result for eps, x0 and v networks (the weights sum to 1)", async () => {
  const labels = Int32Array.of(0, 1, 2, 0);
  const w = 3;
  const eps = await classifierFreeGuidance(idealConditional(), {
    labels,
    nullClass: NULL_CLASS,
    guidance: w,
  })(x, t, shape);
  const fromEps = (
    kind: "x0" | "v",
    xs: Float32Array,
    ts: Float32Array,
    e: Float32Array,
    s: Shape,
  ) => {
    const x0 = predictX0FromEps(schedule, xs, ts, e, s);
    return kind === "x0" ? x0 : predictV(schedule, x0, ts, e, s);
  };
  const asPrediction = (kind: "x0" | "v"): ConditionalDenoiser => async (xs, ts, s, ys) =>
    fromEps(kind, xs, ts, await idealConditional()(xs, ts, s, ys), s);
  for (const kind of ["x0", "v"] as const) {
    const guided = await classifierFreeGuidance(asPrediction(kind), {
      labels,
      nullClass: NULL_CLASS,
      guidance: w,
    })(x, t, shape);
    const converted = fromEps(kind, x, t, eps, shape);
    for (let j = 0; j < 16; j++) {
      // At t = 999, x0 = (x - sqrt(1 - abar) eps) / sqrt(abar) amplifies float32 rounding by
      // 1 / sqrt(abar) ~ 157: relative 1e-4 of that scale.
      assertClose(
        guided[j],
        converted[j],
        1e-4 * (1 + Math.abs(converted[j])) * 157,
        `${kind} ${j}`,
      );
    }
  }
});

/**
 * {@linkcode idealConditional} as a learned-range network: per example its eps, then v, which
 * is `vOf(label)` everywhere, so a test can tell whose v came back.
 */
function learnedConditional(
  vOf: (label: number) => number,
  calls: number[] = [],
): ConditionalDenoiser {
  const ideal = idealConditional(calls);
  return async (xs, ts, s, ys) => {
    const eps = await ideal(xs, ts, s, ys);
    const per = xs.length / s[0];
    const out = new Float32Array(2 * xs.length);
    for (let i = 0; i < s[0]; i++) {
      out.set(eps.subarray(i * per, (i + 1) * per), 2 * i * per);
      out.fill(vOf(ys?.[i] ?? NULL_CLASS), (2 * i + 1) * per, (2 * i + 2) * per);
    }
    return out;
  };
}

Deno.test("guidance mixes a learned-range network's prediction only and keeps the conditional v", async () => {
  const labels = Int32Array.of(2, NULL_CLASS, 0, 1);
  const w = 2.5;
  const calls: number[] = [];
  // v = 0.1 y - 0.5: classes 0..2 give -0.5, -0.4, -0.3; "no class" gives -0.2.
  const vOf = (y: number) => 0.1 * y - 0.5;
  const options = { labels, nullClass: NULL_CLASS, guidance: w };
  const guided = await classifierFreeGuidance(learnedConditional(vOf, calls), options)(
    x,
    t,
    shape,
  );
  const plain = await classifierFreeGuidance(idealConditional(), options)(x, t, shape);
  assert.deepEqual(calls, [7], "one batch: 4 examples and 3 unconditional copies");
  assert.equal(guided.length, 2 * x.length);
  const per = 4;
  for (let i = 0; i < 4; i++) {
    // The prediction half is what guidance gives a fixed-variance network...
    assert.deepEqual(
      guided.subarray(2 * i * per, (2 * i + 1) * per),
      plain.subarray(i * per, (i + 1) * per),
    );
    // ...and v is the example's own (conditional) one, not mixed with "no class"'s.
    assert.deepEqual(
      [...guided.subarray((2 * i + 1) * per, (2 * i + 2) * per)],
      new Array(per).fill(Math.fround(vOf(labels[i]))),
    );
  }
});

Deno.test("guided DDPM with learned v = +1 draws fixedlarge's guided samples", async () => {
  const labels = Int32Array.of(0, 2, NULL_CLASS);
  const options = { labels, nullClass: NULL_CLASS, guidance: 3 };
  const base = { schedule, shape: [3, 1, 2, 2] as const, sampler: "ddpm" as const, steps: 50 };
  const fixed = await sample(classifierFreeGuidance(idealConditional(), options), {
    ...base,
    seed: 4,
    variance: "fixedlarge",
  });
  const learned = await sample(classifierFreeGuidance(learnedConditional(() => 1), options), {
    ...base,
    seed: 4,
    variance: "learned-range",
  });
  assert.deepEqual(learned, fixed);
});

Deno.test("classifierFreeGuidance() rejects a network output smaller than its input, naming the sizes", async () => {
  const short: ConditionalDenoiser = (xs) => new Float32Array(xs.length / 2);
  const guided = classifierFreeGuidance(short, {
    labels: Int32Array.of(0, 1, 2, 0),
    nullClass: NULL_CLASS,
    guidance: 1,
  });
  await assert.rejects(
    async () => await guided(x, t, shape),
    new RangeError(
      "the network returned 16 values for 8 examples of 4; expected a multiple of 8 with at " +
        "least 4 per example",
    ),
  );
});

Deno.test("classifierFreeGuidance() rejects bad labels, weights and batch sizes", async () => {
  const model = idealConditional();
  assert.throws(
    () => classifierFreeGuidance(model, { labels: Int32Array.of(4), nullClass: NULL_CLASS }),
    /labels\[0\] must be a class in 0\.\.2 or 3 \(no class\), got 4/,
  );
  assert.throws(
    () =>
      classifierFreeGuidance(model, {
        labels: Int32Array.of(1),
        nullClass: NULL_CLASS,
        guidance: -1,
      }),
    /guidance must be a finite number >= 0, got -1/,
  );
  assert.throws(
    () => classifierFreeGuidance(model, { labels: Int32Array.of(1), nullClass: 0 }),
    /nullClass must be a positive integer, got 0/,
  );
  const guided = classifierFreeGuidance(model, {
    labels: Int32Array.of(1, 2),
    nullClass: NULL_CLASS,
  });
  await assert.rejects(async () => await guided(x, t, shape), /4 examples but 2 labels/);
});

Deno.test("guided dpmpp-2m and unipc follow the exact flow of the tilted Gaussian, closer than DDIM, up to w = 6", async () => {
  // Guidance with weight w is exactly the ideal denoiser of N((1 + w) mu_y - w mu_none, S^2)
  // (above), so the guided probability-flow ODE has the closed form of tests/samplers_test.ts:
  // each pixel keeps its standard score. At large w the tilted mean (4.6 at w = 6) is far from
  // the data the steps start near, which is where a multistep solver on x0 must stay stable.
  const n = 500, y = 2, steps = 20;
  const xT = createRng(12).normal(n);
  const abarT = schedule.alphasCumprod[999];
  const sd = (abar: number) => Math.sqrt(abar * S * S + 1 - abar);
  const unguided: Record<string, number> = {};
  for (const w of [0, 2, 6]) {
    const mean = (1 + w) * MEANS[y] - w * MEANS[NULL_CLASS];
    const exact = Array.from(xT, (v) => mean + (v - Math.sqrt(abarT) * mean) * S / sd(abarT));
    const error = async (sampler: "ddim" | "dpmpp-2m" | "unipc") => {
      const out = await sample(
        classifierFreeGuidance(idealConditional(), {
          labels: new Int32Array(n).fill(y),
          nullClass: NULL_CLASS,
          guidance: w,
        }),
        {
          schedule,
          shape: [n, 1, 1, 1],
          sampler,
          steps,
          spacing: "linspace",
          initialNoise: xT,
          clipDenoised: false,
        },
      );
      return Math.sqrt(out.reduce((sum, v, i) => sum + (v - exact[i]) ** 2, 0) / n);
    };
    const ddim = await error("ddim");
    for (const sampler of ["dpmpp-2m", "unipc"] as const) {
      const e = await error(sampler);
      assert.ok(e < ddim, `w = ${w}: ${sampler} error ${e} vs ddim ${ddim}`);
      // Relative to the tilted mean's size: the solvers stay within 2% of it at every w.
      // Measured RMS errors at every w: dpmpp-2m 0.0414, unipc 0.0401, ddim 0.0618. Each step
      // is affine in x and in the mean with coefficients that do not depend on w, so a larger
      // w shifts the path without adding error: within 1% of the unguided error (measured
      // 5e-6 relative; the 1% is float32 rounding room on values up to ~5).
      unguided[sampler] ??= e;
      assert.ok(Math.abs(e - unguided[sampler]) < 0.01 * unguided[sampler], `w = ${w}: ${e}`);
    }
  }
});

Deno.test("drawClasses() draws the classes uniformly, the same for a seed, apart from the seed's noise", () => {
  // Uniform: the chi-square statistic of 100,000 draws of 10 classes, 9 degrees of freedom,
  // below its 0.999 quantile 27.88 (the seed is fixed, so this is one deterministic draw).
  const n = 100_000, k = 10;
  const classes = drawClasses(2024, n, k);
  const counts = new Array(k).fill(0);
  for (const y of classes) counts[y]++;
  const chi2 = counts.reduce((sum, c) => sum + (c - n / k) ** 2 / (n / k), 0);
  assert.ok(chi2 < 27.88, `chi-square ${chi2.toFixed(1)} of counts ${counts.join(" ")}`);
  assert.deepEqual(drawClasses(2024, n, k), classes);
  // A prefix of a longer draw: n images of a seed are the first n of a bigger request's.
  assert.deepEqual(drawClasses(2024, 5, k), classes.slice(0, 5));
  // Apart from the sampler's stream createRng(seed): over 10,000 seeds, the first class of two
  // agrees with the sign of the first noise value half the time (3 standard errors: 0.015).
  let agree = 0;
  const seeds = 10_000;
  for (let seed = 0; seed < seeds; seed++) {
    const positive = createRng(seed).normal(1)[0] > 0 ? 1 : 0;
    if (drawClasses(seed, 1, 2)[0] === positive) agree++;
  }
  assert.ok(Math.abs(agree / seeds - 0.5) < 0.015, `agreed ${agree} of ${seeds}`);
  // Seeds up to 2^53 - 1 draw, and their high bits matter.
  const big = drawClasses(2 ** 40 + 5, 64, k);
  assert.notDeepEqual(big, drawClasses(5, 64, k));
  assert.equal(drawClasses(Number.MAX_SAFE_INTEGER, 3, k).length, 3);
});

Deno.test("drawClasses() with class counts draws each class in its share of the counts, exactly from one integer per image", () => {
  // MNIST's training digits at split seed 1 (the default model's card): 100,000 draws, the
  // chi-square against counts[y] / 9000 below its 9-degree 0.999 quantile, 27.88. The uniform
  // prior would fail it: digit 1 is 11.1% of the data, 5 is 8.7%.
  const prior = [901, 1001, 894, 929, 880, 781, 921, 955, 849, 889];
  const n = 100_000, k = 10, total = 9000;
  const chi2Of = (classes: Int32Array) => {
    const seen = new Array(k).fill(0);
    for (const y of classes) seen[y]++;
    return seen.reduce(
      (sum, c, y) => sum + (c - n * prior[y] / total) ** 2 / (n * prior[y] / total),
      0,
    );
  };
  const classes = drawClasses(2024, n, k, prior);
  assert.ok(chi2Of(classes) < 27.88, `chi-square ${chi2Of(classes).toFixed(1)}`);
  assert.ok(chi2Of(drawClasses(2024, n, k)) > 100, "the uniform draw is far from these shares");
  assert.deepEqual(drawClasses(2024, n, k, prior), classes);
  assert.deepEqual(drawClasses(2024, 5, k, prior), classes.slice(0, 5));
  // One integer in 0..total-1 per image from the class stream, looked up in the running sum:
  // with one count per class the integer is the class, so the draw is the uniform one exactly.
  assert.deepEqual(drawClasses(77, 500, k, new Array(k).fill(1)), drawClasses(77, 500, k));
  // A class with no training images is never drawn, and a single class is all there is.
  const gaps = drawClasses(5, 10_000, 4, [0, 3, 0, 1]);
  assert.ok(gaps.every((y) => y === 1 || y === 3));
  const threes = gaps.filter((y) => y === 3).length;
  assert.ok(Math.abs(threes / 10_000 - 0.25) < 4 * Math.sqrt(0.25 * 0.75 / 10_000), `${threes}`);
  assert.ok(drawClasses(5, 64, 3, [0, 0, 12]).every((y) => y === 2));
});

Deno.test("drawClasses() rejects bad counts, class numbers and seeds, naming the value", () => {
  assert.throws(() => drawClasses(1, 4, 0), /numClasses must be a positive integer, got 0/);
  assert.throws(() => drawClasses(1, -1, 10), /n must be an integer >= 0, got -1/);
  assert.throws(
    () => drawClasses(-1, 4, 10),
    /seed must be an integer in 0\.\.9007199254740991, got -1/,
  );
  assert.throws(() => drawClasses(1.5, 4, 10), /seed must be an integer .* got 1\.5/);
  assert.throws(
    () => drawClasses(1, 4, 3, [1, 2]),
    /classCounts must have 3 entries \(one per class\), got 2/,
  );
  assert.throws(
    () => drawClasses(1, 4, 2, [1, -2]),
    /classCounts\[1\] must be an integer >= 0, got -2/,
  );
  assert.throws(
    () => drawClasses(1, 4, 2, [0.5, 2]),
    /classCounts\[0\] must be an integer >= 0, got 0\.5/,
  );
  assert.throws(
    () => drawClasses(1, 4, 2, [0, 0]),
    /classCounts must sum to an integer in 1\.\.2147483647, got 0/,
  );
  assert.throws(
    () => drawClasses(1, 4, 2, [2 ** 31, 1]),
    /classCounts must sum to an integer in 1\.\.2147483647, got 2147483649/,
  );
});

Deno.test("defaultGuidance() is w = 1 over 8%-47% of T (0.5 over 8%-33% for the SDE solver, 0.5 for ddpm); requestedGuidance() keeps what a request sent", () => {
  assert.deepEqual(defaultGuidance(1000), { guidance: 1, interval: [80, 470] });
  assert.deepEqual(defaultGuidance(100), { guidance: 1, interval: [8, 47] });
  assert.deepEqual(defaultGuidance(20), { guidance: 1, interval: [2, 9] });
  assert.throws(() => defaultGuidance(0), /timesteps must be a positive integer, got 0/);
  // The weight and interval follow the sampler.
  for (const sampler of SAMPLERS) {
    const expected = sampler === "dpmpp-2m-sde"
      ? { guidance: 0.5, interval: [80, 330] }
      : { guidance: sampler === "ddpm" ? 0.5 : 1, interval: [80, 470] };
    assert.deepEqual(defaultGuidance(1000, sampler), expected);
  }
  assert.deepEqual(defaultGuidance(20, "dpmpp-2m-sde"), { guidance: 0.5, interval: [2, 7] });
  const T = { timesteps: 1000 };
  // Nothing sent: the default pair; a weight sent: every step unless an interval is sent too.
  assert.deepEqual(requestedGuidance(undefined, undefined, T), {
    guidance: 1,
    interval: [80, 470],
  });
  assert.deepEqual(requestedGuidance(undefined, undefined, { ...T, sampler: "dpmpp-2m-sde" }), {
    guidance: 0.5,
    interval: [80, 330],
  });
  assert.deepEqual(requestedGuidance(3, undefined, T), { guidance: 3, interval: null });
  assert.deepEqual(requestedGuidance(3, undefined, { ...T, sampler: "dpmpp-2m-sde" }), {
    guidance: 3,
    interval: null,
  });
  assert.deepEqual(requestedGuidance(0, undefined, T), { guidance: 0, interval: null });
  assert.deepEqual(requestedGuidance(2, [10, 20], T), { guidance: 2, interval: [10, 20] });
  assert.deepEqual(requestedGuidance(undefined, [0, 999], T), {
    guidance: 1,
    interval: [0, 999],
  });
  // Drawn classes: unguided unless a weight or an interval is sent.
  assert.deepEqual(requestedGuidance(undefined, undefined, { ...T, drawn: true }), {
    guidance: 0,
    interval: null,
  });
  assert.deepEqual(requestedGuidance(2, undefined, { ...T, drawn: true }), {
    guidance: 2,
    interval: null,
  });
  assert.deepEqual(
    requestedGuidance(undefined, [5, 9], { ...T, drawn: true, sampler: "dpmpp-2m-sde" }),
    { guidance: 0.5, interval: [5, 9] },
  );
});
