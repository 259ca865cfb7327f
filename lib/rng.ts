/**
 * A seeded random generator that gives the same numbers on every JavaScript runtime.
 *
 * Algorithm, fixed so that streams never change between versions:
 * - Seeding: the seed (an integer in `0..2^53-1`) is split into its low and high 32-bit words.
 *   A SplitMix32 generator (a Weyl sequence with increment `0x9e3779b9`, each value passed
 *   through MurmurHash3's 32-bit finaliser) starts at `low XOR fmix32(high)`; its first four
 *   outputs are the generator state. Seeds below 2^32 always give distinct streams.
 * - Generator: xoshiro128** 1.1 (Blackman & Vigna 2018), 32-bit words, period 2^128 - 1.
 * - Uniforms: float64 draws use 53 bits from two words, `((a >>> 5) * 2^26 + (b >>> 6)) / 2^53`;
 *   float32 draws use the top 24 bits of one word, `(a >>> 8) / 2^24`. Both lie in [0, 1)
 *   and are exact in their type, so no rounding can produce 1.
 * - Normals: Marsaglia's polar method on two float64 uniforms; each accepted pair yields two
 *   normals, and the second is kept for the next call, so `normal(a)` followed by `normal(b)`
 *   returns the same numbers as one `normal(a + b)`. The logarithm it needs is computed here
 *   with only `+ - * /` and `Math.sqrt` (all correctly rounded by IEEE 754), because
 *   `Math.log` is implementation-defined and differs between engines in the last bit.
 *
 * Only 32-bit integer arithmetic (`Math.imul`, shifts) and IEEE 754 basic operations are used,
 * so Deno, browsers and edge runtimes produce bit-identical streams.
 *
 * @module
 */

/** The complete state of a {@linkcode Rng}, enough to continue a stream exactly (checkpoints). */
export interface RngState {
  /** The four 32-bit xoshiro128** words. */
  readonly words: readonly [number, number, number, number];
  /** The second normal of the last accepted polar pair, not yet handed out. */
  readonly spareNormal: number | null;
}

/** A seeded stream of uniforms and standard normals. */
export interface Rng {
  /** The next raw 32-bit output, an unsigned integer. */
  nextUint32(): number;
  /** A float64 uniform in [0, 1) with 53 random bits. */
  nextFloat64(): number;
  /** A float64 standard normal. */
  nextNormal(): number;
  /** `n` float32 standard normals. */
  normal(n: number): Float32Array;
  /** `n` float64 standard normals. */
  normal64(n: number): Float64Array;
  /** `n` float32 uniforms in [0, 1) with 24 random bits each. */
  uniform(n: number): Float32Array;
  /** `n` integers drawn uniformly from `0..max-1` without modulo bias. */
  integers(n: number, max: number): Int32Array;
  /** Snapshot of the state; {@linkcode restoreRng} continues from it. */
  getState(): RngState;
}

const MAX_SEED = Number.MAX_SAFE_INTEGER;

/**
 * Creates a generator from an integer seed in `0..2^53-1`.
 *
 * @example
 * ```ts
 * import { createRng } from "./rng.ts";
 * const a = createRng(42).normal(4);
 * const b = createRng(42).normal(4);
 * console.assert(a.every((v, i) => v === b[i]));
 * ```
 */
export function createRng(seed: number): Rng {
  if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
    throw new RangeError(`seed must be an integer in 0..${MAX_SEED}, got ${seed}`);
  }
  const low = seed >>> 0;
  const high = Math.floor(seed / 2 ** 32) >>> 0;
  let weyl = (low ^ fmix32(high)) >>> 0;
  const words: [number, number, number, number] = [0, 0, 0, 0];
  for (let i = 0; i < 4; i++) {
    weyl = (weyl + 0x9e3779b9) >>> 0;
    words[i] = fmix32(weyl);
  }
  return new _Xoshiro128(words, null);
}

/** Continues a stream from a state taken with {@linkcode Rng.getState}. */
export function restoreRng(state: RngState): Rng {
  const words = state.words;
  if (
    words.length !== 4 || words.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffffffff) ||
    words.every((w) => w === 0)
  ) {
    throw new RangeError(
      `rng state must be four unsigned 32-bit words, not all zero, got [${words.join(", ")}]`,
    );
  }
  if (state.spareNormal !== null && !Number.isFinite(state.spareNormal)) {
    throw new RangeError(`rng spareNormal must be finite or null, got ${state.spareNormal}`);
  }
  return new _Xoshiro128([words[0], words[1], words[2], words[3]], state.spareNormal);
}

/**
 * MurmurHash3's 32-bit finaliser: a bijection on uint32 that mixes every bit. The seeding above
 * uses it; so do counter-based draws that must not depend on an order (the trainer's dropout
 * masks, drawn per example).
 */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

class _Xoshiro128 implements Rng {
  #s0: number;
  #s1: number;
  #s2: number;
  #s3: number;
  #spare: number | null;

  constructor(words: [number, number, number, number], spare: number | null) {
    [this.#s0, this.#s1, this.#s2, this.#s3] = words;
    this.#spare = spare;
  }

  nextUint32(): number {
    const s1 = this.#s1;
    const product = Math.imul(s1, 5);
    const result = Math.imul((product << 7) | (product >>> 25), 9) >>> 0;
    const t = s1 << 9;
    this.#s2 ^= this.#s0;
    this.#s3 ^= this.#s1;
    this.#s1 ^= this.#s2;
    this.#s0 ^= this.#s3;
    this.#s2 ^= t;
    this.#s3 = (this.#s3 << 11) | (this.#s3 >>> 21);
    return result;
  }

  nextFloat64(): number {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  nextNormal(): number {
    if (this.#spare !== null) {
      const spare = this.#spare;
      this.#spare = null;
      return spare;
    }
    // Marsaglia's polar method: accept (u, v) inside the unit disc, excluding the origin.
    for (;;) {
      const u = 2 * this.nextFloat64() - 1;
      const v = 2 * this.nextFloat64() - 1;
      const s = u * u + v * v;
      if (s > 0 && s < 1) {
        const factor = Math.sqrt((-2 * deterministicLog(s)) / s);
        this.#spare = v * factor;
        return u * factor;
      }
    }
  }

  normal(n: number): Float32Array {
    _checkCount(n);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.nextNormal();
    return out;
  }

  normal64(n: number): Float64Array {
    _checkCount(n);
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = this.nextNormal();
    return out;
  }

  uniform(n: number): Float32Array {
    _checkCount(n);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = (this.nextUint32() >>> 8) / 16777216;
    return out;
  }

  integers(n: number, max: number): Int32Array {
    _checkCount(n);
    if (!Number.isInteger(max) || max < 1 || max > 0x7fffffff) {
      throw new RangeError(`max must be an integer in 1..${0x7fffffff}, got ${max}`);
    }
    // Rejection above the largest multiple of max keeps every value equally likely.
    const limit = 4294967296 - (4294967296 % max);
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      let r = this.nextUint32();
      while (r >= limit) r = this.nextUint32();
      out[i] = r % max;
    }
    return out;
  }

  getState(): RngState {
    return {
      words: [this.#s0 >>> 0, this.#s1 >>> 0, this.#s2 >>> 0, this.#s3 >>> 0],
      spareNormal: this.#spare,
    };
  }
}

function _checkCount(n: number): void {
  if (!Number.isInteger(n) || n < 0) {
    throw new RangeError(`count must be a non-negative integer, got ${n}`);
  }
}

const LN2_HI = 6.93147180369123816490e-01;
const LN2_LO = 1.90821492927058770002e-10;
const _bits = new DataView(new ArrayBuffer(8));

/**
 * Natural logarithm of a positive finite number, bit-identical on every runtime.
 *
 * `x = 2^k * m` with `m` in [sqrt(1/2), sqrt(2)), then `log m = 2 atanh(f)`,
 * `f = (m - 1) / (m + 1)`, summed as a series in `f^2` (|f| <= 0.172, so 12 terms reach
 * float64 precision); `k ln 2` is added in two parts to keep its rounding error out.
 * Accurate to about one unit in the last place.
 */
export function deterministicLog(x: number): number {
  if (!(x > 0) || x === Infinity) {
    throw new RangeError(`deterministicLog needs a positive finite number, got ${x}`);
  }
  let k = 0;
  if (x < 2.2250738585072014e-308) {
    // Subnormal: scale into the normal range first so the exponent field is meaningful.
    x *= 18014398509481984; // 2^54
    k = -54;
  }
  _bits.setFloat64(0, x);
  const hi = _bits.getUint32(0);
  k += ((hi >>> 20) & 0x7ff) - 1023;
  _bits.setUint32(0, (hi & 0x800fffff) | 0x3ff00000); // exponent 0: m in [1, 2)
  let m = _bits.getFloat64(0);
  if (m > Math.SQRT2) {
    m /= 2;
    k += 1;
  }
  const f = (m - 1) / (m + 1);
  const f2 = f * f;
  let series = 0;
  for (let j = 23; j >= 3; j -= 2) series = (series + 1 / j) * f2;
  const logM = 2 * f + 2 * f * series;
  return k * LN2_HI + (logM + k * LN2_LO);
}
