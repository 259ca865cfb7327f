// lib/rng.ts
var MAX_SEED = Number.MAX_SAFE_INTEGER;
function createRng(seed) {
  if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
    throw new RangeError(`seed must be an integer in 0..${MAX_SEED}, got ${seed}`);
  }
  const low = seed >>> 0;
  const high = Math.floor(seed / 2 ** 32) >>> 0;
  let weyl = (low ^ fmix32(high)) >>> 0;
  const words = [
    0,
    0,
    0,
    0
  ];
  for (let i = 0; i < 4; i++) {
    weyl = weyl + 2654435769 >>> 0;
    words[i] = fmix32(weyl);
  }
  return new _Xoshiro128(words, null);
}
function fmix32(h) {
  h ^= h >>> 16;
  h = Math.imul(h, 2246822507);
  h ^= h >>> 13;
  h = Math.imul(h, 3266489909);
  h ^= h >>> 16;
  return h >>> 0;
}
var _Xoshiro128 = class {
  #s0;
  #s1;
  #s2;
  #s3;
  #spare;
  constructor(words, spare) {
    [this.#s0, this.#s1, this.#s2, this.#s3] = words;
    this.#spare = spare;
  }
  nextUint32() {
    const s1 = this.#s1;
    const product = Math.imul(s1, 5);
    const result = Math.imul(product << 7 | product >>> 25, 9) >>> 0;
    const t = s1 << 9;
    this.#s2 ^= this.#s0;
    this.#s3 ^= this.#s1;
    this.#s1 ^= this.#s2;
    this.#s0 ^= this.#s3;
    this.#s2 ^= t;
    this.#s3 = this.#s3 << 11 | this.#s3 >>> 21;
    return result;
  }
  nextFloat64() {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }
  nextNormal() {
    if (this.#spare !== null) {
      const spare = this.#spare;
      this.#spare = null;
      return spare;
    }
    for (; ; ) {
      const u = 2 * this.nextFloat64() - 1;
      const v = 2 * this.nextFloat64() - 1;
      const s = u * u + v * v;
      if (s > 0 && s < 1) {
        const factor = Math.sqrt(-2 * deterministicLog(s) / s);
        this.#spare = v * factor;
        return u * factor;
      }
    }
  }
  normal(n) {
    _checkCount(n);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.nextNormal();
    return out;
  }
  normal64(n) {
    _checkCount(n);
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = this.nextNormal();
    return out;
  }
  uniform(n) {
    _checkCount(n);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = (this.nextUint32() >>> 8) / 16777216;
    return out;
  }
  integers(n, max) {
    _checkCount(n);
    if (!Number.isInteger(max) || max < 1 || max > 2147483647) {
      throw new RangeError(`max must be an integer in 1..${2147483647}, got ${max}`);
    }
    const limit = 4294967296 - 4294967296 % max;
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      let r = this.nextUint32();
      while (r >= limit) r = this.nextUint32();
      out[i] = r % max;
    }
    return out;
  }
  getState() {
    return {
      words: [
        this.#s0 >>> 0,
        this.#s1 >>> 0,
        this.#s2 >>> 0,
        this.#s3 >>> 0
      ],
      spareNormal: this.#spare
    };
  }
};
function _checkCount(n) {
  if (!Number.isInteger(n) || n < 0) {
    throw new RangeError(`count must be a non-negative integer, got ${n}`);
  }
}
var LN2_HI = 0.6931471803691238;
var LN2_LO = 19082149292705877e-26;
var _bits = new DataView(new ArrayBuffer(8));
function deterministicLog(x) {
  if (!(x > 0) || x === Infinity) {
    throw new RangeError(`deterministicLog needs a positive finite number, got ${x}`);
  }
  let k = 0;
  if (x < 22250738585072014e-324) {
    x *= 18014398509481984;
    k = -54;
  }
  _bits.setFloat64(0, x);
  const hi = _bits.getUint32(0);
  k += (hi >>> 20 & 2047) - 1023;
  _bits.setUint32(0, hi & 2148532223 | 1072693248);
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

// lib/guidance.ts
function classifierFreeGuidance(model, options) {
  const { labels, nullClass } = options;
  const w = options.guidance ?? 0;
  if (!Number.isInteger(nullClass) || nullClass < 1) {
    throw new RangeError(`nullClass must be a positive integer, got ${nullClass}`);
  }
  if (!Number.isFinite(w) || w < 0) {
    throw new RangeError(`guidance must be a finite number >= 0, got ${w}`);
  }
  labels.forEach((y, i) => {
    if (!Number.isInteger(y) || y < 0 || y > nullClass) {
      throw new RangeError(`labels[${i}] must be a class in 0..${nullClass - 1} or ${nullClass} (no class), got ${y}`);
    }
  });
  const [from, to] = options.interval ?? [
    -Infinity,
    Infinity
  ];
  if (Number.isNaN(from) || Number.isNaN(to) || from > to) {
    throw new RangeError(`interval must be [from, to] with from <= to, got [${from}, ${to}]`);
  }
  const labelled = w === 0 ? [] : [
    ...labels.keys()
  ].filter((i) => labels[i] !== nullClass);
  return async (x, t, shape) => {
    const [n] = shape;
    if (n !== labels.length) {
      throw new RangeError(`the batch has ${n} examples but ${labels.length} labels were given`);
    }
    const guided = labelled.filter((i) => t[i] >= from && t[i] <= to);
    if (guided.length === 0) return await model(x, t, shape, labels);
    const per = x.length / n;
    const total = n + guided.length;
    const xs = new Float32Array(total * per);
    const ts = new Float32Array(total);
    const ys = new Int32Array(total);
    xs.set(x);
    ts.set(t);
    ys.set(labels);
    guided.forEach((i, k) => {
      xs.set(x.subarray(i * per, (i + 1) * per), (n + k) * per);
      ts[n + k] = t[i];
      ys[n + k] = nullClass;
    });
    const out = await model(xs, ts, [
      total,
      shape[1],
      shape[2],
      shape[3]
    ], ys);
    const outPer = out.length / total;
    if (!Number.isInteger(outPer) || outPer < per) {
      throw new RangeError(`the network returned ${out.length} values for ${total} examples of ${per}; expected a multiple of ${total} with at least ${per} per example`);
    }
    const result = out.slice(0, n * outPer);
    guided.forEach((i, k) => {
      const conditional = i * outPer, unconditional = (n + k) * outPer;
      for (let j = 0; j < per; j++) {
        result[conditional + j] = (1 + w) * out[conditional + j] - w * out[unconditional + j];
      }
    });
    return result;
  };
}
var DEFAULT_SAMPLER_GUIDANCE = {
  weight: 1,
  span: [
    0.08,
    0.47
  ]
};
var SAMPLER_GUIDANCE = {
  "dpmpp-2m-sde": {
    weight: 0.5,
    span: [
      0.08,
      0.33
    ]
  },
  ddpm: {
    weight: 0.5,
    span: [
      0.08,
      0.47
    ]
  }
};
function defaultGuidance(timesteps, sampler) {
  if (!Number.isInteger(timesteps) || timesteps < 1) {
    throw new RangeError(`timesteps must be a positive integer, got ${timesteps}`);
  }
  const { weight, span } = (sampler && SAMPLER_GUIDANCE[sampler]) ?? DEFAULT_SAMPLER_GUIDANCE;
  return {
    guidance: weight,
    interval: [
      Math.round(span[0] * timesteps),
      Math.round(span[1] * timesteps)
    ]
  };
}
function requestedGuidance(guidance, interval, context) {
  if (guidance !== void 0) return {
    guidance,
    interval: interval ?? null
  };
  if (context.drawn && interval === void 0) return {
    guidance: 0,
    interval: null
  };
  const fallback = defaultGuidance(context.timesteps, context.sampler);
  return {
    guidance: fallback.guidance,
    interval: interval ?? fallback.interval
  };
}
var CLASS_STREAM_TAG = 1668047219;
function drawClasses(seed, n, numClasses, classCounts) {
  if (!Number.isInteger(numClasses) || numClasses < 1) {
    throw new RangeError(`numClasses must be a positive integer, got ${numClasses}`);
  }
  if (!Number.isInteger(n) || n < 0) {
    throw new RangeError(`n must be an integer >= 0, got ${n}`);
  }
  if (!Number.isInteger(seed) || seed < 0 || seed > Number.MAX_SAFE_INTEGER) {
    throw new RangeError(`seed must be an integer in 0..${Number.MAX_SAFE_INTEGER}, got ${seed}`);
  }
  if (classCounts !== void 0) checkClassCounts(classCounts, numClasses);
  const low = seed >>> 0;
  const high = Math.floor(seed / 2 ** 32) >>> 0;
  const rng = createRng(fmix32(low ^ fmix32(high ^ CLASS_STREAM_TAG)));
  if (classCounts === void 0) return rng.integers(n, numClasses);
  const ends = [];
  let total = 0;
  for (const count of classCounts) ends.push(total += count);
  const draws = rng.integers(n, total);
  for (let i = 0; i < n; i++) {
    let y = 0;
    while (draws[i] >= ends[y]) y++;
    draws[i] = y;
  }
  return draws;
}
var MAX_CLASS_COUNT_TOTAL = 2147483647;
function checkClassCounts(classCounts, numClasses) {
  if (classCounts.length !== numClasses) {
    throw new RangeError(`classCounts must have ${numClasses} entries (one per class), got ${classCounts.length}`);
  }
  let total = 0;
  for (const [y, count] of classCounts.entries()) {
    if (!Number.isInteger(count) || count < 0) {
      throw new RangeError(`classCounts[${y}] must be an integer >= 0, got ${count}`);
    }
    total += count;
  }
  if (total < 1 || total > MAX_CLASS_COUNT_TOTAL) {
    throw new RangeError(`classCounts must sum to an integer in 1..${MAX_CLASS_COUNT_TOTAL}, got ${total}`);
  }
}

// lib/forward.ts
function shapeSize(shape) {
  if (shape.length !== 4) {
    throw new RangeError(`shape must be [n, c, h, w], got [${shape.join(", ")}]`);
  }
  let size = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 1) {
      throw new RangeError(`shape entries must be positive integers, got [${shape.join(", ")}]`);
    }
    size *= d;
  }
  return size;
}
function checkTensor(name, x, shape) {
  const size = shapeSize(shape);
  if (x.length !== size) {
    throw new RangeError(`${name} must have ${size} elements for shape [${shape.join(", ")}], got ${x.length}`);
  }
  return size / shape[0];
}
function checkTimesteps(schedule, t, n) {
  if (t.length !== n) {
    throw new RangeError(`t must have one timestep per example (${n}), got ${t.length}`);
  }
  for (let i = 0; i < n; i++) {
    if (!Number.isInteger(t[i]) || t[i] < 0 || t[i] >= schedule.timesteps) {
      throw new RangeError(`t[${i}] must be an integer in 0..${schedule.timesteps - 1}, got ${t[i]}`);
    }
  }
}
function combinePerExample(schedule, first, second, t, shape, coefficients, names = [
  "first input",
  "second input"
]) {
  const per = checkTensor(names[0], first, shape);
  checkTensor(names[1], second, shape);
  checkTimesteps(schedule, t, shape[0]);
  const out = new Float32Array(first.length);
  for (let n = 0; n < shape[0]; n++) {
    const [a, b] = coefficients(schedule, t[n]);
    for (let j = n * per, end = j + per; j < end; j++) out[j] = a * first[j] + b * second[j];
  }
  return out;
}

// lib/image.ts
function toUint8(x, options = {}) {
  const [low, scale] = _rangeScale(options);
  const out = new Uint8Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = Math.round((x[i] - low) * scale);
    out[i] = v > 0 ? v < 255 ? v : 255 : 0;
  }
  return out;
}
function makeGrid(x, shape, options = {}) {
  checkTensor("x", x, shape);
  const [n, c, h, w] = shape;
  const channels = _checkChannels(c, "channels (shape[1])");
  const columns = options.columns ?? Math.ceil(Math.sqrt(n));
  const padding = options.padding ?? 2;
  const isBytes = x instanceof Uint8Array;
  const padValue = options.padValue ?? (isBytes ? 0 : -1);
  if (!Number.isInteger(columns) || columns < 1) {
    throw new RangeError(`columns must be a positive integer, got ${columns}`);
  }
  if (!Number.isInteger(padding) || padding < 0) {
    throw new RangeError(`padding must be a non-negative integer, got ${padding}`);
  }
  if (isBytes ? !Number.isInteger(padValue) || padValue < 0 || padValue > 255 : isNaN(padValue)) {
    throw new RangeError(`padValue must be ${isBytes ? "an integer in 0..255" : "a number"}, got ${padValue}`);
  }
  const rows = Math.ceil(n / columns);
  const width = columns * w + (columns + 1) * padding;
  const height = rows * h + (rows + 1) * padding;
  const data = _sameKind(x, width * height * c).fill(padValue);
  for (let i = 0; i < n; i++) {
    const left = padding + i % columns * (w + padding);
    const top = padding + Math.floor(i / columns) * (h + padding);
    for (let k = 0; k < c; k++) {
      for (let y = 0; y < h; y++) {
        const src = ((i * c + k) * h + y) * w;
        const dst = ((top + y) * width + left) * c + k;
        for (let xx = 0; xx < w; xx++) data[dst + xx * c] = x[src + xx];
      }
    }
  }
  return {
    data,
    width,
    height,
    channels
  };
}
function _rangeScale(options) {
  const [low, high] = options.range ?? [
    -1,
    1
  ];
  if (!Number.isFinite(low) || !Number.isFinite(high) || !(low < high)) {
    throw new RangeError(`range must be two finite numbers with low < high, got [${low}, ${high}]`);
  }
  return [
    low,
    255 / (high - low)
  ];
}
function _sameKind(x, length) {
  return x instanceof Float32Array ? new Float32Array(length) : new Uint8Array(length);
}
function _checkChannels(c, name) {
  if (c !== 1 && c !== 3 && c !== 4) throw new RangeError(`${name} must be 1, 3 or 4, got ${c}`);
  return c;
}
function checkHwcImage(image, name) {
  const { width, height, channels, data } = image;
  if (!Number.isInteger(width) || width < 1 || !Number.isInteger(height) || height < 1) {
    throw new RangeError(`${name} width and height must be positive integers, got ${width}x${height}`);
  }
  _checkChannels(channels, `${name}.channels`);
  if (data.length !== width * height * channels) {
    throw new RangeError(`${name}.data must have ${width * height * channels} bytes for ${width}x${height}x${channels}, got ${data.length}`);
  }
}

// npm:fflate@0.8.2/esm/browser.js
var u8 = Uint8Array;
var u16 = Uint16Array;
var i32 = Int32Array;
var fleb = new u8([
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  1,
  1,
  1,
  1,
  2,
  2,
  2,
  2,
  3,
  3,
  3,
  3,
  4,
  4,
  4,
  4,
  5,
  5,
  5,
  5,
  0,
  /* unused */
  0,
  0,
  /* impossible */
  0
]);
var fdeb = new u8([
  0,
  0,
  0,
  0,
  1,
  1,
  2,
  2,
  3,
  3,
  4,
  4,
  5,
  5,
  6,
  6,
  7,
  7,
  8,
  8,
  9,
  9,
  10,
  10,
  11,
  11,
  12,
  12,
  13,
  13,
  /* unused */
  0,
  0
]);
var clim = new u8([
  16,
  17,
  18,
  0,
  8,
  7,
  9,
  6,
  10,
  5,
  11,
  4,
  12,
  3,
  13,
  2,
  14,
  1,
  15
]);
var freb = function(eb, start) {
  var b = new u16(31);
  for (var i = 0; i < 31; ++i) {
    b[i] = start += 1 << eb[i - 1];
  }
  var r = new i32(b[30]);
  for (var i = 1; i < 30; ++i) {
    for (var j = b[i]; j < b[i + 1]; ++j) {
      r[j] = j - b[i] << 5 | i;
    }
  }
  return {
    b,
    r
  };
};
var _a = freb(fleb, 2);
var fl = _a.b;
var revfl = _a.r;
fl[28] = 258, revfl[258] = 28;
var _b = freb(fdeb, 0);
var fd = _b.b;
var revfd = _b.r;
var rev = new u16(32768);
for (i = 0; i < 32768; ++i) {
  x = (i & 43690) >> 1 | (i & 21845) << 1;
  x = (x & 52428) >> 2 | (x & 13107) << 2;
  x = (x & 61680) >> 4 | (x & 3855) << 4;
  rev[i] = ((x & 65280) >> 8 | (x & 255) << 8) >> 1;
}
var x;
var i;
var hMap = function(cd, mb, r) {
  var s = cd.length;
  var i = 0;
  var l = new u16(mb);
  for (; i < s; ++i) {
    if (cd[i]) ++l[cd[i] - 1];
  }
  var le = new u16(mb);
  for (i = 1; i < mb; ++i) {
    le[i] = le[i - 1] + l[i - 1] << 1;
  }
  var co;
  if (r) {
    co = new u16(1 << mb);
    var rvb = 15 - mb;
    for (i = 0; i < s; ++i) {
      if (cd[i]) {
        var sv = i << 4 | cd[i];
        var r_1 = mb - cd[i];
        var v = le[cd[i] - 1]++ << r_1;
        for (var m = v | (1 << r_1) - 1; v <= m; ++v) {
          co[rev[v] >> rvb] = sv;
        }
      }
    }
  } else {
    co = new u16(s);
    for (i = 0; i < s; ++i) {
      if (cd[i]) {
        co[i] = rev[le[cd[i] - 1]++] >> 15 - cd[i];
      }
    }
  }
  return co;
};
var flt = new u8(288);
for (i = 0; i < 144; ++i) flt[i] = 8;
var i;
for (i = 144; i < 256; ++i) flt[i] = 9;
var i;
for (i = 256; i < 280; ++i) flt[i] = 7;
var i;
for (i = 280; i < 288; ++i) flt[i] = 8;
var i;
var fdt = new u8(32);
for (i = 0; i < 32; ++i) fdt[i] = 5;
var i;
var flm = /* @__PURE__ */ hMap(flt, 9, 0);
var fdm = /* @__PURE__ */ hMap(fdt, 5, 0);
var shft = function(p) {
  return (p + 7) / 8 | 0;
};
var slc = function(v, s, e) {
  if (s == null || s < 0) s = 0;
  if (e == null || e > v.length) e = v.length;
  return new u8(v.subarray(s, e));
};
var wbits = function(d, p, v) {
  v <<= p & 7;
  var o = p / 8 | 0;
  d[o] |= v;
  d[o + 1] |= v >> 8;
};
var wbits16 = function(d, p, v) {
  v <<= p & 7;
  var o = p / 8 | 0;
  d[o] |= v;
  d[o + 1] |= v >> 8;
  d[o + 2] |= v >> 16;
};
var hTree = function(d, mb) {
  var t = [];
  for (var i = 0; i < d.length; ++i) {
    if (d[i]) t.push({
      s: i,
      f: d[i]
    });
  }
  var s = t.length;
  var t2 = t.slice();
  if (!s) return {
    t: et,
    l: 0
  };
  if (s == 1) {
    var v = new u8(t[0].s + 1);
    v[t[0].s] = 1;
    return {
      t: v,
      l: 1
    };
  }
  t.sort(function(a, b) {
    return a.f - b.f;
  });
  t.push({
    s: -1,
    f: 25001
  });
  var l = t[0], r = t[1], i0 = 0, i1 = 1, i2 = 2;
  t[0] = {
    s: -1,
    f: l.f + r.f,
    l,
    r
  };
  while (i1 != s - 1) {
    l = t[t[i0].f < t[i2].f ? i0++ : i2++];
    r = t[i0 != i1 && t[i0].f < t[i2].f ? i0++ : i2++];
    t[i1++] = {
      s: -1,
      f: l.f + r.f,
      l,
      r
    };
  }
  var maxSym = t2[0].s;
  for (var i = 1; i < s; ++i) {
    if (t2[i].s > maxSym) maxSym = t2[i].s;
  }
  var tr = new u16(maxSym + 1);
  var mbt = ln(t[i1 - 1], tr, 0);
  if (mbt > mb) {
    var i = 0, dt = 0;
    var lft = mbt - mb, cst = 1 << lft;
    t2.sort(function(a, b) {
      return tr[b.s] - tr[a.s] || a.f - b.f;
    });
    for (; i < s; ++i) {
      var i2_1 = t2[i].s;
      if (tr[i2_1] > mb) {
        dt += cst - (1 << mbt - tr[i2_1]);
        tr[i2_1] = mb;
      } else break;
    }
    dt >>= lft;
    while (dt > 0) {
      var i2_2 = t2[i].s;
      if (tr[i2_2] < mb) dt -= 1 << mb - tr[i2_2]++ - 1;
      else ++i;
    }
    for (; i >= 0 && dt; --i) {
      var i2_3 = t2[i].s;
      if (tr[i2_3] == mb) {
        --tr[i2_3];
        ++dt;
      }
    }
    mbt = mb;
  }
  return {
    t: new u8(tr),
    l: mbt
  };
};
var ln = function(n, l, d) {
  return n.s == -1 ? Math.max(ln(n.l, l, d + 1), ln(n.r, l, d + 1)) : l[n.s] = d;
};
var lc = function(c) {
  var s = c.length;
  while (s && !c[--s]) ;
  var cl = new u16(++s);
  var cli = 0, cln = c[0], cls = 1;
  var w = function(v) {
    cl[cli++] = v;
  };
  for (var i = 1; i <= s; ++i) {
    if (c[i] == cln && i != s) ++cls;
    else {
      if (!cln && cls > 2) {
        for (; cls > 138; cls -= 138) w(32754);
        if (cls > 2) {
          w(cls > 10 ? cls - 11 << 5 | 28690 : cls - 3 << 5 | 12305);
          cls = 0;
        }
      } else if (cls > 3) {
        w(cln), --cls;
        for (; cls > 6; cls -= 6) w(8304);
        if (cls > 2) w(cls - 3 << 5 | 8208), cls = 0;
      }
      while (cls--) w(cln);
      cls = 1;
      cln = c[i];
    }
  }
  return {
    c: cl.subarray(0, cli),
    n: s
  };
};
var clen = function(cf, cl) {
  var l = 0;
  for (var i = 0; i < cl.length; ++i) l += cf[i] * cl[i];
  return l;
};
var wfblk = function(out, pos, dat) {
  var s = dat.length;
  var o = shft(pos + 2);
  out[o] = s & 255;
  out[o + 1] = s >> 8;
  out[o + 2] = out[o] ^ 255;
  out[o + 3] = out[o + 1] ^ 255;
  for (var i = 0; i < s; ++i) out[o + i + 4] = dat[i];
  return (o + 4 + s) * 8;
};
var wblk = function(dat, out, final, syms, lf, df, eb, li, bs, bl, p) {
  wbits(out, p++, final);
  ++lf[256];
  var _a2 = hTree(lf, 15), dlt = _a2.t, mlb = _a2.l;
  var _b2 = hTree(df, 15), ddt = _b2.t, mdb = _b2.l;
  var _c = lc(dlt), lclt = _c.c, nlc = _c.n;
  var _d = lc(ddt), lcdt = _d.c, ndc = _d.n;
  var lcfreq = new u16(19);
  for (var i = 0; i < lclt.length; ++i) ++lcfreq[lclt[i] & 31];
  for (var i = 0; i < lcdt.length; ++i) ++lcfreq[lcdt[i] & 31];
  var _e = hTree(lcfreq, 7), lct = _e.t, mlcb = _e.l;
  var nlcc = 19;
  for (; nlcc > 4 && !lct[clim[nlcc - 1]]; --nlcc) ;
  var flen = bl + 5 << 3;
  var ftlen = clen(lf, flt) + clen(df, fdt) + eb;
  var dtlen = clen(lf, dlt) + clen(df, ddt) + eb + 14 + 3 * nlcc + clen(lcfreq, lct) + 2 * lcfreq[16] + 3 * lcfreq[17] + 7 * lcfreq[18];
  if (bs >= 0 && flen <= ftlen && flen <= dtlen) return wfblk(out, p, dat.subarray(bs, bs + bl));
  var lm, ll, dm, dl;
  wbits(out, p, 1 + (dtlen < ftlen)), p += 2;
  if (dtlen < ftlen) {
    lm = hMap(dlt, mlb, 0), ll = dlt, dm = hMap(ddt, mdb, 0), dl = ddt;
    var llm = hMap(lct, mlcb, 0);
    wbits(out, p, nlc - 257);
    wbits(out, p + 5, ndc - 1);
    wbits(out, p + 10, nlcc - 4);
    p += 14;
    for (var i = 0; i < nlcc; ++i) wbits(out, p + 3 * i, lct[clim[i]]);
    p += 3 * nlcc;
    var lcts = [
      lclt,
      lcdt
    ];
    for (var it = 0; it < 2; ++it) {
      var clct = lcts[it];
      for (var i = 0; i < clct.length; ++i) {
        var len = clct[i] & 31;
        wbits(out, p, llm[len]), p += lct[len];
        if (len > 15) wbits(out, p, clct[i] >> 5 & 127), p += clct[i] >> 12;
      }
    }
  } else {
    lm = flm, ll = flt, dm = fdm, dl = fdt;
  }
  for (var i = 0; i < li; ++i) {
    var sym = syms[i];
    if (sym > 255) {
      var len = sym >> 18 & 31;
      wbits16(out, p, lm[len + 257]), p += ll[len + 257];
      if (len > 7) wbits(out, p, sym >> 23 & 31), p += fleb[len];
      var dst = sym & 31;
      wbits16(out, p, dm[dst]), p += dl[dst];
      if (dst > 3) wbits16(out, p, sym >> 5 & 8191), p += fdeb[dst];
    } else {
      wbits16(out, p, lm[sym]), p += ll[sym];
    }
  }
  wbits16(out, p, lm[256]);
  return p + ll[256];
};
var deo = /* @__PURE__ */ new i32([
  65540,
  131080,
  131088,
  131104,
  262176,
  1048704,
  1048832,
  2114560,
  2117632
]);
var et = /* @__PURE__ */ new u8(0);
var dflt = function(dat, lvl, plvl, pre, post, st) {
  var s = st.z || dat.length;
  var o = new u8(pre + s + 5 * (1 + Math.ceil(s / 7e3)) + post);
  var w = o.subarray(pre, o.length - post);
  var lst = st.l;
  var pos = (st.r || 0) & 7;
  if (lvl) {
    if (pos) w[0] = st.r >> 3;
    var opt = deo[lvl - 1];
    var n = opt >> 13, c = opt & 8191;
    var msk_1 = (1 << plvl) - 1;
    var prev = st.p || new u16(32768), head = st.h || new u16(msk_1 + 1);
    var bs1_1 = Math.ceil(plvl / 3), bs2_1 = 2 * bs1_1;
    var hsh = function(i2) {
      return (dat[i2] ^ dat[i2 + 1] << bs1_1 ^ dat[i2 + 2] << bs2_1) & msk_1;
    };
    var syms = new i32(25e3);
    var lf = new u16(288), df = new u16(32);
    var lc_1 = 0, eb = 0, i = st.i || 0, li = 0, wi = st.w || 0, bs = 0;
    for (; i + 2 < s; ++i) {
      var hv = hsh(i);
      var imod = i & 32767, pimod = head[hv];
      prev[imod] = pimod;
      head[hv] = imod;
      if (wi <= i) {
        var rem = s - i;
        if ((lc_1 > 7e3 || li > 24576) && (rem > 423 || !lst)) {
          pos = wblk(dat, w, 0, syms, lf, df, eb, li, bs, i - bs, pos);
          li = lc_1 = eb = 0, bs = i;
          for (var j = 0; j < 286; ++j) lf[j] = 0;
          for (var j = 0; j < 30; ++j) df[j] = 0;
        }
        var l = 2, d = 0, ch_1 = c, dif = imod - pimod & 32767;
        if (rem > 2 && hv == hsh(i - dif)) {
          var maxn = Math.min(n, rem) - 1;
          var maxd = Math.min(32767, i);
          var ml = Math.min(258, rem);
          while (dif <= maxd && --ch_1 && imod != pimod) {
            if (dat[i + l] == dat[i + l - dif]) {
              var nl = 0;
              for (; nl < ml && dat[i + nl] == dat[i + nl - dif]; ++nl) ;
              if (nl > l) {
                l = nl, d = dif;
                if (nl > maxn) break;
                var mmd = Math.min(dif, nl - 2);
                var md = 0;
                for (var j = 0; j < mmd; ++j) {
                  var ti = i - dif + j & 32767;
                  var pti = prev[ti];
                  var cd = ti - pti & 32767;
                  if (cd > md) md = cd, pimod = ti;
                }
              }
            }
            imod = pimod, pimod = prev[imod];
            dif += imod - pimod & 32767;
          }
        }
        if (d) {
          syms[li++] = 268435456 | revfl[l] << 18 | revfd[d];
          var lin = revfl[l] & 31, din = revfd[d] & 31;
          eb += fleb[lin] + fdeb[din];
          ++lf[257 + lin];
          ++df[din];
          wi = i + l;
          ++lc_1;
        } else {
          syms[li++] = dat[i];
          ++lf[dat[i]];
        }
      }
    }
    for (i = Math.max(i, wi); i < s; ++i) {
      syms[li++] = dat[i];
      ++lf[dat[i]];
    }
    pos = wblk(dat, w, lst, syms, lf, df, eb, li, bs, i - bs, pos);
    if (!lst) {
      st.r = pos & 7 | w[pos / 8 | 0] << 3;
      pos -= 7;
      st.h = head, st.p = prev, st.i = i, st.w = wi;
    }
  } else {
    for (var i = st.w || 0; i < s + lst; i += 65535) {
      var e = i + 65535;
      if (e >= s) {
        w[pos / 8 | 0] = lst;
        e = s;
      }
      pos = wfblk(w, pos + 1, dat.subarray(i, e));
    }
    st.i = s;
  }
  return slc(o, 0, pre + shft(pos) + post);
};
var adler = function() {
  var a = 1, b = 0;
  return {
    p: function(d) {
      var n = a, m = b;
      var l = d.length | 0;
      for (var i = 0; i != l; ) {
        var e = Math.min(i + 2655, l);
        for (; i < e; ++i) m += n += d[i];
        n = (n & 65535) + 15 * (n >> 16), m = (m & 65535) + 15 * (m >> 16);
      }
      a = n, b = m;
    },
    d: function() {
      a %= 65521, b %= 65521;
      return (a & 255) << 24 | (a & 65280) << 8 | (b & 255) << 8 | b >> 8;
    }
  };
};
var dopt = function(dat, opt, pre, post, st) {
  if (!st) {
    st = {
      l: 1
    };
    if (opt.dictionary) {
      var dict = opt.dictionary.subarray(-32768);
      var newDat = new u8(dict.length + dat.length);
      newDat.set(dict);
      newDat.set(dat, dict.length);
      dat = newDat;
      st.w = dict.length;
    }
  }
  return dflt(dat, opt.level == null ? 6 : opt.level, opt.mem == null ? st.l ? Math.ceil(Math.max(8, Math.min(13, Math.log(dat.length))) * 1.5) : 20 : 12 + opt.mem, pre, post, st);
};
var wbytes = function(d, b, v) {
  for (; v; ++b) d[b] = v, v >>>= 8;
};
var zlh = function(c, o) {
  var lv = o.level, fl2 = lv == 0 ? 0 : lv < 6 ? 1 : lv == 9 ? 3 : 2;
  c[0] = 120, c[1] = fl2 << 6 | (o.dictionary && 32);
  c[1] |= 31 - (c[0] << 8 | c[1]) % 31;
  if (o.dictionary) {
    var h = adler();
    h.p(o.dictionary);
    wbytes(c, 2, h.d());
  }
};
function zlibSync(data, opts) {
  if (!opts) opts = {};
  var a = adler();
  a.p(data);
  var d = dopt(data, opts, opts.dictionary ? 6 : 2, 4);
  return zlh(d, opts), wbytes(d, d.length - 4, a.d()), d;
}
var td = typeof TextDecoder != "undefined" && /* @__PURE__ */ new TextDecoder();
var tds = 0;
try {
  td.decode(et, {
    stream: true
  });
  tds = 1;
} catch (e) {
}

// npm:iobuffer@6.0.1/lib/text.js
function decode(bytes, encoding = "utf8") {
  const decoder = new TextDecoder(encoding);
  return decoder.decode(bytes);
}
var encoder = new TextEncoder();
function encode(str) {
  return encoder.encode(str);
}

// npm:iobuffer@6.0.1/lib/iobuffer.js
var defaultByteLength = 1024 * 8;
var hostBigEndian = (() => {
  const array = new Uint8Array(4);
  const view = new Uint32Array(array.buffer);
  return !((view[0] = 1) & array[0]);
})();
var typedArrays = {
  int8: globalThis.Int8Array,
  uint8: globalThis.Uint8Array,
  int16: globalThis.Int16Array,
  uint16: globalThis.Uint16Array,
  int32: globalThis.Int32Array,
  uint32: globalThis.Uint32Array,
  uint64: globalThis.BigUint64Array,
  int64: globalThis.BigInt64Array,
  float32: globalThis.Float32Array,
  float64: globalThis.Float64Array
};
var IOBuffer = class _IOBuffer {
  /**
     * Reference to the internal ArrayBuffer object.
     */
  buffer;
  /**
     * Byte length of the internal ArrayBuffer.
     */
  byteLength;
  /**
     * Byte offset of the internal ArrayBuffer.
     */
  byteOffset;
  /**
     * Byte length of the internal ArrayBuffer.
     */
  length;
  /**
     * The current offset of the buffer's pointer.
     */
  offset;
  lastWrittenByte;
  littleEndian;
  _data;
  _mark;
  _marks;
  /**
     * Create a new IOBuffer.
     * @param data - The data to construct the IOBuffer with.
     * If data is a number, it will be the new buffer's length<br>
     * If data is `undefined`, the buffer will be initialized with a default length of 8Kb<br>
     * If data is an ArrayBuffer, SharedArrayBuffer, an ArrayBufferView (Typed Array), an IOBuffer instance,
     * or a Node.js Buffer, a view will be created over the underlying ArrayBuffer.
     * @param options - An object for the options.
     * @returns A new IOBuffer instance.
     */
  constructor(data = defaultByteLength, options = {}) {
    let dataIsGiven = false;
    if (typeof data === "number") {
      data = new ArrayBuffer(data);
    } else {
      dataIsGiven = true;
      this.lastWrittenByte = data.byteLength;
    }
    const offset = options.offset ? options.offset >>> 0 : 0;
    const byteLength = data.byteLength - offset;
    let dvOffset = offset;
    if (ArrayBuffer.isView(data) || data instanceof _IOBuffer) {
      if (data.byteLength !== data.buffer.byteLength) {
        dvOffset = data.byteOffset + offset;
      }
      data = data.buffer;
    }
    if (dataIsGiven) {
      this.lastWrittenByte = byteLength;
    } else {
      this.lastWrittenByte = 0;
    }
    this.buffer = data;
    this.length = byteLength;
    this.byteLength = byteLength;
    this.byteOffset = dvOffset;
    this.offset = 0;
    this.littleEndian = true;
    this._data = new DataView(this.buffer, dvOffset, byteLength);
    this._mark = 0;
    this._marks = [];
  }
  /**
     * Checks if the memory allocated to the buffer is sufficient to store more
     * bytes after the offset.
     * @param byteLength - The needed memory in bytes.
     * @returns `true` if there is sufficient space and `false` otherwise.
     */
  available(byteLength = 1) {
    return this.offset + byteLength <= this.length;
  }
  /**
     * Check if little-endian mode is used for reading and writing multi-byte
     * values.
     * @returns `true` if little-endian mode is used, `false` otherwise.
     */
  isLittleEndian() {
    return this.littleEndian;
  }
  /**
     * Set little-endian mode for reading and writing multi-byte values.
     * @returns This.
     */
  setLittleEndian() {
    this.littleEndian = true;
    return this;
  }
  /**
     * Check if big-endian mode is used for reading and writing multi-byte values.
     * @returns `true` if big-endian mode is used, `false` otherwise.
     */
  isBigEndian() {
    return !this.littleEndian;
  }
  /**
     * Switches to big-endian mode for reading and writing multi-byte values.
     * @returns This.
     */
  setBigEndian() {
    this.littleEndian = false;
    return this;
  }
  /**
     * Move the pointer n bytes forward.
     * @param n - Number of bytes to skip.
     * @returns This.
     */
  skip(n = 1) {
    this.offset += n;
    return this;
  }
  /**
     * Move the pointer n bytes backward.
     * @param n - Number of bytes to move back.
     * @returns This.
     */
  back(n = 1) {
    this.offset -= n;
    return this;
  }
  /**
     * Move the pointer to the given offset.
     * @param offset - The offset to move to.
     * @returns This.
     */
  seek(offset) {
    this.offset = offset;
    return this;
  }
  /**
     * Store the current pointer offset.
     * @see {@link IOBuffer#reset}
     * @returns This.
     */
  mark() {
    this._mark = this.offset;
    return this;
  }
  /**
     * Move the pointer back to the last pointer offset set by mark.
     * @see {@link IOBuffer#mark}
     * @returns This.
     */
  reset() {
    this.offset = this._mark;
    return this;
  }
  /**
     * Push the current pointer offset to the mark stack.
     * @see {@link IOBuffer#popMark}
     * @returns This.
     */
  pushMark() {
    this._marks.push(this.offset);
    return this;
  }
  /**
     * Pop the last pointer offset from the mark stack, and set the current
     * pointer offset to the popped value.
     * @see {@link IOBuffer#pushMark}
     * @returns This.
     */
  popMark() {
    const offset = this._marks.pop();
    if (offset === void 0) {
      throw new Error("Mark stack empty");
    }
    this.seek(offset);
    return this;
  }
  /**
     * Move the pointer offset back to 0.
     * @returns This.
     */
  rewind() {
    this.offset = 0;
    return this;
  }
  /**
     * Make sure the buffer has sufficient memory to write a given byteLength at
     * the current pointer offset.
     * If the buffer's memory is insufficient, this method will create a new
     * buffer (a copy) with a length that is twice (byteLength + current offset).
     * @param byteLength - The needed memory in bytes.
     * @returns This.
     */
  ensureAvailable(byteLength = 1) {
    if (!this.available(byteLength)) {
      const lengthNeeded = this.offset + byteLength;
      const newLength = lengthNeeded * 2;
      const newArray = new Uint8Array(newLength);
      newArray.set(new Uint8Array(this.buffer));
      this.buffer = newArray.buffer;
      this.length = newLength;
      this.byteLength = newLength;
      this._data = new DataView(this.buffer);
    }
    return this;
  }
  /**
     * Read a byte and return false if the byte's value is 0, or true otherwise.
     * Moves pointer forward by one byte.
     * @returns The read boolean.
     */
  readBoolean() {
    return this.readUint8() !== 0;
  }
  /**
     * Read a signed 8-bit integer and move pointer forward by 1 byte.
     * @returns The read byte.
     */
  readInt8() {
    return this._data.getInt8(this.offset++);
  }
  /**
     * Read an unsigned 8-bit integer and move pointer forward by 1 byte.
     * @returns The read byte.
     */
  readUint8() {
    return this._data.getUint8(this.offset++);
  }
  /**
     * Alias for {@link IOBuffer#readUint8}.
     * @returns The read byte.
     */
  readByte() {
    return this.readUint8();
  }
  /**
     * Read `n` bytes and move pointer forward by `n` bytes.
     * @param n - Number of bytes to read.
     * @returns The read bytes.
     */
  readBytes(n = 1) {
    return this.readArray(n, "uint8");
  }
  /**
     * Creates an array of corresponding to the type `type` and size `size`.
     * For example, type `uint8` will create a `Uint8Array`.
     * @param size - size of the resulting array
     * @param type - number type of elements to read
     * @returns The read array.
     */
  readArray(size, type) {
    const bytes = typedArrays[type].BYTES_PER_ELEMENT * size;
    const offset = this.byteOffset + this.offset;
    const slice = this.buffer.slice(offset, offset + bytes);
    if (this.littleEndian === hostBigEndian && type !== "uint8" && type !== "int8") {
      const slice2 = new Uint8Array(this.buffer.slice(offset, offset + bytes));
      slice2.reverse();
      const returnArray2 = new typedArrays[type](slice2.buffer);
      this.offset += bytes;
      returnArray2.reverse();
      return returnArray2;
    }
    const returnArray = new typedArrays[type](slice);
    this.offset += bytes;
    return returnArray;
  }
  /**
     * Read a 16-bit signed integer and move pointer forward by 2 bytes.
     * @returns The read value.
     */
  readInt16() {
    const value = this._data.getInt16(this.offset, this.littleEndian);
    this.offset += 2;
    return value;
  }
  /**
     * Read a 16-bit unsigned integer and move pointer forward by 2 bytes.
     * @returns The read value.
     */
  readUint16() {
    const value = this._data.getUint16(this.offset, this.littleEndian);
    this.offset += 2;
    return value;
  }
  /**
     * Read a 32-bit signed integer and move pointer forward by 4 bytes.
     * @returns The read value.
     */
  readInt32() {
    const value = this._data.getInt32(this.offset, this.littleEndian);
    this.offset += 4;
    return value;
  }
  /**
     * Read a 32-bit unsigned integer and move pointer forward by 4 bytes.
     * @returns The read value.
     */
  readUint32() {
    const value = this._data.getUint32(this.offset, this.littleEndian);
    this.offset += 4;
    return value;
  }
  /**
     * Read a 32-bit floating number and move pointer forward by 4 bytes.
     * @returns The read value.
     */
  readFloat32() {
    const value = this._data.getFloat32(this.offset, this.littleEndian);
    this.offset += 4;
    return value;
  }
  /**
     * Read a 64-bit floating number and move pointer forward by 8 bytes.
     * @returns The read value.
     */
  readFloat64() {
    const value = this._data.getFloat64(this.offset, this.littleEndian);
    this.offset += 8;
    return value;
  }
  /**
     * Read a 64-bit signed integer number and move pointer forward by 8 bytes.
     * @returns The read value.
     */
  readBigInt64() {
    const value = this._data.getBigInt64(this.offset, this.littleEndian);
    this.offset += 8;
    return value;
  }
  /**
     * Read a 64-bit unsigned integer number and move pointer forward by 8 bytes.
     * @returns The read value.
     */
  readBigUint64() {
    const value = this._data.getBigUint64(this.offset, this.littleEndian);
    this.offset += 8;
    return value;
  }
  /**
     * Read a 1-byte ASCII character and move pointer forward by 1 byte.
     * @returns The read character.
     */
  readChar() {
    return String.fromCharCode(this.readInt8());
  }
  /**
     * Read `n` 1-byte ASCII characters and move pointer forward by `n` bytes.
     * @param n - Number of characters to read.
     * @returns The read characters.
     */
  readChars(n = 1) {
    let result = "";
    for (let i = 0; i < n; i++) {
      result += this.readChar();
    }
    return result;
  }
  /**
     * Read the next `n` bytes, return a UTF-8 decoded string and move pointer
     * forward by `n` bytes.
     * @param n - Number of bytes to read.
     * @returns The decoded string.
     */
  readUtf8(n = 1) {
    return decode(this.readBytes(n));
  }
  /**
     * Read the next `n` bytes, return a string decoded with `encoding` and move pointer
     * forward by `n` bytes.
     * If no encoding is passed, the function is equivalent to @see {@link IOBuffer#readUtf8}
     * @param n - Number of bytes to read.
     * @param encoding - The encoding to use. Default is 'utf8'.
     * @returns The decoded string.
     */
  decodeText(n = 1, encoding = "utf8") {
    return decode(this.readBytes(n), encoding);
  }
  /**
     * Write 0xff if the passed value is truthy, 0x00 otherwise and move pointer
     * forward by 1 byte.
     * @param value - The value to write.
     * @returns This.
     */
  writeBoolean(value) {
    this.writeUint8(value ? 255 : 0);
    return this;
  }
  /**
     * Write `value` as an 8-bit signed integer and move pointer forward by 1 byte.
     * @param value - The value to write.
     * @returns This.
     */
  writeInt8(value) {
    this.ensureAvailable(1);
    this._data.setInt8(this.offset++, value);
    this._updateLastWrittenByte();
    return this;
  }
  /**
     * Write `value` as an 8-bit unsigned integer and move pointer forward by 1
     * byte.
     * @param value - The value to write.
     * @returns This.
     */
  writeUint8(value) {
    this.ensureAvailable(1);
    this._data.setUint8(this.offset++, value);
    this._updateLastWrittenByte();
    return this;
  }
  /**
     * An alias for {@link IOBuffer#writeUint8}.
     * @param value - The value to write.
     * @returns This.
     */
  writeByte(value) {
    return this.writeUint8(value);
  }
  /**
     * Write all elements of `bytes` as uint8 values and move pointer forward by
     * `bytes.length` bytes.
     * @param bytes - The array of bytes to write.
     * @returns This.
     */
  writeBytes(bytes) {
    this.ensureAvailable(bytes.length);
    for (let i = 0; i < bytes.length; i++) {
      this._data.setUint8(this.offset++, bytes[i]);
    }
    this._updateLastWrittenByte();
    return this;
  }
  /**
     * Write `value` as a 16-bit signed integer and move pointer forward by 2
     * bytes.
     * @param value - The value to write.
     * @returns This.
     */
  writeInt16(value) {
    this.ensureAvailable(2);
    this._data.setInt16(this.offset, value, this.littleEndian);
    this.offset += 2;
    this._updateLastWrittenByte();
    return this;
  }
  /**
     * Write `value` as a 16-bit unsigned integer and move pointer forward by 2
     * bytes.
     * @param value - The value to write.
     * @returns This.
     */
  writeUint16(value) {
    this.ensureAvailable(2);
    this._data.setUint16(this.offset, value, this.littleEndian);
    this.offset += 2;
    this._updateLastWrittenByte();
    return this;
  }
  /**
     * Write `value` as a 32-bit signed integer and move pointer forward by 4
     * bytes.
     * @param value - The value to write.
     * @returns This.
     */
  writeInt32(value) {
    this.ensureAvailable(4);
    this._data.setInt32(this.offset, value, this.littleEndian);
    this.offset += 4;
    this._updateLastWrittenByte();
    return this;
  }
  /**
     * Write `value` as a 32-bit unsigned integer and move pointer forward by 4
     * bytes.
     * @param value - The value to write.
     * @returns This.
     */
  writeUint32(value) {
    this.ensureAvailable(4);
    this._data.setUint32(this.offset, value, this.littleEndian);
    this.offset += 4;
    this._updateLastWrittenByte();
    return this;
  }
  /**
     * Write `value` as a 32-bit floating number and move pointer forward by 4
     * bytes.
     * @param value - The value to write.
     * @returns This.
     */
  writeFloat32(value) {
    this.ensureAvailable(4);
    this._data.setFloat32(this.offset, value, this.littleEndian);
    this.offset += 4;
    this._updateLastWrittenByte();
    return this;
  }
  /**
     * Write `value` as a 64-bit floating number and move pointer forward by 8
     * bytes.
     * @param value - The value to write.
     * @returns This.
     */
  writeFloat64(value) {
    this.ensureAvailable(8);
    this._data.setFloat64(this.offset, value, this.littleEndian);
    this.offset += 8;
    this._updateLastWrittenByte();
    return this;
  }
  /**
     * Write `value` as a 64-bit signed bigint and move pointer forward by 8
     * bytes.
     * @param value - The value to write.
     * @returns This.
     */
  writeBigInt64(value) {
    this.ensureAvailable(8);
    this._data.setBigInt64(this.offset, value, this.littleEndian);
    this.offset += 8;
    this._updateLastWrittenByte();
    return this;
  }
  /**
     * Write `value` as a 64-bit unsigned bigint and move pointer forward by 8
     * bytes.
     * @param value - The value to write.
     * @returns This.
     */
  writeBigUint64(value) {
    this.ensureAvailable(8);
    this._data.setBigUint64(this.offset, value, this.littleEndian);
    this.offset += 8;
    this._updateLastWrittenByte();
    return this;
  }
  /**
     * Write the charCode of `str`'s first character as an 8-bit unsigned integer
     * and move pointer forward by 1 byte.
     * @param str - The character to write.
     * @returns This.
     */
  writeChar(str) {
    return this.writeUint8(str.charCodeAt(0));
  }
  /**
     * Write the charCodes of all `str`'s characters as 8-bit unsigned integers
     * and move pointer forward by `str.length` bytes.
     * @param str - The characters to write.
     * @returns This.
     */
  writeChars(str) {
    for (let i = 0; i < str.length; i++) {
      this.writeUint8(str.charCodeAt(i));
    }
    return this;
  }
  /**
     * UTF-8 encode and write `str` to the current pointer offset and move pointer
     * forward according to the encoded length.
     * @param str - The string to write.
     * @returns This.
     */
  writeUtf8(str) {
    return this.writeBytes(encode(str));
  }
  /**
     * Export a Uint8Array view of the internal buffer.
     * The view starts at the byte offset and its length
     * is calculated to stop at the last written byte or the original length.
     * @returns A new Uint8Array view.
     */
  toArray() {
    return new Uint8Array(this.buffer, this.byteOffset, this.lastWrittenByte);
  }
  /**
     *  Get the total number of bytes written so far, regardless of the current offset.
     * @returns - Total number of bytes.
     */
  getWrittenByteLength() {
    return this.lastWrittenByte - this.byteOffset;
  }
  /**
     * Update the last written byte offset
     * @private
     */
  _updateLastWrittenByte() {
    if (this.offset > this.lastWrittenByte) {
      this.lastWrittenByte = this.offset;
    }
  }
};

// npm:fast-png@8.0.0/lib/helpers/crc.js
var crcTable = [];
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) {
    if (c & 1) {
      c = 3988292384 ^ c >>> 1;
    } else {
      c = c >>> 1;
    }
  }
  crcTable[n] = c;
}
var initialCrc = 4294967295;
function updateCrc(currentCrc, data, length) {
  let c = currentCrc;
  for (let n = 0; n < length; n++) {
    c = crcTable[(c ^ data[n]) & 255] ^ c >>> 8;
  }
  return c;
}
function crc(data, length) {
  return (updateCrc(initialCrc, data, length) ^ initialCrc) >>> 0;
}
function writeCrc(buffer, length) {
  buffer.writeUint32(crc(new Uint8Array(buffer.buffer, buffer.byteOffset + buffer.offset - length, length), length));
}

// npm:fast-png@8.0.0/lib/helpers/decode_interlace_adam7.js
var uint16 = new Uint16Array([
  255
]);
var uint8 = new Uint8Array(uint16.buffer);
var osIsLittleEndian = uint8[0] === 255;

// npm:fast-png@8.0.0/lib/helpers/decode_interlace_null.js
var uint162 = new Uint16Array([
  255
]);
var uint82 = new Uint8Array(uint162.buffer);
var osIsLittleEndian2 = uint82[0] === 255;
var empty = new Uint8Array(0);

// npm:fast-png@8.0.0/lib/helpers/signature.js
var pngSignature = Uint8Array.of(137, 80, 78, 71, 13, 10, 26, 10);
function writeSignature(buffer) {
  buffer.writeBytes(pngSignature);
}

// npm:fast-png@8.0.0/lib/helpers/text.js
var textChunkName = "tEXt";
var NULL = 0;
var latin1Decoder = new TextDecoder("latin1");
function validateKeyword(keyword) {
  validateLatin1(keyword);
  if (keyword.length === 0 || keyword.length > 79) {
    throw new Error("keyword length must be between 1 and 79");
  }
}
var latin1Regex = /^[\u0000-\u00FF]*$/;
function validateLatin1(text) {
  if (!latin1Regex.test(text)) {
    throw new Error("invalid latin1 text");
  }
}
function encodetEXt(buffer, keyword, text) {
  validateKeyword(keyword);
  validateLatin1(text);
  const length = keyword.length + 1 + text.length;
  buffer.writeUint32(length);
  buffer.writeChars(textChunkName);
  buffer.writeChars(keyword);
  buffer.writeByte(NULL);
  buffer.writeChars(text);
  writeCrc(buffer, length + 4);
}

// npm:fast-png@8.0.0/lib/internal_types.js
var ColorType = {
  UNKNOWN: -1,
  GREYSCALE: 0,
  TRUECOLOUR: 2,
  INDEXED_COLOUR: 3,
  GREYSCALE_ALPHA: 4,
  TRUECOLOUR_ALPHA: 6
};
var CompressionMethod = {
  UNKNOWN: -1,
  DEFLATE: 0
};
var FilterMethod = {
  UNKNOWN: -1,
  ADAPTIVE: 0
};
var InterlaceMethod = {
  UNKNOWN: -1,
  NO_INTERLACE: 0,
  ADAM7: 1
};

// npm:fast-png@8.0.0/lib/png_encoder.js
var defaultZlibOptions = {
  level: 3
};
var PngEncoder = class extends IOBuffer {
  _png;
  _zlibOptions;
  _colorType;
  _interlaceMethod;
  constructor(data, options = {}) {
    super();
    this._colorType = ColorType.UNKNOWN;
    this._zlibOptions = {
      ...defaultZlibOptions,
      ...options.zlib
    };
    this._png = this._checkData(data);
    this._interlaceMethod = (options.interlace === "Adam7" ? InterlaceMethod.ADAM7 : InterlaceMethod.NO_INTERLACE) ?? InterlaceMethod.NO_INTERLACE;
    this.setBigEndian();
  }
  encode() {
    writeSignature(this);
    this.encodeIHDR();
    if (this._png.palette) {
      this.encodePLTE();
      if (this._png.palette[0].length === 4) {
        this.encodeTRNS();
      }
    }
    this.encodeData();
    if (this._png.text) {
      for (const [keyword, text] of Object.entries(this._png.text)) {
        encodetEXt(this, keyword, text);
      }
    }
    this.encodeIEND();
    return this.toArray();
  }
  // https://www.w3.org/TR/PNG/#11IHDR
  encodeIHDR() {
    this.writeUint32(13);
    this.writeChars("IHDR");
    this.writeUint32(this._png.width);
    this.writeUint32(this._png.height);
    this.writeByte(this._png.depth);
    this.writeByte(this._colorType);
    this.writeByte(CompressionMethod.DEFLATE);
    this.writeByte(FilterMethod.ADAPTIVE);
    this.writeByte(this._interlaceMethod);
    writeCrc(this, 17);
  }
  // https://www.w3.org/TR/PNG/#11IEND
  encodeIEND() {
    this.writeUint32(0);
    this.writeChars("IEND");
    writeCrc(this, 4);
  }
  encodePLTE() {
    const paletteLength = this._png.palette?.length * 3;
    this.writeUint32(paletteLength);
    this.writeChars("PLTE");
    for (const color of this._png.palette) {
      this.writeByte(color[0]);
      this.writeByte(color[1]);
      this.writeByte(color[2]);
    }
    writeCrc(this, 4 + paletteLength);
  }
  encodeTRNS() {
    const alpha = this._png.palette.filter((color) => {
      return color.at(-1) !== 255;
    });
    this.writeUint32(alpha.length);
    this.writeChars("tRNS");
    for (const el of alpha) {
      this.writeByte(el.at(-1));
    }
    writeCrc(this, 4 + alpha.length);
  }
  // https://www.w3.org/TR/PNG/#11IDAT
  encodeIDAT(data) {
    this.writeUint32(data.length);
    this.writeChars("IDAT");
    this.writeBytes(data);
    writeCrc(this, data.length + 4);
  }
  encodeData() {
    const { width, height, channels, depth, data } = this._png;
    const slotsPerLine = depth <= 8 ? Math.ceil(width * depth / 8) * channels : Math.ceil(width * depth / 8 * channels / 2);
    const newData = new IOBuffer().setBigEndian();
    let offset = 0;
    if (this._interlaceMethod === InterlaceMethod.NO_INTERLACE) {
      for (let i = 0; i < height; i++) {
        newData.writeByte(0);
        if (depth === 16) {
          offset = writeDataUint16(data, newData, slotsPerLine, offset);
        } else {
          offset = writeDataBytes(data, newData, slotsPerLine, offset);
        }
      }
    } else if (this._interlaceMethod === InterlaceMethod.ADAM7) {
      offset = writeDataInterlaced(this._png, data, newData, offset);
    }
    const buffer = newData.toArray();
    const compressed = zlibSync(buffer, this._zlibOptions);
    this.encodeIDAT(compressed);
  }
  _checkData(data) {
    const { colorType, channels, depth } = getColorType(data, data.palette);
    const png = {
      width: checkInteger(data.width, "width"),
      height: checkInteger(data.height, "height"),
      channels,
      data: data.data,
      depth,
      text: data.text,
      palette: data.palette
    };
    this._colorType = colorType;
    const expectedSize = depth < 8 ? Math.ceil(png.width * depth / 8) * png.height * channels : png.width * png.height * channels;
    if (png.data.length !== expectedSize) {
      throw new RangeError(`wrong data size. Found ${png.data.length}, expected ${expectedSize}`);
    }
    return png;
  }
};
function checkInteger(value, name) {
  if (Number.isInteger(value) && value > 0) {
    return value;
  }
  throw new TypeError(`${name} must be a positive integer`);
}
function getColorType(data, palette) {
  const { channels = 4, depth = 8 } = data;
  if (channels !== 4 && channels !== 3 && channels !== 2 && channels !== 1) {
    throw new RangeError(`unsupported number of channels: ${channels}`);
  }
  const returnValue = {
    channels,
    depth,
    colorType: ColorType.UNKNOWN
  };
  switch (channels) {
    case 4:
      returnValue.colorType = ColorType.TRUECOLOUR_ALPHA;
      break;
    case 3:
      returnValue.colorType = ColorType.TRUECOLOUR;
      break;
    case 1:
      if (palette) {
        returnValue.colorType = ColorType.INDEXED_COLOUR;
      } else {
        returnValue.colorType = ColorType.GREYSCALE;
      }
      break;
    case 2:
      returnValue.colorType = ColorType.GREYSCALE_ALPHA;
      break;
    default:
      throw new Error("unsupported number of channels");
  }
  return returnValue;
}
function writeDataBytes(data, newData, slotsPerLine, offset) {
  for (let j = 0; j < slotsPerLine; j++) {
    newData.writeByte(data[offset++]);
  }
  return offset;
}
function writeDataInterlaced(imageData, data, newData, offset) {
  const passes = [
    {
      x: 0,
      y: 0,
      xStep: 8,
      yStep: 8
    },
    {
      x: 4,
      y: 0,
      xStep: 8,
      yStep: 8
    },
    {
      x: 0,
      y: 4,
      xStep: 4,
      yStep: 8
    },
    {
      x: 2,
      y: 0,
      xStep: 4,
      yStep: 4
    },
    {
      x: 0,
      y: 2,
      xStep: 2,
      yStep: 4
    },
    {
      x: 1,
      y: 0,
      xStep: 2,
      yStep: 2
    },
    {
      x: 0,
      y: 1,
      xStep: 1,
      yStep: 2
    }
  ];
  const { width, height, channels, depth } = imageData;
  let pixelSize;
  if (depth === 16) {
    pixelSize = channels * depth / 8 / 2;
  } else {
    pixelSize = channels * depth / 8;
  }
  for (let passIndex = 0; passIndex < 7; passIndex++) {
    const pass = passes[passIndex];
    const passWidth = Math.floor((width - pass.x + pass.xStep - 1) / pass.xStep);
    const passHeight = Math.floor((height - pass.y + pass.yStep - 1) / pass.yStep);
    if (passWidth <= 0 || passHeight <= 0) continue;
    const passLineBytes = passWidth * pixelSize;
    for (let y = 0; y < passHeight; y++) {
      const imageY = pass.y + y * pass.yStep;
      const rawScanline = depth <= 8 ? new Uint8Array(passLineBytes) : new Uint16Array(passLineBytes);
      let rawOffset = 0;
      for (let x = 0; x < passWidth; x++) {
        const imageX = pass.x + x * pass.xStep;
        if (imageX < width && imageY < height) {
          const srcPos = (imageY * width + imageX) * pixelSize;
          for (let i = 0; i < pixelSize; i++) {
            rawScanline[rawOffset++] = data[srcPos + i];
          }
        }
      }
      newData.writeByte(0);
      if (depth === 8) {
        newData.writeBytes(rawScanline);
      } else if (depth === 16) {
        for (const value of rawScanline) {
          newData.writeByte(value >> 8 & 255);
          newData.writeByte(value & 255);
        }
      }
    }
  }
  return offset;
}
function writeDataUint16(data, newData, slotsPerLine, offset) {
  for (let j = 0; j < slotsPerLine; j++) {
    newData.writeUint16(data[offset++]);
  }
  return offset;
}

// npm:fast-png@8.0.0/lib/index.js
function encodePng(png, options) {
  const encoder2 = new PngEncoder(png, options);
  return encoder2.encode();
}

// lib/png.ts
function encodePng2(image) {
  checkHwcImage(image, "image");
  const { data, width, height, channels } = image;
  return encodePng({
    data,
    width,
    height,
    channels,
    depth: 8
  });
}
var _PNG_MAX_SIZE = 2 ** 31 - 1;
var _CRC_TABLE = Uint32Array.from({
  length: 256
}, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 3988292384 ^ c >>> 1 : c >>> 1;
  return c;
});

// lib/parameterization.ts
var PREDICTIONS = [
  "eps",
  "x0",
  "v"
];
var VARIANCE_TYPES = [
  "fixedsmall",
  "fixedlarge",
  "learned-range"
];
function predictX0FromEps(schedule, xt, t, eps, shape) {
  return combinePerExample(schedule, xt, eps, t, shape, (s, i) => [
    s.sqrtRecipAlphasCumprod[i],
    -s.sqrtRecipm1AlphasCumprod[i]
  ], [
    "xt",
    "eps"
  ]);
}
function predictEpsFromX0(schedule, xt, t, x0, shape) {
  return combinePerExample(schedule, xt, x0, t, shape, (s, i) => {
    const d = s.sqrtRecipm1AlphasCumprod[i];
    return [
      s.sqrtRecipAlphasCumprod[i] / d,
      -1 / d
    ];
  }, [
    "xt",
    "x0"
  ]);
}
function predictX0FromV(schedule, xt, t, v, shape) {
  return combinePerExample(schedule, xt, v, t, shape, (s, i) => [
    s.sqrtAlphasCumprod[i],
    -s.sqrtOneMinusAlphasCumprod[i]
  ], [
    "xt",
    "v"
  ]);
}
function predictX0(prediction, schedule, xt, t, output, shape) {
  switch (prediction) {
    case "eps":
      return predictX0FromEps(schedule, xt, t, output, shape);
    case "x0":
      checkTensor("model output", output, shape);
      return output.slice();
    case "v":
      return predictX0FromV(schedule, xt, t, output, shape);
    default:
      return _unknownPrediction(prediction);
  }
}
function _unknownPrediction(prediction) {
  throw new RangeError(`prediction must be one of ${PREDICTIONS.join(", ")}, got ${prediction}`);
}
function reverseVariance(schedule, variance, t) {
  switch (variance) {
    case "fixedsmall":
      return {
        variance: schedule.posteriorVariance[t],
        logVariance: schedule.posteriorLogVarianceClipped[t]
      };
    case "fixedlarge": {
      const v = t === 0 && schedule.timesteps > 1 ? schedule.posteriorVariance[1] : schedule.betas[t];
      return {
        variance: v,
        logVariance: Math.log(v)
      };
    }
    case "learned-range":
      throw new RangeError("a learned-range variance is read from the network output, not fixed");
    default: {
      const unknown = variance;
      throw new RangeError(`variance must be one of ${VARIANCE_TYPES.join(", ")}, got ${unknown}`);
    }
  }
}
function outputFactor(variance) {
  switch (variance) {
    case "fixedsmall":
    case "fixedlarge":
      return 1;
    case "learned-range":
      return 2;
    default: {
      const unknown = variance;
      throw new RangeError(`variance must be one of ${VARIANCE_TYPES.join(", ")}, got ${unknown}`);
    }
  }
}
function splitModelOutput(output, shape, variance) {
  const factor = outputFactor(variance);
  const size = shapeSize(shape);
  if (output.length !== factor * size) {
    const expected = factor === 2 ? `2 x ${size} = ${2 * size} values (the prediction, then v)` : `${size} values`;
    const hint = factor === 1 && output.length === 2 * size ? " (twice the image: a network that learns its variance needs variance learned-range)" : "";
    throw new RangeError(`model output must have ${expected} for shape [${shape.join(", ")}] with variance ${variance}, got ${output.length}${hint}`);
  }
  if (factor === 1) return {
    prediction: output,
    varianceValues: null
  };
  const n = shape[0];
  const per = size / n;
  const prediction = new Float32Array(size);
  const varianceValues = new Float32Array(size);
  for (let i = 0; i < n; i++) {
    prediction.set(output.subarray(2 * i * per, (2 * i + 1) * per), i * per);
    varianceValues.set(output.subarray((2 * i + 1) * per, (2 * i + 2) * per), i * per);
  }
  return {
    prediction,
    varianceValues
  };
}
function learnedRangeEnds(schedule, t) {
  return {
    minLog: schedule.posteriorLogVarianceClipped[t],
    maxLog: Math.log(schedule.betas[t])
  };
}
function learnedRangeLogVariance(schedule, varianceValues, t, shape) {
  const per = checkTensor("variance values", varianceValues, shape);
  checkTimesteps(schedule, t, shape[0]);
  const out = new Float64Array(varianceValues.length);
  for (let n = 0; n < shape[0]; n++) {
    const { minLog, maxLog } = learnedRangeEnds(schedule, t[n]);
    for (let j = n * per, end = j + per; j < end; j++) {
      const frac = (varianceValues[j] + 1) / 2;
      out[j] = frac * maxLog + (1 - frac) * minLog;
    }
  }
  return out;
}
function pMeanVariance(schedule, output, xt, t, shape, options = {}) {
  const prediction = options.prediction ?? "eps";
  const varianceType = options.variance ?? "fixedlarge";
  const clip = options.clipDenoised ?? true;
  const per = checkTensor("xt", xt, shape);
  const { prediction: predicted, varianceValues } = splitModelOutput(output, shape, varianceType);
  const predX0 = predictX0(prediction, schedule, xt, t, predicted, shape);
  if (clip) {
    for (let j = 0; j < predX0.length; j++) predX0[j] = Math.min(1, Math.max(-1, predX0[j]));
  }
  const predEps = prediction === "eps" && !clip ? predicted.slice() : predictEpsFromX0(schedule, xt, t, predX0, shape);
  const mean = combinePerExample(schedule, predX0, xt, t, shape, (s, i) => [
    s.posteriorMeanCoef1[i],
    s.posteriorMeanCoef2[i]
  ], [
    "predicted x0",
    "xt"
  ]);
  if (varianceValues) {
    const logVariance2 = learnedRangeLogVariance(schedule, varianceValues, t, shape);
    return {
      mean,
      variance: logVariance2.map((l) => Math.exp(l)),
      logVariance: logVariance2,
      predX0,
      predEps
    };
  }
  const variance = new Float64Array(xt.length);
  const logVariance = new Float64Array(xt.length);
  for (let n = 0; n < shape[0]; n++) {
    const v = reverseVariance(schedule, varianceType, t[n]);
    variance.fill(v.variance, n * per, (n + 1) * per);
    logVariance.fill(v.logVariance, n * per, (n + 1) * per);
  }
  return {
    mean,
    variance,
    logVariance,
    predX0,
    predEps
  };
}

// lib/schedule.ts
var SCHEDULE_KINDS = [
  "linear",
  "quadratic",
  "constant",
  "warmup10",
  "warmup50",
  "jsd",
  "cosine",
  "sigmoid"
];
function makeSchedule(options = {}) {
  const kind = options.kind ?? "linear";
  const timesteps = options.timesteps ?? 1e3;
  const betaStart = options.betaStart ?? 1e-4;
  const betaEnd = options.betaEnd ?? 0.02;
  if (!Number.isInteger(timesteps) || timesteps < 2 || timesteps > 1e5) {
    throw new RangeError(`timesteps must be an integer in 2..100000, got ${timesteps}`);
  }
  if (!(betaStart > 0 && betaStart < 1)) {
    throw new RangeError(`betaStart must be in (0, 1), got ${betaStart}`);
  }
  if (!(betaEnd > 0 && betaEnd < 1)) {
    throw new RangeError(`betaEnd must be in (0, 1), got ${betaEnd}`);
  }
  return scheduleFromBetas(_betasFor(kind, timesteps, betaStart, betaEnd), {
    kind
  });
}
function _betasFor(kind, timesteps, betaStart, betaEnd) {
  switch (kind) {
    case "linear":
      return _linspace(betaStart, betaEnd, timesteps);
    case "quadratic":
      return _linspace(Math.sqrt(betaStart), Math.sqrt(betaEnd), timesteps).map((b) => b * b);
    case "constant":
      return new Float64Array(timesteps).fill(betaEnd);
    case "warmup10":
      return _warmup(betaStart, betaEnd, timesteps, 0.1);
    case "warmup50":
      return _warmup(betaStart, betaEnd, timesteps, 0.5);
    case "jsd":
      return _linspace(timesteps, 1, timesteps).map((v) => 1 / v);
    case "cosine":
      return _betasFromCumprod(timesteps, (u) => {
        const s = 8e-3;
        return Math.cos((u + s) / (1 + s) * (Math.PI / 2)) ** 2;
      });
    case "sigmoid":
      return _betasFromCumprod(timesteps, (u) => {
        const start = -3, end = 3, tau = 1;
        const vEnd = _sigmoid(end / tau);
        return vEnd - _sigmoid((u * (end - start) + start) / tau);
      });
    default: {
      const unknown = kind;
      throw new RangeError(`schedule kind must be one of ${SCHEDULE_KINDS.join(", ")}, got ${unknown}`);
    }
  }
}
function scheduleFromBetas(betas, options = {}) {
  const n = betas.length;
  if (n < 1) throw new RangeError(`a schedule needs at least 1 beta, got ${n}`);
  for (let i = 0; i < n; i++) {
    if (!(betas[i] > 0 && betas[i] <= 1)) {
      throw new RangeError(`betas[${i}] must be in (0, 1], got ${betas[i]}`);
    }
  }
  const modelTimesteps = Float64Array.from(options.modelTimesteps ?? _range(n));
  if (modelTimesteps.length !== n) {
    throw new RangeError(`modelTimesteps must have one entry per beta (${n}), got ${modelTimesteps.length}`);
  }
  const b = Float64Array.from(betas);
  const alphas = b.map((beta) => 1 - beta);
  const alphasCumprod = new Float64Array(n);
  let product = 1;
  for (let i = 0; i < n; i++) alphasCumprod[i] = product *= alphas[i];
  const alphasCumprodPrev = new Float64Array(n);
  alphasCumprodPrev[0] = 1;
  alphasCumprodPrev.set(alphasCumprod.subarray(0, n - 1), 1);
  const posteriorVariance = new Float64Array(n);
  const posteriorMeanCoef1 = new Float64Array(n);
  const posteriorMeanCoef2 = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const oneMinus = 1 - alphasCumprod[i];
    posteriorVariance[i] = b[i] * (1 - alphasCumprodPrev[i]) / oneMinus;
    posteriorMeanCoef1[i] = b[i] * Math.sqrt(alphasCumprodPrev[i]) / oneMinus;
    posteriorMeanCoef2[i] = (1 - alphasCumprodPrev[i]) * Math.sqrt(alphas[i]) / oneMinus;
  }
  const posteriorLogVarianceClipped = posteriorVariance.map((v, i) => Math.log(i === 0 && n > 1 ? posteriorVariance[1] : v));
  return {
    kind: options.kind ?? "custom",
    timesteps: n,
    modelTimesteps,
    betas: b,
    alphas,
    alphasCumprod,
    alphasCumprodPrev,
    sqrtAlphasCumprod: alphasCumprod.map(Math.sqrt),
    sqrtOneMinusAlphasCumprod: alphasCumprod.map((a) => Math.sqrt(1 - a)),
    logOneMinusAlphasCumprod: alphasCumprod.map((a) => Math.log(1 - a)),
    sqrtRecipAlphasCumprod: alphasCumprod.map((a) => Math.sqrt(1 / a)),
    sqrtRecipm1AlphasCumprod: alphasCumprod.map((a) => Math.sqrt(1 / a - 1)),
    posteriorVariance,
    posteriorLogVarianceClipped,
    posteriorMeanCoef1,
    posteriorMeanCoef2,
    snr: alphasCumprod.map((a) => a / (1 - a))
  };
}
var TIMESTEP_SPACINGS = [
  "leading",
  "linspace",
  "trailing"
];
function spacedTimesteps(timesteps, steps, spacing = "leading") {
  if (!Number.isInteger(steps) || steps < 1 || steps > timesteps) {
    throw new RangeError(`steps must be an integer in 1..${timesteps}, got ${steps}`);
  }
  const out = [];
  switch (spacing) {
    case "leading": {
      const ratio = Math.floor(timesteps / steps);
      for (let k = 0; k < steps; k++) out.push(k * ratio);
      break;
    }
    case "linspace":
      if (steps === 1) out.push(0);
      else {
        for (let k = 0; k < steps; k++) {
          out.push(Math.round(k * (timesteps - 1) / (steps - 1)));
        }
      }
      break;
    case "trailing": {
      const ratio = timesteps / steps;
      for (let k = steps - 1; k >= 0; k--) out.push(Math.round(timesteps - k * ratio) - 1);
      break;
    }
    default: {
      const unknown = spacing;
      throw new RangeError(`spacing must be one of ${TIMESTEP_SPACINGS.join(", ")}, got ${unknown}`);
    }
  }
  return out;
}
function respaceSchedule(schedule, kept) {
  if (kept.length < 1) throw new RangeError("respacing needs at least one kept timestep");
  const betas = new Float64Array(kept.length);
  const modelTimesteps = new Float64Array(kept.length);
  let previous = 1;
  for (let k = 0; k < kept.length; k++) {
    const s = kept[k];
    if (!Number.isInteger(s) || s < 0 || s >= schedule.timesteps) {
      throw new RangeError(`kept timesteps must be integers in 0..${schedule.timesteps - 1}, got ${s}`);
    }
    if (k > 0 && s <= kept[k - 1]) {
      throw new RangeError(`kept timesteps must increase strictly, got ${kept[k - 1]} then ${s}`);
    }
    const abar = schedule.alphasCumprod[s];
    betas[k] = 1 - abar / previous;
    previous = abar;
    modelTimesteps[k] = schedule.modelTimesteps[s];
  }
  return scheduleFromBetas(betas, {
    kind: schedule.kind,
    modelTimesteps
  });
}
function _linspace(start, end, n) {
  const out = new Float64Array(n);
  if (n === 1) {
    out[0] = start;
    return out;
  }
  for (let i = 0; i < n; i++) out[i] = start + (end - start) * i / (n - 1);
  return out;
}
function _range(n) {
  return Float64Array.from({
    length: n
  }, (_, i) => i);
}
function _warmup(start, end, n, fraction) {
  const betas = new Float64Array(n).fill(end);
  const warm = Math.floor(n * fraction);
  betas.set(_linspace(start, end, warm));
  return betas;
}
function _sigmoid(x) {
  return 1 / (1 + Math.exp(-x));
}
function _betasFromCumprod(n, abar) {
  const f0 = abar(0);
  const betas = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const ratio = abar((i + 1) / n) / f0 / (abar(i / n) / f0);
    betas[i] = Math.min(Math.max(1 - ratio, 0), 0.999);
  }
  return betas;
}

// lib/samplers.ts
var SAMPLER_CAPABILITIES = {
  "ddpm": {
    description: "DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), respaced when steps < T",
    defaultSteps: "T",
    takesEta: false,
    stochastic: true,
    order: 0
  },
  "ddim": {
    description: "DDIM (Song et al. 2021); eta 0 is the first-order probability-flow ODE step",
    defaultSteps: 50,
    takesEta: true,
    stochastic: false,
    order: 1
  },
  "dpmpp-2m": {
    description: "DPM-Solver++(2M) (Lu et al. 2022): second-order multistep ODE solver on x0",
    defaultSteps: 15,
    takesEta: false,
    stochastic: false,
    order: 2
  },
  "dpmpp-2m-sde": {
    description: "SDE-DPM-Solver++(2M) (Lu et al. 2022): the second-order multistep solver of the reverse SDE; fresh noise each step",
    defaultSteps: 15,
    takesEta: false,
    stochastic: true,
    // Second order in the drift's x0 term (the noise is integrated exactly); at first order it
    // is DDPM's ancestral step (DDIM with eta 1). Measured in tests/samplers_test.ts.
    order: 2
  },
  "unipc": {
    description: "UniPC (Zhao et al. 2023, bh2): DPM-Solver++(2M) with a free corrector step",
    defaultSteps: 15,
    takesEta: false,
    stochastic: false,
    // UniP-2 lifted by one order by UniC (Zhao et al. 2023, Theorem 3.1); measured 6-8x less
    // error per doubling of steps in tests/samplers_test.ts.
    order: 3
  }
};
var SAMPLERS = Object.keys(SAMPLER_CAPABILITIES);
function defaultSteps(sampler, timesteps) {
  const capabilities = SAMPLER_CAPABILITIES[sampler];
  if (!capabilities) {
    throw new RangeError(`sampler must be one of ${SAMPLERS.join(", ")}, got ${sampler}`);
  }
  const steps = capabilities.defaultSteps;
  return steps === "T" ? timesteps : Math.min(steps, timesteps);
}
async function sample(denoiser, options) {
  const { schedule, shape, sampler } = options;
  const size = shapeSize(shape);
  if (!SAMPLERS.includes(sampler)) {
    throw new RangeError(`sampler must be one of ${SAMPLERS.join(", ")}, got ${sampler}`);
  }
  const steps = options.steps ?? defaultSteps(sampler, schedule.timesteps);
  const spacing = options.spacing ?? "leading";
  if (!TIMESTEP_SPACINGS.includes(spacing)) {
    throw new RangeError(`spacing must be one of ${TIMESTEP_SPACINGS.join(", ")}, got ${spacing}`);
  }
  const kept = spacedTimesteps(schedule.timesteps, steps, spacing);
  const rng = options.rng ?? createRng(options.seed ?? 0);
  let x;
  if (options.initialNoise) {
    checkTensor("initialNoise", options.initialNoise, shape);
    x = options.initialNoise.slice();
  } else {
    x = rng.normal(size);
  }
  return await reverseProcess(denoiser, {
    ...options,
    x,
    kept,
    drawNoise: () => rng.normal(size)
  });
}
async function reverseProcess(denoiser, options) {
  const { shape, sampler, kept, drawNoise, onStep, signal } = options;
  checkTensor("x", options.x, shape);
  const n = shape[0];
  if (!SAMPLERS.includes(sampler)) {
    throw new RangeError(`sampler must be one of ${SAMPLERS.join(", ")}, got ${sampler}`);
  }
  const eta = options.eta ?? 0;
  if (!(eta >= 0 && eta <= 1)) throw new RangeError(`eta must be in [0, 1], got ${eta}`);
  if (eta !== 0 && !SAMPLER_CAPABILITIES[sampler].takesEta) {
    throw new RangeError(`eta applies to ${SAMPLERS.filter((s) => SAMPLER_CAPABILITIES[s].takesEta).join(", ")} only, got eta ${eta} for ${sampler}`);
  }
  const variance = options.variance ?? "fixedlarge";
  const outputLength = outputFactor(variance) * options.x.length;
  const schedule = respaceSchedule(options.schedule, kept);
  const steps = schedule.timesteps;
  let x = options.x.slice();
  const history = [];
  let previousX = x;
  let previousOrder = 1;
  for (let k = steps - 1; k >= 0; k--) {
    signal?.throwIfAborted();
    const modelT = schedule.modelTimesteps[k];
    const output = await denoiser(x, new Float32Array(n).fill(modelT), shape);
    if (!(output instanceof Float32Array) || output.length !== outputLength) {
      throw new RangeError(`denoiser must return a Float32Array of ${outputLength} values${outputLength === x.length ? "" : ` (2 x ${x.length}: the prediction, then v)`}, got ${output instanceof Float32Array ? output.length : typeof output} (variance ${variance})`);
    }
    const index = new Array(n).fill(k);
    const step = pMeanVariance(schedule, output, x, index, shape, options);
    let next = new Float32Array(x.length);
    const abarPrev = schedule.alphasCumprodPrev[k];
    switch (sampler) {
      case "ddpm": {
        next.set(step.mean);
        if (k > 0) {
          const z = drawNoise();
          for (let j = 0; j < x.length; j++) next[j] += Math.sqrt(step.variance[j]) * z[j];
        }
        break;
      }
      case "ddim": {
        const abar = schedule.alphasCumprod[k];
        const sigma = eta * Math.sqrt((1 - abarPrev) / (1 - abar)) * Math.sqrt(1 - abar / abarPrev);
        const a = Math.sqrt(abarPrev);
        const b = Math.sqrt(Math.max(0, 1 - abarPrev - sigma * sigma));
        const z = sigma > 0 && k > 0 ? drawNoise() : null;
        for (let j = 0; j < x.length; j++) {
          next[j] = a * step.predX0[j] + b * step.predEps[j] + (z ? sigma * z[j] : 0);
        }
        break;
      }
      case "dpmpp-2m":
      case "dpmpp-2m-sde":
      case "unipc": {
        const here = {
          x0: step.predX0,
          abar: schedule.alphasCumprod[k]
        };
        if (sampler === "unipc" && history.length > 0) {
          x = _uniCorrector(previousX, here, history, previousOrder);
        }
        const order = history.length > 0 && k >= 2 ? 2 : 1;
        next = k === 0 ? step.predX0.slice() : _dpmSolverPlusPlus(x, here, abarPrev, {
          previous: order === 2 ? history[history.length - 1] : void 0,
          noise: sampler === "dpmpp-2m-sde" ? drawNoise() : void 0
        });
        history.push(here);
        if (history.length > 2) history.shift();
        previousX = x;
        previousOrder = order;
        break;
      }
      default: {
        const unknown = sampler;
        throw new RangeError(`sampler must be one of ${SAMPLERS.join(", ")}, got ${unknown}`);
      }
    }
    if (onStep) {
      await onStep({
        step: steps - 1 - k,
        steps,
        t: modelT,
        x,
        predX0: step.predX0
      });
    }
    x = next;
  }
  return x;
}
function _halfLogSnr(abar) {
  return 0.5 * (Math.log(abar) - Math.log1p(-abar));
}
function _dpmSolverPlusPlus(x, from, abarTo, options) {
  const { previous, noise } = options;
  const sigmaTo = Math.sqrt(1 - abarTo);
  const lambdaS = _halfLogSnr(from.abar);
  const h = _halfLogSnr(abarTo) - lambdaS;
  const rate = noise ? 2 : 1;
  const xWeight = sigmaTo / Math.sqrt(1 - from.abar) * (noise ? Math.exp(-h) : 1);
  const x0Weight = -Math.sqrt(abarTo) * Math.expm1(-rate * h);
  const noiseWeight = noise ? sigmaTo * Math.sqrt(-Math.expm1(-2 * h)) : 0;
  const half = previous ? 1 / (2 * ((lambdaS - _halfLogSnr(previous.abar)) / h)) : 0;
  const out = new Float32Array(x.length);
  for (let j = 0; j < x.length; j++) {
    const d = previous ? (1 + half) * from.x0[j] - half * previous.x0[j] : from.x0[j];
    out[j] = xWeight * x[j] + x0Weight * d + (noise ? noiseWeight * noise[j] : 0);
  }
  return out;
}
function _uniCorrector(xFrom, here, history, order) {
  const s0 = history[history.length - 1];
  const lambdaS0 = _halfLogSnr(s0.abar);
  const h = _halfLogSnr(here.abar) - lambdaS0;
  const alphaT = Math.sqrt(here.abar);
  const sigmaRatio = Math.sqrt((1 - here.abar) / (1 - s0.abar));
  const hh = -h;
  const phi1 = Math.expm1(hh);
  const bh = phi1;
  let rhoPrevious = 0, rhoHere = 0.5, r1 = 1;
  if (order === 2 && history.length >= 2) {
    const s1 = history[history.length - 2];
    r1 = (_halfLogSnr(s1.abar) - lambdaS0) / h;
    const phi2 = phi1 / hh - 1;
    const b1 = phi2 / bh;
    const b2 = 2 * (phi2 / hh - 0.5) / bh;
    rhoPrevious = (b1 - b2) / (1 - r1);
    rhoHere = b1 - rhoPrevious;
  }
  const previous = order === 2 && history.length >= 2 ? history[history.length - 2] : null;
  const out = new Float32Array(xFrom.length);
  for (let j = 0; j < xFrom.length; j++) {
    const m0 = s0.x0[j];
    const d1Previous = previous ? (previous.x0[j] - m0) / r1 : 0;
    const d1Here = here.x0[j] - m0;
    out[j] = sigmaRatio * xFrom[j] - alphaT * phi1 * m0 - alphaT * bh * (rhoPrevious * d1Previous + rhoHere * d1Here);
  }
  return out;
}

// model/feeds.ts
function networkFeeds(tensor, inputs, numClasses) {
  const { x, t, labels, shape } = inputs;
  const n = shape[0];
  const feeds = {
    x: new tensor("float32", x, [
      ...shape
    ]),
    t: new tensor("float32", t, [
      n
    ])
  };
  if (numClasses > 0) {
    feeds.y = new tensor("int64", BigInt64Array.from(labels, (l) => BigInt(l)), [
      n
    ]);
  }
  return feeds;
}

// model/scaling.ts
function dataRange(dataScaling, name = "model") {
  const match = /\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\]/.exec(dataScaling);
  const low = match ? Number(match[1]) : NaN;
  const high = match ? Number(match[2]) : NaN;
  if (!(low < high)) {
    throw new TypeError(`model ${name}: dataScaling must name the pixel range as [low, high], got "${dataScaling}"`);
  }
  return [
    low,
    high
  ];
}
function cardPixelRange(card, name = "model") {
  return card.pixelRange ? [
    card.pixelRange[0],
    card.pixelRange[1]
  ] : dataRange(card.dataScaling, name);
}

// serve/browser/local.ts
var ORT_BASE = "/browser/ort/";
var ORT_BUILDS = {
  // The WebAssembly build loads ort-wasm-simd-threaded.wasm, the binary the server runs.
  wasm: "ort.wasm.bundle.min.mjs",
  webgpu: "ort.webgpu.bundle.min.mjs"
};
async function loadBrowserModel(name, card, options) {
  const { provider, headers = {} } = options;
  const gpu = navigator.gpu;
  let chosen = provider === "auto" ? "webgpu" : provider;
  if (chosen === "webgpu" && !(gpu && await gpu.requestAdapter().catch(() => null))) {
    if (provider === "webgpu") throw new Error("this browser offers no WebGPU adapter");
    chosen = "wasm";
  }
  const url = ORT_BASE + ORT_BUILDS[chosen];
  const ort = await import(url);
  ort.env.wasm.numThreads = 1;
  const response = await fetch(`/browser/models/${encodeURIComponent(name)}.onnx`, {
    headers
  });
  if (!response.ok) throw new Error(`GET the model ${name}: ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: [
      chosen
    ]
  });
  return {
    name,
    card,
    session,
    ort,
    provider: chosen
  };
}
function browserDenoiser(model) {
  const { ort, session } = model;
  const numClasses = model.card.config?.numClasses ?? 0;
  const maxBatch = 64;
  return async (x, t, shape, labels) => {
    const [n, c, h, w] = shape;
    const per = c * h * w;
    let out = new Float32Array(0);
    for (let start = 0; start < n; start += maxBatch) {
      const count = Math.min(maxBatch, n - start);
      const feeds = networkFeeds(ort.Tensor, {
        x: x.subarray(start * per, (start + count) * per),
        t: t.subarray(start, start + count),
        labels: Array.from({
          length: count
        }, (_, i) => labels?.[start + i] ?? numClasses),
        shape: [
          count,
          c,
          h,
          w
        ]
      }, numClasses);
      const result = await session.run(feeds);
      const data = result.out.data;
      const outPer = data.length / count;
      if (start === 0) out = new Float32Array(n * outPer);
      out.set(data, start * outPer);
      result.out.dispose();
    }
    return out;
  };
}
async function sampleInBrowser(model, options) {
  const { card } = model;
  const { kind, timesteps, betaStart, betaEnd } = card.schedule;
  const schedule = makeSchedule({
    kind,
    timesteps,
    betaStart,
    betaEnd
  });
  const shape = [
    options.n,
    card.channels,
    card.imageSize,
    card.imageSize
  ];
  const range = cardPixelRange(card, model.name);
  const grid = (x2) => encodePng2(makeGrid(toUint8(x2, {
    range
  }), shape));
  const network = browserDenoiser(model);
  const numClasses = card.classNames?.length ?? 0;
  if (numClasses === 0 && typeof options.label === "number") {
    throw new RangeError(`label: model ${model.name} has no classes, got ${options.label}`);
  }
  const labels = options.label === null || numClasses === 0 ? null : options.label === void 0 ? drawClasses(options.seed, options.n, numClasses, card.classCounts) : new Int32Array(options.n).fill(options.label);
  const { guidance, interval } = requestedGuidance(options.guidance, options.guidanceInterval, {
    timesteps,
    sampler: options.sampler,
    drawn: options.label === void 0
  });
  const denoiser = labels === null ? (x2, t, s) => network(x2, t, s) : classifierFreeGuidance(network, {
    labels,
    nullClass: numClasses,
    guidance,
    interval: interval ?? void 0
  });
  const x = await sample(denoiser, {
    schedule,
    shape,
    sampler: options.sampler,
    steps: options.steps,
    eta: options.eta,
    spacing: options.spacing ?? "leading",
    seed: options.seed,
    prediction: card.prediction,
    variance: card.variance,
    signal: options.signal,
    onStep: options.onStep && ((info) => options.onStep?.(grid(info.predX0), info.step, info.steps))
  });
  return grid(x);
}
function _byId(id) {
  const element = document?.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element;
}
function _wire() {
  const value = (id) => _byId(id).value;
  const status = _byId("local-status");
  const image = _byId("local-image");
  const button = _byId("local-button");
  const setStatus = (text, isError = false) => {
    status.textContent = text;
    status.className = isError ? "status error" : "status";
  };
  const show = async (png) => {
    if (image.src.startsWith("blob:")) URL.revokeObjectURL(image.src);
    image.src = URL.createObjectURL(new Blob([
      png
    ], {
      type: "image/png"
    }));
    await image.decode();
    image.width = image.naturalWidth * Math.max(3, Math.floor(240 / image.naturalWidth));
    image.hidden = false;
  };
  const sessions = /* @__PURE__ */ new Map();
  let models;
  button.onclick = async () => {
    button.disabled = true;
    delete image.dataset.seed;
    try {
      const apiKey = new URLSearchParams(location.hash.slice(1)).get("key") ?? localStorage.getItem("ddpm-api-key");
      const headers = apiKey ? {
        authorization: `Bearer ${apiKey}`
      } : {};
      models ??= fetch("/v1/models", {
        headers
      }).then((r) => {
        if (!r.ok) throw new Error(`GET /v1/models: ${r.status}`);
        return r.json();
      }).catch((error) => {
        models = void 0;
        throw error;
      });
      const name = value("model");
      const entry = (await models).models.find((m) => m.name === name);
      if (!entry) throw new Error(`no model ${name}`);
      const provider = value("local-provider");
      const key = `${name}/${provider}`;
      let loading = sessions.get(key);
      if (!loading) {
        loading = loadBrowserModel(name, entry.card, {
          provider,
          headers
        });
        sessions.set(key, loading);
      }
      setStatus(`Loading ${name} and onnxruntime-web...`);
      const model = await loading.catch((error) => {
        sessions.delete(key);
        throw error;
      });
      const seedField = value("seed");
      const seed = seedField === "" ? crypto.getRandomValues(new Uint32Array(1))[0] : Number(seedField);
      const sampler = value("sampler");
      const picked = value("label");
      const label = picked === "" ? void 0 : picked === "none" ? null : Number(picked);
      const started = performance.now();
      const where = model.provider === "webgpu" ? "WebGPU" : "WebAssembly";
      const png = await sampleInBrowser(model, {
        n: Number(value("n")),
        sampler,
        steps: Number(value("steps")),
        eta: SAMPLER_CAPABILITIES[sampler].takesEta ? Number(value("eta")) : 0,
        seed,
        label,
        // An untouched slider sends no weight: the model's default, as the server applies it.
        guidance: label === null ? 0 : _byId("guidance").dataset.untouched === "true" ? void 0 : Number(value("guidance")),
        onStep: async (grid, step, steps) => {
          await show(grid);
          setStatus(`Step ${step + 1}/${steps} on ${where}: the current guess of x_0`);
        }
      });
      await show(png);
      image.dataset.seed = String(seed);
      image.dataset.provider = model.provider;
      const seconds = ((performance.now() - started) / 1e3).toFixed(1);
      setStatus(`Done in ${seconds} s in this browser on ${where}, seed ${seed}.`);
    } catch (error) {
      setStatus(`In this browser: ${error.message}`, true);
    } finally {
      button.disabled = false;
    }
  };
}
if (typeof document !== "undefined" && document?.getElementById("local-button")) _wire();
export {
  browserDenoiser,
  loadBrowserModel,
  sampleInBrowser
};
