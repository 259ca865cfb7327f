/**
 * The U-Net's building blocks as ONNX nodes: the same walk as training (`network.ts`),
 * emitting a graph instead of computing.
 *
 * Only operators that onnxruntime-web runs on both its WebAssembly and WebGPU execution
 * providers are used: Conv, Gemm, InstanceNormalization, Reshape, Mul, Add, Sigmoid, Concat,
 * Resize, Transpose, MatMul, Softmax, Sin, Cos, GlobalAveragePool, Gather, Identity.
 * GroupNormalization is not among them, so it is
 * lowered: reshape `[n, c, h, w]` to `[n, groups, c/groups * h * w]`, instance-normalise each
 * group, reshape back, then scale and shift per channel. Opset 17, NCHW throughout.
 *
 * @module
 */

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  AttributeProto_AttributeType,
  type AttributeProtoSchema,
  type NodeProto,
  NodeProtoSchema,
  type TensorProto,
  TensorProto_DataType,
  TensorProtoSchema,
} from "onnx-buf";
import { GROUP_NORM_EPSILON, timestepFrequencies } from "../model/constants.ts";
import type { NamedTensors } from "./checkpoint.ts";
import type { ConvOptions, NetworkOps } from "./network.ts";

type AttributeInit = MessageInitShape<typeof AttributeProtoSchema>;

/** A value in the graph: its name and its shape, with -1 for the dynamic batch dimension. */
export interface OnnxValue {
  readonly name: string;
  readonly shape: readonly number[];
}

/** Builds the node list and the initializers while `unetForward` walks the network. */
export class OnnxGraphBuilder implements NetworkOps<OnnxValue> {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  readonly #params: NamedTensors;
  readonly #used = new Set<string>();
  #counter = 0;

  /** `params` in the canonical layouts of `network.ts` (kernels `[kh, kw, in, out]`). */
  constructor(params: NamedTensors) {
    this.#params = params;
  }

  /** Parameter names the walk never read (a config/weights mismatch if non-empty). */
  unusedParameters(): string[] {
    return Object.keys(this.#params).filter((name) => !this.#used.has(name));
  }

  /** Copies `value` to a graph value with a fixed public name (a graph output). */
  identity(value: OnnxValue, name: string): OnnxValue {
    this.nodes.push(
      create(NodeProtoSchema, { opType: "Identity", input: [value.name], output: [name], name }),
    );
    return { name, shape: value.shape };
  }

  #fresh(hint: string): string {
    return `${hint}_${this.#counter++}`;
  }

  #node(opType: string, inputs: string[], name: string, attributes: AttributeInit[] = []): string {
    const output = this.#fresh(name);
    this.nodes.push(
      create(NodeProtoSchema, {
        opType,
        input: inputs,
        output: [output],
        name: output,
        attribute: attributes,
      }),
    );
    return output;
  }

  /** A float32 initializer from data; returns its name. */
  constant(name: string, dims: readonly number[], data: Float32Array): string {
    this.initializers.push(
      create(TensorProtoSchema, {
        name,
        dims: dims.map(BigInt),
        dataType: TensorProto_DataType.FLOAT,
        rawData: _littleEndianBytes(data),
      }),
    );
    return name;
  }

  /** An int64 initializer (shapes, axes); returns its name. */
  #int64(hint: string, values: readonly number[]): string {
    const name = this.#fresh(hint);
    const bytes = new Uint8Array(values.length * 8);
    const view = new DataView(bytes.buffer);
    values.forEach((v, i) => view.setBigInt64(i * 8, BigInt(v), true));
    this.initializers.push(
      create(TensorProtoSchema, {
        name,
        dims: [BigInt(values.length)],
        dataType: TensorProto_DataType.INT64,
        rawData: bytes,
      }),
    );
    return name;
  }

  #param(name: string): { shape: number[]; data: Float32Array } {
    const p = this.#params[name];
    if (!p) throw new RangeError(`the weights have no parameter ${name}`);
    this.#used.add(name);
    return p;
  }

  conv2d(x: OnnxValue, name: string, o: ConvOptions): OnnxValue {
    const w = this.#param(`${name}.w`);
    const b = this.#param(`${name}.b`);
    const [kh, kw, inC, outC] = w.shape;
    // [kh, kw, in, out] (tfjs) -> [out, in, kh, kw] (ONNX).
    const oihw = new Float32Array(w.data.length);
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        for (let c = 0; c < inC; c++) {
          for (let k = 0; k < outC; k++) {
            oihw[((k * inC + c) * kh + i) * kw + j] = w.data[((i * kw + j) * inC + c) * outC + k];
          }
        }
      }
    }
    const [n, , h, wd] = x.shape;
    const outH = Math.ceil(h / o.stride), outW = Math.ceil(wd / o.stride);
    // TensorFlow's 'same': total padding (out - 1) * stride + k - in, the odd pixel at the end.
    const padH = Math.max((outH - 1) * o.stride + kh - h, 0);
    const padW = Math.max((outW - 1) * o.stride + kw - wd, 0);
    const output = this.#node(
      "Conv",
      [
        x.name,
        this.constant(`${name}.w`, [outC, inC, kh, kw], oihw),
        this.constant(`${name}.b`, [outC], b.data),
      ],
      name,
      [
        _ints("kernel_shape", [kh, kw]),
        _ints("strides", [o.stride, o.stride]),
        _ints("pads", [
          Math.floor(padH / 2),
          Math.floor(padW / 2),
          padH - Math.floor(padH / 2),
          padW - Math.floor(padW / 2),
        ]),
      ],
    );
    return { name: output, shape: [n, outC, outH, outW] };
  }

  dense(x: OnnxValue, name: string): OnnxValue {
    const w = this.#param(`${name}.w`);
    const b = this.#param(`${name}.b`);
    const output = this.#node("Gemm", [
      x.name,
      this.constant(`${name}.w`, w.shape, w.data),
      this.constant(`${name}.b`, b.shape, b.data),
    ], name);
    return { name: output, shape: [x.shape[0], w.shape[1]] };
  }

  groupNorm(x: OnnxValue, name: string, groups: number): OnnxValue {
    const [, c, h, w] = x.shape;
    const grouped = this.#node(
      "Reshape",
      [x.name, this.#int64("shape", [0, groups, -1])],
      `${name}_group`,
    );
    const normed = this.#node(
      "InstanceNormalization",
      [
        grouped,
        this.constant(this.#fresh(`${name}.ones`), [groups], new Float32Array(groups).fill(1)),
        this.constant(this.#fresh(`${name}.zeros`), [groups], new Float32Array(groups)),
      ],
      `${name}_norm`,
      [{ name: "epsilon", type: AttributeProto_AttributeType.FLOAT, f: GROUP_NORM_EPSILON }],
    );
    const back = this.#node(
      "Reshape",
      [normed, this.#int64("shape", [0, c, h, w])],
      `${name}_ungroup`,
    );
    const g = this.#param(`${name}.g`), b = this.#param(`${name}.b`);
    const scaled = this.#node(
      "Mul",
      [back, this.constant(`${name}.g`, [c, 1, 1], g.data)],
      `${name}_scale`,
    );
    const output = this.#node("Add", [scaled, this.constant(`${name}.b`, [c, 1, 1], b.data)], name);
    return { name: output, shape: x.shape };
  }

  silu(x: OnnxValue): OnnxValue {
    const s = this.#node("Sigmoid", [x.name], "sigmoid");
    return { name: this.#node("Mul", [x.name, s], "silu"), shape: x.shape };
  }

  add(a: OnnxValue, b: OnnxValue): OnnxValue {
    return { name: this.#node("Add", [a.name, b.name], "add"), shape: a.shape };
  }

  addPerChannel(x: OnnxValue, v: OnnxValue): OnnxValue {
    const column = this.#node(
      "Reshape",
      [v.name, this.#int64("shape", [0, -1, 1, 1])],
      "per_channel",
    );
    return { name: this.#node("Add", [x.name, column], "add_per_channel"), shape: x.shape };
  }

  concatChannels(a: OnnxValue, b: OnnxValue): OnnxValue {
    const output = this.#node("Concat", [a.name, b.name], "concat", [_int("axis", 1)]);
    return { name: output, shape: [a.shape[0], a.shape[1] + b.shape[1], a.shape[2], a.shape[3]] };
  }

  upsampleNearest2x(x: OnnxValue): OnnxValue {
    // Output pixel y reads input floor(y / 2): 'asymmetric' coordinates with 'floor'.
    const scales = this.constant(this.#fresh("scales"), [4], new Float32Array([1, 1, 2, 2]));
    const output = this.#node("Resize", [x.name, "", scales], "upsample", [
      _string("mode", "nearest"),
      _string("coordinate_transformation_mode", "asymmetric"),
      _string("nearest_mode", "floor"),
    ]);
    return { name: output, shape: [x.shape[0], x.shape[1], x.shape[2] * 2, x.shape[3] * 2] };
  }

  dropout(x: OnnxValue): OnnxValue {
    return x; // inference graph
  }

  attention(q: OnnxValue, k: OnnxValue, v: OnnxValue): OnnxValue {
    const [, c, h, w] = q.shape;
    const flat = (t: OnnxValue) =>
      this.#node("Reshape", [t.name, this.#int64("shape", [0, c, -1])], "flat");
    // logits[i, j] = q_i . k_j / sqrt(c): [n, hw, c] x [n, c, hw].
    const qT = this.#node("Transpose", [flat(q)], "q_t", [_ints("perm", [0, 2, 1])]);
    const logits = this.#node("MatMul", [qT, flat(k)], "logits");
    const scale = this.constant(
      this.#fresh("attn_scale"),
      [],
      new Float32Array([1 / Math.sqrt(c)]),
    );
    const weights = this.#node(
      "Softmax",
      [this.#node("Mul", [logits, scale], "scaled")],
      "softmax",
      [
        _int("axis", -1),
      ],
    );
    // out[c, i] = sum_j w[i, j] v[c, j]: v [n, c, hw] x w^T [n, hw, hw].
    const wT = this.#node("Transpose", [weights], "w_t", [_ints("perm", [0, 2, 1])]);
    const mixed = this.#node("MatMul", [flat(v), wT], "mixed");
    return {
      name: this.#node("Reshape", [mixed, this.#int64("shape", [0, c, h, w])], "unflat"),
      shape: q.shape,
    };
  }

  globalMeanPool(x: OnnxValue): OnnxValue {
    const pooled = this.#node("GlobalAveragePool", [x.name], "pool"); // [n, c, 1, 1]
    const output = this.#node("Reshape", [pooled, this.#int64("shape", [0, -1])], "pooled");
    return { name: output, shape: [x.shape[0], x.shape[1]] };
  }

  embedding(indices: OnnxValue, name: string, rows: number, dim: number): OnnxValue {
    const table = this.#param(`${name}.w`);
    if (table.shape[0] !== rows || table.shape[1] !== dim) {
      throw new RangeError(
        `${name}.w has shape [${table.shape}], the network needs [${rows},${dim}]`,
      );
    }
    const output = this.#node(
      "Gather",
      [this.constant(`${name}.w`, table.shape, table.data), indices.name],
      name,
      [_int("axis", 0)],
    );
    return { name: output, shape: [indices.shape[0], dim] };
  }

  timestepEmbedding(t: OnnxValue, dim: number): OnnxValue {
    const freqs = timestepFrequencies(dim);
    const column = this.#node("Reshape", [t.name, this.#int64("shape", [-1, 1])], "t_column");
    const args = this.#node(
      "Mul",
      [column, this.constant("temb.freqs", [1, freqs.length], freqs)],
      "t_args",
    );
    const output = this.#node(
      "Concat",
      [this.#node("Sin", [args], "sin"), this.#node("Cos", [args], "cos")],
      "temb",
      [
        _int("axis", 1),
      ],
    );
    return { name: output, shape: [t.shape[0], dim] };
  }
}

function _int(name: string, value: number): AttributeInit {
  return { name, type: AttributeProto_AttributeType.INT, i: BigInt(value) };
}

function _ints(name: string, values: number[]): AttributeInit {
  return { name, type: AttributeProto_AttributeType.INTS, ints: values.map(BigInt) };
}

function _string(name: string, value: string): AttributeInit {
  return { name, type: AttributeProto_AttributeType.STRING, s: new TextEncoder().encode(value) };
}

/** float32 values as little-endian bytes, as ONNX's raw_data requires on every platform. */
function _littleEndianBytes(data: Float32Array): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(data.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i], true);
  return bytes;
}
