/**
 * Training kernels for tfjs's WebAssembly backend: convolution gradients built from its fast
 * forward convolution (XNNPACK), a faster `Transpose`, and an `Identity` that shares memory
 * instead of copying it.
 *
 * As shipped, the `wasm` backend has no `Conv2DBackpropFilter` kernel, so no convolutional
 * network trains on it, and its `Conv2DBackpropInput` is about ten times slower than its forward
 * convolution. Both gradients are convolutions themselves:
 *
 * - Filter gradient: `dW[i, j, c, k] = sum_{n, y, x} X[n, s y + i - pt, s x + j - pl, c] dY[n, y, x, k]`.
 *   Read with the channel `c` as the batch and the batch `n` as the input channel, that is a
 *   convolution of the padded input `[c, H, W, n]` with `dY` as a `[Ho, Wo, n, k]` filter,
 *   dilated by the stride; the result `[c, kh, kw, k]` is transposed back.
 * - Input gradient: `dX = conv(dY dilated by the stride and padded, W flipped in space with its
 *   in and out channels swapped)`, stride 1. For stride 1 the dilation is the identity.
 *
 * `Identity` is what tfjs's autodiff calls to keep every tensor a gradient will need
 * (`saveTensorsForBackwardMode` clones them). The shipped kernel copies the whole tensor each
 * time, about a tenth of a training step's CPU time in copies; tensors are immutable (a
 * variable's `assign` swaps its data, it never writes into it), so a second reference to the
 * same memory, counted like `Reshape`'s, is the same value. The CPU backend does the same.
 *
 * Registered with `registerWasmKernels()`; nothing changes for other backends.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";

/** The attributes tfjs passes to both convolution-gradient kernels (NHWC only). */
interface ConvGradAttrs {
  strides: [number, number] | number;
  pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
  dataFormat: "NHWC" | "NCHW";
  dimRoundingMode?: "floor" | "round" | "ceil";
}

/** Padding and output geometry of a forward convolution, as tfjs computes it. */
function _convInfo(
  xShape: [number, number, number, number],
  filterShape: [number, number, number, number],
  attrs: ConvGradAttrs,
): tf.backend_util.Conv2DInfo {
  if (attrs.dataFormat !== "NHWC") {
    throw new RangeError(`wasm convolution gradients support NHWC only, got ${attrs.dataFormat}`);
  }
  return tf.backend_util.computeConv2DInfo(
    xShape,
    filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    "channelsLast",
  );
}

/** `x` with `stride - 1` zeros between neighbours along height and width. */
function _dilate(x: tf.Tensor4D, strideH: number, strideW: number): tf.Tensor4D {
  if (strideH === 1 && strideW === 1) return x;
  const [n, h, w, c] = x.shape;
  let out: tf.Tensor4D = x;
  if (strideH > 1) {
    const spread = tf.concat([
      tf.reshape(out, [n, h, 1, w, c]),
      tf.zeros([n, h, strideH - 1, w, c]),
    ], 2);
    out = tf.slice4d(tf.reshape(spread, [n, h * strideH, w, c]) as tf.Tensor4D, [0, 0, 0, 0], [
      n,
      (h - 1) * strideH + 1,
      w,
      c,
    ]);
  }
  if (strideW > 1) {
    const hh = out.shape[1];
    const spread = tf.concat([
      tf.reshape(out, [n, hh, w, 1, c]),
      tf.zeros([n, hh, w, strideW - 1, c]),
    ], 3);
    out = tf.slice4d(tf.reshape(spread, [n, hh, w * strideW, c]) as tf.Tensor4D, [0, 0, 0, 0], [
      n,
      hh,
      (w - 1) * strideW + 1,
      c,
    ]);
  }
  return out;
}

/** `dW` from the layer input `x` and the output gradient `dy` (see the module doc). */
export function conv2dFilterGradient(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  filterShape: [number, number, number, number],
  attrs: ConvGradAttrs,
): tf.Tensor4D {
  return tf.tidy(() => {
    const info = _convInfo(x.shape, filterShape, attrs);
    const { top, bottom, left, right } = info.padInfo;
    const [kh, kw] = filterShape;
    // The input with channels as the batch, [c, H, W, n], padded inside the convolution.
    const asBatch = tf.transpose(x, [3, 1, 2, 0]) as tf.Tensor4D;
    // dY as a filter [Ho, Wo, n, k], dilated by the stride.
    const asFilter = tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D;
    const grad = tf.conv2d(
      asBatch,
      asFilter,
      1,
      [[0, 0], [top, bottom], [left, right], [0, 0]],
      "NHWC",
      [info.strideHeight, info.strideWidth],
    );
    // 'same' padding can leave a row or column beyond the kernel (stride > 1): cut to [kh, kw].
    const cut = grad.shape[1] === kh && grad.shape[2] === kw
      ? grad
      : tf.slice(grad, [0, 0, 0, 0], [grad.shape[0], kh, kw, grad.shape[3]]);
    return tf.transpose(cut, [1, 2, 0, 3]) as tf.Tensor4D;
  });
}

/** `dX` from the output gradient `dy` and the filter (see the module doc). */
export function conv2dInputGradient(
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  inputShape: [number, number, number, number],
  attrs: ConvGradAttrs,
): tf.Tensor4D {
  return tf.tidy(() => {
    const info = _convInfo(inputShape, filter.shape, attrs);
    const [kh, kw] = filter.shape;
    const [, h, w] = inputShape;
    const { top, left } = info.padInfo;
    const dilated = _dilate(dy, info.strideHeight, info.strideWidth);
    // dx[i] = sum_k dy_dilated[i + pt - k] w[k]: correlate with the flipped filter after
    // padding kh - 1 - pt before and whatever completes the input's size after.
    const padTop = kh - 1 - top, padLeft = kw - 1 - left;
    const padBottom = h + kh - 1 - padTop - dilated.shape[1];
    const padRight = w + kw - 1 - padLeft - dilated.shape[2];
    if (padBottom < 0 || padRight < 0) {
      throw new RangeError(`conv2d input gradient: negative padding for input [${inputShape}]`);
    }
    return tf.conv2d(dilated, _flippedFilter(filter), 1, [
      [0, 0],
      [padTop, padBottom],
      [padLeft, padRight],
      [0, 0],
    ]);
  });
}

/**
 * The filter flipped in space with its in and out channels swapped, `[kh, kw, k, c]`, computed on
 * the CPU: filters are small (at most a few hundred thousand values), and the backend's `Reverse`
 * took longer than the convolution that uses it.
 */
function _flippedFilter(filter: tf.Tensor4D): tf.Tensor4D {
  const [kh, kw, c, k] = filter.shape;
  const w = filter.dataSync() as Float32Array;
  const out = new Float32Array(w.length);
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const from = ((kh - 1 - i) * kw + (kw - 1 - j)) * c * k; // w[kh-1-i, kw-1-j, :, :]
      const to = (i * kw + j) * k * c; // out[i, j, :, :]
      for (let ci = 0; ci < c; ci++) {
        for (let ko = 0; ko < k; ko++) out[to + ko * c + ci] = w[from + ci * k + ko];
      }
    }
  }
  return tf.tensor4d(out, [kh, kw, k, c]);
}

/** What a kernel of the `wasm` backend receives, as far as the kernels here use it. */
interface _HeapKernelArgs {
  inputs: { x: tf.TensorInfo };
  attrs: { perm: number[] };
  backend: {
    makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
    typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
  };
}

/**
 * A transpose of up to 4 dimensions as nested loops over the WebAssembly heap. The shipped
 * kernel takes about an eighth of a training step's CPU time (the convolution gradients
 * transpose activations and filters) and this one is 10 to 25 times faster on those shapes.
 * Returns undefined for what it does not handle (more dimensions, strings), left to the shipped
 * kernel.
 */
export function transposeOnHeap({ inputs, attrs, backend }: _HeapKernelArgs):
  | tf.TensorInfo
  | undefined {
  const { x } = inputs;
  const rank = x.shape.length;
  if (rank > 4 || x.dtype === "string" || x.dtype === "complex64") return undefined;
  const outShape = attrs.perm.map((axis) => x.shape[axis]);
  const out = backend.makeOutput(outShape, x.dtype);
  // After makeOutput: allocating may grow the heap, which detaches older views of it.
  const src = backend.typedArrayFromHeap(x);
  const dst = backend.typedArrayFromHeap(out);
  // Each output axis's size, its stride in the input and in the output, padded to 4 axes.
  const inStrides = new Array<number>(rank);
  for (let d = rank - 1, s = 1; d >= 0; d--) {
    inStrides[d] = s;
    s *= x.shape[d];
  }
  const pad = 4 - rank;
  const size = [1, 1, 1, 1], inStep = [0, 0, 0, 0], outStep = [0, 0, 0, 0];
  attrs.perm.forEach((axis, k) => {
    size[pad + k] = x.shape[axis];
    inStep[pad + k] = inStrides[axis];
  });
  for (let k = 3, s = 1; k >= 0; k--) {
    outStep[k] = s;
    s *= size[k];
  }
  // Loop order: the output's last axis and the input's last axis innermost, so that a tile of
  // the two (an [N, C] tile when batch and channels swap) is read and written within the
  // cache; the other axes outside, in order.
  const found = [0, 1, 2].find((k) => inStep[k] === 1 && size[k] > 1);
  const order = found === undefined
    ? [0, 1, 2, 3]
    : [0, 1, 2].filter((k) => k !== found).concat([3, found]);
  const [a0, a1, a2, a3] = order;
  const [n0, n1, n2, n3] = [size[a0], size[a1], size[a2], size[a3]];
  const [i0, i1, i2, i3] = [inStep[a0], inStep[a1], inStep[a2], inStep[a3]];
  const [o0, o1, o2, o3] = [outStep[a0], outStep[a1], outStep[a2], outStep[a3]];
  for (let a = 0; a < n0; a++) {
    for (let b = 0; b < n1; b++) {
      for (let c = 0; c < n2; c++) {
        let i = a * i0 + b * i1 + c * i2, o = a * o0 + b * o1 + c * o2;
        for (let d = 0; d < n3; d++, i += i3, o += o3) dst[o] = src[i];
      }
    }
  }
  return out;
}

let registered = false;

/**
 * Registers `Conv2DBackpropFilter`, a faster `Conv2DBackpropInput` and `Transpose`, and a
 * copy-free `Identity` on the `wasm` backend. Idempotent. The convolution kernels compute with
 * tfjs ops on the same backend, so they run wherever the backend's forward convolution runs.
 */
export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  const shipped = tf.getKernel("Transpose", "wasm");
  if (shipped) {
    tf.unregisterKernel("Transpose", "wasm");
    tf.registerKernel({
      kernelName: "Transpose",
      backendName: "wasm",
      // The shipped setup binds the WebAssembly function that the fallback (and the backend's
      // own reductions, which transpose internally) call.
      setupFunc: shipped.setupFunc,
      kernelFunc: (args) =>
        transposeOnHeap(args as unknown as _HeapKernelArgs) ??
          (shipped.kernelFunc(args) as tf.TensorInfo),
    });
  }
  if (tf.getKernel("Identity", "wasm")) tf.unregisterKernel("Identity", "wasm");
  tf.registerKernel({
    kernelName: "Identity",
    backendName: "wasm",
    kernelFunc: ({ inputs, backend }) => {
      const { x } = inputs as unknown as { x: tf.TensorInfo };
      if (x.dtype === "string") throw new RangeError("wasm Identity: string tensors unsupported");
      (backend as unknown as { incRef(dataId: tf.DataId): void }).incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
    },
  });
  // Replace the slow built-in input gradient; the filter gradient does not exist yet.
  if (tf.getKernel("Conv2DBackpropInput", "wasm")) {
    tf.unregisterKernel("Conv2DBackpropInput", "wasm");
  }
  tf.registerKernel({
    kernelName: "Conv2DBackpropFilter",
    backendName: "wasm",
    kernelFunc: ({ inputs, attrs }) => {
      const { x, dy } = inputs as unknown as { x: tf.Tensor4D; dy: tf.Tensor4D };
      const a = attrs as unknown as ConvGradAttrs & {
        filterShape: [number, number, number, number];
      };
      return conv2dFilterGradient(x, dy, a.filterShape, a);
    },
  });
  tf.registerKernel({
    kernelName: "Conv2DBackpropInput",
    backendName: "wasm",
    kernelFunc: ({ inputs, attrs }) => {
      const { dy, filter } = inputs as unknown as { dy: tf.Tensor4D; filter: tf.Tensor4D };
      const a = attrs as unknown as ConvGradAttrs & {
        inputShape: [number, number, number, number];
      };
      return conv2dInputGradient(dy, filter, a.inputShape, a);
    },
  });
}
