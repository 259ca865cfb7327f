/**
 * A small classifier of 28x28 grey images (MNIST digits, Fashion-MNIST clothes), trained and
 * shipped by the project, whose pooled features are the space in which `deno task eval`
 * measures a Fréchet distance between generated and real images (the role Inception plays in
 * FID), and whose predictions give the class histogram of generated samples.
 *
 * Defined over the same `NetworkOps` as the U-Net, so it trains with tfjs and exports to ONNX
 * through the same code. `deno task train:classifier --dataset <name>` trains it on the npm
 * package's images and writes `weights/<name>-classifier.onnx`. The digits' is trained on
 * `mnist-full` (MNIST's 60,000 training digits) and measures models of both digit datasets.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { createRng } from "../lib/rng.ts";
import { DATA_SCALING } from "../model/scaling.ts";
import { BACKEND_CHOICES, initBackend } from "./backend.ts";
import type { NamedTensors } from "./checkpoint.ts";
import { FlagError, type FlagTable, runFlagCommand, usageText } from "./cli.ts";
import { BatchSampler, type Dataset, loadDataset } from "./data.ts";
import { onnxModelBytes, writeOnnxFiles } from "./export.ts";
import { describeNetwork, initParameters, type NetworkOps, ShapeOps } from "./network.ts";
import { OnnxGraphBuilder } from "./onnx_graph.ts";
import { TfjsOps } from "./tfjs_ops.ts";

/** Shape of the classifier. */
export interface ClassifierConfig {
  imageSize: number;
  channels: number;
  /** Channels of the four 3x3 convolutions; the last three have stride 2. */
  widths: [number, number, number, number];
  classes: number;
}

/**
 * The classifier of both datasets (28x28 grey, ten classes): 28 -> 14 -> 7 -> 4 pixels, 128
 * pooled features, 10 classes.
 */
export const MNIST_CLASSIFIER: ClassifierConfig = {
  imageSize: 28,
  channels: 1,
  widths: [32, 64, 64, 128],
  classes: 10,
};

/** Features (the pooled last convolution) and class logits of a batch `[n, c, s, s]`. */
export function classifierForward<T>(
  ops: NetworkOps<T>,
  x: T,
  config: ClassifierConfig,
): { features: T; logits: T } {
  let h = x;
  config.widths.forEach((width, i) => {
    h = ops.silu(
      ops.conv2d(h, `conv${i}`, { outChannels: width, kernel: 3, stride: i === 0 ? 1 : 2 }),
    );
  });
  const features = ops.globalMeanPool(h);
  return { features, logits: ops.dense(features, "head", config.classes) };
}

/** Every parameter of the classifier and its forward FLOPs per image. */
export function describeClassifier(config: ClassifierConfig): ReturnType<typeof describeNetwork> {
  return describeNetwork((ops: ShapeOps) =>
    classifierForward(ops, [1, config.channels, config.imageSize, config.imageSize], config).logits
  );
}

/** Options of {@linkcode trainClassifier}. */
export interface ClassifierTraining {
  steps?: number;
  batch?: number;
  lr?: number;
  seed?: number;
}

/**
 * Trains the classifier with Adam and softmax cross-entropy; returns its weights in the
 * canonical layouts. Deterministic for a seed on a given backend.
 */
export async function trainClassifier(
  train: Dataset,
  config: ClassifierConfig,
  options: ClassifierTraining = {},
): Promise<NamedTensors> {
  const { steps = 600, batch = 64, lr = 1e-3, seed = 0 } = options;
  const initial = initParameters(describeClassifier(config).params, seed);
  const vars = new Map(
    [...initial].map(([name, { shape, data }]) => [name, tf.variable(tf.tensor(data, shape))]),
  );
  const optimizer = tf.train.adam(lr);
  const sampler = new BatchSampler(train, {
    batchSize: batch,
    rng: createRng(seed),
    flip: false,
    dropLast: true,
  });
  const s = config.imageSize, c = config.channels;
  try {
    for (let step = 0; step < steps; step++) {
      const { x, labels } = sampler.next();
      const loss = optimizer.minimize(() => {
        const input = tf.transpose(tf.tensor4d(x, [labels.length, c, s, s]), [0, 2, 3, 1]); // NCHW -> NHWC
        const { logits } = classifierForward(new TfjsOps(vars), input, config);
        return tf.losses.softmaxCrossEntropy(
          tf.oneHot(tf.tensor1d(labels, "int32"), config.classes),
          logits,
        );
      }, true) as tf.Scalar;
      if (step % 100 === 0 || step === steps - 1) {
        console.log(
          `classifier step ${step + 1}/${steps} loss ${(await loss.data())[0].toFixed(4)}`,
        );
      }
      loss.dispose();
    }
    const out: NamedTensors = {};
    for (const [name, v] of vars) {
      out[name] = { shape: [...v.shape], data: (await v.data()) as Float32Array };
    }
    return out;
  } finally {
    vars.forEach((v) => v.dispose());
    optimizer.dispose();
  }
}

/** Builds the classifier's ONNX graph: input `x` `[N, C, H, W]`, outputs `features` and `logits`. */
export function classifierGraph(weights: NamedTensors, config: ClassifierConfig): OnnxGraphBuilder {
  const builder = new OnnxGraphBuilder(weights);
  const s = config.imageSize;
  const { features, logits } = classifierForward(builder, {
    name: "x",
    shape: [-1, config.channels, s, s],
  }, config);
  builder.identity(features, "features");
  builder.identity(logits, "logits");
  return builder;
}

/** The datasets a classifier can be trained on: 28x28 grey images of ten classes. */
export const CLASSIFIER_DATASETS = ["mnist", "mnist-full", "fashion-mnist"] as const;

/** Where `train:classifier` writes, and `eval` looks for, the classifier of `dataset`. */
export function classifierPath(dataset: string): string {
  return `weights/${dataset}-classifier.onnx`;
}

/** The flags of `deno task train:classifier`. */
const CLASSIFIER_FLAGS: FlagTable = {
  dataset: {
    default: "mnist",
    help: `the images to classify: ${CLASSIFIER_DATASETS.join(", ")}`,
  },
  out: {
    help: "where to write the ONNX classifier [weights/<dataset>-classifier.onnx]",
  },
  steps: { default: "600", help: "optimizer steps" },
  backend: { default: "auto", help: `tfjs backend: ${BACKEND_CHOICES.join(", ")}` },
  seed: { default: "0", help: "seed of the initial weights and the data order" },
  help: { boolean: true, help: "show this help" },
};

const CLASSIFIER_USAGE = usageText(
  "deno task train:classifier [flags]",
  "Trains the classifier whose features `deno task eval` measures samples with, on the\n" +
    "trainer's training split of the dataset (seed 0; mnist-full: MNIST's 60,000 training\n" +
    "digits), measures it on the held-out split (mnist-full: the 10,000 test digits), and\n" +
    "exports it to ONNX.",
  CLASSIFIER_FLAGS,
);

if (import.meta.main) {
  await runFlagCommand(CLASSIFIER_USAGE, CLASSIFIER_FLAGS, async (flags) => {
    const dataset = flags.oneOf("dataset", CLASSIFIER_DATASETS);
    const values = {
      out: flags.text("out") || classifierPath(dataset),
      steps: String(flags.integer("steps", 1)),
      backend: flags.oneOf("backend", BACKEND_CHOICES),
      seed: String(
        flags.number(
          "seed",
          (v) => Number.isInteger(v) && v >= 0 && v < 2 ** 32,
          "an integer in 0..4294967295",
        ),
      ),
    };
    if (!values.out.endsWith(".onnx")) {
      throw new FlagError(`--out must name a .onnx file, got ${values.out}`);
    }
    console.log((await initBackend(values.backend)).summary);
    console.log(`training the ${dataset} classifier for ${values.steps} steps`);
    // The split of a diffusion run with seed 0; the held-out part measures the accuracy.
    const data = await loadDataset(dataset, { seed: 0 });
    const started = performance.now();
    const weights = await trainClassifier(data.train, MNIST_CLASSIFIER, {
      steps: Number(values.steps),
      seed: Number(values.seed),
    });
    // Held-out accuracy, measured with tfjs before export (the export's parity is tested).
    const vars = new Map(Object.entries(weights).map(([k, v]) => [k, tf.tensor(v.data, v.shape)]));
    let correct = 0;
    const heldOut = data.heldOut;
    for (let i = 0; i < heldOut.length; i++) {
      const predicted = tf.tidy(() => {
        const x = tf.tensor4d(heldOut.image(i), [1, 28, 28, 1]);
        return tf.argMax(classifierForward(new TfjsOps(vars), x, MNIST_CLASSIFIER).logits, 1);
      });
      if ((await predicted.data())[0] === heldOut.label(i)) correct++;
      predicted.dispose();
    }
    vars.forEach((v) => v.dispose());
    const accuracy = correct / heldOut.length;
    const card = {
      kind: `${dataset}-classifier`,
      dataset,
      purpose: "feature space for the Fréchet distance and class histogram of `deno task eval`",
      config: MNIST_CLASSIFIER,
      trainingSteps: Number(values.steps),
      heldOutAccuracy: accuracy,
      heldOutImages: heldOut.length,
      trainingSeconds: (performance.now() - started) / 1000,
      dataScaling: DATA_SCALING,
    };
    const bytes = onnxModelBytes(classifierGraph(weights, MNIST_CLASSIFIER), {
      inputs: [{ name: "x", dims: ["N", 1, 28, 28], doc: "images scaled to [-1, 1]" }],
      outputs: [
        { name: "features", dims: ["N", MNIST_CLASSIFIER.widths[3]], doc: "pooled features" },
        { name: "logits", dims: ["N", MNIST_CLASSIFIER.classes], doc: "class logits" },
      ],
    }, {
      name: `${dataset.replace("-", "_")}_classifier`,
      docString: `${dataset} classifier for the toolkit's evaluation`,
      metadata: [{ key: "ddpm.classifier", value: JSON.stringify(card) }],
    });
    const files = await writeOnnxFiles(bytes, card, values.out);
    console.log(
      `held-out accuracy ${
        (100 * accuracy).toFixed(2)
      }% on ${heldOut.length} held-out images; wrote ${files.onnx}`,
    );
    return 0;
  });
}
