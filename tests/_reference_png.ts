/**
 * The sample that every runtime must reproduce byte for byte: four 16x16 images drawn with the
 * exact denoiser of N(0, 0.5^2) data (no network, so only the library is compared), DDPM with
 * 20 respaced steps, as a PNG grid. The Deno-outside-the-project test, the npm package's Node
 * test and the README's examples all run this same recipe.
 */

import { encodePng, gaussianDenoiser, makeGrid, makeSchedule, sample, toUint8 } from "../mod.ts";

/** The reference PNG for `seed`. */
export async function referencePng(seed: number): Promise<Uint8Array> {
  const schedule = makeSchedule({ kind: "linear", timesteps: 1000 });
  const denoiser = gaussianDenoiser(schedule, { mean: 0, std: 0.5 });
  const shape = [4, 1, 16, 16] as const;
  const x = await sample(denoiser, { schedule, shape, sampler: "ddpm", steps: 20, seed });
  return encodePng(makeGrid(toUint8(x), shape));
}
