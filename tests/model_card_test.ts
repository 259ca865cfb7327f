import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema } from "onnx-buf";
import { ModelCardSchema, SamplingCardSchema } from "../model/card.ts";
import { cardPixelRange, DATA_SCALING, dataRange, PIXEL_RANGE } from "../model/scaling.ts";

const WEIGHTS = new URL("../weights/", import.meta.url);

/** The shipped models: each `.onnx` with its card in `ddpm.card` and a `.json` copy beside it. */
const SHIPPED = ["mnist", "mnist-cond", "fashion-cond"];

Deno.test("every shipped model card, in its .json and in its .onnx, is a card by the schema", async () => {
  for (const name of SHIPPED) {
    const fromFile = JSON.parse(await Deno.readTextFile(new URL(`${name}.json`, WEIGHTS)));
    const model = fromBinary(
      ModelProtoSchema,
      await Deno.readFile(new URL(`${name}.onnx`, WEIGHTS)),
    );
    const entry = model.metadataProps.find((p) => p.key === "ddpm.card");
    assert.ok(entry, `${name}.onnx has a ddpm.card`);
    for (const card of [fromFile, JSON.parse(entry.value)]) {
      const parsed = ModelCardSchema.safeParse(card);
      assert.ok(parsed.success, `${name}: ${JSON.stringify(parsed.error?.issues)}`);
      assert.ok(SamplingCardSchema.safeParse(card).success, name);
      // Cards exported before pixelRange have none and name the range in the sentence; newer
      // ones carry both. Either way the range is [-1, 1].
      if (card.pixelRange !== undefined) assert.deepEqual(card.pixelRange, [-1, 1], name);
      assert.deepEqual(cardPixelRange(card, name), [-1, 1]);
    }
  }
});

Deno.test("a card's pixel range is its pixelRange, else the one its dataScaling names", () => {
  assert.deepEqual(dataRange(DATA_SCALING), [...PIXEL_RANGE]);
  assert.deepEqual(cardPixelRange({ dataScaling: "[0, 1]" }), [0, 1]);
  // The numbers win over the sentence.
  assert.deepEqual(cardPixelRange({ dataScaling: DATA_SCALING, pixelRange: [0, 1] }), [0, 1]);
  assert.throws(() => cardPixelRange({ dataScaling: "raw pixels" }, "m"), /model m: dataScaling/);
});

Deno.test("the card schema refuses a pixelRange that is not [low, high] with low < high", () => {
  const card = { format: "onnx", dataScaling: DATA_SCALING };
  for (const pixelRange of [[1, -1], [0], [0, 1, 2], ["0", "1"]]) {
    const parsed = SamplingCardSchema.safeParse({ ...card, pixelRange });
    assert.ok(!parsed.success);
    assert.ok(parsed.error.issues.some((i) => i.path[0] === "pixelRange"), String(pixelRange));
  }
});
