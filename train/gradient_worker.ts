/**
 * A gradient worker: a Deno worker thread with its own tfjs WebAssembly backend that computes
 * the loss and gradients of its share of each batch. The weights come from a shared buffer the
 * trainer updates between steps; the gradients go to a shared buffer of the worker's own. See
 * `gradient_pool.ts` for the other side.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import * as tf from "@tensorflow/tfjs";
import { initBackend } from "./backend.ts";
import type { ParamLayout } from "./optimizer.ts";
import { lossGradients, type LossSetup, type LossValues, type StepInputs } from "./step.ts";

/** The first message: what the worker computes and where its buffers are. */
export interface WorkerInit {
  readonly kind: "init";
  readonly setup: LossSetup;
  readonly layout: ParamLayout;
  /** The weights, flat in `layout` order; read at the start of every step. */
  readonly params: SharedArrayBuffer;
  /** This worker's gradients, flat in `layout` order; written by every step. */
  readonly grads: SharedArrayBuffer;
}

/** One step on this worker's share of the batch. */
export interface WorkerStep {
  readonly kind: "step";
  readonly id: number;
  readonly inputs: StepInputs;
}

/** What the worker answers. */
export type WorkerReply =
  | { readonly kind: "ready" }
  | { readonly kind: "done"; readonly id: number; readonly losses: LossValues }
  | { readonly kind: "failed"; readonly id?: number; readonly message: string };

interface Loaded {
  init: WorkerInit;
  params: Float32Array;
  grads: Float32Array;
  variables: tf.Variable[];
}

let loaded: Loaded | null = null;

async function load(init: WorkerInit): Promise<void> {
  await initBackend("wasm");
  const params = new Float32Array(init.params);
  const variables = init.layout.names.map((_, i) =>
    tf.variable(tf.tensor(_slice(params, init.layout, i), [...init.layout.shapes[i]]))
  );
  loaded = { init, params, grads: new Float32Array(init.grads), variables };
}

function step({ init, params, grads, variables }: Loaded, inputs: StepInputs): LossValues {
  const { layout, setup } = init;
  // The trainer updated the shared weights since the last step: take them in.
  tf.tidy(() => {
    variables.forEach((v, i) => v.assign(tf.tensor(_slice(params, layout, i), v.shape)));
  });
  const byName = new Map(layout.names.map((name, i) => [name, variables[i] as tf.Tensor]));
  const { mse, vb, grads: byVariable } = lossGradients(byName, variables, setup, {
    ...inputs,
    training: true,
  });
  try {
    variables.forEach((v, i) => {
      grads.set(byVariable[v.name].dataSync() as Float32Array, layout.offsets[i]);
    });
    return { loss: mse.dataSync()[0], ...(vb ? { vb: vb.dataSync()[0] } : {}) };
  } finally {
    tf.dispose([mse, ...(vb ? [vb] : []), ...Object.values(byVariable)]);
  }
}

/** A copy of tensor `i` (tfjs may keep the array it is given; the shared one keeps changing). */
function _slice(flat: Float32Array, layout: ParamLayout, i: number): Float32Array {
  return flat.slice(layout.offsets[i], layout.offsets[i] + layout.sizes[i]);
}

self.onmessage = async (event: MessageEvent<WorkerInit | WorkerStep>) => {
  const message = event.data;
  const reply = (r: WorkerReply) => self.postMessage(r);
  if (message.kind === "init") {
    try {
      await load(message);
      reply({ kind: "ready" });
    } catch (error) {
      reply({ kind: "failed", message: `could not start: ${(error as Error).message}` });
    }
    return;
  }
  try {
    if (!loaded) throw new Error("a step arrived before the worker was started");
    reply({ kind: "done", id: message.id, losses: step(loaded, message.inputs) });
  } catch (error) {
    reply({ kind: "failed", id: message.id, message: (error as Error).message });
  }
};
