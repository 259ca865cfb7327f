/**
 * The weights of an exported model read back for training: `deno task train --init-from
 * weights/mnist-cond.onnx` fine-tunes a shipped model whose checkpoint is gone. The exporter
 * (`train/onnx_graph.ts`) names every parameter's initializer after the parameter and changes
 * only the layout of convolution kernels (tfjs `[kh, kw, in, out]` to ONNX `[out, in, kh, kw]`),
 * so each parameter of the card's network comes back bit for bit.
 *
 * @module
 */

import { fromBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema, type TensorProto } from "onnx-buf";
import { cardSplitSeed } from "../model/card.ts";
import { readModelCard } from "../model/onnx.ts";
import { type UNetConfig, UNetConfigSchema } from "../model/config.ts";
import { type Checkpoint, loadCheckpoint } from "./checkpoint.ts";
import type { NamedTensors } from "./checkpoint_format.ts";
import { describeUNet } from "./network.ts";
import { checkpointSplitSeed } from "./run_state.ts";

/** Weights to start a run from, with where they came from. */
export interface InitialWeights {
  /** The steps the weights were trained for. */
  readonly step: number;
  /** The network they belong to. */
  readonly config: UNetConfig;
  readonly params: NamedTensors;
  readonly ema: NamedTensors;
  /** The dataset they were trained on, as the checkpoint or card names it. */
  readonly dataset?: string;
  /** The seed of that run's train / held-out split (`checkpointSplitSeed`, `cardSplitSeed`). */
  readonly splitSeed?: number;
}

/**
 * The weights of a checkpoint (`.ddpm`: its live and EMA weights) or of an exported model
 * (`.onnx`: the weights it was exported with, as both the live and the EMA weights).
 */
export async function loadInitialWeights(path: string): Promise<InitialWeights> {
  if (!path.toLowerCase().endsWith(".onnx")) {
    const checkpoint: Checkpoint = await loadCheckpoint(path);
    const { dataset } = checkpoint.metadata;
    return {
      step: checkpoint.step,
      config: UNetConfigSchema.parse(checkpoint.config),
      params: checkpoint.params,
      ema: checkpoint.ema,
      ...(typeof dataset === "string" ? { dataset } : {}),
      splitSeed: checkpointSplitSeed(checkpoint),
    };
  }
  const bytes = await Deno.readFile(path);
  const card = readModelCard(bytes, path);
  const config = UNetConfigSchema.parse(card.config);
  const params = weightsFromOnnx(bytes, config, path);
  return {
    step: card.trainingSteps,
    config,
    params,
    ema: params,
    dataset: card.dataset,
    splitSeed: cardSplitSeed(card),
  };
}

/** Every parameter of `config`'s network from the initializers of an exported model. */
export function weightsFromOnnx(
  bytes: Uint8Array,
  config: UNetConfig,
  source = "model",
): NamedTensors {
  const initializers = new Map<string, TensorProto>();
  for (const tensor of fromBinary(ModelProtoSchema, bytes).graph?.initializer ?? []) {
    initializers.set(tensor.name, tensor);
  }
  const params: NamedTensors = {};
  for (const { name, shape } of describeUNet(config).params) {
    const tensor = initializers.get(name);
    if (!tensor) throw new RangeError(`${source} has no initializer for parameter ${name}`);
    const data = _floats(tensor, source);
    const size = shape.reduce((a, b) => a * b, 1);
    if (data.length !== size) {
      throw new RangeError(
        `${source}: ${name} holds ${data.length} values, the card's network needs [${shape}]`,
      );
    }
    params[name] = {
      shape: [...shape],
      data: shape.length === 4 ? _oihwToHwio(data, shape) : data,
    };
  }
  return params;
}

/** float32 values of an initializer, from `raw_data` (little-endian) or `float_data`. */
function _floats(tensor: TensorProto, source: string): Float32Array {
  if (tensor.rawData.length > 0) {
    const view = new DataView(
      tensor.rawData.buffer,
      tensor.rawData.byteOffset,
      tensor.rawData.byteLength,
    );
    return Float32Array.from(
      { length: tensor.rawData.byteLength / 4 },
      (_, i) => view.getFloat32(i * 4, true),
    );
  }
  if (tensor.floatData.length > 0) return Float32Array.from(tensor.floatData);
  throw new RangeError(`${source}: initializer ${tensor.name} holds no float32 values`);
}

/** A kernel from ONNX's `[out, in, kh, kw]` back to tfjs's `[kh, kw, in, out]` (`shape`). */
function _oihwToHwio(oihw: Float32Array, shape: readonly number[]): Float32Array {
  const [kh, kw, inC, outC] = shape;
  const hwio = new Float32Array(oihw.length);
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      for (let c = 0; c < inC; c++) {
        for (let k = 0; k < outC; k++) {
          hwio[((i * kw + j) * inC + c) * outC + k] = oihw[((k * inC + c) * kh + i) * kw + j];
        }
      }
    }
  }
  return hwio;
}
