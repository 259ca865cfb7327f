/**
 * A seeded fuzz of every endpoint through `app.request()` (no socket): random JSON shapes and
 * values, random, truncated and corrupted bytes as PNG (base64 in JSON and multipart
 * uploads), PNG headers that declare huge images (decompression bombs), zlib bombs under a
 * small header (an IDAT or an iCCP profile that inflates to megabytes), form fields holding
 * long comma-separated lists (up to 1.3 million items, on a server with the default 8 MiB
 * body limit), wrong content types, oversized bodies, unknown routes and methods. Every answer must be a 2xx or a 4xx, never a
 * 5xx; every error body is `{ error, detail, requestId }` with no stack trace; memory stays
 * bounded; and the app still serves a valid request afterwards.
 *
 * The cases come from `createRng(FUZZ_SEED)`, so a failure names a case that replays exactly.
 * `DDPM_FUZZ_CASES` and `DDPM_FUZZ_SEED` run more cases or another stream.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encode as encodeFastPng } from "fast-png";
import { zlibSync } from "fflate";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { encodePng } from "../lib/png.ts";
import { createRng, type Rng } from "../lib/rng.ts";
import type { Denoiser } from "../lib/samplers.ts";
import { createApp } from "../serve/app.ts";
import { toBase64 } from "../serve/images.ts";
import type { Limits } from "../serve/limits.ts";
import { chooseProvider } from "../serve/provider.ts";
import { servedModel } from "../serve/registry.ts";
import { PRESETS } from "../train/network.ts";
import { card, TINY_CONDITIONAL } from "./_models.ts";
import { randomImage, readEvents } from "./serve_helpers.ts";
import { concatBytes, pngChunk } from "./_png_bytes.ts";

const FUZZ_SEED = Number(Deno.env.get("DDPM_FUZZ_SEED") ?? 8);
const FUZZ_CASES = Number(Deno.env.get("DDPM_FUZZ_CASES") ?? 3000);

/**
 * Limits smaller than the defaults, so a random value crosses each bound often and a valid
 * request stays cheap: at most 8 images of 64 steps on a zero-noise denoiser.
 */
const LIMITS: Partial<Limits> = {
  maxImages: 8,
  maxSteps: 64,
  maxFrames: 8,
  maxBodyBytes: 64 * 1024,
  maxImagePixels: 128 * 128,
};

/**
 * Memory bounds, read after a full collection every {@linkcode MEMORY_EVERY} cases (between
 * collections resident memory swings by 100 MiB with their timing). The live heap and the
 * memory outside it that V8 tracks (`external`: the backing stores of ArrayBuffers, where
 * request bodies and decoded images live) may each grow by 8 MiB from the end of the first
 * third of the run to its end: the cases send tens of MB of bodies and allocate far more, so
 * keeping even 3 kB of each of 3,000 requests would pass it.
 *
 * Resident memory also holds pages the allocator keeps for reuse after the largest requests
 * (a zlib bomb inflates 32 MiB at once), so a reading can sit 20 to 30 MiB above the one
 * before with the heap and `external` unchanged (measured: 173 to 203 MiB between two readings
 * of a 6,000-case run whose heap stayed at 19.6 MiB). A leak raises the floor under those
 * swings, so the lowest reading of the last third may exceed the lowest of the first third
 * by at most 32 MiB.
 */
const HEAP_GROWTH_BOUND = 8 * 2 ** 20;
const EXTERNAL_GROWTH_BOUND = 8 * 2 ** 20;
const RSS_GROWTH_BOUND = 32 * 2 ** 20;
const MEMORY_EVERY = 500;
/** Set in the environment of the process that runs the cases. */
const _CHILD_ENV = "DDPM_FUZZ_CHILD";

// V8's own collector on demand (Node's way, which Deno supports), so that memory measured
// after it is what is still referenced rather than garbage not yet collected.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/**
 * A full collection, twice, with turns of the event loop between: objects held by
 * finalization registries (AbortSignal's dependents, for one) are freed only after their
 * callbacks run, which needs the loop.
 */
async function collectGarbage(): Promise<void> {
  for (let i = 0; i < 2; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    gc();
  }
}

// A denoiser that predicts zero noise at once: the fuzz tests the HTTP layer, not the network
// (the other server tests run the exported ONNX model). `cond` has the classes circle, square
// and cross, for `label` and `guidance`.
const zero: Denoiser = (x) => new Float32Array(x.length);
const registry = {
  provider: await chooseProvider("wasm"),
  models: [
    servedModel("zero", card(PRESETS.tiny), zero),
    servedModel("short", {
      ...card(PRESETS.tiny),
      schedule: { kind: "cosine", timesteps: 100, betaStart: 1e-4, betaEnd: 0.02 },
      prediction: "v",
    }, zero),
    servedModel("cond", card(TINY_CONDITIONAL), zero),
  ],
};

/** One generated request and what it is meant to test. */
interface FuzzCase {
  /** The counter it is tallied under: the endpoint, or the kind of hostile input. */
  readonly kind: string;
  readonly path: string;
  readonly init: RequestInit;
  /** A short description for a failure message. */
  readonly what: string;
  /**
   * A decompression bomb among the uploads: the size its header declares, and whether it is
   * the request's only fault (then the answer must be the header check's 413).
   */
  readonly bomb?: { readonly width: number; readonly height: number; readonly only: boolean };
  /** The status and error code the answer must have, when the case fixes them. */
  readonly expect?: { readonly status: number; readonly error: string };
  /** Sent to the server with the default limits (8 MiB bodies) instead of the small ones. */
  readonly big?: boolean;
}

// 1. Small random helpers over the seeded stream.

function int(rng: Rng, n: number): number {
  return rng.integers(1, n)[0];
}
function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[int(rng, items.length)];
}
function chance(rng: Rng, p: number): boolean {
  return rng.nextFloat64() < p;
}
function randomBytes(rng: Rng, n: number): Uint8Array {
  return Uint8Array.from(rng.integers(n, 256));
}
function randomText(rng: Rng, n: number): string {
  const alphabet = "abcxyz019 _-.,:;{}[]\"'\\/%=+&?#é漢🙂\u0000\u2028\t\n";
  return Array.from({ length: n }, () => pick(rng, [...alphabet])).join("");
}

const NUMBERS = [
  0,
  -0,
  1,
  -1,
  2,
  3,
  7,
  8,
  9,
  49,
  50,
  63,
  64,
  65,
  99,
  100,
  999,
  1000,
  1001,
  0.5,
  1.5,
  -0.25,
  1e-300,
  5e-324,
  2 ** 31,
  2 ** 32,
  2 ** 53 - 1,
  2 ** 53,
  -(2 ** 53),
  1e308,
  -1e308,
];
const WORDS = [
  "",
  "png",
  "json",
  "apng",
  "gif",
  "ddim",
  "ddpm",
  "dpmpp-2m",
  "unipc",
  "euler",
  "linear",
  "spherical",
  "leading",
  "trailing",
  "linspace",
  "zero",
  "short",
  "cond",
  "circle",
  "ZERO",
  "__proto__",
  "constructor",
  "toString",
  "0",
  "1",
  "true",
  "null",
  "NaN",
  "Infinity",
  "0,1,2",
  "[1, 2]",
  "{}",
];

/** Sets an own property, even `__proto__` (which plain assignment would take as the prototype). */
function setKey(object: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(object, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

/** Any JSON value, nested at most `depth` deep. */
function anyJson(rng: Rng, depth = 3): unknown {
  switch (int(rng, depth > 0 ? 8 : 5)) {
    case 0:
      return null;
    case 1:
      return chance(rng, 0.5);
    case 2:
      return chance(rng, 0.8) ? pick(rng, NUMBERS) : (rng.nextFloat64() - 0.5) * 10 ** int(rng, 12);
    case 3:
      return pick(rng, WORDS);
    case 4:
      return randomText(rng, chance(rng, 0.9) ? int(rng, 20) : int(rng, 3000));
    case 5:
      return Array.from({ length: int(rng, 6) }, () => anyJson(rng, depth - 1));
    case 6:
      return Array.from({ length: int(rng, 200) }, () => pick(rng, NUMBERS));
    default: {
      const object: Record<string, unknown> = {};
      for (let i = int(rng, 5); i > 0; i--) {
        const key = chance(rng, 0.5) ? pick(rng, WORDS) : randomText(rng, 6);
        setKey(object, key, anyJson(rng, depth - 1));
      }
      return object;
    }
  }
}

// 2. Fields of each endpoint: plausible values (in and just out of range) or anything.

type FieldPool = Record<string, () => unknown>;

function fieldPools(rng: Rng) {
  const ints = (...extra: number[]) => () => pick(rng, [...extra, ...NUMBERS]);
  const words = (...choices: string[]) => () => pick(rng, [...choices, ...WORDS]);
  const model = words("zero", "short", "cond", "cond", "nope");
  const seed = ints(0, 1, 42, 2 ** 32 - 1);
  const label = () =>
    pick(rng, [0, 2, 3, "square", "cross", "Circle", "__proto__", "constructor", null]);
  const labels = () =>
    chance(rng, 0.5) ? label() : Array.from({ length: int(rng, 10) }, () => label());
  const guidance = () => pick(rng, [0, 0.5, 2, 4, 20, 20.5, -1]);
  const sampling: FieldPool = {
    model,
    n: ints(1, 2, 4, 8),
    sampler: words("ddim", "ddpm", "dpmpp-2m", "unipc"),
    steps: ints(1, 2, 5, 10),
    eta: () => pick(rng, [0, 0.3, 1, 1.01, -0.1]),
    spacing: words("leading", "trailing", "linspace"),
    seed,
    columns: ints(1, 2, 3),
    every: ints(1, 2, 5),
    label: labels,
    guidance,
  };
  // Now and then a long list: thousands of items, within the 64 KiB body limit or past it.
  const length = () => chance(rng, 0.05) ? pick(rng, [1000, 5000, 20_000]) : int(rng, 10);
  const timesteps = () =>
    Array.from({ length: length() }, () => pick(rng, [0, 1, 50, 99, 100, 500, 999, 1000, -1]));
  const lambdas = () =>
    Array.from({ length: length() }, () => pick(rng, [0, 0.25, 0.5, 1, 1.5, -0.5]));
  return {
    samples: { ...sampling, format: words("png", "json", "apng") },
    stream: sampling,
    noise: {
      model,
      timesteps,
      count: ints(2, 3, 5),
      seed,
      reconstruct: () => chance(rng, 0.5),
      label,
      guidance,
      resize: () => chance(rng, 0.7),
      format: words("png", "json"),
    },
    interpolate: {
      model,
      t: ints(0, 5, 20, 50, 500, 999),
      lambdas,
      count: ints(2, 3, 5),
      mixing: words("linear", "spherical"),
      sampler: words("ddim", "ddpm", "dpmpp-2m", "unipc"),
      steps: ints(1, 2, 3),
      eta: () => pick(rng, [0, 0.5, 2]),
      label,
      guidance,
      seed,
      resize: () => chance(rng, 0.7),
      format: words("png", "json"),
    },
  } satisfies Record<string, FieldPool>;
}

/** Some of `pool`'s fields, each a plausible value or any JSON, and now and then a stray key. */
function fields(rng: Rng, pool: FieldPool): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(pool)) {
    if (chance(rng, 0.4)) out[name] = chance(rng, 0.75) ? value() : anyJson(rng);
  }
  if (chance(rng, 0.1)) setKey(out, pick(rng, ["format", "stpes", "__proto__", "x"]), anyJson(rng));
  return out;
}

// 3. PNG-ish bytes: valid, corrupted, truncated, foreign, and bombs.

const VALID_PNGS = [
  encodePng(randomImage(8, 8, 1, 1)),
  encodePng(randomImage(8, 8, 1, 2)),
  encodePng(randomImage(13, 5, 3, 3)),
  encodePng(randomImage(20, 20, 4, 4)),
  encodePng(randomImage(1, 1, 1, 5)),
  encodePng(randomImage(128, 128, 1, 6)), // exactly LIMITS.maxImagePixels
  encodeFastPng({
    data: new Uint16Array(64).fill(40000),
    width: 8,
    height: 8,
    channels: 1,
    depth: 16,
  }),
];

/** A PNG chunk: length, type, data, CRC-32 of type and data (PNG spec §5.3). */
/**
 * A PNG whose header declares `width` x `height` grey pixels, with a well-formed IHDR (CRC
 * right). With `inflates`, the IDAT is a real zlib stream of the first rows of zeros (a bomb
 * in miniature: a few kB that claims gigapixels); otherwise it is garbage, so that decoding,
 * had it been tried, would fail with 422 instead of the header check's 413.
 */
function bombPng(rng: Rng, width: number, height: number, inflates: boolean): Uint8Array {
  const ihdr = new Uint8Array(13);
  const view = new DataView(ihdr.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  ihdr.set([8, 0, 0, 0, 0], 8); // 8-bit grey, deflate, adaptive filters, no interlace
  const rows = Math.min(height, 64);
  const data = inflates
    ? zlibSync(new Uint8Array(Math.min(rows * (width + 1), 1 << 22)), { level: 9 })
    : randomBytes(rng, 64);
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  const parts = [
    Uint8Array.from(signature),
    pngChunk("IHDR", ihdr),
    pngChunk("IDAT", data),
    pngChunk("IEND", new Uint8Array(0)),
  ];
  return concatBytes(parts);
}

/** A bomb: more pixels than LIMITS.maxImagePixels, up to the format's 2^31 - 1 a side. */
function bomb(rng: Rng): { bytes: Uint8Array; bomb: { width: number; height: number } } {
  const huge = () => pick(rng, [129, 1000, 4097, 65_535, 100_000, 2 ** 31 - 1]);
  const [width, height] = chance(rng, 0.5) ? [huge(), huge()] : [huge(), 128];
  return { bytes: bombPng(rng, width, height, chance(rng, 0.5)), bomb: { width, height } };
}

/**
 * zlib streams of zeros that inflate to 1, 8 and 32 MiB (about 1, 8 and 32 kB compressed),
 * made once: the payloads of the small-header bombs.
 */
const ZLIB_BOMBS = [1, 8, 32].map((mib) => zlibSync(new Uint8Array(mib * 2 ** 20), { level: 9 }));

/**
 * A zlib bomb under a small header: an 8x8 grey PNG whose IDAT inflates to megabytes (the
 * header allows 72 bytes), or a valid image with an iCCP profile that does (ancillary, so it
 * is skipped unread and the image decodes).
 */
function smallHeaderBomb(rng: Rng): { bytes: Uint8Array; kind: "idat" | "iccp" } {
  const stream = pick(rng, ZLIB_BOMBS);
  const valid = VALID_PNGS[0]; // 8x8 grey: signature, IHDR (33 bytes), IDAT, IEND
  const iend = pngChunk("IEND", new Uint8Array(0));
  if (chance(rng, 0.5)) {
    return {
      bytes: concatBytes([valid.subarray(0, 33), pngChunk("IDAT", stream), iend]),
      kind: "idat",
    };
  }
  // iCCP: a name, a 0 separator, compression method 0, the zlib stream (PNG spec 11.3.3.3).
  const iccp = concatBytes([new TextEncoder().encode("bomb"), new Uint8Array(2), stream]);
  return {
    bytes: concatBytes([valid.subarray(0, 33), pngChunk("iCCP", iccp), valid.subarray(33)]),
    kind: "iccp",
  };
}

/** A zlib-bomb case: the only fault in a request that is valid otherwise. */
async function zlibBombCase(rng: Rng): Promise<FuzzCase> {
  const { bytes, kind } = smallHeaderBomb(rng);
  const form = new FormData();
  form.append("image", new File([bytes as Uint8Array<ArrayBuffer>], "bomb.png"));
  form.append("count", "2");
  return {
    kind: `zlib bomb ${kind}`,
    path: "/v1/noise",
    init: await multipartRequest(rng, form, true),
    what: `/v1/noise with an ${kind} bomb of ${bytes.length} bytes`,
    // The IDAT bomb is refused as too large; the profile is skipped and the image served.
    expect: kind === "idat"
      ? { status: 413, error: "image_too_large" }
      : { status: 200, error: "" },
  };
}

/** 1,300,000 numbers joined by commas (2.6 MB): the list that overflowed the regex's stack. */
const LONG_FIELD = new Array(1_300_000).fill("0").join(",");

/** A form field of 1.3 million items, on the server with the default 8 MiB body limit. */
async function longFieldCase(rng: Rng): Promise<FuzzCase> {
  const [path, field, files] = pick(
    rng,
    [
      ["/v1/noise", "timesteps", ["image"]],
      ["/v1/noise", "label", ["image"]],
      ["/v1/interpolate", "lambdas", ["a", "b"]],
      ["/v1/interpolate", "label", ["a", "b"]],
    ] as const,
  );
  const form = new FormData();
  for (const name of files) {
    form.append(name, new File([VALID_PNGS[0] as Uint8Array<ArrayBuffer>], "x.png"));
  }
  if (field === "label") form.append("model", "cond");
  form.append(field, LONG_FIELD);
  return {
    kind: "long field",
    path,
    init: await multipartRequest(rng, form, true),
    what: `${path} with ${field} of 1.3 million items`,
    expect: { status: 400, error: "invalid_request" },
    big: true,
  };
}

/** Bytes sent as an image, and the declared size when they are a bomb. */
function imageBytes(rng: Rng): { bytes: Uint8Array; bomb?: { width: number; height: number } } {
  const valid = pick(rng, VALID_PNGS);
  switch (int(rng, 7)) {
    case 0:
    case 1:
      return { bytes: valid };
    case 2: // truncated
      return { bytes: valid.subarray(0, int(rng, valid.length)) };
    case 3: { // corrupted bytes, header included
      const bytes = valid.slice();
      for (let i = int(rng, 8) + 1; i > 0; i--) bytes[int(rng, bytes.length)] = int(rng, 256);
      return { bytes };
    }
    case 4: // not a PNG at all
      return {
        bytes: pick(rng, [
          randomBytes(rng, int(rng, 300)),
          new TextEncoder().encode("GIF89a\u0001\u0000"),
          Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0, 16]),
          new Uint8Array(0),
          valid.subarray(0, 8),
        ]),
      };
    default:
      return bomb(rng);
  }
}

/** An image field of a JSON body: base64 of bytes (maybe as a data URL), or not a string. */
function base64Field(rng: Rng, bytes: Uint8Array): unknown {
  const text = toBase64(bytes);
  switch (int(rng, 10)) {
    case 0:
      return `data:image/png;base64,${text}`;
    case 1:
      return text.replace(/(.{60})/g, "$1\n");
    case 2:
      return pick(rng, ["%%%", "", "====", text.slice(0, -3) + "!"]);
    case 3:
      return anyJson(rng, 1);
    default:
      return text;
  }
}

// 4. Cases.

const CONTENT_TYPES = [
  "text/plain",
  "application/xml",
  "",
  "application/json; charset=utf-16",
  "APPLICATION/JSON",
  "application/json;;",
  "application/vnd.api+json",
  "multipart/form-data",
  "multipart/form-data; boundary=zzz",
  "application/x-www-form-urlencoded",
  "image/png",
  "*/*",
  "application/json, text/plain",
];

/** A JSON body, honestly typed and whole most of the time (always, with `intact`). */
function jsonRequest(rng: Rng, body: unknown, intact = false): RequestInit {
  let text = JSON.stringify(body) ?? "null";
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (intact) return { method: "POST", headers, body: text };
  if (chance(rng, 0.08)) text = text.slice(0, int(rng, text.length)); // truncated
  if (chance(rng, 0.1)) delete headers["content-type"];
  else if (chance(rng, 0.15)) headers["content-type"] = pick(rng, CONTENT_TYPES);
  return { method: "POST", headers, body: text };
}

/**
 * A multipart body of `form`, serialised so that its bytes and type can be tampered with
 * (never, with `intact`).
 */
async function multipartRequest(rng: Rng, form: FormData, intact = false): Promise<RequestInit> {
  const encoded = new Response(form);
  let bytes = new Uint8Array(await encoded.arrayBuffer());
  let type = encoded.headers.get("content-type") ?? "";
  if (!intact && chance(rng, 0.05)) bytes = bytes.subarray(0, int(rng, bytes.length));
  if (!intact && chance(rng, 0.05)) type = pick(rng, CONTENT_TYPES);
  return { method: "POST", headers: { "content-type": type }, body: bytes };
}

/** The text of a form field: its JSON, a comma list, a bare word, or nonsense. */
function formText(rng: Rng, value: unknown): string {
  // JSON of the entries: `join` alone throws on an object whose own `toString` is not a function.
  if (Array.isArray(value) && chance(rng, 0.5)) {
    return value.map((v) => (typeof v === "string" ? v : JSON.stringify(v))).join(",");
  }
  if (typeof value === "string" && chance(rng, 0.5)) return value;
  return chance(rng, 0.9) ? JSON.stringify(value) ?? "" : randomText(rng, int(rng, 30));
}

/**
 * A request to an image endpoint: random options and uploads, or (`onlyBomb`) valid options
 * and images but for one bomb, so that the header check is the one thing that can refuse it.
 */
async function imageCase(
  rng: Rng,
  endpoint: "noise" | "interpolate",
  pool: FieldPool,
  onlyBomb = false,
): Promise<FuzzCase> {
  const files = endpoint === "noise" ? ["image"] : ["a", "b"];
  const options = onlyBomb ? {} : fields(rng, pool);
  const bombAt = onlyBomb ? int(rng, files.length) : -1;
  const images = files.map((_, i) =>
    i === bombAt ? bomb(rng) : onlyBomb ? { bytes: VALID_PNGS[0] } : imageBytes(rng)
  );
  const declared = images.find((image) => image.bomb)?.bomb;
  const found = declared && { ...declared, only: onlyBomb };
  const path = `/v1/${endpoint}`;
  const kind = onlyBomb ? "bomb" : endpoint;
  if (chance(rng, 0.5)) {
    const body: Record<string, unknown> = { ...options };
    files.forEach((name, i) => {
      const bytes = images[i].bytes;
      if (onlyBomb) body[name] = toBase64(bytes);
      else if (chance(rng, 0.95)) body[name] = base64Field(rng, bytes);
    });
    return {
      kind: `${kind} json`,
      path,
      init: onlyBomb ? jsonRequest(rng, body, true) : jsonRequest(
        rng,
        chance(rng, 0.95) ? body : anyJson(rng),
      ),
      what: `${path} json ${JSON.stringify(options)}`,
      bomb: found,
    };
  }
  const form = new FormData();
  for (const [name, value] of Object.entries(options)) form.append(name, formText(rng, value));
  files.forEach((name, i) => {
    const blob = new Blob([images[i].bytes as Uint8Array<ArrayBuffer>], { type: "image/png" });
    if (onlyBomb || chance(rng, 0.9)) form.append(name, new File([blob], `${name}.png`));
    else if (chance(rng, 0.5)) form.append(name, toBase64(images[i].bytes)); // text, not a file
    if (!onlyBomb && chance(rng, 0.03)) form.append(name, new File([blob], "again.png")); // twice
  });
  return {
    kind: `${kind} multipart`,
    path,
    init: await multipartRequest(rng, form, onlyBomb),
    what: `${path} multipart ${JSON.stringify(options)}`,
    bomb: found,
  };
}

function getCase(rng: Rng): FuzzCase {
  const path = pick(rng, [
    "/healthz",
    "/v1/models",
    "/v1/samplers",
    "/v1/schedule",
    "/openapi.json",
    "/docs",
    "/",
  ]);
  const queries = [
    "",
    "?model=zero",
    "?model=short",
    "?model=nope",
    "?model=",
    "?model=zero&model=short",
    "?model=%ZZ",
    `?model=${encodeURIComponent(randomText(rng, int(rng, 40)))}`,
    "?x=1&y",
    `?${"a=1&".repeat(500)}`,
  ];
  const query = path === "/v1/schedule" || chance(rng, 0.2) ? pick(rng, queries) : "";
  const method = chance(rng, 0.9) ? "GET" : "HEAD";
  return { kind: "GET", path: path + query, init: { method }, what: `${method} ${path}${query}` };
}

function unknownRouteCase(rng: Rng): FuzzCase {
  const segments = ["v1", "v2", "samples", "stream", "noise", "..", "%2e%2e", "%00", "%ZZ", "docs"];
  const path = "/" +
    Array.from(
      { length: int(rng, 4) + 1 },
      () => chance(rng, 0.8) ? pick(rng, segments) : encodeURIComponent(randomText(rng, 8)),
    ).join("/");
  const known = ["/healthz", "/v1/models", "/v1/samples", "/v1/noise", "/openapi.json"];
  const method = pick(rng, ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);
  const target = chance(rng, 0.5) ? path : pick(rng, known);
  const init: RequestInit = method === "GET" || method === "OPTIONS"
    ? { method }
    : { method, headers: { "content-type": "application/json" }, body: "{}" };
  // The known paths with a method they do not take, or paths that do not exist.
  if (method === "GET" && known.includes(target) && target !== "/v1/samples") {
    return { kind: "route", path: "/v1/samples/nope", init, what: `${method} /v1/samples/nope` };
  }
  return { kind: "route", path: target, init, what: `${method} ${target}` };
}

function oversizedCase(rng: Rng): FuzzCase {
  const path = pick(rng, ["/v1/samples", "/v1/samples/stream", "/v1/noise", "/v1/interpolate"]);
  const limit = LIMITS.maxBodyBytes as number;
  const text = JSON.stringify({ n: 1, padding: "x".repeat(limit + int(rng, 3 * limit)) });
  const bytes = new TextEncoder().encode(text);
  const streamed = chance(rng, 0.5);
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (!streamed) headers["content-length"] = String(bytes.length);
  const body = streamed ? new Blob([bytes]).stream() : bytes;
  return {
    kind: "oversized",
    path,
    init: { method: "POST", headers, body },
    what: `${path} with ${bytes.length} bytes ${streamed ? "streamed" : "with Content-Length"}`,
  };
}

async function nextCase(rng: Rng, pools: ReturnType<typeof fieldPools>): Promise<FuzzCase> {
  const roll = 100 * rng.nextFloat64();
  if (roll < 20) {
    const body = chance(rng, 0.9) ? fields(rng, pools.samples) : anyJson(rng);
    return {
      kind: "samples",
      path: "/v1/samples",
      init: jsonRequest(rng, body),
      what: `${JSON.stringify(body)}`.slice(0, 300),
    };
  }
  if (roll < 30) {
    const body = chance(rng, 0.9) ? fields(rng, pools.stream) : anyJson(rng);
    return {
      kind: "stream",
      path: "/v1/samples/stream",
      init: jsonRequest(rng, body),
      what: `${JSON.stringify(body)}`.slice(0, 300),
    };
  }
  if (roll < 50) return await imageCase(rng, "noise", pools.noise);
  if (roll < 70) return await imageCase(rng, "interpolate", pools.interpolate);
  if (roll < 75) {
    const endpoint = chance(rng, 0.5) ? "noise" : "interpolate";
    return await imageCase(rng, endpoint, pools[endpoint], true);
  }
  if (roll < 78) return await zlibBombCase(rng);
  if (roll < 78.5) return await longFieldCase(rng);
  if (roll < 86) return getCase(rng);
  if (roll < 94) return unknownRouteCase(rng);
  return oversizedCase(rng);
}

// 5. The run.

/** What a response broke, if anything (the checks every answer must pass), and its error code. */
async function check(
  fuzz: FuzzCase,
  response: Response,
): Promise<{ failure: string | null; code?: string }> {
  const code = { value: undefined as string | undefined };
  const failure = await _check(fuzz, response, code);
  if (!response.bodyUsed && response.body && !response.body.locked) await response.body.cancel();
  return { failure, code: code.value };
}

async function _check(
  fuzz: FuzzCase,
  response: Response,
  code: { value?: string },
): Promise<string | null> {
  const { status } = response;
  if (status >= 500) return `status ${status}: ${await response.text()}`;
  if (fuzz.expect && status !== fuzz.expect.status) {
    return `expected ${fuzz.expect.status}, got ${status}: ${
      (await response.text()).slice(0, 300)
    }`;
  }
  if (!(status >= 200 && status < 300) && !(status >= 400 && status < 500)) {
    return `status ${status} is neither 2xx nor 4xx`;
  }
  const type = response.headers.get("content-type") ?? "";
  const id = response.headers.get("x-request-id");
  if (!id) return "no X-Request-Id";
  if (!type && response.status !== 204) return "no Content-Type";
  if (status >= 400) {
    const text = await response.text();
    if (fuzz.init.method === "HEAD") return null;
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      return `an error body that is not JSON: ${text.slice(0, 200)}`;
    }
    const keys = Object.keys(body).sort().join();
    if (keys !== "detail,error,requestId") return `error body keys ${keys}`;
    if (typeof body.error !== "string" || typeof body.detail !== "string") return "error types";
    if (body.requestId !== id) return "the body's requestId is not the header's";
    code.value = body.error;
    if (fuzz.expect && body.error !== fuzz.expect.error) {
      return `error ${body.error}: ${body.detail}`;
    }
    if (/\n\s+at |\.ts:\d+:\d+|\.js:\d+:\d+/.test(body.detail)) return `a stack trace: ${text}`;
    if (fuzz.bomb?.only) {
      const { width, height } = fuzz.bomb;
      // The header check's own refusal, naming the declared size: decoding never ran (a
      // garbage IDAT would have answered 422 invalid_image, a real one would have inflated).
      if (status !== 413 || body.error !== "image_too_large") {
        return `a bomb answered ${status} ${body.error}, not 413 image_too_large`;
      }
      if (!body.detail.includes(`${width}x${height}`)) return `bomb detail: ${body.detail}`;
    }
    return null;
  }
  if (fuzz.bomb) return `a bomb of ${fuzz.bomb.width}x${fuzz.bomb.height} was accepted`;
  if (type === "text/event-stream") {
    const events = [];
    for await (const event of readEvents(response)) events.push(event);
    const last = events.at(-1);
    if (last?.event !== "done") return `the stream ended with ${JSON.stringify(last)}`;
    return null;
  }
  await response.arrayBuffer();
  return null;
}

/** What a fuzz run found, as the child process reports it to the test. */
interface FuzzReport {
  readonly seconds: number;
  readonly perKind: [string, number][];
  readonly statuses: [number, number][];
  readonly codes: [string, number][];
  readonly failures: string[];
  readonly bombs: number;
  readonly slowestBombMs: number;
  readonly slowestZlibBombMs: number;
  readonly peakRss: number;
  readonly rssFloorFirstThird: number;
  readonly rssFloorLastThird: number;
  readonly heapAfterFirstThird: number;
  readonly heapAtEnd: number;
  readonly externalAfterFirstThird: number;
  readonly externalAtEnd: number;
  /** Running and waiting jobs once the cases are done. */
  readonly queueAfter: [number, number];
  /** Status and content type of a valid request sent after the cases. */
  readonly validAfter: [number, string | null];
}

/** Sends every case to the app, measuring memory as it goes (see the bounds above). */
async function runFuzz(): Promise<FuzzReport> {
  const { app, queue } = createApp({ registry, limits: LIMITS });
  const big = createApp({ registry }).app;
  let slowestZlibBombMs = 0;
  let peakRss = 0;
  const rng = createRng(FUZZ_SEED);
  const pools = fieldPools(rng);
  const perKind = new Map<string, number>();
  const statuses = new Map<number, number>();
  const codes = new Map<string, number>();
  const failures: string[] = [];
  let bombs = 0;
  let slowestBombMs = 0;
  const third = Math.floor(FUZZ_CASES / 3);
  let heapAfterFirstThird = 0;
  let externalAfterFirstThird = 0;
  let rssFloorFirstThird = Infinity;
  let rssFloorLastThird = Infinity;
  const started = performance.now();
  for (let i = 0; i < FUZZ_CASES; i++) {
    if (i > 0 && (i % MEMORY_EVERY === 0 || i === third)) {
      await collectGarbage();
      const { rss, heapUsed, external } = Deno.memoryUsage();
      peakRss = Math.max(peakRss, rss);
      if (i <= third) rssFloorFirstThird = Math.min(rssFloorFirstThird, rss);
      if (i >= FUZZ_CASES - third) rssFloorLastThird = Math.min(rssFloorLastThird, rss);
      if (i === third) [heapAfterFirstThird, externalAfterFirstThird] = [heapUsed, external];
    }
    const fuzz = await nextCase(rng, pools);
    perKind.set(fuzz.kind, (perKind.get(fuzz.kind) ?? 0) + 1);
    const t0 = performance.now();
    const response = await (fuzz.big ? big : app).request(fuzz.path, fuzz.init);
    const { failure, code } = await check(fuzz, response);
    if (fuzz.kind.startsWith("zlib bomb")) {
      slowestZlibBombMs = Math.max(slowestZlibBombMs, performance.now() - t0);
    }
    if (fuzz.bomb?.only) {
      bombs++;
      slowestBombMs = Math.max(slowestBombMs, performance.now() - t0);
    }
    statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
    if (code) codes.set(code, (codes.get(code) ?? 0) + 1);
    if (failure && failures.length < 10) failures.push(`case ${i} (${fuzz.what}): ${failure}`);
  }
  const seconds = (performance.now() - started) / 1000;
  await collectGarbage();
  const atEnd = Deno.memoryUsage();
  // Still serving: the queue is idle and a valid request succeeds.
  const queueAfter: [number, number] = [queue.stats().running, queue.stats().waiting];
  const after = await app.request("/v1/samples", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ n: 2, steps: 3, seed: 1 }),
  });
  const validAfter: [number, string | null] = [after.status, after.headers.get("content-type")];
  await after.body?.cancel();
  return {
    seconds,
    perKind: [...perKind],
    statuses: [...statuses],
    codes: [...codes],
    failures,
    bombs,
    slowestBombMs,
    slowestZlibBombMs,
    peakRss: Math.max(peakRss, atEnd.rss),
    rssFloorFirstThird,
    rssFloorLastThird: Math.min(rssFloorLastThird, atEnd.rss),
    heapAfterFirstThird,
    heapAtEnd: atEnd.heapUsed,
    externalAfterFirstThird,
    externalAtEnd: atEnd.external,
    queueAfter,
    validAfter,
  };
}

// The child process: run the cases and print the report as the last line.
if (Deno.env.get(_CHILD_ENV) === "1") console.log(JSON.stringify(await runFuzz()));

/**
 * The cases run in a process of their own. Memory is what the test bounds, and the test
 * runner's process also holds every earlier test module's leftovers: in the full suite its
 * resident memory started 150 to 250 MiB higher than alone and drifted by 10 to 40 MiB during
 * the cases while the live heap stayed at 95.0 to 95.4 MiB, so the runner's drift, not the
 * server's, decided the bound.
 */
Deno.test(`fuzz: ${FUZZ_CASES} seeded hostile requests to every endpoint get 2xx or 4xx, never 5xx`, async () => {
  const child = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      "--unstable-no-legacy-abort",
      new URL(import.meta.url).pathname,
    ],
    env: { [_CHILD_ENV]: "1" },
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const lines = new TextDecoder().decode(child.stdout).trim().split("\n");
  assert.equal(child.code, 0, `the fuzz process failed: ${lines.slice(-5).join("\n")}`);
  const report = JSON.parse(lines.at(-1) ?? "") as FuzzReport;
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

  // The counts, for the README.
  const sorted = <K>(pairs: [K, number][]) =>
    [...pairs].sort((a, b) => String(a[0]).localeCompare(String(b[0])))
      .map(([k, v]) => `${k} ${v}`).join(", ");
  const perKind = new Map(report.perKind);
  console.log(`${FUZZ_CASES} cases (seed ${FUZZ_SEED}) in ${report.seconds.toFixed(1)} s`);
  console.log(`  per endpoint: ${sorted(report.perKind)}`);
  console.log(`  statuses: ${sorted(report.statuses)}`);
  console.log(`  error codes: ${sorted(report.codes)}`);
  console.log(
    `  bombs refused from the header: ${report.bombs} (slowest ${
      report.slowestBombMs.toFixed(1)
    } ms)`,
  );
  console.log(
    `  zlib bombs under a small header: ${
      (perKind.get("zlib bomb idat") ?? 0) + (perKind.get("zlib bomb iccp") ?? 0)
    } (slowest ${report.slowestZlibBombMs.toFixed(1)} ms); long fields: ${
      perKind.get("long field") ?? 0
    }`,
  );
  console.log(`  resident memory at its highest reading: ${mib(report.peakRss)}`);
  console.log(
    `  resident floor ${mib(report.rssFloorFirstThird)} in the first third, ` +
      `${mib(report.rssFloorLastThird)} in the last; live heap ${
        mib(report.heapAfterFirstThird)
      } after the first third, ${mib(report.heapAtEnd)} at the end; external ${
        mib(report.externalAfterFirstThird)
      } and ${mib(report.externalAtEnd)}`,
  );

  assert.deepEqual(report.failures, []);
  assert.ok(report.bombs > 0 && perKind.size >= 8, "every kind of case was drawn");
  for (const kind of ["zlib bomb idat", "zlib bomb iccp", "long field"]) {
    assert.ok((perKind.get(kind) ?? 0) > 0, `no ${kind} case was drawn`);
  }
  const rssGrowth = report.rssFloorLastThird - report.rssFloorFirstThird;
  const heapGrowth = report.heapAtEnd - report.heapAfterFirstThird;
  const externalGrowth = report.externalAtEnd - report.externalAfterFirstThird;
  assert.ok(rssGrowth < RSS_GROWTH_BOUND, `the floor of resident memory grew by ${mib(rssGrowth)}`);
  assert.ok(heapGrowth < HEAP_GROWTH_BOUND, `the live heap grew by ${mib(heapGrowth)}`);
  assert.ok(
    externalGrowth < EXTERNAL_GROWTH_BOUND,
    `memory outside the heap grew by ${mib(externalGrowth)}`,
  );
  assert.deepEqual(report.queueAfter, [0, 0]);
  assert.deepEqual(report.validAfter, [200, "image/png"]);
});
