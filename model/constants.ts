/**
 * The numbers inside the network that its two computations must share: the trainer's tfjs ops
 * (`train/tfjs_ops.ts`) and the exported ONNX graph (`train/onnx_graph.ts`) read them from here,
 * so a model computes the same in training, in `deno task eval` and on the server.
 *
 * @module
 */

/** GroupNorm's epsilon, as in the official implementation (`tf.contrib.layers.group_norm`). */
export const GROUP_NORM_EPSILON = 1e-6;

/**
 * The `dim / 2` frequencies of the sinusoidal timestep embedding, `exp(-ln(10000) i / (half -
 * 1))` for i = 0..half-1, as the official `get_timestep_embedding` computes them; the embedding
 * is `[sin(t f), cos(t f)]`.
 *
 * @example
 * ```ts
 * import { timestepFrequencies } from "./constants.ts";
 * const f = timestepFrequencies(4);
 * console.assert(f[0] === 1 && Math.abs(f[1] - 1e-4) < 1e-10);
 * ```
 */
export function timestepFrequencies(dim: number): Float32Array {
  const half = dim / 2;
  return Float32Array.from(
    { length: half },
    (_, i) => Math.exp((-Math.log(10000) * i) / (half - 1)),
  );
}
