/**
 * Latency of sampling requests through the HTTP app (`app.request`, no socket): the network on
 * onnxruntime-web, the sampler, and PNG encoding, as a client of `POST /v1/samples` sees them.
 * The network is the preset's U-Net with random weights: the cost of a forward pass does not
 * depend on the weights' values, so the figures hold for a trained model. Prints a Markdown
 * table.
 *
 *   deno task bench:serve [--preset mnist] [--provider wasm] [--runs 3] [--conditional]
 *
 * With `--conditional` the network has a 10-class embedding and the table adds requests with a
 * label, without and with classifier-free guidance: guidance evaluates each image twice (with
 * and without its class) in one batch, so it should cost about twice the network time.
 *
 * onnxruntime-web runs one WebAssembly thread (`serve/onnx.ts`), so the figures track one
 * core's speed and any other load on the machine; the load average is printed with them.
 */

import { parseArgs } from "node:util";
import { describeUNet, PRESETS } from "../train/network.ts";
import { createApp } from "../serve/app.ts";
import { chooseProvider, type ProviderChoice } from "../serve/provider.ts";
import { loadRegistry } from "../serve/registry.ts";
import { randomOnnxModel } from "../tests/_models.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    preset: { type: "string", default: "mnist" },
    provider: { type: "string", default: "wasm" },
    runs: { type: "string", default: "3" },
    conditional: { type: "boolean", default: false },
  },
});
const preset = PRESETS[values.preset as keyof typeof PRESETS];
if (!preset) throw new RangeError(`--preset must be one of ${Object.keys(PRESETS).join(", ")}`);
const config = values.conditional ? { ...preset, numClasses: 10 } : preset;
const runs = Number(values.runs);
const provider = await chooseProvider(values.provider as ProviderChoice);
const registry = await loadRegistry(
  [{ name: values.preset, bytes: randomOnnxModel(config) }],
  provider,
);
const { app } = createApp({ registry });

/** One request's wall time in milliseconds. */
async function request(body: Record<string, unknown>): Promise<number> {
  const start = performance.now();
  const response = await app.request("/v1/samples", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  await response.arrayBuffer();
  if (response.status !== 200) throw new Error(`HTTP ${response.status}`);
  return performance.now() - start;
}

const cases: { n: number; steps: number; sampler: string; label?: number; guidance?: number }[] = [
  { n: 1, steps: 50, sampler: "ddim" },
  { n: 16, steps: 10, sampler: "ddim" },
  { n: 16, steps: 50, sampler: "ddim" },
];
if (values.conditional) {
  cases.push(
    { n: 16, steps: 50, sampler: "ddim", label: 7, guidance: 0 },
    { n: 16, steps: 50, sampler: "ddim", label: 7, guidance: 3 },
  );
}
const gflopPerImage = describeUNet(config).flopsPerImage / 1e9;
// Other processes on the machine slow every figure; the load average says how busy it was.
const load = Deno.loadavg().map((l) => l.toFixed(2)).join(", ");
console.log(
  `${values.preset} preset (${gflopPerImage.toFixed(3)} GFLOP per image), ${provider.reason}; ` +
    `${navigator.hardwareConcurrency} cores (${Deno.build.target}), load average ${load}; ` +
    `median of ${runs} runs`,
);
console.log("");
console.log("| request | images | steps | median s | min s | ms per step | images/s |");
console.log("| ------- | ------ | ----- | -------- | ----- | ----------- | -------- |");
await request({ n: 2, steps: 2, seed: 0 }); // warm-up: session start-up, JIT
for (const { n, steps, sampler, label, guidance } of cases) {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    times.push(await request({ n, steps, sampler, seed: i, label, guidance }));
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  const cells = [
    `${sampler} png${label === undefined ? "" : `, label ${label}, guidance ${guidance}`}`,
    n,
    steps,
    (median / 1000).toFixed(2),
    (times[0] / 1000).toFixed(2),
    (median / steps).toFixed(1),
    (n / (median / 1000)).toFixed(2),
  ];
  console.log(`| ${cells.join(" | ")} |`);
}
await Promise.all(registry.models.map((m) => m.close()));
