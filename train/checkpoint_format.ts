/**
 * The checkpoint format: one self-describing binary file per save that detects truncation and
 * corruption on load. This module turns a {@linkcode Checkpoint} into bytes and back, checking
 * both ways; writing files (atomically), listing them and picking the newest good one is
 * `checkpoint.ts`, and what a training run keeps in the JSON fields is `run_state.ts`.
 *
 * It uses only web-standard APIs (`TextEncoder`, `DataView`, `crypto.subtle`), so a browser or
 * edge tool can read checkpoints with it.
 *
 * ## File layout, format version 1
 *
 * Every integer and float is little-endian, whatever the byte order of the machine.
 *
 * | offset   | bytes | content                                                            |
 * | -------- | ----- | ------------------------------------------------------------------ |
 * | 0        | 8     | magic, the ASCII bytes `DDPMCKPT`                                  |
 * | 8        | 4     | uint32 format version, `1`                                         |
 * | 12       | 4     | uint32 byte length `H` of the header                               |
 * | 16       | H     | the header, UTF-8 JSON (below)                                     |
 * | 16 + H   | 0..7  | zero bytes up to `D`, the next multiple of 8 (`D = ceil8(16 + H)`) |
 * | D        | L     | data section: float32 tensors, each starting at a multiple of 8    |
 * | D + L    | 32    | trailer: SHA-256 of bytes `0 .. D + L - 1`, everything before it   |
 *
 * The header is one JSON object holding every field of {@linkcode Checkpoint} except the
 * tensors (`step`, `seed`, `prediction`, `schedule`, `config`, `trainingState`, `metadata`,
 * and `optimizer` without `m` and `v`), plus:
 * - `dataByteLength`: `L`, the end of the last tensor rounded up to a multiple of 8.
 * - `tensors`: the index, one entry per tensor:
 *   `{ group, name, dtype: "float32", shape, offset, byteLength }`, where `group` is
 *   `"params"`, `"ema"`, `"adam.m"` or `"adam.v"`, `offset` counts from `D` and is a multiple
 *   of 8, and `byteLength` is `4 * product(shape)`. Entries come in that group order, names
 *   sorted within a group, and `ema`, `adam.m` and `adam.v` hold exactly the names and shapes
 *   of `params`.
 *
 * Object keys are sorted at every level of the header and tensors are packed in index order,
 * so equal checkpoints give identical bytes. A reader on a little-endian machine can view a
 * tensor without copying: `new Float32Array(buffer, D + offset, byteLength / 4)` (numpy:
 * `numpy.frombuffer(buf, "<f4", byteLength // 4, D + offset)`).
 *
 * @example
 * ```ts
 * import { decodeCheckpoint, encodeCheckpoint } from "./checkpoint_format.ts";
 *
 * const w = { shape: [2], data: new Float32Array([0.5, -1]) };
 * const zeros = { shape: [2], data: new Float32Array(2) };
 * const bytes = await encodeCheckpoint({
 *   step: 0,
 *   config: { channels: 2 },
 *   schedule: { kind: "linear", timesteps: 1000, betaStart: 1e-4, betaEnd: 0.02 },
 *   prediction: "eps",
 *   seed: 1,
 *   params: { w },
 *   ema: { w },
 *   optimizer: {
 *     kind: "adam", step: 0, beta1: 0.9, beta2: 0.999, epsilon: 1e-8,
 *     m: { w: zeros }, v: { w: zeros },
 *   },
 *   trainingState: {},
 *   metadata: { dataset: "toy" },
 * });
 * const restored = await decodeCheckpoint(bytes, "toy checkpoint");
 * console.assert(restored.params.w.data[1] === -1);
 * ```
 *
 * @module
 */

import { PREDICTIONS } from "../lib/parameterization.ts";
import { makeSchedule, SCHEDULE_KINDS } from "../lib/schedule.ts";
import {
  checkArray,
  checkInteger,
  checkNumber,
  checkOneOf,
  checkRecord,
  checkUnitInterval,
  describe,
} from "./_checks.ts";

/** Float32 tensors by name; `data` is row-major with `product(shape)` elements. */
export interface NamedTensors {
  [name: string]: { shape: number[]; data: Float32Array };
}

/**
 * Everything the trainer needs to resume exactly, and a sampler or exporter to use the net.
 * The format checks the JSON fields only as JSON; what a training run keeps in them, typed and
 * checked, is `RunCheckpoint` (`run_state.ts`).
 */
export interface Checkpoint {
  /** Optimizer steps taken. */
  step: number;
  /** The network config (JSON-serialisable). */
  config: Record<string, unknown>;
  /** The options of `makeSchedule` the network was trained with. */
  schedule: { kind: string; timesteps: number; betaStart: number; betaEnd: number };
  /** What the network predicts: `"eps"`, `"x0"` or `"v"`. */
  prediction: string;
  /** The run's seed, an integer in `0..2^53-1`. */
  seed: number;
  /** Live weights. */
  params: NamedTensors;
  /** EMA weights, with the same names and shapes as `params`. */
  ema: NamedTensors;
  /**
   * Adam's state. `m` and `v` have the same names and shapes as `params` (write zeros
   * before the first update); `step` is Adam's `t`, used for bias correction.
   */
  optimizer: {
    kind: "adam";
    step: number;
    beta1: number;
    beta2: number;
    epsilon: number;
    m: NamedTensors;
    v: NamedTensors;
  };
  /**
   * Rng state (an `RngState` from `lib/rng.ts` is plain JSON), data sampler state, smoothed
   * loss, wall time... Must be JSON-serialisable: finite numbers only, plain objects and
   * arrays, no typed arrays.
   */
  trainingState: Record<string, unknown>;
  /** Dataset, creation time, machine, toolkit version... JSON-serialisable. */
  metadata: Record<string, unknown>;
}

/** Which part of a checkpoint a tensor belongs to. */
export type TensorGroup = "params" | "ema" | "adam.m" | "adam.v";

/** Every tensor group, in the order the index and the data section list them. */
export const TENSOR_GROUPS: readonly TensorGroup[] = ["params", "ema", "adam.m", "adam.v"];

/** One entry of the header's tensor index. */
export interface TensorIndexEntry {
  group: TensorGroup;
  name: string;
  dtype: "float32";
  shape: number[];
  /** Byte offset from the start of the data section, a multiple of 8. */
  offset: number;
  /** `4 * product(shape)`. */
  byteLength: number;
}

/** The 8 bytes every checkpoint starts with, as ASCII. */
export const CHECKPOINT_MAGIC = "DDPMCKPT";

/** The format version this module writes and the only one it reads. */
export const CHECKPOINT_VERSION = 1;

const MAGIC_BYTES = new TextEncoder().encode(CHECKPOINT_MAGIC);
/** Magic, version and header length. */
const PREAMBLE_BYTES = 16;
const HASH_BYTES = 32;
const MAX_UINT32 = 0xffffffff;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Serialises a checkpoint to the version 1 layout above, after checking it: every shape's
 * product equals its data length, `ema`, `adam.m` and `adam.v` match `params`, numbers are in
 * range and the JSON fields survive a JSON round trip unchanged (no NaN, typed arrays or
 * `undefined`; `-0` is kept).
 *
 * @example
 * ```ts
 * import { CHECKPOINT_MAGIC, encodeCheckpoint } from "./checkpoint_format.ts";
 *
 * const none = {};
 * const bytes = await encodeCheckpoint({
 *   step: 0, config: {}, prediction: "eps", seed: 0, trainingState: {}, metadata: {},
 *   schedule: { kind: "cosine", timesteps: 1000, betaStart: 1e-4, betaEnd: 0.02 },
 *   params: none, ema: none,
 *   optimizer: { kind: "adam", step: 0, beta1: 0.9, beta2: 0.99, epsilon: 0, m: none, v: none },
 * });
 * console.assert(new TextDecoder().decode(bytes.subarray(0, 8)) === CHECKPOINT_MAGIC);
 * ```
 */
export async function encodeCheckpoint(ckpt: Checkpoint): Promise<Uint8Array<ArrayBuffer>> {
  // 1. Check every field before allocating anything.
  const fields = _checkFields(ckpt, "checkpoint");
  const groups = _checkTensorGroups(ckpt, "checkpoint");

  // 2. Lay the tensors out in index order, each at a multiple of 8.
  const entries: TensorIndexEntry[] = [];
  const sources: Float32Array[] = [];
  let dataByteLength = 0;
  for (const [group, tensors] of groups) {
    for (const name of Object.keys(tensors).sort()) {
      const { shape, data } = tensors[name];
      const byteLength = data.length * 4;
      entries.push({
        group,
        name,
        dtype: "float32",
        shape: [...shape],
        offset: dataByteLength,
        byteLength,
      });
      sources.push(data);
      dataByteLength = _ceil8(dataByteLength + byteLength);
    }
  }

  // 3. The header; key order comes from the canonical serialiser, not from the caller.
  const header = { ...fields, dataByteLength, tensors: entries };
  const headerBytes = new TextEncoder().encode(_canonicalJson(header, "checkpoint"));
  if (headerBytes.length > MAX_UINT32) {
    throw new RangeError(
      `checkpoint header must be at most ${MAX_UINT32} bytes, got ${headerBytes.length}`,
    );
  }
  const dataStart = _ceil8(PREAMBLE_BYTES + headerBytes.length);
  const hashStart = dataStart + dataByteLength;

  // 4. Preamble, header and data into one buffer; padding stays zero from the allocation.
  const out = new Uint8Array(hashStart + HASH_BYTES);
  const view = new DataView(out.buffer);
  out.set(MAGIC_BYTES, 0);
  view.setUint32(8, CHECKPOINT_VERSION, true);
  view.setUint32(12, headerBytes.length, true);
  out.set(headerBytes, PREAMBLE_BYTES);
  for (let i = 0; i < entries.length; i++) {
    _writeFloat32LE(out, view, dataStart + entries[i].offset, sources[i]);
  }

  // 5. The trailer hashes everything before it.
  out.set(await _sha256(out.subarray(0, hashStart)), hashStart);
  return out;
}

/**
 * Parses and verifies a checkpoint. Every failure throws an `Error` whose message starts with
 * `source` (a path or URL) and says what is wrong: `not a DDPM checkpoint`, `unsupported
 * format version`, `truncated` (with the expected and actual size), `corrupt: SHA-256
 * mismatch`, `malformed JSON header`, `tensor index out of bounds`, `shape/length mismatch`,
 * or a group whose names or shapes differ from `params`.
 *
 * Truncation is told apart from corruption by reading the header first: if it is intact and
 * asks for more bytes than the file has, the file was cut short. Anything else that fails the
 * hash is reported as corruption, before any error about the header's content, since a
 * damaged header can say anything.
 *
 * @example
 * ```ts
 * import { decodeCheckpoint } from "./checkpoint_format.ts";
 *
 * const notACheckpoint = new TextEncoder().encode("PK\x03\x04 a zip file, say");
 * await decodeCheckpoint(notACheckpoint, "upload.bin").catch((e) => console.log(e.message));
 * // upload.bin: not a DDPM checkpoint: ...
 * ```
 */
export async function decodeCheckpoint(
  bytes: Uint8Array,
  source = "checkpoint",
): Promise<Checkpoint> {
  const size = bytes.length;

  // 1. Preamble: magic, then version, then the header length.
  const prefix = bytes.subarray(0, Math.min(MAGIC_BYTES.length, size));
  if (!prefix.every((b, i) => b === MAGIC_BYTES[i])) {
    throw new Error(
      `${source}: not a DDPM checkpoint: it starts with bytes ${_hex(prefix)}, ` +
        `expected the magic ${_hex(MAGIC_BYTES)} ("${CHECKPOINT_MAGIC}")`,
    );
  }
  if (size < PREAMBLE_BYTES + HASH_BYTES) {
    throw new Error(
      `${source}: truncated: expected at least ${
        PREAMBLE_BYTES + HASH_BYTES
      } bytes (preamble and trailer), got ${size}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== CHECKPOINT_VERSION) {
    throw new Error(
      `${source}: unsupported format version ${version}; ` +
        `this reader supports version ${CHECKPOINT_VERSION}`,
    );
  }
  const headerLength = view.getUint32(12, true);
  const dataStart = _ceil8(PREAMBLE_BYTES + headerLength);
  if (size < dataStart + HASH_BYTES) {
    throw new Error(
      `${source}: truncated: expected at least ${dataStart + HASH_BYTES} bytes ` +
        `(a ${headerLength}-byte header and the trailer), got ${size}`,
    );
  }

  // 2. The header's layout, before the hash, so a short file can say how short it is.
  let layout: _Layout | undefined;
  let headerError: unknown;
  try {
    layout = _parseLayout(bytes.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + headerLength), source);
  } catch (error) {
    headerError = error;
  }
  if (layout !== undefined) {
    const expected = dataStart + layout.dataByteLength + HASH_BYTES;
    if (size < expected) {
      throw new Error(`${source}: truncated: expected ${expected} bytes, got ${size}`);
    }
    if (size > expected) {
      throw new Error(
        `${source}: corrupt: expected ${expected} bytes, got ${size} (${
          size - expected
        } trailing bytes)`,
      );
    }
  }

  // 3. The hash covers everything before the trailer.
  const hashStart = size - HASH_BYTES;
  const stored = bytes.subarray(hashStart);
  const computed = await _sha256(bytes.subarray(0, hashStart));
  if (!computed.every((b, i) => b === stored[i])) {
    throw new Error(
      `${source}: corrupt: SHA-256 mismatch (stored ${_hex(stored)}, computed ${_hex(computed)})`,
    );
  }
  if (layout === undefined) throw headerError;

  // 4. The bytes are as written; now check what they say.
  for (let i = PREAMBLE_BYTES + headerLength; i < dataStart; i++) {
    if (bytes[i] !== 0) {
      throw new Error(`${source}: header padding byte ${i} must be 0, got ${bytes[i]}`);
    }
  }
  const where = `${source}: header`;
  const fields = _checkFields(layout.header, where);
  const groups: Record<TensorGroup, NamedTensors> = {
    "params": {},
    "ema": {},
    "adam.m": {},
    "adam.v": {},
  };
  for (const entry of layout.entries) {
    groups[entry.group][entry.name] = {
      shape: entry.shape,
      data: _readFloat32LE(bytes, view, dataStart + entry.offset, entry.byteLength / 4),
    };
  }
  for (const group of TENSOR_GROUPS) {
    if (group !== "params") _checkSameLayout(groups.params, groups[group], group, where);
  }
  const { optimizer, ...rest } = fields;
  return {
    ...rest,
    params: groups.params,
    ema: groups.ema,
    optimizer: { ...optimizer, m: groups["adam.m"], v: groups["adam.v"] },
  };
}

/** The header fields of a checkpoint, checked: everything but the tensors. */
interface _Fields {
  step: number;
  config: Record<string, unknown>;
  schedule: Checkpoint["schedule"];
  prediction: string;
  seed: number;
  optimizer: Omit<Checkpoint["optimizer"], "m" | "v">;
  trainingState: Record<string, unknown>;
  metadata: Record<string, unknown>;
}

/** A parsed header whose tensor index is consistent in itself. */
interface _Layout {
  header: Record<string, unknown>;
  entries: TensorIndexEntry[];
  dataByteLength: number;
}

/**
 * Checks the non-tensor fields of a checkpoint (from a caller or a decoded header) and returns
 * them with only the known keys. `where` prefixes every message.
 */
function _checkFields(source: object, where: string): _Fields {
  const step = checkInteger(_get(source, "step"), `${where}.step`, 0, MAX_SAFE);
  const seed = checkInteger(_get(source, "seed"), `${where}.seed`, 0, MAX_SAFE);
  const prediction = checkOneOf(_get(source, "prediction"), PREDICTIONS, `${where}.prediction`);

  const rawSchedule = checkRecord(_get(source, "schedule"), `${where}.schedule`);
  const schedule = {
    kind: checkOneOf(_get(rawSchedule, "kind"), SCHEDULE_KINDS, `${where}.schedule.kind`),
    timesteps: checkNumber(_get(rawSchedule, "timesteps"), `${where}.schedule.timesteps`),
    betaStart: checkNumber(_get(rawSchedule, "betaStart"), `${where}.schedule.betaStart`),
    betaEnd: checkNumber(_get(rawSchedule, "betaEnd"), `${where}.schedule.betaEnd`),
  };
  // makeSchedule owns the allowed ranges; a checkpoint whose schedule cannot be rebuilt
  // cannot be sampled from.
  try {
    makeSchedule(schedule);
  } catch (error) {
    throw new RangeError(`${where}.schedule: ${(error as Error).message}`);
  }

  const rawOptimizer = checkRecord(_get(source, "optimizer"), `${where}.optimizer`);
  if (_get(rawOptimizer, "kind") !== "adam") {
    throw new RangeError(
      `${where}.optimizer.kind must be "adam", got ${describe(_get(rawOptimizer, "kind"))}`,
    );
  }
  const optimizer = {
    kind: "adam" as const,
    step: checkInteger(_get(rawOptimizer, "step"), `${where}.optimizer.step`, 0, MAX_SAFE),
    beta1: checkUnitInterval(_get(rawOptimizer, "beta1"), `${where}.optimizer.beta1`),
    beta2: checkUnitInterval(_get(rawOptimizer, "beta2"), `${where}.optimizer.beta2`),
    epsilon: checkNumber(_get(rawOptimizer, "epsilon"), `${where}.optimizer.epsilon`),
  };
  if (optimizer.epsilon < 0) {
    throw new RangeError(`${where}.optimizer.epsilon must be >= 0, got ${optimizer.epsilon}`);
  }

  return {
    step,
    config: checkRecord(_get(source, "config"), `${where}.config`),
    schedule,
    prediction,
    seed,
    optimizer,
    trainingState: checkRecord(_get(source, "trainingState"), `${where}.trainingState`),
    metadata: checkRecord(_get(source, "metadata"), `${where}.metadata`),
  };
}

/** Checks the four tensor groups of a caller's checkpoint, returned in index order. */
function _checkTensorGroups(ckpt: Checkpoint, where: string): [TensorGroup, NamedTensors][] {
  const optimizer = checkRecord(ckpt.optimizer, `${where}.optimizer`);
  const groups: [TensorGroup, unknown, string][] = [
    ["params", ckpt.params, `${where}.params`],
    ["ema", ckpt.ema, `${where}.ema`],
    ["adam.m", _get(optimizer, "m"), `${where}.optimizer.m`],
    ["adam.v", _get(optimizer, "v"), `${where}.optimizer.v`],
  ];
  const checked = groups.map(([group, tensors, what]): [TensorGroup, NamedTensors] => [
    group,
    _checkNamedTensors(tensors, what),
  ]);
  for (const [group, tensors] of checked.slice(1)) {
    _checkSameLayout(checked[0][1], tensors, group, where);
  }
  return checked;
}

/** Checks that every tensor has a usable name, a valid shape and matching Float32Array data. */
function _checkNamedTensors(value: unknown, what: string): NamedTensors {
  const tensors = checkRecord(value, what);
  for (const name of Object.keys(tensors)) {
    _checkTensorName(name, what);
    const tensor = checkRecord(tensors[name], `${what}[${JSON.stringify(name)}]`);
    const label = `${what}[${JSON.stringify(name)}]`;
    const data = _get(tensor, "data");
    if (!(data instanceof Float32Array)) {
      throw new TypeError(`${label}.data must be a Float32Array, got ${describe(data)}`);
    }
    const size = _checkShape(_get(tensor, "shape"), `${label}.shape`);
    if (size !== data.length) {
      throw new RangeError(
        `${label}: shape [${tensor.shape}] has ${size} elements but data has ${data.length}`,
      );
    }
  }
  return tensors as NamedTensors;
}

/** Names index a plain object on decode, so `__proto__` would replace its prototype. */
function _checkTensorName(name: unknown, what: string): string {
  if (typeof name !== "string" || name.length === 0 || name === "__proto__") {
    throw new RangeError(
      `${what}: tensor names must be non-empty strings other than "__proto__", got ${
        describe(name)
      }`,
    );
  }
  return name;
}

/** Checks a shape (non-negative integers) and returns its element count. */
function _checkShape(value: unknown, what: string): number {
  const shape = checkArray(value, what);
  let size = 1;
  for (let i = 0; i < shape.length; i++) {
    size *= checkInteger(shape[i], `${what}[${i}]`, 0, MAX_UINT32);
    // 4 bytes per element must stay an exact offset.
    if (size * 4 > MAX_SAFE) {
      throw new RangeError(`${what}: [${shape}] has more than ${MAX_SAFE / 4} elements`);
    }
  }
  return size;
}

/** Throws unless `other` has exactly the tensor names and shapes of `params`. */
function _checkSameLayout(
  params: NamedTensors,
  other: NamedTensors,
  group: TensorGroup,
  where: string,
): void {
  const problem = (detail: string): RangeError =>
    new RangeError(
      `${where}: ${group} must have the same tensor names and shapes as params: ${detail}`,
    );
  for (const name of Object.keys(params)) {
    if (!Object.hasOwn(other, name)) throw problem(`${JSON.stringify(name)} is missing`);
    const a = params[name].shape;
    const b = other[name].shape;
    if (a.length !== b.length || a.some((d, i) => d !== b[i])) {
      throw problem(`${JSON.stringify(name)} has shape [${b}] in ${group}, [${a}] in params`);
    }
  }
  for (const name of Object.keys(other)) {
    if (!Object.hasOwn(params, name)) throw problem(`${JSON.stringify(name)} is not in params`);
  }
}

/**
 * Parses the header bytes and checks that its tensor index is consistent in itself: valid
 * entries, no duplicates, aligned and non-overlapping, inside a data section that ends where
 * the last tensor does (rounded up to 8). A single flipped digit in the index breaks one of
 * these, so a damaged header is reported as corruption rather than read as a size.
 */
function _parseLayout(headerBytes: Uint8Array, source: string): _Layout {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes));
  } catch (error) {
    throw new Error(`${source}: malformed JSON header: ${(error as Error).message}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new Error(
      `${source}: malformed JSON header: expected an object, got ${describe(parsed)}`,
    );
  }
  const header = parsed as Record<string, unknown>;
  const where = `${source}: header`;
  const dataByteLength = checkInteger(
    header.dataByteLength,
    `${where}.dataByteLength`,
    0,
    MAX_SAFE,
  );
  if (!Array.isArray(header.tensors)) {
    throw new Error(`${where}.tensors must be an array, got ${describe(header.tensors)}`);
  }

  const entries: TensorIndexEntry[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < header.tensors.length; i++) {
    const what = `${where}.tensors[${i}]`;
    const raw = checkRecord(header.tensors[i], what);
    const group = raw.group;
    if (typeof group !== "string" || !(TENSOR_GROUPS as readonly string[]).includes(group)) {
      throw new Error(
        `${what}.group must be one of ${TENSOR_GROUPS.join(", ")}, got ${describe(group)}`,
      );
    }
    const name = _checkTensorName(raw.name, what);
    const label = `${group}[${JSON.stringify(name)}]`;
    if (raw.dtype !== "float32") {
      throw new Error(`${what} (${label}).dtype must be "float32", got ${describe(raw.dtype)}`);
    }
    const key = `${group}\u0000${name}`;
    if (seen.has(key)) throw new Error(`${where}: duplicate tensor ${label} in the index`);
    seen.add(key);
    const size = _checkShape(raw.shape, `${what} (${label}).shape`);
    const offset = checkInteger(raw.offset, `${what} (${label}).offset`, 0, MAX_SAFE);
    const byteLength = checkInteger(raw.byteLength, `${what} (${label}).byteLength`, 0, MAX_SAFE);
    if (byteLength !== size * 4) {
      throw new Error(
        `${source}: shape/length mismatch: ${label} has shape [${raw.shape}], ` +
          `${size} float32 = ${size * 4} bytes, but byteLength ${byteLength}`,
      );
    }
    if (offset % 8 !== 0) {
      throw new Error(`${what} (${label}).offset must be a multiple of 8, got ${offset}`);
    }
    if (offset + byteLength > dataByteLength) {
      throw new Error(
        `${source}: tensor index out of bounds: ${label} spans bytes ${offset}..${
          offset + byteLength
        } of a ${dataByteLength}-byte data section`,
      );
    }
    entries.push({
      group: group as TensorGroup,
      name,
      dtype: "float32",
      shape: (raw.shape as number[]).slice(),
      offset,
      byteLength,
    });
  }

  const byOffset = [...entries].sort((a, b) => a.offset - b.offset);
  let end = 0;
  for (let i = 0; i < byOffset.length; i++) {
    const e = byOffset[i];
    if (i > 0 && e.offset < end) {
      const prev = byOffset[i - 1];
      throw new Error(
        `${where}: tensors ${prev.group}[${JSON.stringify(prev.name)}] and ` +
          `${e.group}[${JSON.stringify(e.name)}] overlap at data byte ${e.offset}`,
      );
    }
    end = Math.max(end, e.offset + e.byteLength);
  }
  if (dataByteLength !== _ceil8(end)) {
    throw new Error(
      `${where}.dataByteLength must be ${_ceil8(end)} (the last tensor ends at byte ${end}), ` +
        `got ${dataByteLength}`,
    );
  }
  return { header, entries, dataByteLength };
}

/**
 * Serialises a JSON value with object keys sorted at every level, so that equal values give
 * equal bytes whatever order their keys were added in. Throws a TypeError naming the path of
 * anything that `JSON.parse` would not give back unchanged: NaN and infinities, `undefined`,
 * functions, bigints, class instances (typed arrays, Dates), sparse arrays and cycles. `-0` is
 * written as `-0`, which `JSON.parse` reads back as -0.
 */
function _canonicalJson(value: unknown, path: string, ancestors = new Set<object>()): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
    case "string":
      return JSON.stringify(value);
    case "number":
      if (!Number.isFinite(value)) {
        throw new TypeError(`${path} must be a finite number (JSON has no ${value}), got ${value}`);
      }
      return Object.is(value, -0) ? "-0" : JSON.stringify(value);
    case "object": {
      if (ancestors.has(value)) throw new TypeError(`${path} refers back to itself (a cycle)`);
      ancestors.add(value);
      try {
        if (Array.isArray(value)) {
          const items: string[] = [];
          for (let i = 0; i < value.length; i++) {
            if (!(i in value)) throw new TypeError(`${path}[${i}] is a hole in a sparse array`);
            items.push(_canonicalJson(value[i], `${path}[${i}]`, ancestors));
          }
          return `[${items.join(",")}]`;
        }
        const prototype = Object.getPrototypeOf(value);
        if (prototype !== Object.prototype && prototype !== null) {
          throw new TypeError(
            `${path} must be a plain object, an array or a primitive, got ${describe(value)}` +
              (ArrayBuffer.isView(value) ? " (store a number[] instead)" : ""),
          );
        }
        const members = Object.keys(value).sort().map((key) =>
          `${JSON.stringify(key)}:${_canonicalJson(_get(value, key), _child(path, key), ancestors)}`
        );
        return `{${members.join(",")}}`;
      } finally {
        ancestors.delete(value);
      }
    }
    default:
      throw new TypeError(`${path} must be JSON-serialisable, got ${describe(value)}`);
  }
}

function _writeFloat32LE(out: Uint8Array, view: DataView, at: number, data: Float32Array): void {
  if (IS_LITTLE_ENDIAN) {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
  } else {
    for (let i = 0; i < data.length; i++) view.setFloat32(at + 4 * i, data[i], true);
  }
}

/** Copies (never views) so the result does not pin the whole file's buffer in memory. */
function _readFloat32LE(
  bytes: Uint8Array,
  view: DataView,
  at: number,
  count: number,
): Float32Array {
  const out = new Float32Array(count);
  if (IS_LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(bytes.subarray(at, at + 4 * count));
  } else {
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(at + 4 * i, true);
  }
  return out;
}

async function _sha256(bytes: Uint8Array): Promise<Uint8Array> {
  // crypto.subtle does not take views of a SharedArrayBuffer.
  const input = bytes.buffer instanceof ArrayBuffer
    ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    : bytes.slice();
  return new Uint8Array(await crypto.subtle.digest("SHA-256", input));
}

function _get(object: object, key: string): unknown {
  return (object as Record<string, unknown>)[key];
}

function _child(path: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

function _ceil8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

function _hexByte(b: number): string {
  return b.toString(16).padStart(2, "0");
}

function _hex(bytes: Uint8Array): string {
  return Array.from(bytes, _hexByte).join("");
}
