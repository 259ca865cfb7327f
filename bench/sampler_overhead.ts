/**
 * Cost of the sampler's own math per step, with a denoiser that does no work, so what is
 * timed is lib/ alone (reverse-step arithmetic, noise generation, clipping). A real network
 * adds its forward pass on top. Prints a Markdown table.
 *
 *   deno task bench:sampler
 */

import {
  makeSchedule,
  sample,
  SAMPLER_CAPABILITIES,
  type SamplerKind,
  type Shape,
} from "../mod.ts";

const schedule = makeSchedule();
const zeroNoise = (x: Float32Array) => new Float32Array(x.length);

const cases: { sampler: SamplerKind; steps: number; shape: Shape }[] = [
  { sampler: "ddpm", steps: 1000, shape: [16, 1, 28, 28] },
  { sampler: "ddim", steps: 50, shape: [16, 1, 28, 28] },
  { sampler: "dpmpp-2m", steps: 20, shape: [16, 1, 28, 28] },
  { sampler: "unipc", steps: 20, shape: [16, 1, 28, 28] },
  { sampler: "ddpm", steps: 250, shape: [16, 3, 32, 32] },
  { sampler: "ddim", steps: 50, shape: [16, 3, 32, 32] },
  { sampler: "ddim", steps: 50, shape: [64, 3, 32, 32] },
  { sampler: "unipc", steps: 20, shape: [64, 3, 32, 32] },
];

console.log("| sampler | shape | steps | ms/step | Mvalues/s |");
console.log("| --- | --- | --- | --- | --- |");
for (const { sampler, steps, shape } of cases) {
  const options = {
    schedule,
    shape,
    sampler,
    steps,
    seed: 0,
    eta: SAMPLER_CAPABILITIES[sampler].takesEta ? 0 : undefined,
  };
  await sample(zeroNoise, { ...options, steps: Math.min(steps, 10) }); // warm-up (JIT)
  const start = performance.now();
  await sample(zeroNoise, options);
  const ms = (performance.now() - start) / steps;
  const values = shape.reduce((a, b) => a * b, 1);
  console.log(
    `| ${sampler} | ${shape.join("x")} | ${steps} | ${ms.toFixed(3)} | ${
      (values / ms / 1e3).toFixed(1)
    } |`,
  );
}
