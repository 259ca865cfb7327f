import assert from "node:assert/strict";
import { makeGrid } from "../lib/image.ts";
import { decodePng, encodePng, readPngHeader } from "../lib/png.ts";
import { defaultSteps, SAMPLER_CAPABILITIES, SAMPLERS } from "../lib/samplers.ts";
import { createApp } from "../serve/app.ts";
import { DEFAULT_SAMPLER } from "../serve/schemas.ts";
import { fromBase64 } from "../serve/images.ts";
import { tinyRegistry } from "./_models.ts";
import { pngBase64, postJson, randomImage } from "./serve_helpers.ts";

// Two exported tiny U-Nets with random weights (8x8 grey): `tiny` with the paper's schedule
// and `tiny-v` with a T = 100 cosine schedule and v prediction. Few steps keep this fast.
const registry = await tinyRegistry({ variant: true });
const { app, limits } = createApp({ registry });
const digit = randomImage(8, 8, 1, 7);

/** A JSON error response: its status, and `{ error, detail, requestId }` with nothing else. */
async function assertError(
  response: Response,
  status: number,
  error: string,
  detail?: RegExp,
): Promise<void> {
  const body = await response.json();
  assert.equal(response.status, status, JSON.stringify(body));
  assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
  assert.deepEqual(Object.keys(body).sort(), ["detail", "error", "requestId"]);
  assert.equal(body.requestId, response.headers.get("x-request-id"));
  assert.equal(body.error, error);
  if (detail) assert.match(body.detail, detail);
}

/** Grid size for n tiles of s x s in `columns` columns with 2-pixel padding (makeGrid). */
function gridSize(n: number, s: number, columns: number): [number, number] {
  const rows = Math.ceil(n / columns);
  return [columns * s + (columns + 1) * 2, rows * s + (rows + 1) * 2];
}

Deno.test("GET /healthz reports the provider, why, and an idle queue", async () => {
  const response = await app.request("/healthz");
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), {
    status: "ok",
    models: 2,
    provider: "wasm",
    providerReason: "WebAssembly, as asked",
    queue: { running: 0, waiting: 0, concurrency: 8, queueSize: 8 },
  });
});

Deno.test("GET /v1/models lists every card and the execution provider", async () => {
  const response = await app.request("/v1/models");
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.equal(body.provider.name, "wasm");
  assert.equal(body.provider.reason, "WebAssembly, as asked");
  assert.deepEqual(body.models.map((m: { name: string }) => m.name), ["tiny", "tiny-v"]);
  assert.deepEqual(body.models.map((m: { default: boolean }) => m.default), [true, false]);
  assert.equal(body.models[1].card.prediction, "v");
  assert.equal(body.models[1].card.schedule.timesteps, 100);
  assert.equal(body.models[0].card.imageSize, 8);
});

Deno.test("GET /v1/schedule returns each model's own tables", async () => {
  const body = await (await app.request("/v1/schedule")).json();
  assert.equal(body.model, "tiny");
  assert.equal(body.timesteps, 1000);
  assert.equal(body.betas.length, 1000);
  assert.equal(body.betas[0], 1e-4); // the paper's linear schedule starts at 1e-4
  // snr = abar / (1 - abar), to float64 rounding.
  const i = 321;
  const abar = body.alphasCumprod[i];
  assert.ok(Math.abs(body.snr[i] - abar / (1 - abar)) <= 1e-12 * body.snr[i]);
  assert.equal(body.posteriorVariance[0], 0); // beta_tilde at index 0 is 0 (eq. 7)
  const other = await (await app.request("/v1/schedule?model=tiny-v")).json();
  assert.deepEqual([other.kind, other.timesteps, other.betas.length], ["cosine", 100, 100]);
  await assertError(
    await app.request("/v1/schedule?model=nope"),
    404,
    "unknown_model",
    /tiny, tiny-v/,
  );
});

Deno.test("POST /v1/samples returns a PNG grid of the asked size, with the seed it used", async () => {
  const response = await postJson(app, "/v1/samples", { n: 5, steps: 3, columns: 3 });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "image/png");
  const seed = Number(response.headers.get("x-seed"));
  assert.ok(Number.isInteger(seed) && seed >= 0, `X-Seed ${seed}`);
  assert.equal(response.headers.get("x-model"), "tiny");
  const image = decodePng(new Uint8Array(await response.arrayBuffer()));
  assert.deepEqual([image.width, image.height, image.channels], [...gridSize(5, 8, 3), 1]);
});

Deno.test("POST /v1/samples: the same request and seed give the same bytes", async () => {
  const ask = async (body: Record<string, unknown>) => {
    const response = await postJson(app, "/v1/samples", body);
    assert.equal(response.status, 200);
    return {
      seed: Number(response.headers.get("x-seed")),
      bytes: new Uint8Array(await response.arrayBuffer()),
    };
  };
  for (const sampler of SAMPLERS) {
    const body = { n: 4, steps: 4, sampler, seed: 1234 };
    const [a, b] = [await ask(body), await ask(body)];
    assert.equal(a.seed, 1234);
    assert.deepEqual(a.bytes, b.bytes, `${sampler}: same seed, same bytes`);
    assert.notDeepEqual((await ask({ ...body, seed: 1235 })).bytes, a.bytes);
  }
  // A seed the server picked reproduces too.
  const picked = await ask({ n: 2, steps: 2 });
  assert.deepEqual((await ask({ n: 2, steps: 2, seed: picked.seed })).bytes, picked.bytes);
});

Deno.test("GET /v1/samplers is lib's capabilities table, and a request without steps runs its default", async () => {
  const body = await (await app.request("/v1/samplers")).json();
  assert.deepEqual(body.default, {
    sampler: DEFAULT_SAMPLER,
    steps: defaultSteps(DEFAULT_SAMPLER, 1000),
  });
  assert.deepEqual(
    body.samplers,
    SAMPLERS.map((name) => ({ name, ...SAMPLER_CAPABILITIES[name] })),
  );
  const steps = async (request: Record<string, unknown>) =>
    (await (await postJson(app, "/v1/samples", { n: 1, seed: 1, format: "json", ...request }))
      .json()).steps;
  assert.equal(await steps({}), defaultSteps(DEFAULT_SAMPLER, 1000));
  assert.equal(await steps({ sampler: "dpmpp-2m" }), 15);
  assert.equal(await steps({ sampler: "unipc", model: "tiny-v" }), 15);
  assert.equal(await steps({ sampler: "ddim" }), 50);
  // The documentation says the same: every sampler and its default step count.
  const openapi = await (await app.request("/openapi.json")).json();
  const fields = openapi.components.schemas.SampleRequest.properties;
  for (const name of SAMPLERS) {
    assert.ok(fields.sampler.enum.includes(name), name);
    assert.match(fields.sampler.description, new RegExp(`\`${name}\`: `));
    assert.match(fields.steps.description, new RegExp(` for ${name}`));
  }
  assert.equal(fields.sampler.default, DEFAULT_SAMPLER);
});

Deno.test("POST /v1/samples format json holds the grid's pixels, image by image", async () => {
  const body = { n: 3, steps: 3, seed: 5 };
  const json = await (await postJson(app, "/v1/samples", { ...body, format: "json" })).json();
  assert.equal(json.seed, 5);
  assert.deepEqual(json.shape, [3, 1, 8, 8]);
  assert.equal(json.images.length, 3);
  assert.deepEqual(Object.keys(json.images[0]).sort(), ["channels", "height", "pixels", "width"]);
  const png = await (await postJson(app, "/v1/samples", body)).arrayBuffer();
  // Grey HWC pixels are the NCHW values, so the images tile back into the PNG's grid.
  const pixels = Uint8Array.from(json.images.flatMap((im: { pixels: number[] }) => im.pixels));
  assert.deepEqual(makeGrid(pixels, [3, 1, 8, 8]).data, decodePng(new Uint8Array(png)).data);
});

Deno.test("POST /v1/samples format apng animates x_t every `every` steps, then the result", async () => {
  const response = await postJson(app, "/v1/samples", {
    n: 2,
    steps: 6,
    every: 2,
    format: "apng",
    seed: 3,
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "image/apng");
  const bytes = new Uint8Array(await response.arrayBuffer());
  // acTL follows IHDR (lib/png.ts): length, "acTL", then num_frames (big-endian u32).
  const view = new DataView(bytes.buffer);
  assert.equal(String.fromCharCode(...bytes.subarray(37, 41)), "acTL");
  assert.equal(view.getUint32(41), 4); // steps 0, 2, 4 and the final images
  const header = readPngHeader(bytes);
  assert.deepEqual([header.width, header.height], gridSize(2, 8, 2));
});

Deno.test("POST /v1/samples refuses each kind of bad input with a 4xx that says why", async () => {
  const bad = (body: unknown) => postJson(app, "/v1/samples", body);
  await assertError(
    await app.request("/v1/samples", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{ n: 4",
    }),
    400,
    "bad_request",
    /Malformed JSON/,
  );
  await assertError(await bad({ n: "four" }), 400, "invalid_request", /^n: .*number/);
  await assertError(await bad({ n: 0 }), 400, "invalid_request", /^n: .*>=1/);
  await assertError(await bad({ n: 65 }), 400, "invalid_request", /^n: .*<=64/);
  await assertError(await bad({ steps: 0 }), 400, "invalid_request", /^steps: /);
  await assertError(await bad({ steps: 1001 }), 400, "invalid_request", /^steps: .*<=1000/);
  await assertError(await bad({ steps: 2.5 }), 400, "invalid_request", /^steps: .*expected int/);
  // T comes from the card: 100 for tiny-v.
  await assertError(
    await bad({ model: "tiny-v", steps: 101 }),
    400,
    "invalid_request",
    /steps: must be in 1\.\.100 for model tiny-v/,
  );
  await assertError(await bad({ sampler: "euler" }), 400, "invalid_request", /^sampler: /);
  for (const sampler of ["ddpm", "dpmpp-2m", "unipc"]) {
    await assertError(
      await bad({ sampler, eta: 0.5 }),
      400,
      "invalid_request",
      new RegExp(`^eta: applies to the ddim sampler only, got sampler ${sampler}`),
    );
  }
  await assertError(await bad({ eta: 2 }), 400, "invalid_request", /^eta: /);
  await assertError(await bad({ seed: -1 }), 400, "invalid_request", /^seed: /);
  await assertError(await bad({ format: "gif" }), 400, "invalid_request", /^format: /);
  await assertError(await bad({ n: 2, columns: 3 }), 400, "invalid_request", /^columns: /);
  await assertError(await bad({ every: 2 }), 400, "invalid_request", /apng/);
  await assertError(await bad({ stpes: 10 }), 400, "invalid_request", /Unrecognized key.*stpes/);
  await assertError(await bad([1, 2]), 400, "invalid_request");
  await assertError(await bad({ model: "nope" }), 404, "unknown_model", /available: tiny/);
  await assertError(
    await app.request("/v1/samples", { method: "POST", body: "n=4" }),
    415,
    "unsupported_media_type",
  );
  await assertError(
    await app.request("/v1/samples", { method: "POST" }),
    415,
    "unsupported_media_type",
    /application\/json/,
  );
  await assertError(
    await app.request("/v1/samples", {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: "{}",
    }),
    415,
    "unsupported_media_type",
  );
});

Deno.test("an oversized body gets 413, with or without Content-Length", async () => {
  const small = createApp({ registry, limits: { maxBodyBytes: 1024 } }).app;
  const body = JSON.stringify({ n: 1, padding: "x".repeat(2000) });
  await assertError(
    await postJson(small, "/v1/samples", JSON.parse(body)),
    413,
    "body_too_large",
    /1024 bytes/,
  );
  // Streamed with no length: counted while reading.
  const stream = new Blob([body]).stream();
  await assertError(
    await small.request("/v1/samples", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: stream,
    }),
    413,
    "body_too_large",
  );
});

Deno.test("unknown routes and methods get a JSON 404", async () => {
  await assertError(await app.request("/v2/samples"), 404, "not_found", /\/docs/);
  await assertError(await app.request("/v1/samples"), 404, "not_found", /GET \/v1\/samples/);
});

Deno.test("GET /openapi.json is generated from the schemas, with the server's limits", async () => {
  const response = await app.request("/openapi.json");
  assert.equal(response.status, 200);
  const document = await response.json();
  assert.equal(document.openapi, "3.0.0");
  const paths = Object.keys(document.paths).sort();
  assert.deepEqual(paths, [
    "/healthz",
    "/v1/interpolate",
    "/v1/models",
    "/v1/noise",
    "/v1/samplers",
    "/v1/samples",
    "/v1/samples/stream",
    "/v1/schedule",
  ]);
  const sample = document.components.schemas.SampleRequest;
  assert.equal(sample.properties.n.maximum, limits.maxImages);
  assert.equal(sample.properties.steps.maximum, limits.maxSteps);
  assert.equal(sample.additionalProperties, false);
  const noise = document.paths["/v1/noise"].post.requestBody.content;
  assert.deepEqual(Object.keys(noise).sort(), ["application/json", "multipart/form-data"]);
});

Deno.test("GET /docs is a self-contained reference page; the CDN-loaded Swagger UI page is gone", async () => {
  const response = await app.request("/docs");
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/html/);
  const html = await response.text();
  for (const path of ["POST /v1/samples", "POST /v1/noise", "GET /v1/schedule"]) {
    assert.ok(html.includes(path), path);
  }
  assert.ok(!/<script|src="http/.test(html), "the reference loads nothing");
  assert.ok(!html.includes("/docs/swagger"), "no link to the page that is gone");
  const swagger = await app.request("/docs/swagger");
  assert.equal(swagger.status, 404);
  assert.equal((await swagger.json()).error, "not_found");
});

Deno.test("GET / serves the playground", async () => {
  const response = await app.request("/");
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/html/);
  const html = await response.text();
  for (const id of ["generate-button", "stream-button", "noise-t", "interp-button"]) {
    assert.ok(html.includes(`id="${id}"`), id);
  }
  // The guidance tooltip's defaults come from lib's table.
  assert.ok(
    html.includes(
      "the API's default for the sampler (w = 0.5 over 8% to 33% under dpmpp-2m-sde, 0.5 over " +
        "8% to 47% under ddpm and 1 over 8% to 47% under the other samplers (fractions of T))",
    ),
  );
  assert.ok(!html.includes("{{"), "no placeholder left");
});

Deno.test("POST /v1/noise draws x_t for each timestep from one shared noise image", async () => {
  const body = { image: pngBase64(digit), timesteps: [0, 500, 999], seed: 9, format: "json" };
  const response = await postJson(app, "/v1/noise", body);
  assert.equal(response.status, 200);
  const json = await response.json();
  assert.deepEqual(json.timesteps, [0, 500, 999]);
  assert.equal(json.conversion, null);
  assert.equal(json.frames.length, 3);
  assert.equal(json.reconstructions, undefined);
  // At index 0, x_t = sqrt(0.9999) x_0 + 0.01 eps: within 0.01 * 4 sigma = 0.04 in model
  // space, about 5 steps of 8 bits, of the input (and a step more for rounding).
  const frame0 = json.frames[0].pixels as number[];
  const worst = Math.max(...frame0.map((v, i) => Math.abs(v - digit.data[i])));
  assert.ok(worst <= 6, `frame at t = 0 differs from the input by ${worst}`);
  // Same seed, same bytes; a PNG strip of one row.
  const png = async () =>
    new Uint8Array(
      await (await postJson(app, "/v1/noise", { ...body, format: "png" })).arrayBuffer(),
    );
  const [a, b] = [await png(), await png()];
  assert.deepEqual(a, b);
  const strip = decodePng(a);
  assert.deepEqual([strip.width, strip.height], gridSize(3, 8, 3));
});

Deno.test("POST /v1/noise: count spreads timesteps over [0, T - 1]; reconstruct adds a row", async () => {
  const response = await postJson(app, "/v1/noise", {
    image: pngBase64(digit),
    count: 5,
    reconstruct: true,
    seed: 1,
  });
  assert.equal(response.status, 200);
  const strip = decodePng(new Uint8Array(await response.arrayBuffer()));
  assert.deepEqual([strip.width, strip.height], gridSize(10, 8, 5)); // two rows of five
  const json = await (await postJson(app, "/v1/noise", {
    image: pngBase64(digit),
    count: 5,
    reconstruct: true,
    seed: 1,
    format: "json",
  })).json();
  // round(linspace(0, 999, 5))
  assert.deepEqual(json.timesteps, [0, 250, 500, 749, 999]);
  assert.equal(json.reconstructions.length, 5);
  const tinyV = await (await postJson(app, "/v1/noise", {
    model: "tiny-v",
    image: pngBase64(digit),
    count: 3,
    format: "json",
  })).json();
  assert.deepEqual(tinyV.timesteps, [0, 50, 99]); // the card's T = 100
});

Deno.test("POST /v1/noise takes a multipart upload and gives the same result as JSON", async () => {
  const form = new FormData();
  form.set("image", new File([encodePng(digit) as Uint8Array<ArrayBuffer>], "digit.png"));
  form.set("timesteps", "10,400");
  form.set("seed", "4");
  const viaForm = await app.request("/v1/noise", { method: "POST", body: form });
  assert.equal(viaForm.status, 200);
  const viaJson = await postJson(app, "/v1/noise", {
    image: `data:image/png;base64,${pngBase64(digit)}`,
    timesteps: [10, 400],
    seed: 4,
  });
  assert.deepEqual(
    new Uint8Array(await viaForm.arrayBuffer()),
    new Uint8Array(await viaJson.arrayBuffer()),
  );
  const wrong = new FormData();
  wrong.set("image", "not a file");
  await assertError(
    await app.request("/v1/noise", { method: "POST", body: wrong }),
    400,
    "invalid_request",
    /^image: /,
  );
});

Deno.test("POST /v1/noise converts another size or channel count and says so, or refuses it", async () => {
  const rgb = randomImage(20, 12, 3, 1);
  const response = await postJson(app, "/v1/noise", { image: pngBase64(rgb), count: 2 });
  assert.equal(response.status, 200);
  assert.equal(
    response.headers.get("x-image-conversion"),
    "20x12 RGB -> 8x8 grey (BT.601 luma, area-average resize)",
  );
  const json = await (await postJson(app, "/v1/noise", {
    image: pngBase64(randomImage(4, 4, 4, 2)),
    count: 2,
    format: "json",
  })).json();
  assert.equal(json.conversion, "4x4 RGBA -> 8x8 grey (BT.601 luma, bilinear resize)");
  await assertError(
    await postJson(app, "/v1/noise", { image: pngBase64(rgb), resize: false }),
    422,
    "image_mismatch",
    /image is 20x12 RGB; the model takes 8x8 grey images/,
  );
});

Deno.test("POST /v1/noise refuses bad images, bad timesteps and decompression bombs", async () => {
  const noise = (body: Record<string, unknown>) =>
    postJson(app, "/v1/noise", { image: pngBase64(digit), ...body });
  await assertError(await noise({ image: "%%%" }), 400, "invalid_base64");
  await assertError(await noise({ image: btoa("GIF89a, not a PNG") }), 422, "invalid_image");
  await assertError(await noise({ timesteps: [1000] }), 400, "invalid_request", /0\.\.999/);
  await assertError(
    await noise({ model: "tiny-v", timesteps: [100] }),
    400,
    "invalid_request",
    /0\.\.99 for model tiny-v/,
  );
  await assertError(await noise({ timesteps: [1], count: 2 }), 400, "invalid_request", /not both/);
  await assertError(await noise({ count: 33 }), 400, "invalid_request", /^count: /);
  await assertError(await noise({ timesteps: [] }), 400, "invalid_request", /^timesteps: /);
  await assertError(await noise({ image: undefined }), 400, "invalid_request", /^image: /);
  // A truncated PNG: a valid header, then the data cut off.
  const cut = encodePng(digit).subarray(0, 40);
  await assertError(
    await noise({ image: btoa(String.fromCharCode(...cut)) }),
    422,
    "invalid_image",
  );
  // A header that claims 100000 x 100000 over garbage: refused from the header (413), so the
  // garbage is never inflated; decoding first would have answered 422.
  const forged = encodePng(digit).slice();
  new DataView(forged.buffer).setUint32(16, 100_000);
  new DataView(forged.buffer).setUint32(20, 100_000);
  await assertError(
    await noise({ image: btoa(String.fromCharCode(...forged)) }),
    413,
    "image_too_large",
    /100000x100000 \(10000000000 pixels\); at most 4194304/,
  );
  // A real bomb: 1000 x 1000 black pixels compress to about 1 kB.
  const bomb = encodePng({ data: new Uint8Array(1e6), width: 1000, height: 1000, channels: 1 });
  assert.ok(bomb.length < 10_000, `bomb is ${bomb.length} bytes`);
  const strict = createApp({ registry, limits: { maxImagePixels: 64 * 64 } }).app;
  await assertError(
    await postJson(strict, "/v1/noise", { image: btoa(String.fromCharCode(...bomb)) }),
    413,
    "image_too_large",
  );
});

Deno.test("POST /v1/interpolate returns one image per lambda, reproducibly", async () => {
  const body = {
    a: pngBase64(digit),
    b: pngBase64(randomImage(8, 8, 1, 8)),
    t: 50,
    count: 3,
    steps: 4,
    seed: 11,
  };
  const response = await postJson(app, "/v1/interpolate", body);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "image/png");
  assert.equal(response.headers.get("x-seed"), "11");
  const bytes = new Uint8Array(await response.arrayBuffer());
  const strip = decodePng(bytes);
  assert.deepEqual([strip.width, strip.height], gridSize(3, 8, 3));
  const again = await postJson(app, "/v1/interpolate", body);
  assert.deepEqual(new Uint8Array(await again.arrayBuffer()), bytes);
  const json = await (await postJson(app, "/v1/interpolate", { ...body, format: "json" })).json();
  assert.deepEqual(json.lambdas, [0, 0.5, 1]);
  assert.deepEqual([json.t, json.steps, json.sampler, json.mixing], [50, 4, "ddpm", "linear"]);
  assert.equal(json.images.length, 3);
  // Multipart, with the conversion of a 16x16 RGB upload reported.
  const form = new FormData();
  form.set("a", new File([fromBase64(body.a, "a") as Uint8Array<ArrayBuffer>], "a.png"));
  const rgb = encodePng(randomImage(16, 16, 3)) as Uint8Array<ArrayBuffer>;
  form.set("b", new File([rgb], "b.png"));
  form.set("lambdas", "[0, 0.25, 1]");
  form.set("t", "20");
  form.set("steps", "3");
  form.set("mixing", "spherical");
  form.set("sampler", "ddim");
  const viaForm = await app.request("/v1/interpolate", { method: "POST", body: form });
  assert.equal(viaForm.status, 200);
  assert.match(viaForm.headers.get("x-image-conversion") ?? "", /^b: 16x16 RGB -> 8x8 grey/);
  const formStrip = decodePng(new Uint8Array(await viaForm.arrayBuffer()));
  assert.deepEqual([formStrip.width, formStrip.height], gridSize(3, 8, 3));
});

Deno.test("POST /v1/interpolate refuses bad t, lambdas and steps", async () => {
  const base = { a: pngBase64(digit), b: pngBase64(digit) };
  const bad = (body: Record<string, unknown>) =>
    postJson(app, "/v1/interpolate", { ...base, ...body });
  await assertError(await bad({ t: 1000 }), 400, "invalid_request", /t: must be in 0\.\.999/);
  await assertError(await bad({ model: "tiny-v", t: 100 }), 400, "invalid_request", /0\.\.99/);
  await assertError(await bad({ lambdas: [0, 1.5] }), 400, "invalid_request", /^lambdas\.1: /);
  await assertError(await bad({ lambdas: [0], count: 3 }), 400, "invalid_request", /not both/);
  await assertError(await bad({ count: 1 }), 400, "invalid_request", /^count: /);
  await assertError(await bad({ t: 5, steps: 7 }), 400, "invalid_request", /1\.\.6 \(t \+ 1\)/);
  await assertError(await bad({ eta: 0.5 }), 400, "invalid_request", /ddim/);
  await assertError(await bad({ mixing: "cubic" }), 400, "invalid_request", /^mixing: /);
  await assertError(await bad({ b: undefined }), 400, "invalid_request", /^b: /);
  await assertError(
    await bad({ b: pngBase64(randomImage(9, 9, 1)), resize: false }),
    422,
    "image_mismatch",
    /^b is 9x9 grey/,
  );
});
