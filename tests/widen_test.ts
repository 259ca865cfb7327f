import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createRng } from "../lib/rng.ts";
import { loadOnnxModel, onnxDenoiser } from "../model/onnx.ts";
import { initBackend } from "../train/backend.ts";
import type { NamedTensors } from "../train/checkpoint.ts";
import { buildOnnxModel } from "../train/export.ts";
import { PRESETS, type UNetConfig } from "../train/network.ts";
import type { RunEvent } from "../train/run.ts";
import { loadRunCheckpoint } from "../train/run_state.ts";
import { tfjsDenoiser } from "../train/tfjs_ops.ts";
import { widenedConfig, widenWeights } from "../train/widen.ts";
import { card, randomWeights, TINY_CONDITIONAL } from "./_models.ts";
import { runTinyTraining } from "./_tiny_run.ts";

// Bound: the wide network sums k shares of each product where the narrow one has one product,
// in float32 and another order, so the outputs agree to rounding: ~1e-7 relative per operation
// through ~50 layers and attention's softmax, as the export's comparison with tfjs (1e-4 of the
// output's largest magnitude). A wrong copy, share or scale moves outputs by their own size.
const RELATIVE_BOUND = 1e-4;

const TINY_LEARNED: UNetConfig = { ...TINY_CONDITIONAL, learnVariance: true };

/** The network's output on fixed inputs (three timesteps; a class, "no class" and a class). */
async function outputs(
  weights: NamedTensors,
  config: UNetConfig,
  onnx = false,
): Promise<Float32Array[]> {
  const n = 3, s = config.imageSize, c = config.channels;
  const shape = [n, c, s, s] as const;
  const x = createRng(8).normal(n * c * s * s);
  const labels = config.numClasses ? Int32Array.of(0, config.numClasses, 1) : undefined;
  const timesteps = [[0, 1, 2], [250, 500, 999], [10, 640, 77]].map((t) => new Float32Array(t));
  if (onnx) {
    const model = await loadOnnxModel(buildOnnxModel(weights, config, card(config)), "wasm");
    try {
      const denoise = onnxDenoiser(model);
      return await Promise.all(timesteps.map((t) => denoise(x, t, shape, labels)));
    } finally {
      await model.session.release();
    }
  }
  const params = new Map(Object.entries(weights).map(([k, v]) => [k, tf.tensor(v.data, v.shape)]));
  try {
    const denoise = tfjsDenoiser(params, config);
    const out: Float32Array[] = [];
    for (const t of timesteps) out.push(await denoise(x, t, shape, labels));
    return out;
  } finally {
    params.forEach((p) => p.dispose());
  }
}

function assertClose(got: Float32Array[], want: Float32Array[], what: string): void {
  let maxAbs = 0, scale = 0;
  want.forEach((w, b) =>
    w.forEach((v, i) => {
      maxAbs = Math.max(maxAbs, Math.abs(v - got[b][i]));
      scale = Math.max(scale, Math.abs(v));
    })
  );
  assert.ok(
    scale > 0.1,
    `${what}: outputs must be non-trivial for the comparison to mean anything`,
  );
  assert.ok(
    maxAbs <= RELATIVE_BOUND * scale,
    `${what}: max |wide - narrow| ${maxAbs}, scale ${scale}`,
  );
}

Deno.test("a widened U-Net computes its start's function, in tfjs and in its ONNX export", async () => {
  await initBackend("cpu");
  for (const config of [PRESETS.tiny, TINY_LEARNED]) {
    const weights = randomWeights(config, 3);
    const narrow = await outputs(weights, config);
    for (const k of [2, 3]) {
      // The live and the EMA weights, as separate copies, split alike.
      const copy = structuredClone(weights);
      const wide = widenWeights({ params: weights, ema: copy }, config, k * config.ch, 7);
      assert.deepEqual(wide.config, { ...config, ch: k * config.ch, timestepDim: config.ch });
      assert.notEqual(wide.ema["conv_in.w"], wide.params["conv_in.w"]);
      assert.deepEqual(wide.ema, wide.params);
      const what = `${config.numClasses ? "conditional, learned variance" : "tiny"}, x${k}`;
      assertClose(await outputs(wide.params, wide.config), narrow, `${what} (tfjs)`);
      assertClose(await outputs(wide.params, wide.config, true), narrow, `${what} (onnx)`);
    }
  }
});

Deno.test("widening repeats a channel's outputs and splits its inputs in unequal shares", () => {
  const config = PRESETS.tiny;
  const weights = randomWeights(config, 3);
  const wide = widenWeights({ params: weights, ema: weights }, config, 2 * config.ch, 7).params;
  // down.0.res.0.conv2.w: [3, 3, 8, 8] -> [3, 3, 16, 16], both channel axes widened.
  const old = weights["down.0.res.0.conv2.w"].data, grown = wide["down.0.res.0.conv2.w"].data;
  assert.deepEqual(wide["down.0.res.0.conv2.w"].shape, [3, 3, 16, 16]);
  let unequal = 0;
  for (let o = 0; o < 9; o++) {
    for (let r = 0; r < 8; r++) {
      for (let c = 0; c < 8; c++) {
        const value = old[(o * 8 + r) * 8 + c];
        const at = (row: number, col: number) => grown[(o * 16 + row) * 16 + col];
        for (const col of [2 * c, 2 * c + 1]) {
          const [a, b] = [at(2 * r, col), at(2 * r + 1, col)];
          // Two shares of the old weight that sum to it (to float32 rounding of each share).
          assert.ok(
            Math.abs(a + b - value) <= 1e-6 * Math.abs(value) + 1e-12,
            `${a} + ${b} != ${value}`,
          );
          if (Math.abs(a - b) > 1e-3 * Math.abs(value)) unequal++;
        }
        // Both output copies of a channel get the same weights.
        assert.equal(at(2 * r, 2 * c), at(2 * r, 2 * c + 1));
      }
    }
  }
  assert.ok(unequal > 0.95 * 9 * 8 * 8 * 2, `only ${unequal} of the split weights differ`);
  // A bias and a norm scale repeat; attention's query is scaled by 1 / sqrt(2).
  const bias = weights["down.0.res.0.conv2.b"].data;
  assert.deepEqual([...wide["down.0.res.0.conv2.b"].data], [...bias].flatMap((v) => [v, v]));
  const gain = weights["mid.attn.0.norm.g"].data;
  assert.deepEqual([...wide["mid.attn.0.norm.g"].data], [...gain].flatMap((v) => [v, v]));
  const q = weights["mid.attn.0.q.b"].data;
  wide["mid.attn.0.q.b"].data.forEach((v, i) =>
    assert.ok(Math.abs(v - q[i >> 1] / Math.SQRT2) <= 1e-7 * Math.abs(q[i >> 1]))
  );
});

Deno.test("a network widens only to a multiple of its width, named in the error", () => {
  for (const ch of [12, 8, 4, 20.5]) {
    assert.throws(
      () => widenedConfig(PRESETS.tiny, ch),
      new RegExp(
        `^RangeError: a network of ch 8 widens only to a multiple of it \\(16, 24, \\.\\.\\.\\), not to ch ${ch}$`,
      ),
    );
  }
  // A widened network widens again from its own width, keeping the first start's embedding.
  const once = widenedConfig(PRESETS.tiny, 16);
  assert.deepEqual(widenedConfig(once, 32), { ...PRESETS.tiny, ch: 32, timestepDim: 8 });
});

Deno.test("a run started from a narrower model (--init-from, --ch 2x) trains the widened network", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const config = PRESETS.tiny;
    const path = `${dir}/narrow.onnx`;
    await Deno.writeFile(path, buildOnnxModel(randomWeights(config, 5), config, card(config)));
    const notices: string[] = [];
    const report = (event: RunEvent) => {
      if (event.kind === "notice") notices.push(event.message);
    };
    const result = await runTinyTraining(`${dir}/run`, {
      config: { ...config, ch: 16 },
      initFrom: path,
      report,
    });
    assert.match(
      notices[0],
      new RegExp(
        `from the weights of ${path} \\(step 0\\), widened from ch 8 to 16: each channel split into 2 copies`,
      ),
    );
    const saved = await loadRunCheckpoint(result.checkpoint);
    assert.deepEqual(saved.config, { ...config, ch: 16, timestepDim: 8 });
    assert.deepEqual(saved.params["temb.dense0.w"].shape, [8, 64]);
    assert.deepEqual(saved.metadata.initializedFrom, { path, step: 0 });
    // A run from the widened checkpoint at its own width keeps its timestep embedding's width.
    const again = await runTinyTraining(`${dir}/again`, {
      config: { ...config, ch: 16 },
      initFrom: result.checkpoint,
    });
    assert.deepEqual((await loadRunCheckpoint(again.checkpoint)).config.timestepDim, 8);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
