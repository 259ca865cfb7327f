/**
 * Small exported models for tests: random (non-trivial) weights for any U-Net preset, a
 * model card, the ONNX bytes built from both with the real exporter, and a server registry
 * of such models.
 *
 * @module
 */

import { createRng } from "../lib/rng.ts";
import type { NamedTensors } from "../train/checkpoint.ts";
import type { ModelCard } from "../model/card.ts";
import { buildOnnxModel } from "../train/export.ts";
import { describeUNet, initParameters, PRESETS, type UNetConfig } from "../train/network.ts";
import { chooseProvider } from "../serve/provider.ts";
import { loadRegistry, type ModelRegistry } from "../serve/registry.ts";

/**
 * Weights with every tensor non-trivial: the initialiser's zero-initialised output layers
 * would make the network's output 0 and hide any mismatch, so every tensor gets random
 * values here (norm scales around 1, everything else the fan-avg scale or 0.1).
 */
export function randomWeights(config: UNetConfig, seed: number): NamedTensors {
  const specs = describeUNet(config).params;
  const initial = initParameters(specs, seed);
  const rng = createRng(seed);
  const out: NamedTensors = {};
  for (const spec of specs) {
    const { shape, data } = initial.get(spec.name) as { shape: number[]; data: Float32Array };
    const noise = rng.normal(data.length);
    if (spec.init.kind === "fanAvgUniform") {
      out[spec.name] = { shape, data };
    } else if (spec.name.endsWith(".w")) {
      // A zero-initialised kernel: the scale of an ordinary one, 1 / sqrt(fan-in).
      const fanIn = shape.slice(0, -1).reduce((a, b) => a * b, 1);
      out[spec.name] = { shape, data: noise.map((z) => z / Math.sqrt(fanIn)) };
    } else {
      // Biases around 0, norm scales around 1.
      out[spec.name] = { shape, data: data.map((v, i) => v + 0.1 * noise[i]) };
    }
  }
  return out;
}

/** The tiny preset conditional on three classes (for guidance and label tests). */
export const TINY_CONDITIONAL: UNetConfig = { ...PRESETS.tiny, numClasses: 3 };

/** Class names of {@linkcode TINY_CONDITIONAL}. */
export const TINY_CLASSES = ["circle", "square", "cross"];

/**
 * A model card for `config` with the paper's schedule, eps prediction and fixedlarge variance;
 * a conditional config gets the class names `c0`, `c1`, ... (or `TINY_CLASSES` for three).
 */
export function card(config: UNetConfig): ModelCard {
  const numClasses = config.numClasses ?? 0;
  return {
    format: "onnx",
    opset: 17,
    exporter: { name: "test", version: "0" },
    inputs: { x: "x", t: "t", ...(numClasses > 0 ? { y: "y" } : {}) },
    output: "out",
    schedule: { kind: "linear", timesteps: 1000, betaStart: 1e-4, betaEnd: 0.02 },
    prediction: "eps",
    variance: "fixedlarge",
    imageSize: config.imageSize,
    channels: config.channels as ModelCard["channels"],
    dataScaling: "[-1, 1]",
    dataset: "test",
    ...(numClasses > 0
      ? {
        classNames: numClasses === 3
          ? [...TINY_CLASSES]
          : Array.from({ length: numClasses }, (_, k) => `c${k}`),
      }
      : {}),
    trainingSteps: 0,
    parameters: 0,
    weights: "ema",
    config,
    createdAt: "2026-01-01T00:00:00Z",
  };
}

/**
 * The ONNX bytes of `config` with random weights from `seed`; `overrides` change card fields
 * (another schedule or prediction, say).
 */
export function randomOnnxModel(
  config: UNetConfig,
  seed = 1,
  overrides: Partial<ModelCard> = {},
): Uint8Array {
  return buildOnnxModel(randomWeights(config, seed), config, { ...card(config), ...overrides });
}

/**
 * A registry of small exported models on WebAssembly: `tiny` (the tiny preset with the
 * paper's schedule, eps prediction); with `variant`, `tiny-v` (a cosine schedule with T = 100
 * and v prediction), to show that each model samples with its own card; with `conditional`,
 * `tiny-cond` (`TINY_CONDITIONAL`, classes circle, square, cross).
 */
export async function tinyRegistry(
  options: { variant?: boolean; conditional?: boolean } = {},
): Promise<ModelRegistry> {
  const sources = [{ name: "tiny", bytes: randomOnnxModel(PRESETS.tiny, 1) }];
  if (options.conditional) {
    sources.push({ name: "tiny-cond", bytes: randomOnnxModel(TINY_CONDITIONAL, 3) });
  }
  if (options.variant) {
    sources.push({
      name: "tiny-v",
      bytes: randomOnnxModel(PRESETS.tiny, 2, {
        schedule: { kind: "cosine", timesteps: 100, betaStart: 1e-4, betaEnd: 0.02 },
        prediction: "v",
      }),
    });
  }
  return await loadRegistry(sources, await chooseProvider("wasm"));
}
