import assert from "node:assert/strict";
import { createRng, restoreRng, type RngState } from "../lib/rng.ts";
import {
  checkpointPath,
  latestCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  pruneCheckpoints,
  saveCheckpoint,
} from "../train/checkpoint.ts";
import {
  type Checkpoint,
  CHECKPOINT_MAGIC,
  decodeCheckpoint,
  encodeCheckpoint,
  type NamedTensors,
  type TensorIndexEntry,
} from "../train/checkpoint_format.ts";

// Float32 values that a lossy path (a float64 round trip through JSON, a sign-dropping copy,
// flush-to-zero) would change.
const MIN_SUBNORMAL = 2 ** -149;
const MAX_SUBNORMAL = 2 ** -126 - 2 ** -149;
const MAX_FLOAT32 = (2 - 2 ** -23) * 2 ** 127;
const SPECIAL = [-0, 0, MIN_SUBNORMAL, -MAX_SUBNORMAL, MAX_FLOAT32, -Infinity, Infinity, NaN];

function tensor(shape: number[], value: (i: number) => number): NamedTensors[string] {
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: Float32Array.from({ length: n }, (_, i) => value(i)) };
}

/** A small but complete checkpoint whose values all depend on `step`. */
function makeCheckpoint(step: number): Checkpoint {
  const layer = (offset: number): NamedTensors => ({
    "down.0.conv.weight": tensor([4, 3, 3, 3], (i) => Math.sin(i + step + offset)),
    "down.0.conv.bias": tensor([4], (i) => i - offset),
    "time_embed.scale": tensor([], () => step + offset),
  });
  return {
    step,
    config: { channels: 32, channelMults: [1, 2, 2], dropout: 0.1, attention: { heads: 4 } },
    schedule: { kind: "linear", timesteps: 1000, betaStart: 1e-4, betaEnd: 0.02 },
    prediction: "eps",
    seed: 42,
    params: layer(0),
    ema: layer(0.5),
    optimizer: {
      kind: "adam",
      step,
      beta1: 0.9,
      beta2: 0.999,
      epsilon: 1e-8,
      m: layer(1),
      v: layer(2),
    },
    trainingState: { smoothedLoss: 0.0314, wallSeconds: step * 0.25 },
    metadata: { dataset: "cifar10", created: "2024-05-01T12:00:00Z" },
  };
}

/** Asserts two tensor groups hold the same names, shapes and float32 bits (NaN as NaN). */
function assertSameTensors(actual: NamedTensors, expected: NamedTensors, what: string): void {
  assert.deepEqual(Object.keys(actual).sort(), Object.keys(expected).sort(), `${what} names`);
  for (const name of Object.keys(expected)) {
    const a = actual[name];
    const e = expected[name];
    assert.deepEqual(a.shape, e.shape, `${what}.${name} shape`);
    assert.ok(a.data instanceof Float32Array, `${what}.${name} is a Float32Array`);
    assert.equal(a.data.length, e.data.length, `${what}.${name} length`);
    // Object.is tells -0 from 0 and matches NaN with NaN; float32 -> float64 is otherwise
    // injective, so equal doubles mean equal float32 bits.
    for (let i = 0; i < e.data.length; i++) {
      if (!Object.is(a.data[i], e.data[i])) {
        assert.fail(`${what}.${name}[${i}]: got ${a.data[i]}, expected ${e.data[i]}`);
      }
    }
  }
}

/** The checkpoint without its tensors, for a plain deep comparison. */
function withoutTensors(c: Checkpoint): unknown {
  const { params: _p, ema: _e, optimizer: { m: _m, v: _v, ...optimizer }, ...rest } = c;
  return { ...rest, optimizer };
}

function assertSameCheckpoint(actual: Checkpoint, expected: Checkpoint): void {
  assert.deepStrictEqual(withoutTensors(actual), withoutTensors(expected));
  assertSameTensors(actual.params, expected.params, "params");
  assertSameTensors(actual.ema, expected.ema, "ema");
  assertSameTensors(actual.optimizer.m, expected.optimizer.m, "optimizer.m");
  assertSameTensors(actual.optimizer.v, expected.optimizer.v, "optimizer.v");
}

/** Splits a file by the layout documented in train/checkpoint_format.ts, independently of it. */
function splitFile(bytes: Uint8Array): {
  headerLength: number;
  dataStart: number;
  header: Record<string, unknown> & { tensors: TensorIndexEntry[] };
  data: Uint8Array;
} {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getUint32(12, true);
  const dataStart = Math.ceil((16 + headerLength) / 8) * 8;
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + headerLength)));
  return { headerLength, dataStart, header, data: bytes.slice(dataStart, bytes.length - 32) };
}

/** Builds a file with a correct hash around any header and data, to reach the checks after it. */
async function craftFile(header: unknown, data: Uint8Array, version = 1): Promise<Uint8Array> {
  const headerBytes = header instanceof Uint8Array
    ? header
    : new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const dataStart = Math.ceil((16 + headerBytes.length) / 8) * 8;
  const out = new Uint8Array(dataStart + data.length + 32);
  out.set(new TextEncoder().encode("DDPMCKPT"), 0);
  const view = new DataView(out.buffer);
  view.setUint32(8, version, true);
  view.setUint32(12, headerBytes.length, true);
  out.set(headerBytes, 16);
  out.set(data, dataStart);
  const hash = await crypto.subtle.digest("SHA-256", out.subarray(0, out.length - 32));
  out.set(new Uint8Array(hash), out.length - 32);
  return out;
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

/** Runs `body` with console.warn captured, and returns what it printed. */
async function captureWarnings(body: () => Promise<void>): Promise<string[]> {
  const warnings: string[] = [];
  const original = console.warn;
  console.warn = (...args: unknown[]) => {
    warnings.push(args.join(" "));
  };
  try {
    await body();
  } finally {
    console.warn = original;
  }
  return warnings;
}

Deno.test("round trip keeps every field and every tensor bit: -0, subnormals, infinities, 1e6 floats", async () => {
  const rng = createRng(7);
  const ckpt = makeCheckpoint(123_456);
  ckpt.params.special = { shape: [2, 4], data: new Float32Array(SPECIAL) };
  ckpt.params.large = { shape: [1000, 1000], data: rng.normal(1_000_000) };
  ckpt.params.empty = { shape: [0, 3], data: new Float32Array(0) };
  for (const group of [ckpt.ema, ckpt.optimizer.m, ckpt.optimizer.v]) {
    group.special = { shape: [2, 4], data: new Float32Array(SPECIAL).reverse() };
    group.large = { shape: [1000, 1000], data: rng.uniform(1_000_000) };
    group.empty = { shape: [0, 3], data: new Float32Array(0) };
  }
  rng.normal(3); // an odd count leaves a spare normal in the state
  ckpt.trainingState = {
    rng: rng.getState(),
    sampler: { epoch: 3, order: [5, 1, 4], position: 2 },
    smoothedLoss: -0,
    note: 'ünïcode ✓ \u{1f600} "quoted" \\ \n',
    nothing: null,
  };
  ckpt.metadata = { "toolkit version": "0.1.0", tiny: 5e-324, big: 1.7976931348623157e308 };

  const decoded = await decodeCheckpoint(await encodeCheckpoint(ckpt), "memory");
  assertSameCheckpoint(decoded, ckpt);
  assert.ok(Object.is(decoded.trainingState.smoothedLoss, -0), "-0 in JSON fields survives");
  // The rng state is plain JSON, so a resumed run continues the same stream.
  const resumed = restoreRng(decoded.trainingState.rng as RngState);
  assert.deepEqual(resumed.normal(5), rng.normal(5));
});

Deno.test("encoding is deterministic: equal checkpoints give identical bytes whatever their key order", async () => {
  const a = makeCheckpoint(5);
  const b = makeCheckpoint(5);
  const reversed = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).reverse());
  b.config = reversed(b.config);
  b.params = reversed(b.params) as NamedTensors;
  b.optimizer.m = reversed(b.optimizer.m) as NamedTensors;
  b.schedule = { betaEnd: 0.02, betaStart: 1e-4, timesteps: 1000, kind: "linear" };
  const first = await encodeCheckpoint(a);
  assert.deepEqual(await encodeCheckpoint(a), first, "same object twice");
  assert.deepEqual(await encodeCheckpoint(b), first, "keys added in another order");
});

Deno.test("file layout is the documented one: preamble, sorted JSON header, aligned LE float32, SHA-256 trailer", async () => {
  const ckpt = makeCheckpoint(1);
  ckpt.params.probe = { shape: [3], data: new Float32Array([1, -2, 0.5]) };
  for (const group of [ckpt.ema, ckpt.optimizer.m, ckpt.optimizer.v]) {
    group.probe = { shape: [3], data: new Float32Array(3) };
  }
  const bytes = await encodeCheckpoint(ckpt);

  assert.equal(new TextDecoder().decode(bytes.subarray(0, 8)), CHECKPOINT_MAGIC);
  assert.deepEqual([...bytes.subarray(8, 12)], [1, 0, 0, 0], "version 1, little-endian");
  const { headerLength, dataStart, header, data } = splitFile(bytes);
  assert.deepEqual([...bytes.subarray(16 + headerLength, dataStart)].filter((b) => b !== 0), []);
  assert.deepEqual(Object.keys(header), Object.keys(header).sort(), "header keys sorted");
  assert.equal(header.dataByteLength, data.length);
  assert.equal(bytes.length, dataStart + data.length + 32);

  const groupOrder = ["params", "ema", "adam.m", "adam.v"];
  const entries = header.tensors;
  assert.equal(entries.length, 4 * 4);
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    assert.equal(e.dtype, "float32");
    assert.equal(e.offset % 8, 0, `${e.group}.${e.name} is 8-byte aligned`);
    assert.equal(e.byteLength, 4 * e.shape.reduce((a, b) => a * b, 1));
    if (i > 0) {
      const p = entries[i - 1];
      const order = groupOrder.indexOf(p.group) - groupOrder.indexOf(e.group) ||
        (p.name < e.name ? -1 : 1);
      assert.ok(order < 0, `index order: ${p.group}.${p.name} before ${e.group}.${e.name}`);
    }
  }
  // 1, -2, 0.5 as IEEE 754 float32, little-endian: 0x3f800000, 0xc0000000, 0x3f000000.
  const probe = entries.find((e) => e.group === "params" && e.name === "probe");
  assert.ok(probe !== undefined);
  assert.deepEqual(
    [...data.subarray(probe.offset, probe.offset + 12)],
    [0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x00, 0x3f],
  );
  const hash = await crypto.subtle.digest("SHA-256", bytes.subarray(0, bytes.length - 32));
  assert.deepEqual(bytes.subarray(bytes.length - 32), new Uint8Array(hash));
});

Deno.test("a file cut short anywhere is reported as truncated, with expected and actual sizes", async () => {
  const bytes = await encodeCheckpoint(makeCheckpoint(3));
  const { dataStart } = splitFile(bytes);
  const cuts = [0, 5, 12, 40, dataStart - 1, dataStart + 4, bytes.length - 33, bytes.length - 1];
  for (const cut of cuts) {
    await assert.rejects(
      decodeCheckpoint(bytes.slice(0, cut), "run/ckpt.ddpm"),
      new RegExp(
        `^Error: run/ckpt\\.ddpm: truncated: expected (at least )?\\d+ bytes.*got ${cut}$`,
      ),
      `cut at ${cut}`,
    );
  }
  // Past the header the expected size is exact.
  await assert.rejects(
    decodeCheckpoint(bytes.slice(0, bytes.length - 1), "x"),
    { message: `x: truncated: expected ${bytes.length} bytes, got ${bytes.length - 1}` },
  );
});

Deno.test("a flipped bit in the data section is reported as a SHA-256 mismatch", async () => {
  const bytes = await encodeCheckpoint(makeCheckpoint(3));
  const { dataStart } = splitFile(bytes);
  for (const at of [dataStart, dataStart + 101, bytes.length - 33]) {
    const damaged = bytes.slice();
    damaged[at] ^= 0x10;
    await assert.rejects(decodeCheckpoint(damaged, "disk.ddpm"), {
      message: /^disk\.ddpm: corrupt: SHA-256 mismatch/,
    });
  }
});

Deno.test("a flipped bit anywhere in the JSON header is reported as a SHA-256 mismatch", async () => {
  const bytes = await encodeCheckpoint(makeCheckpoint(3));
  const { headerLength } = splitFile(bytes);
  // Every header byte, a different bit each time: a damaged index must not pass for a
  // truncation or a size, whichever number it hits.
  for (let at = 16; at < 16 + headerLength; at++) {
    const damaged = bytes.slice();
    damaged[at] ^= 1 << (at % 8);
    await assert.rejects(decodeCheckpoint(damaged, "h.ddpm"), (error: Error) => {
      assert.match(error.message, /^h\.ddpm: corrupt: SHA-256 mismatch/, `byte ${at}`);
      return true;
    });
  }
});

Deno.test("a file with other magic bytes is reported as not a DDPM checkpoint", async () => {
  const bytes = await encodeCheckpoint(makeCheckpoint(3));
  const png = bytes.slice();
  png.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 0);
  await assert.rejects(decodeCheckpoint(png, "cat.png"), {
    message: /^cat\.png: not a DDPM checkpoint: it starts with bytes 89504e470d0a1a0a/,
  });
  await assert.rejects(decodeCheckpoint(new TextEncoder().encode("{}"), "a.json"), {
    message: /^a\.json: not a DDPM checkpoint/,
  });
});

Deno.test("a future format version is reported as unsupported, even with a valid hash", async () => {
  const { header, data } = splitFile(await encodeCheckpoint(makeCheckpoint(3)));
  await assert.rejects(decodeCheckpoint(await craftFile(header, data, 2), "new.ddpm"), {
    message: "new.ddpm: unsupported format version 2; this reader supports version 1",
  });
});

Deno.test("a hashed header that is not JSON, or not valid UTF-8, is reported as malformed", async () => {
  const { data } = splitFile(await encodeCheckpoint(makeCheckpoint(3)));
  await assert.rejects(decodeCheckpoint(await craftFile('{"step": 3,', data), "m.ddpm"), {
    message: /^m\.ddpm: malformed JSON header: /,
  });
  await assert.rejects(decodeCheckpoint(await craftFile("[1, 2]", data), "m.ddpm"), {
    message: /^m\.ddpm: malformed JSON header: expected an object/,
  });
  const notUtf8 = new TextEncoder().encode('{"a": "xx"}');
  notUtf8[7] = 0xff; // 0xff never occurs in UTF-8
  await assert.rejects(decodeCheckpoint(await craftFile(notUtf8, data), "u.ddpm"), {
    message: /^u\.ddpm: malformed JSON header: /,
  });
});

Deno.test("a hashed index entry that points past the data section is reported as out of bounds", async () => {
  const { header, data } = splitFile(await encodeCheckpoint(makeCheckpoint(3)));
  const last = header.tensors[header.tensors.length - 1];
  last.offset += 8;
  await assert.rejects(decodeCheckpoint(await craftFile(header, data), "b.ddpm"), {
    message: new RegExp(
      `^b\\.ddpm: tensor index out of bounds: adam\\.v\\["${
        last.name.replaceAll(".", "\\.")
      }"\\] ` +
        `spans bytes ${last.offset}\\.\\.${last.offset + last.byteLength} of a ` +
        `${data.length}-byte data section$`,
    ),
  });
});

Deno.test("a hashed index entry whose byteLength disagrees with its shape is a shape/length mismatch", async () => {
  const { header, data } = splitFile(await encodeCheckpoint(makeCheckpoint(3)));
  const bias = header.tensors.find((e) => e.group === "ema" && e.name === "down.0.conv.bias");
  assert.ok(bias !== undefined);
  bias.shape = [5];
  await assert.rejects(decodeCheckpoint(await craftFile(header, data), "s.ddpm"), {
    message: 's.ddpm: shape/length mismatch: ema["down.0.conv.bias"] has shape [5], ' +
      "5 float32 = 20 bytes, but byteLength 16",
  });
});

Deno.test("decoding rejects ema or Adam moments whose names or shapes differ from params", async () => {
  const { header, data } = splitFile(await encodeCheckpoint(makeCheckpoint(3)));
  const weight = header.tensors.find((e) => e.group === "ema" && e.name === "down.0.conv.weight");
  assert.ok(weight !== undefined);
  weight.shape = [3, 4, 3, 3]; // same byte length as [4, 3, 3, 3]
  await assert.rejects(decodeCheckpoint(await craftFile(header, data), "e.ddpm"), {
    message: "e.ddpm: header: ema must have the same tensor names and shapes as params: " +
      '"down.0.conv.weight" has shape [3,4,3,3] in ema, [4,3,3,3] in params',
  });

  const renamed = splitFile(await encodeCheckpoint(makeCheckpoint(3))).header;
  const scale = renamed.tensors.find((e) => e.group === "adam.v" && e.name === "time_embed.scale");
  assert.ok(scale !== undefined);
  scale.name = "time_embed.gain";
  await assert.rejects(decodeCheckpoint(await craftFile(renamed, data), "e.ddpm"), {
    message: /^e\.ddpm: header: adam\.v must have the same .*"time_embed\.scale" is missing$/,
  });
});

Deno.test("decoding rejects hashed header fields out of range, naming the source and field", async () => {
  const { header, data } = splitFile(await encodeCheckpoint(makeCheckpoint(3)));
  await assert.rejects(
    decodeCheckpoint(await craftFile({ ...header, step: -1 }, data), "f.ddpm"),
    { message: /^f\.ddpm: header\.step must be an integer in 0\.\.\d+, got -1$/ },
  );
  await assert.rejects(
    decodeCheckpoint(await craftFile({ ...header, prediction: "score" }, data), "f.ddpm"),
    { message: 'f.ddpm: header.prediction must be one of eps, x0, v, got "score"' },
  );
});

Deno.test("encoding rejects mismatched shapes, ema unlike params, bad numbers and non-JSON fields", async () => {
  const cases: [string, (c: Checkpoint) => void, RegExp][] = [
    ["shape product", (c) => {
      c.params["down.0.conv.bias"].shape = [5];
    }, /^checkpoint\.params\["down\.0\.conv\.bias"\]: shape \[5\] has 5 elements but data has 4$/],
    ["data type", (c) => {
      (c.params["down.0.conv.bias"] as { data: unknown }).data = [1, 2, 3, 4];
    }, /\.data must be a Float32Array, got an array$/],
    ["negative dim", (c) => {
      c.params["down.0.conv.bias"].shape = [-4];
    }, /shape\[0\] must be an integer in 0\.\.4294967295, got -4$/],
    ["ema missing", (c) => {
      delete c.ema["down.0.conv.bias"];
    }, /^checkpoint: ema must have the same .*"down\.0\.conv\.bias" is missing$/],
    ["m extra", (c) => {
      c.optimizer.m.extra = tensor([1], () => 0);
    }, /^checkpoint: adam\.m must have .*"extra" is not in params$/],
    ["empty name", (c) => {
      for (const g of [c.params, c.ema, c.optimizer.m, c.optimizer.v]) g[""] = tensor([1], () => 0);
    }, /tensor names must be non-empty strings/],
    ["step NaN", (c) => {
      c.step = NaN;
    }, /^checkpoint\.step must be an integer in 0\.\.\d+, got NaN$/],
    ["step fractional", (c) => {
      c.step = 1.5;
    }, /^checkpoint\.step must be an integer/],
    ["seed", (c) => {
      c.seed = -3;
    }, /^checkpoint\.seed must be an integer in 0\.\./],
    ["beta1", (c) => {
      c.optimizer.beta1 = 1;
    }, /^checkpoint\.optimizer\.beta1 must be in \[0, 1\), got 1$/],
    ["schedule kind", (c) => {
      c.schedule.kind = "exotic";
    }, /^checkpoint\.schedule\.kind must be one of linear, .*got "exotic"$/],
    ["schedule range", (c) => {
      c.schedule.timesteps = 1;
    }, /^checkpoint\.schedule: timesteps must be an integer in 2\.\.100000, got 1$/],
    ["NaN in trainingState", (c) => {
      c.trainingState.loss = NaN;
    }, /^checkpoint\.trainingState\.loss must be a finite number .*got NaN$/],
    ["typed array in config", (c) => {
      c.config["odd key"] = new Float64Array(2);
    }, /^checkpoint\.config\["odd key"\] must be a plain object.*Float64Array.*number\[\]/],
    ["undefined in metadata", (c) => {
      c.metadata.host = undefined;
    }, /^checkpoint\.metadata\.host must be JSON-serialisable, got undefined$/],
    ["cycle", (c) => {
      const loop: Record<string, unknown> = {};
      loop.self = loop;
      c.metadata.loop = loop;
    }, /^checkpoint\.metadata\.loop\.self refers back to itself/],
  ];
  for (const [what, damage, message] of cases) {
    const ckpt = makeCheckpoint(3);
    damage(ckpt);
    await assert.rejects(encodeCheckpoint(ckpt), { message }, what);
  }
});

Deno.test("saveCheckpoint creates the directory, overwrites atomically, and leaves no temp files", async () => {
  const root = await Deno.makeTempDir();
  try {
    const dir = `${root}/runs/a`;
    const path = `${dir}/model.ddpm`;
    await saveCheckpoint(path, makeCheckpoint(1));
    await saveCheckpoint(path, makeCheckpoint(2));
    assertSameCheckpoint(await loadCheckpoint(path), makeCheckpoint(2));
    assert.deepEqual(await listDir(dir), ["model.ddpm"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("saveCheckpoint under a parent that is a file throws and creates nothing", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${root}/file`, "not a directory");
    await assert.rejects(saveCheckpoint(`${root}/file/ckpt.ddpm`, makeCheckpoint(1)));
    await assert.rejects(saveCheckpoint(`${root}/file/sub/ckpt.ddpm`, makeCheckpoint(1)));
    assert.deepEqual(await listDir(root), ["file"]);
    assert.equal(await Deno.readTextFile(`${root}/file`), "not a directory");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("saveCheckpoint that fails at the rename removes its temp file and keeps the target", async () => {
  const root = await Deno.makeTempDir();
  try {
    // Renaming a file over a non-empty directory fails after the temp file is written.
    const target = `${root}/ckpt.ddpm`;
    await Deno.mkdir(target);
    await Deno.writeTextFile(`${target}/keep`, "x");
    await assert.rejects(saveCheckpoint(target, makeCheckpoint(1)));
    assert.deepEqual(await listDir(root), ["ckpt.ddpm"]);
    assert.deepEqual(await listDir(target), ["keep"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("saveCheckpoint of an invalid checkpoint throws before touching the disk", async () => {
  const root = await Deno.makeTempDir();
  try {
    const bad = makeCheckpoint(1);
    bad.step = -1;
    await assert.rejects(saveCheckpoint(`${root}/new/ckpt.ddpm`, bad), RangeError);
    assert.deepEqual(await listDir(root), []);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("loadCheckpoint errors name the path", async () => {
  const root = await Deno.makeTempDir();
  try {
    const path = checkpointPath(root, 7);
    await assert.rejects(loadCheckpoint(path), (e: Error) => e.message.includes(path));
    const bytes = await encodeCheckpoint(makeCheckpoint(7));
    bytes[bytes.length - 40] ^= 1;
    await Deno.writeFile(path, bytes);
    await assert.rejects(
      loadCheckpoint(path),
      (e: Error) => e.message.startsWith(`${path}: corrupt: SHA-256 mismatch`),
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("checkpointPath pads the step to 8 digits so names sort by step", () => {
  assert.equal(checkpointPath("runs/a", 0), "runs/a/ckpt-00000000.ddpm");
  assert.equal(checkpointPath("runs/a/", 1500), "runs/a/ckpt-00001500.ddpm");
  assert.equal(checkpointPath("runs", 123_456_789), "runs/ckpt-123456789.ddpm");
  assert.throws(() => checkpointPath("runs", -1), /^RangeError: step must be an integer in 0\.\./);
});

Deno.test("latestCheckpoint picks the highest step and ignores temp files and other names", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const step of [900, 100_000, 20_000]) {
      await saveCheckpoint(checkpointPath(dir, step), makeCheckpoint(step));
    }
    await Deno.writeTextFile(`${checkpointPath(dir, 200_000)}.tmp-1234-abcdef`, "partial");
    await Deno.writeTextFile(`${dir}/ckpt-0200000.ddpm`, "not the canonical spelling");
    await Deno.writeTextFile(`${dir}/notes.txt`, "hello");
    const warnings = await captureWarnings(async () => {
      assert.equal(await latestCheckpoint(dir), checkpointPath(dir, 100_000));
    });
    assert.deepEqual(warnings, []);
    assert.deepEqual((await listCheckpoints(dir)).map((c) => c.step), [900, 20_000, 100_000]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("latestCheckpoint skips newer corrupt or truncated checkpoints with a warning naming them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await saveCheckpoint(checkpointPath(dir, 10), makeCheckpoint(10));
    const bytes = await encodeCheckpoint(makeCheckpoint(30));
    bytes[bytes.length - 100] ^= 4;
    await Deno.writeFile(checkpointPath(dir, 30), bytes);
    await Deno.writeFile(
      checkpointPath(dir, 20),
      (await encodeCheckpoint(makeCheckpoint(20))).slice(0, 300),
    );
    let latest: string | null = null;
    const warnings = await captureWarnings(async () => {
      latest = await latestCheckpoint(dir);
    });
    assert.equal(latest, checkpointPath(dir, 10));
    assert.equal(warnings.length, 2);
    assert.match(warnings[0], new RegExp(`ckpt-00000030\\.ddpm: corrupt: SHA-256 mismatch`));
    assert.match(warnings[1], new RegExp(`ckpt-00000020\\.ddpm: truncated: expected`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("latestCheckpoint returns null for an empty, temp-only or missing directory", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(await latestCheckpoint(dir), null);
    await Deno.writeTextFile(`${checkpointPath(dir, 5)}.tmp-1-00`, "partial");
    assert.equal(await latestCheckpoint(dir), null);
    assert.equal(await latestCheckpoint(`${dir}/not-yet-created`), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pruneCheckpoints keeps the newest N, returns what it deleted, and leaves temp files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const steps = [50, 10, 40, 20, 30];
    for (const step of steps) await saveCheckpoint(checkpointPath(dir, step), makeCheckpoint(step));
    const tmp = `${checkpointPath(dir, 60)}.tmp-99-0a0b`;
    await Deno.writeTextFile(tmp, "a save in progress");

    const deleted = await pruneCheckpoints(dir, 2);
    assert.deepEqual(deleted, [10, 20, 30].map((s) => checkpointPath(dir, s)));
    assert.deepEqual((await listCheckpoints(dir)).map((c) => c.step), [40, 50]);
    assert.equal(await Deno.readTextFile(tmp), "a save in progress");

    assert.deepEqual(await pruneCheckpoints(dir, 5), [], "fewer than keep: nothing to do");
    await assert.rejects(pruneCheckpoints(dir, 0), /^RangeError: keep must be an integer in 1\.\./);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
