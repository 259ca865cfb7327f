import assert from "node:assert/strict";
import { Hono } from "hono";
import { SAMPLER_CAPABILITIES, SAMPLERS } from "../lib/samplers.ts";
import { spacedTimesteps } from "../lib/schedule.ts";
import { HttpError } from "../serve/errors.ts";
import { JobQueue } from "../serve/jobs.ts";
import { DEFAULT_LIMITS, type Limits } from "../serve/limits.ts";
import type { AppEnv } from "../serve/middleware.ts";
import { servedModel } from "../serve/registry.ts";
import { conversionText } from "../serve/routes/_images.ts";
import { resultHeaders } from "../serve/routes/_headers.ts";
import { type Job, Jobs } from "../serve/routes/_jobs.ts";
import {
  checkEta,
  findModel,
  interpolationPlan,
  noisePlan,
  type RuleContext,
  samplingPlan,
} from "../serve/rules.ts";
import { PRESETS } from "../train/network.ts";
import { card, TINY_CONDITIONAL } from "./_models.ts";

// The rules read a model's name, T and classes only; the denoiser is never called.
const zero = (x: Float32Array) => new Float32Array(x.length);
const plain = servedModel("plain", card(PRESETS.tiny), zero);
const short = servedModel("short", {
  ...card(PRESETS.tiny),
  schedule: { kind: "linear", timesteps: 20, betaStart: 1e-4, betaEnd: 0.02 },
}, zero);
const cond = servedModel("cond", card(TINY_CONDITIONAL), zero);

function rules(limits: Partial<Limits> = {}): RuleContext {
  return {
    models: [plain, short, cond],
    limits: { ...DEFAULT_LIMITS, ...limits },
    randomSeed: () => 42,
  };
}

/** Asserts that `run` throws an `HttpError` with this status and exactly this detail. */
function assertRefused(run: () => unknown, status: number, detail: string): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof HttpError, String(error));
    assert.equal(error.status, status);
    assert.equal(error.detail, detail);
    return true;
  });
}

const sampling = { n: 4, sampler: "ddim" as const, spacing: "leading" as const, guidance: 0 };

Deno.test("findModel() takes the first model by default and 404s an unknown name, listing the rest", () => {
  const { models } = rules();
  assert.equal(findModel(models, undefined), plain);
  assert.equal(findModel(models, "cond"), cond);
  assertRefused(
    () => findModel(models, "nope"),
    404,
    'no model named "nope"; available: plain, short, cond',
  );
});

Deno.test("checkEta() lets eta through only for the samplers whose capabilities take it", () => {
  for (const sampler of SAMPLERS) {
    checkEta(sampler, undefined);
    if (SAMPLER_CAPABILITIES[sampler].takesEta) checkEta(sampler, 0.5);
    else {
      assertRefused(
        () => checkEta(sampler, 0),
        400,
        `eta: applies to the ddim sampler only, got sampler ${sampler}`,
      );
    }
  }
});

Deno.test("samplingPlan() fills the defaults: the sampler's steps within the limit, ~50 frames, eta 0", () => {
  const plan = samplingPlan(sampling, rules());
  // DDIM's own default is 50 steps; every = ceil(50 / 50).
  assert.deepEqual(
    { steps: plan.steps, every: plan.every, eta: plan.eta, seed: plan.seed },
    { steps: 50, every: 1, eta: 0, seed: 42 },
  );
  assert.equal(plan.model, plain);
  assert.equal(plan.labels, null);
  // The server's step limit caps the default; 200 steps make frames every 4 steps.
  assert.equal(samplingPlan(sampling, rules({ maxSteps: 10 })).steps, 10);
  assert.equal(samplingPlan({ ...sampling, steps: 200 }, rules()).every, 4);
  // DDPM's default is T, the model's own.
  const ddpm = samplingPlan({ ...sampling, model: "short", sampler: "ddpm" }, rules());
  assert.equal(ddpm.steps, 20);
  assert.equal(samplingPlan({ ...sampling, seed: 7 }, rules()).seed, 7);
});

Deno.test("samplingPlan() refuses steps past T, eta without DDIM, columns past n, and every without apng", () => {
  assertRefused(
    () => samplingPlan({ ...sampling, model: "short", steps: 21 }, rules()),
    400,
    "steps: must be in 1..20 for model short (its T), got 21",
  );
  assertRefused(
    () => samplingPlan({ ...sampling, sampler: "ddpm", steps: 2, eta: 0 }, rules()),
    400,
    "eta: applies to the ddim sampler only, got sampler ddpm",
  );
  assertRefused(
    () => samplingPlan({ ...sampling, columns: 5 }, rules()),
    400,
    "columns: must be in 1..n (4), got 5",
  );
  assertRefused(
    () => samplingPlan({ ...sampling, every: 2, format: "png" }, rules()),
    400,
    "every: applies to format apng only",
  );
  // An animation and a stream (which has no format) take every.
  assert.equal(samplingPlan({ ...sampling, every: 2, format: "apng" }, rules()).every, 2);
  assert.equal(samplingPlan({ ...sampling, every: 2 }, rules()).every, 2);
});

Deno.test("samplingPlan() counts each guided image twice against maxImages; unguided ones once", () => {
  const body = { ...sampling, model: "cond", n: 3, label: "square", guidance: 1 };
  // 3 images, 3 guided: a network batch of 6 over the limit of 5.
  assert.throws(
    () => samplingPlan(body, rules({ maxImages: 5 })),
    /n: guidance evaluates each labelled image twice .* 3 images with 3 guided make a batch of 6, over the limit of 5/,
  );
  // Guidance 0, or only one image with a class: 3 and 3 + 1 fit.
  assert.equal(samplingPlan({ ...body, guidance: 0 }, rules({ maxImages: 5 })).guided, 0);
  const mixed = samplingPlan({ ...body, label: ["square", null, null] }, rules({ maxImages: 5 }));
  assert.deepEqual([...(mixed.labels ?? [])], [1, 3, 3]);
  assert.equal(mixed.guided, 1);
});

Deno.test("noisePlan() defaults to 10 evenly spread timesteps and refuses any at or past T", () => {
  const base = { reconstruct: false, guidance: 0 };
  const plan = noisePlan(base, rules());
  assert.deepEqual(plan.timesteps, spacedTimesteps(1000, 10, "linspace"));
  assert.equal(plan.seed, 42);
  assert.deepEqual(noisePlan({ ...base, timesteps: [0, 19], model: "short" }, rules()).timesteps, [
    0,
    19,
  ]);
  assertRefused(
    () => noisePlan({ ...base, timesteps: [0, 20], model: "short" }, rules()),
    400,
    "timesteps: each must be in 0..19 for model short, got 20",
  );
  assertRefused(
    () => noisePlan({ ...base, count: 21, model: "short" }, rules()),
    400,
    "count: must be at most T = 20",
  );
  assertRefused(
    () => noisePlan({ ...base, count: 2, timesteps: [1] }, rules()),
    400,
    "send timesteps or count, not both",
  );
});

Deno.test("noisePlan() takes a class or guidance only with reconstruct, and names the field it counts", () => {
  const base = { model: "cond", reconstruct: false, guidance: 0 };
  assertRefused(
    () => noisePlan({ ...base, label: "circle" }, rules()),
    400,
    "label: applies with reconstruct only",
  );
  assertRefused(
    () => noisePlan({ ...base, guidance: 2 }, rules()),
    400,
    "guidance: applies with reconstruct only",
  );
  const guided = { ...base, reconstruct: true, label: "circle", guidance: 2 };
  const plan = noisePlan({ ...guided, count: 3 }, rules());
  assert.deepEqual([...(plan.labels ?? [])], [0, 0, 0]);
  assert.throws(
    () => noisePlan({ ...guided, count: 3 }, rules({ maxFrames: 5 })),
    /^HttpError: count:/,
  );
  assert.throws(
    () => noisePlan({ ...guided, timesteps: [1, 2, 3] }, rules({ maxFrames: 5 })),
    /^HttpError: timesteps:/,
  );
});

Deno.test("interpolationPlan() defaults: t = T / 2, 11 lambdas from 0 to 1, min(t + 1, 50) steps", () => {
  const base = { mixing: "linear" as const, sampler: "ddpm" as const, guidance: 0 };
  const plan = interpolationPlan(base, rules());
  assert.equal(plan.t, 500);
  assert.deepEqual(plan.lambdas, Array.from({ length: 11 }, (_, i) => i / 10));
  assert.equal(plan.steps, 50);
  assert.equal(plan.eta, 0);
  assert.equal(interpolationPlan({ ...base, t: 3 }, rules()).steps, 4);
  assert.equal(interpolationPlan({ ...base, model: "short" }, rules()).t, 10);
  assert.deepEqual(interpolationPlan({ ...base, count: 3 }, rules()).lambdas, [0, 0.5, 1]);
});

Deno.test("interpolationPlan() refuses t past T, steps past t + 1, lambdas with count, and eta without DDIM", () => {
  const base = { mixing: "linear" as const, sampler: "ddpm" as const, guidance: 0 };
  assertRefused(
    () => interpolationPlan({ ...base, model: "short", t: 20 }, rules()),
    400,
    "t: must be in 0..19 for model short, got 20",
  );
  assertRefused(
    () => interpolationPlan({ ...base, t: 5, steps: 7 }, rules()),
    400,
    "steps: must be in 1..6 (t + 1) for t = 5, got 7",
  );
  assertRefused(
    () => interpolationPlan({ ...base, lambdas: [0, 1], count: 2 }, rules()),
    400,
    "send lambdas or count, not both",
  );
  assertRefused(
    () => interpolationPlan({ ...base, eta: 0.5 }, rules()),
    400,
    "eta: applies to the ddim sampler only, got sampler ddpm",
  );
  assert.equal(interpolationPlan({ ...base, sampler: "ddim", eta: 0.5 }, rules()).eta, 0.5);
  assert.throws(
    () =>
      interpolationPlan(
        { ...base, model: "cond", lambdas: [0, 0.5, 1], label: 1, guidance: 1 },
        rules({ maxFrames: 5 }),
      ),
    /^HttpError: lambdas: .* a batch of 6, over the limit of 5/,
  );
});

Deno.test("resultHeaders(): seed and model always; classes per image or one for the request; conversions", () => {
  const run = { model: cond, seed: 9, labels: null, guidance: 0 };
  assert.deepEqual(resultHeaders(run, { report: "each" }), { "X-Seed": "9", "X-Model": "cond" });
  assert.deepEqual(resultHeaders(run, { report: "shared", conversion: null }), {
    "X-Seed": "9",
    "X-Model": "cond",
  });
  const labelled = { ...run, labels: Int32Array.from([2, 3]), guidance: 1.5 };
  assert.deepEqual(resultHeaders(labelled, { report: "each" }), {
    "X-Seed": "9",
    "X-Model": "cond",
    "X-Labels": "2,none",
    "X-Guidance": "1.5",
  });
  assert.deepEqual(resultHeaders(labelled, { report: "shared", conversion: "8x8 RGB -> grey" }), {
    "X-Seed": "9",
    "X-Model": "cond",
    "X-Label": "2",
    "X-Guidance": "1.5",
    "X-Image-Conversion": "8x8 RGB -> grey",
  });
  // A request whose one class is "no class" (null) reports none.
  const none = { ...run, labels: Int32Array.from([3, 3]) };
  assert.deepEqual(resultHeaders(none, { report: "shared" }), { "X-Seed": "9", "X-Model": "cond" });
});

Deno.test("conversionText(): a lone upload's conversion as it is; several named by field", () => {
  const x = new Float32Array(0);
  assert.equal(conversionText({ image: { x, conversion: null } }), null);
  assert.equal(conversionText({ image: { x, conversion: "c" } }), "c");
  assert.equal(conversionText({ a: { x, conversion: null }, b: { x, conversion: null } }), null);
  assert.equal(conversionText({ a: { x, conversion: null }, b: { x, conversion: "c" } }), "b: c");
  assert.equal(
    conversionText({ a: { x, conversion: "d" }, b: { x, conversion: "c" } }),
    "a: d; b: c",
  );
});

/**
 * Jobs of one slot and no waiting place, two per client (so the queue, not the client's share,
 * is what refuses): `/open` takes a job and keeps it, `/run` runs one that succeeds, fails
 * (`mode=fail`) or waits for its signal (`mode=hang`).
 */
function jobServer(timeoutMs = 1000) {
  const queue = new JobQueue({ concurrency: 1, queueSize: 0 });
  const jobs = new Jobs(queue, { maxJobsPerClient: 2, timeoutMs });
  let opened: Job | undefined;
  const app = new Hono<AppEnv>();
  app.post("/open", (c) => {
    opened = jobs.open(c);
    return c.text("open");
  });
  app.post("/run", async (c) => {
    const mode = c.req.query("mode");
    try {
      const out = await jobs.run(c, (signal) => {
        if (mode === "fail") return Promise.reject(new Error("a bug"));
        if (mode === "hang") {
          return new Promise((_, reject) =>
            signal.addEventListener("abort", () => reject(signal.reason))
          );
        }
        return Promise.resolve("done");
      });
      return c.text(out as string);
    } catch (error) {
      if (error instanceof HttpError) return c.text(`${error.status} ${error.error}`);
      return c.text(`thrown ${(error as Error).message}`);
    }
  });
  const post = async (path: string) => await (await app.request(path, { method: "POST" })).text();
  return { queue, post, opened: () => opened as Job };
}

Deno.test("Jobs.run() frees the slot and the client's share on success and on failure", async () => {
  const { queue, post } = jobServer();
  // A share kept by either would leave this client (two jobs at most) none by the fifth.
  for (let i = 0; i < 2; i++) {
    assert.equal(await post("/run"), "done");
    assert.equal(await post("/run?mode=fail"), "thrown a bug");
  }
  assert.equal(await post("/run"), "done");
  assert.equal(queue.stats().running, 0);
});

Deno.test("Jobs: a held job makes the next a 429, its release lets it in; the deadline is a 503", async () => {
  const { queue, post, opened } = jobServer(30);
  await post("/open");
  assert.equal(await post("/run"), "429 queue_full");
  const job = opened();
  await job.ready;
  job.release();
  job.release(); // idempotent
  assert.equal(queue.stats().running, 0);
  assert.equal(await post("/run?mode=hang"), "503 timeout");
  assert.equal(queue.stats().running, 0);
  assert.equal(await post("/run"), "done");
});

Deno.test("Jobs.open(): a stream's disconnect aborts the job as a client that left (499)", async () => {
  const { queue, post, opened } = jobServer();
  await post("/open");
  const job = opened();
  await job.ready;
  assert.equal(job.disconnected(), false);
  job.disconnect();
  assert.equal(job.disconnected(), true);
  assert.ok(job.signal.aborted);
  const failure = job.failure(job.signal.reason);
  assert.ok(failure instanceof HttpError);
  assert.equal(failure.status, 499);
  // Anything but the signal's own reason is not the job's doing and stays as it is.
  const bug = new Error("a bug");
  assert.equal(job.failure(bug), bug);
  job.release();
  assert.equal(queue.stats().running, 0);
});
