import assert from "node:assert/strict";
import { classifierFreeGuidance, drawClasses } from "../lib/guidance.ts";
import { decodePng, encodePng } from "../lib/png.ts";
import { type Denoiser, sample, type SamplerKind } from "../lib/samplers.ts";
import type { TimestepSpacing } from "../lib/schedule.ts";
import { createApp } from "../serve/app.ts";
import { fromBase64, jsonImages } from "../serve/images.ts";
import { type ServedModel, servedModel } from "../serve/registry.ts";
import { card, TINY_CLASSES, TINY_CONDITIONAL, tinyRegistry } from "./_models.ts";
import { pngBase64, postJson, randomImage, readEvents } from "./serve_helpers.ts";

// Two exported tiny U-Nets with random weights (8x8 grey): `tiny`, unconditional, and
// `tiny-cond`, conditional on the classes circle, square and cross. With random weights the
// class embedding still moves the output, so a different class gives a different image.
const registry = await tinyRegistry({ conditional: true });
const { app } = createApp({ registry });
const conditional = modelNamed("tiny-cond");
const digit = randomImage(8, 8, 1, 7);
const other = randomImage(8, 8, 1, 8);

function modelNamed(name: string): ServedModel {
  const model = registry.models.find((m) => m.name === name);
  if (!model) throw new Error(`the test registry has no ${name}`);
  return model;
}

/** A JSON error response: its status, its code and a detail that matches `detail`. */
async function assertError(
  response: Response,
  status: number,
  detail: RegExp,
  error = "invalid_request",
): Promise<void> {
  const body = await response.json();
  assert.equal(response.status, status, JSON.stringify(body));
  assert.deepEqual(Object.keys(body).sort(), ["detail", "error", "requestId"]);
  assert.equal(body.error, error);
  assert.match(body.detail, detail);
}

/** `POST /v1/samples` with `format: "json"` on `tiny-cond`; the response must be a 200. */
async function samplesJson(body: Record<string, unknown>) {
  const response = await postJson(app, "/v1/samples", {
    model: "tiny-cond",
    format: "json",
    ...body,
  });
  assert.equal(response.status, 200, await response.clone().text());
  return { headers: response.headers, json: await response.json() };
}

/** `POST /v1/samples` as a PNG; the response must be a 200. */
async function samplesPng(body: Record<string, unknown>): Promise<Uint8Array> {
  const response = await postJson(app, "/v1/samples", { model: "tiny-cond", ...body });
  assert.equal(response.status, 200, await response.clone().text());
  return new Uint8Array(await response.arrayBuffer());
}

/** What `/v1/samples` computes, done here with lib's `sample` on `denoiser`, as JSON images. */
async function sampleDirectly(
  denoiser: Denoiser,
  options: { n: number; steps: number; seed: number; sampler?: SamplerKind; eta?: number },
  spacing: TimestepSpacing = "leading",
) {
  const { n, steps, seed } = options;
  const x = await sample(denoiser, {
    schedule: conditional.schedule,
    shape: [n, ...conditional.imageShape],
    sampler: options.sampler ?? "ddim",
    steps,
    eta: options.eta ?? 0,
    spacing,
    seed,
    prediction: conditional.prediction,
    variance: conditional.variance,
  });
  return jsonImages(conditional, x, n);
}

Deno.test("GET /v1/models lists each model's classes: the names, or an empty list", async () => {
  const body = await (await app.request("/v1/models")).json();
  const classes = Object.fromEntries(
    body.models.map((m: { name: string; classes: string[] }) => [m.name, m.classes]),
  );
  assert.deepEqual(classes, { tiny: [], "tiny-cond": TINY_CLASSES });
  assert.deepEqual(body.models[1].card.classNames, TINY_CLASSES);
});

Deno.test("POST /v1/samples: a label by index and by name give the same images, and another class others", async () => {
  const body = { n: 3, steps: 3, seed: 21 };
  const byName = await samplesJson({ ...body, label: "square" });
  const byIndex = await samplesJson({ ...body, label: 1 });
  assert.deepEqual(byName.json.images, byIndex.json.images);
  assert.deepEqual(byName.json.labels, ["square", "square", "square"]);
  // No guidance sent: the default sampler's default, w = 0.5 over timesteps 80-330 of T = 1000.
  assert.equal(conditional.schedule.timesteps, 1000);
  assert.equal(byName.json.sampler, "dpmpp-2m-sde");
  assert.equal(byName.json.guidance, 0.5);
  assert.deepEqual(byName.json.guidanceInterval, [80, 330]);
  assert.equal(byName.headers.get("x-labels"), "1,1,1");
  assert.equal(byName.headers.get("x-guidance"), "0.5");
  assert.equal(byName.headers.get("x-guidance-interval"), "80-330");
  // The ODE solvers' default weight is 1 and DDPM's ancestral steps' 0.5, over 80-470.
  const weights = [["dpmpp-2m", 1], ["ddim", 1], ["unipc", 1], ["ddpm", 0.5]] as const;
  for (const [sampler, weight] of weights) {
    const other = await samplesJson({ ...body, label: "square", sampler });
    assert.equal(other.json.guidance, weight, sampler);
    assert.deepEqual(other.json.guidanceInterval, [80, 470], sampler);
  }
  const cross = await samplesJson({ ...body, label: "cross" });
  assert.notDeepEqual(cross.json.images, byName.json.images);
  // A null label: the "no class" row, reported as null and without the class headers.
  const none = await samplesJson({ ...body, label: null });
  assert.deepEqual(none.json.labels, [null, null, null]);
  assert.equal(none.headers.get("x-labels"), null);
  assert.notDeepEqual(none.json.images, byName.json.images);
});

Deno.test("POST /v1/samples with no label draws each image's class from the seed, as drawClasses() does", async () => {
  const body = { n: 12, steps: 3, seed: 31 };
  const drawn = await samplesJson(body);
  const classes = drawClasses(31, 12, TINY_CLASSES.length);
  assert.deepEqual(drawn.json.labels, Array.from(classes, (y) => TINY_CLASSES[y]));
  assert.equal(drawn.headers.get("x-labels"), classes.join(","));
  // Twelve uniform draws from three classes: more than one class (all alike has odds 3^-11).
  assert.ok(new Set(classes).size > 1, `drew ${classes.join()}`);
  // Drawn classes are unguided by default (a named class gets the default guidance), and the
  // images are those of the same classes sent as a list unguided: the draw only picks labels.
  assert.equal(drawn.json.guidance, 0);
  assert.equal(drawn.json.guidanceInterval, null);
  const listed = await samplesJson({ ...body, label: Array.from(classes), guidance: 0 });
  assert.deepEqual(drawn.json.images, listed.json.images);
  // Another seed draws again; guidance applies to drawn classes as to sent ones.
  const other = await samplesJson({ ...body, seed: 32 });
  assert.deepEqual(other.json.labels, Array.from(drawClasses(32, 12, 3), (y) => TINY_CLASSES[y]));
  const guided = await samplesJson({ ...body, guidance: 2 });
  const guidedList = await samplesJson({ ...body, label: Array.from(classes), guidance: 2 });
  assert.equal(guided.headers.get("x-guidance"), "2");
  assert.deepEqual(guided.json.images, guidedList.json.images);
  assert.notDeepEqual(guided.json.images, drawn.json.images);
  // An interval sent alone asks for guidance in it: the default sampler's default weight, 0.5.
  const inInterval = await samplesJson({ ...body, guidanceInterval: [200, 700] });
  assert.equal(inInterval.json.guidance, 0.5);
  const inIntervalList = await samplesJson({
    ...body,
    label: Array.from(classes),
    guidance: 0.5,
    guidanceInterval: [200, 700],
  });
  assert.equal(inInterval.headers.get("x-guidance-interval"), "200-700");
  assert.deepEqual(inInterval.json.images, inIntervalList.json.images);
  await assertError(
    await postJson(app, "/v1/samples", {
      model: "tiny-cond",
      n: 2,
      steps: 1,
      guidanceInterval: [80, 99999],
    }),
    400,
    /^guidanceInterval: must be \[from, to\] with 0 <= from <= to <= 999/,
  );
});

Deno.test("POST /v1/samples with guidance 0 is lib's sample() on the model's network with those labels", async () => {
  const labels = Int32Array.of(2, 2, 2, 2);
  for (const sampler of ["ddim", "ddpm"] as const) {
    const options = { n: 4, steps: 4, seed: 5, sampler };
    const served = await samplesJson({ ...options, label: "cross", guidance: 0 });
    assert.equal(served.headers.get("x-guidance-interval"), null);
    assert.equal(served.json.guidanceInterval, null);
    const direct = await sampleDirectly(
      (x, t, shape) => conditional.denoiser(x, t, shape, labels),
      options,
    );
    // The same float32 operations in the same order: identical 8-bit pixels.
    assert.deepEqual(served.json.images, direct, sampler);
  }
});

Deno.test("POST /v1/samples with guidance w > 0 differs from w = 0 and matches classifierFreeGuidance()", async () => {
  const label = ["circle", null, 2];
  const options = { n: 3, steps: 4, seed: 8, sampler: "ddim" as const, eta: 0.5 };
  const unguided = await samplesJson({ ...options, label });
  const guided = await samplesJson({ ...options, label, guidance: 3 });
  assert.equal(guided.headers.get("x-labels"), "0,none,2");
  assert.equal(guided.headers.get("x-guidance"), "3");
  assert.deepEqual(guided.json.labels, ["circle", null, "cross"]);
  assert.equal(guided.json.guidance, 3);
  // Guidance changes the labelled images and leaves the one with no class as it was.
  assert.notDeepEqual(guided.json.images[0], unguided.json.images[0]);
  assert.notDeepEqual(guided.json.images[2], unguided.json.images[2]);
  assert.deepEqual(guided.json.images[1], unguided.json.images[1]);
  const direct = await sampleDirectly(
    classifierFreeGuidance(conditional.denoiser, {
      labels: Int32Array.of(0, 3, 2),
      nullClass: 3,
      guidance: 3,
    }),
    options,
  );
  assert.deepEqual(guided.json.images, direct);
  // Every spacing reaches the guided network the same way.
  for (const spacing of ["trailing", "linspace"] as const) {
    const served = await samplesJson({ ...options, label, guidance: 3, spacing });
    const expected = await sampleDirectly(
      classifierFreeGuidance(conditional.denoiser, {
        labels: Int32Array.of(0, 3, 2),
        nullClass: 3,
        guidance: 3,
      }),
      options,
      spacing,
    );
    assert.deepEqual(served.json.images, expected, spacing);
  }
});

Deno.test("POST /v1/samples guides a class by default with w = 1 in 80-470; a sent weight guides every step unless guidanceInterval limits it", async () => {
  const labels = Int32Array.of(2, 2, 2, 2);
  const options = { n: 4, steps: 4, seed: 6, sampler: "ddim" as const };
  const guidedBy = (guidance: number, interval?: [number, number]) =>
    sampleDirectly(
      classifierFreeGuidance(conditional.denoiser, { labels, nullClass: 3, guidance, interval }),
      options,
    );
  // DDIM's 4 leading steps visit t = 0, 250, 500, 750: the default guides the one at 250.
  const byDefault = await samplesJson({ ...options, label: "cross" });
  assert.deepEqual(byDefault.json.images, await guidedBy(1, [80, 470]));
  assert.notDeepEqual(byDefault.json.images, await guidedBy(0));
  assert.notDeepEqual(byDefault.json.images, await guidedBy(1));
  // A sent weight is Ho & Salimans' guidance at every step...
  const everyStep = await samplesJson({ ...options, label: "cross", guidance: 1 });
  assert.deepEqual(everyStep.json.images, await guidedBy(1));
  assert.equal(everyStep.headers.get("x-guidance-interval"), null);
  // ...unless an interval is sent with it, or alone with the default weight.
  const limited = await samplesJson({
    ...options,
    label: "cross",
    guidance: 2,
    guidanceInterval: [200, 600],
  });
  assert.deepEqual(limited.json.images, await guidedBy(2, [200, 600]));
  assert.equal(limited.headers.get("x-guidance-interval"), "200-600");
  const onlyInterval = await samplesJson({
    ...options,
    label: "cross",
    guidanceInterval: [0, 999],
  });
  assert.deepEqual(onlyInterval.json.images, await guidedBy(1, [0, 999]));
  // Bad intervals, and an interval with nothing to guide, are 400s that say why.
  const bad = (body: Record<string, unknown>) =>
    postJson(app, "/v1/samples", { model: "tiny-cond", n: 1, steps: 1, ...body });
  await assertError(
    await bad({ label: 0, guidanceInterval: [80, 1000] }),
    400,
    /^guidanceInterval: must be \[from, to\] with 0 <= from <= to <= 999 \(model tiny-cond's last timestep\), got \[80, 1000\]/,
  );
  await assertError(await bad({ label: 0, guidanceInterval: [500, 100] }), 400, /got \[500, 100\]/);
  await assertError(await bad({ label: 0, guidanceInterval: [1, 2, 3] }), 400, /^guidanceInterval/);
  await assertError(
    await bad({ label: null, guidanceInterval: [80, 470] }),
    400,
    /^guidanceInterval: needs a label/,
  );
  await assertError(
    await postJson(app, "/v1/samples", { n: 1, guidanceInterval: [80, 470] }),
    400,
    /^guidanceInterval: model tiny has no classes/,
  );
});

Deno.test("POST /v1/samples: each image of a label list is sampled as its own class", async () => {
  const body = { n: 4, steps: 3, seed: 13 };
  const list = await samplesJson({ ...body, label: ["circle", 1, null, "cross"] });
  assert.deepEqual(list.json.labels, ["circle", "square", null, "cross"]);
  assert.equal(list.headers.get("x-labels"), "0,1,none,2");
  // Image i of the batch gets the same noise as image i of a batch labelled all alike, and the
  // network treats each image on its own, so the two agree to float32 rounding (the batches'
  // other images differ): at most 1 of 255 after rounding to 8 bits.
  const alike = await Promise.all(
    ["circle", "square", null, "cross"].map((label) => samplesJson({ ...body, label })),
  );
  for (let i = 0; i < 4; i++) {
    const got = list.json.images[i].pixels as number[];
    const want = alike[i].json.images[i].pixels as number[];
    const worst = Math.max(...got.map((v, j) => Math.abs(v - want[j])));
    assert.ok(worst <= 1, `image ${i} differs by ${worst}`);
  }
});

Deno.test("an unconditional model refuses a label or guidance with a 400 saying it has no classes", async () => {
  const image = pngBase64(digit);
  const noClasses = /^label: model tiny has no classes \(it is unconditional\)/;
  await assertError(await postJson(app, "/v1/samples", { n: 1, label: 0 }), 400, noClasses);
  await assertError(
    await postJson(app, "/v1/samples/stream", { n: 1, label: "circle" }),
    400,
    noClasses,
  );
  await assertError(
    await postJson(app, "/v1/samples", { n: 1, guidance: 2 }),
    400,
    /^guidance: model tiny has no classes/,
  );
  await assertError(
    await postJson(app, "/v1/interpolate", { a: image, b: image, label: 1 }),
    400,
    noClasses,
  );
  await assertError(
    await postJson(app, "/v1/noise", { image, reconstruct: true, label: "square" }),
    400,
    noClasses,
  );
  // Guidance 0 and a null label ask for nothing, so they are fine.
  const plain = await postJson(app, "/v1/samples", { n: 1, steps: 1, label: null, guidance: 0 });
  assert.equal(plain.status, 200);
  await plain.body?.cancel();
});

Deno.test("a conditional model refuses unknown classes, bad lists and guidance without a label, naming what is allowed", async () => {
  const bad = (body: Record<string, unknown>) =>
    postJson(app, "/v1/samples", { model: "tiny-cond", n: 2, steps: 1, ...body });
  const allowed = /0 "circle", 1 "square", 2 "cross"/;
  await assertError(
    await bad({ label: "dog" }),
    400,
    /^label: unknown class "dog" for model tiny-cond; its classes are 0 "circle"/,
  );
  await assertError(await bad({ label: "dog" }), 400, allowed);
  await assertError(
    await bad({ label: 3 }),
    400,
    /^label: class index 3 is out of range for model tiny-cond: must be in 0\.\.2/,
  );
  await assertError(await bad({ label: 3 }), 400, allowed);
  await assertError(await bad({ label: ["circle", "Circle"] }), 400, /^label\.1: unknown class/);
  await assertError(await bad({ label: [0, 7] }), 400, /^label\.1: class index 7/);
  await assertError(
    await bad({ label: [0, 1, 2] }),
    400,
    /^label: a list needs one entry per image \(2\), got 3/,
  );
  await assertError(
    await bad({ label: null, guidance: 2 }),
    400,
    /^guidance: needs a label .*0 "circle", 1 "square", 2 "cross"/,
  );
  // Only sampling draws classes: a decoder with no label has no class to guide.
  await assertError(
    await postJson(app, "/v1/interpolate", {
      model: "tiny-cond",
      a: pngBase64(digit),
      b: pngBase64(other),
      guidance: 2,
    }),
    400,
    /^guidance: needs a label/,
  );
  // Types and ranges from the schema.
  await assertError(await bad({ label: -1 }), 400, /^label/);
  await assertError(await bad({ label: 1.5 }), 400, /^label/);
  await assertError(await bad({ label: "" }), 400, /^label/);
  await assertError(await bad({ label: [] }), 400, /^label/);
  await assertError(await bad({ label: true }), 400, /^label/);
  await assertError(await bad({ label: 0, guidance: -1 }), 400, /^guidance: .*>=0/);
  await assertError(await bad({ label: 0, guidance: 20.5 }), 400, /^guidance: .*<=20/);
  // The single-label endpoints take one class, not a list.
  const image = pngBase64(digit);
  await assertError(
    await postJson(app, "/v1/interpolate", {
      model: "tiny-cond",
      a: image,
      b: image,
      label: [0, 1],
    }),
    400,
    /^label/,
  );
  await assertError(
    await postJson(app, "/v1/noise", {
      model: "tiny-cond",
      image,
      reconstruct: true,
      label: "blob",
    }),
    400,
    /^label: unknown class "blob"/,
  );
});

Deno.test("guidance counts each guided image twice against the image and frame limits", async () => {
  const small = createApp({ registry, limits: { maxImages: 4, maxFrames: 4 } }).app;
  const ask = (path: string, body: Record<string, unknown>) =>
    postJson(small, path, { model: "tiny-cond", ...body });
  await assertError(
    await ask("/v1/samples", { n: 3, steps: 1, label: 0, guidance: 1 }),
    400,
    /^n: guidance evaluates each labelled image twice .* a batch of 6, over the limit of 4/,
  );
  // Unguided images count once: a list with two of three images guided fits exactly.
  for (
    const body of [
      { n: 2, steps: 1, label: 0, guidance: 1 },
      { n: 4, steps: 1, label: 0, guidance: 0 },
      { n: 3, steps: 1, label: [0, null, null], guidance: 1 },
    ]
  ) {
    const response = await ask("/v1/samples", body);
    assert.equal(response.status, 200, JSON.stringify(body));
    await response.body?.cancel();
  }
  // Drawn classes are real classes: guided, they count twice as well.
  await assertError(
    await ask("/v1/samples", { n: 3, steps: 1, guidance: 1 }),
    400,
    /^n: guidance evaluates each labelled image twice .* a batch of 6, over the limit of 4/,
  );
  // The default guidance (neither guidance nor guidanceInterval sent) is not held to the
  // limit: a request of the most images with a named class is served, guided as reported.
  const full = await ask("/v1/samples", { n: 4, steps: 4, label: 1, format: "json" });
  assert.equal(full.status, 200);
  assert.deepEqual([(await full.json()).guidance, full.headers.get("x-guidance-interval")], [
    0.5,
    "80-330",
  ]);
  // What is reported is what was applied: a list of no classes guides nothing.
  const nothing = await ask("/v1/samples", { n: 2, steps: 1, label: [null, null], format: "json" });
  assert.deepEqual([(await nothing.json()).guidance, nothing.headers.get("x-guidance")], [0, "0"]);
  const image = pngBase64(digit);
  await assertError(
    await ask("/v1/interpolate", {
      a: image,
      b: image,
      t: 5,
      steps: 1,
      count: 3,
      label: 1,
      guidance: 2,
    }),
    400,
    /^count: .*a batch of 6, over the limit of 4/,
  );
  await assertError(
    await ask("/v1/noise", {
      image,
      timesteps: [1, 2, 3],
      reconstruct: true,
      label: 1,
      guidance: 2,
    }),
    400,
    /^timesteps: .*a batch of 6, over the limit of 4/,
  );
});

Deno.test("POST /v1/samples/stream takes label and guidance and ends with the /v1/samples grid", async () => {
  const body = { model: "tiny-cond", n: 2, steps: 3, seed: 4, label: "square", guidance: 1.5 };
  const response = await postJson(app, "/v1/samples/stream", body);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("x-labels"), "1,1");
  assert.equal(response.headers.get("x-guidance"), "1.5");
  const events = [];
  for await (const event of readEvents(response)) events.push(event);
  assert.deepEqual(events.map((e) => e.event), ["start", "step", "step", "step", "done"]);
  assert.deepEqual(events[0].data.labels, ["square", "square"]);
  assert.equal(events[0].data.guidance, 1.5);
  const done = fromBase64(events.at(-1)?.data.png, "png");
  assert.deepEqual(done, await samplesPng(body));
  await assertError(
    await postJson(app, "/v1/samples/stream", { ...body, label: "dog" }),
    400,
    /^label: unknown class "dog"/,
  );
  // No label: the stream draws the classes /v1/samples draws, and reports them.
  const drawnBody = { model: "tiny-cond", n: 6, steps: 2, seed: 40 };
  const classes = drawClasses(40, 6, TINY_CLASSES.length);
  const drawn = await postJson(app, "/v1/samples/stream", drawnBody);
  assert.equal(drawn.headers.get("x-labels"), classes.join(","));
  const drawnEvents = [];
  for await (const event of readEvents(drawn)) drawnEvents.push(event);
  assert.deepEqual(drawnEvents[0].data.labels, Array.from(classes, (y) => TINY_CLASSES[y]));
  assert.deepEqual(
    fromBase64(drawnEvents.at(-1)?.data.png, "png"),
    await samplesPng(drawnBody),
  );
});

Deno.test("POST /v1/interpolate decodes as a label, from JSON or a form, guided or not", async () => {
  const body = {
    model: "tiny-cond",
    a: pngBase64(digit),
    b: pngBase64(other),
    t: 30,
    count: 3,
    steps: 3,
    seed: 6,
  };
  const ask = async (extra: Record<string, unknown>) => {
    const response = await postJson(app, "/v1/interpolate", { ...body, ...extra });
    assert.equal(response.status, 200, await response.clone().text());
    return { headers: response.headers, bytes: new Uint8Array(await response.arrayBuffer()) };
  };
  const none = await ask({});
  const square = await ask({ label: "square" });
  const guided = await ask({ label: "square", guidance: 2 });
  assert.equal(none.headers.get("x-label"), null);
  assert.equal(square.headers.get("x-label"), "1");
  // No weight sent: the decoders stay unguided (the sampler defaults are sampling's).
  assert.equal(square.headers.get("x-guidance"), "0");
  assert.equal(guided.headers.get("x-guidance"), "2");
  assert.notDeepEqual(square.bytes, none.bytes);
  assert.notDeepEqual(guided.bytes, square.bytes);
  assert.deepEqual((await ask({ label: 1 })).bytes, square.bytes);
  const json = await (await postJson(app, "/v1/interpolate", {
    ...body,
    label: 1,
    guidance: 2,
    format: "json",
  })).json();
  assert.deepEqual([json.label, json.guidance, json.images.length], ["square", 2, 3]);
  // The same request as a form: a number is an index, other text a name.
  for (const label of ["square", "1"]) {
    const form = new FormData();
    form.set("model", "tiny-cond");
    form.set("a", new File([encodePng(digit) as Uint8Array<ArrayBuffer>], "a.png"));
    form.set("b", new File([encodePng(other) as Uint8Array<ArrayBuffer>], "b.png"));
    for (const name of ["t", "count", "steps", "seed"] as const) form.set(name, String(body[name]));
    form.set("label", label);
    form.set("guidance", "2");
    const viaForm = await app.request("/v1/interpolate", { method: "POST", body: form });
    assert.equal(viaForm.status, 200, await viaForm.clone().text());
    assert.deepEqual(new Uint8Array(await viaForm.arrayBuffer()), guided.bytes, label);
  }
});

Deno.test("POST /v1/noise reconstructs x_0 as a label; a label without reconstruct is refused", async () => {
  const body = {
    model: "tiny-cond",
    image: pngBase64(digit),
    timesteps: [100, 600],
    seed: 3,
    reconstruct: true,
    format: "json",
  };
  const ask = async (extra: Record<string, unknown>) => {
    const response = await postJson(app, "/v1/noise", { ...body, ...extra });
    assert.equal(response.status, 200, await response.clone().text());
    return { headers: response.headers, json: await response.json() };
  };
  const none = await ask({});
  const cross = await ask({ label: "cross" });
  const guided = await ask({ label: 2, guidance: 4 });
  assert.deepEqual([none.json.label, cross.json.label, guided.json.label], [
    null,
    "cross",
    "cross",
  ]);
  assert.deepEqual([cross.json.guidance, guided.json.guidance], [0, 4]);
  assert.equal(guided.headers.get("x-label"), "2");
  // The noised frames do not involve the network; the estimates of x_0 do.
  assert.deepEqual(cross.json.frames, none.json.frames);
  assert.deepEqual(guided.json.frames, none.json.frames);
  assert.notDeepEqual(cross.json.reconstructions, none.json.reconstructions);
  assert.notDeepEqual(guided.json.reconstructions, cross.json.reconstructions);
  // A form, as the playground's uploads send it.
  const form = new FormData();
  form.set("model", "tiny-cond");
  form.set("image", new File([encodePng(digit) as Uint8Array<ArrayBuffer>], "digit.png"));
  form.set("timesteps", "100,600");
  form.set("seed", "3");
  form.set("reconstruct", "true");
  form.set("label", "cross");
  form.set("format", "json");
  const viaForm = await app.request("/v1/noise", { method: "POST", body: form });
  assert.equal(viaForm.status, 200);
  assert.deepEqual((await viaForm.json()).reconstructions, cross.json.reconstructions);
  // Without reconstruct there is no network call for the label to steer.
  const { reconstruct: _, ...plain } = body;
  await assertError(
    await postJson(app, "/v1/noise", { ...plain, label: 0 }),
    400,
    /^label: applies with reconstruct only/,
  );
  await assertError(
    await postJson(app, "/v1/noise", { ...plain, guidance: 1 }),
    400,
    /^guidance: applies with reconstruct only/,
  );
  const strip = await postJson(app, "/v1/noise", { ...plain, format: "png" });
  assert.equal(decodePng(new Uint8Array(await strip.arrayBuffer())).height, 12);
});

Deno.test("GET /openapi.json describes label, guidance, the classes and the class headers", async () => {
  const document = await (await app.request("/openapi.json")).json();
  const schemas = document.components.schemas;
  for (
    const name of [
      "SampleRequest",
      "StreamRequest",
      "NoiseRequest",
      "NoiseUpload",
      "InterpolateRequest",
      "InterpolateUpload",
    ]
  ) {
    assert.ok(schemas[name].properties.label, `${name}.label`);
    assert.ok(schemas[name].properties.guidance, `${name}.guidance`);
  }
  const guidance = schemas.SampleRequest.properties.guidance;
  assert.deepEqual([guidance.minimum, guidance.maximum, guidance.default], [0, 20, undefined]);
  assert.match(guidance.description, /\(1 \+ w\) eps\(x, label\) - w eps\(x, no class\)/);
  assert.match(
    guidance.description,
    /Left out, an image of a named class is guided with w = 0\.5 over 8% to 33% under dpmpp-2m-sde, 0\.5 over 8% to 47% under ddpm and 1 over 8% to 47% under the other samplers \(fractions of T\)/,
  );
  const noiseGuidance = schemas.NoiseRequest.properties.guidance;
  assert.equal(noiseGuidance.default, 0, "the decoders' guidance stays 0 by default");
  assert.match(
    schemas.SampleRequest.properties.guidanceInterval.description,
    /Kynkäänniemi et al\. 2024/,
  );
  assert.match(schemas.SampleRequest.properties.label.description, /one entry per image/);
  assert.ok(schemas.Models.properties.models.items.properties.classes);
  assert.deepEqual(schemas.Samples.required.filter((f: string) => /label|guidance/.test(f)), [
    "labels",
    "guidance",
    "guidanceInterval",
  ]);
  const headers = document.paths["/v1/samples"].post.responses["200"].headers;
  assert.ok(headers["X-Labels"] && headers["X-Guidance"] && headers["X-Guidance-Interval"]);
  // The reference page names the union's branches, a list's entries and null.
  const docs = await (await app.request("/docs")).text();
  assert.ok(docs.includes("<code>guidance</code>"), "the reference page shows guidance");
  assert.ok(
    docs.includes(
      "<code>label</code></td><td>integer | string | (integer | string | null)[] | null",
    ),
    "the reference page shows label's type",
  );
});

Deno.test("servedModel() refuses a card whose class names do not cover its network's classes", () => {
  const zero: Denoiser = (x) => new Float32Array(x.length);
  const conditionalCard = card(TINY_CONDITIONAL);
  assert.deepEqual(servedModel("c", conditionalCard, zero).classes, TINY_CLASSES);
  assert.throws(
    () => servedModel("c", { ...conditionalCard, classNames: ["a", "b"] }, zero),
    /model c: its network has 3 classes \(config.numClasses\) but its card names 2/,
  );
  assert.throws(
    () => servedModel("c", { ...conditionalCard, classNames: undefined }, zero),
    /has 3 classes .* names 0/,
  );
  assert.throws(
    () => servedModel("c", { ...conditionalCard, classNames: ["a", "b", "a"] }, zero),
    /repeat a name/,
  );
  // Class counts: one per class, non-negative integers, not all zero.
  assert.equal(servedModel("c", conditionalCard, zero).classCounts, null);
  assert.deepEqual(
    servedModel("c", { ...conditionalCard, classCounts: [4, 0, 2] }, zero).classCounts,
    [4, 0, 2],
  );
  assert.throws(
    () => servedModel("c", { ...conditionalCard, classCounts: [4, 2] }, zero),
    /model c: its card's classCounts must have 3 entries \(one per class\), got 2/,
  );
  assert.throws(
    () => servedModel("c", { ...conditionalCard, classCounts: [0, 0, 0] }, zero),
    /model c: its card's classCounts must sum to an integer in 1\.\.2147483647, got 0/,
  );
  assert.throws(
    () => servedModel("c", { ...conditionalCard, classCounts: [1, -1, 2] }, zero),
    /model c: its card cannot be sampled from: classCounts\.1: /,
  );
});

Deno.test("POST /v1/samples with no label draws the classes in the card's training proportions", async () => {
  // The tiny conditional network under a card whose training set had no circles and five
  // squares to each cross: a request with no label never draws a circle.
  const counts = [0, 5, 1];
  const weighted = servedModel(
    "tiny-prior",
    { ...conditional.card, classCounts: counts },
    conditional.denoiser,
  );
  const prior = createApp({ registry: { ...registry, models: [weighted] } }).app;
  const response = await postJson(prior, "/v1/samples", {
    model: "tiny-prior",
    format: "json",
    n: 48,
    steps: 2,
    seed: 31,
  });
  assert.equal(response.status, 200, await response.clone().text());
  const { labels } = await response.json();
  const classes = drawClasses(31, 48, 3, counts);
  assert.deepEqual(labels, Array.from(classes, (y) => TINY_CLASSES[y]));
  assert.ok(!labels.includes(TINY_CLASSES[0]), `drew ${labels.join()}`);
  assert.notDeepEqual(classes, drawClasses(31, 48, 3), "not the uniform draw");
  // GET /v1/models shows the counts on the card.
  const models = await (await prior.request("/v1/models")).json();
  assert.deepEqual(models.models[0].card.classCounts, counts);
});
