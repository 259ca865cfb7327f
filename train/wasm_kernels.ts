/**
 * Convolution gradients for tfjs's WebAssembly backend, built from its fast forward
 * convolution (XNNPACK).
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
 * Registered with `registerWasmConvGradients()`; nothing changes for other backends.
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
    // The padded input with channels as the batch: [c, H + pt + pb, W + pl + pr, n].
    const padded = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]]);
    const asBatch = tf.transpose(padded, [3, 1, 2, 0]) as tf.Tensor4D;
    // dY as a filter [Ho, Wo, n, k], dilated by the stride.
    const asFilter = tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D;
    const grad = tf.conv2d(asBatch, asFilter, 1, "valid", "NHWC", [
      info.strideHeight,
      info.strideWidth,
    ]);
    // 'same' padding can leave a row or column beyond the kernel (stride > 1): cut to [kh, kw].
    const cut = tf.slice(grad, [0, 0, 0, 0], [grad.shape[0], kh, kw, grad.shape[3]]);
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
    const padded = tf.pad(dilated, [[0, 0], [padTop, padBottom], [padLeft, padRight], [0, 0]]);
    const flipped = tf.transpose(tf.reverse(filter, [0, 1]), [0, 1, 3, 2]) as tf.Tensor4D;
    return tf.conv2d(padded, flipped, 1, "valid");
  });
}

let registered = false;

/**
 * Registers `Conv2DBackpropFilter` and a faster `Conv2DBackpropInput` on the `wasm` backend.
 * Idempotent. The kernels compute with tfjs ops on the same backend, so they run wherever the
 * backend's forward convolution runs.
 */
export function registerWasmConvGradients(): void {
  if (registered) return;
  registered = true;
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
