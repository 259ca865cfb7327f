/**
 * `deno task eval`, `export` and `train:classifier` as a user runs them: `--help`, one
 * `error:` line naming the flag and value (exit 2 for a bad flag, 1 for a failure) and never
 * a stack trace, `--guidance` refused for an unconditional model, and `export` without
 * `--out` writing beside the checkpoint.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { evalWorkload } from "../train/eval.ts";
import { runTinyTraining } from "./_tiny_run.ts";

const ROOT = new URL("..", import.meta.url);

/** Runs a tool as its task does (`--allow-read --allow-write --allow-env`). */
async function tool(
  entry: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-env", entry, ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

function assertCleanError(stderr: string, message: RegExp): void {
  assert.match(stderr, message);
  assert.ok(!/\n\s+at /.test(stderr), `a stack trace:\n${stderr}`);
  assert.ok(!/Uncaught/.test(stderr), `an uncaught exception:\n${stderr}`);
}

Deno.test("eval, export and train:classifier answer --help with their flags", async () => {
  for (
    const [entry, pattern] of [
      ["train/eval.ts", /Usage: deno task eval[\s\S]*--samplers <value>[\s\S]*\[ddim:20,ddim:50\]/],
      [
        "train/export.ts",
        /Usage: deno task export[\s\S]*--raw\s+export the live training weights[\s\S]*EMA/,
      ],
      ["train/classifier.ts", /Usage: deno task train:classifier[\s\S]*--steps <value>/],
    ] as const
  ) {
    const { code, stdout } = await tool(entry, ["--help"]);
    assert.equal(code, 0, entry);
    assert.match(stdout, pattern);
  }
});

Deno.test("bad flags and missing files are one error line naming them, with no stack trace", async () => {
  const cases: [string, string[], number, RegExp][] = [
    [
      "train/eval.ts",
      ["--samplers", "ddim"],
      2,
      /^error: --samplers: sampler settings look like ddim:50, one of ddpm, ddim, dpmpp-2m, dpmpp-2m-sde, unipc and a step count, got "ddim"/,
    ],
    [
      "train/eval.ts",
      ["--samples", "many"],
      2,
      /^error: --samples must be an integer >= 1, got "many"/,
    ],
    [
      "train/eval.ts",
      ["--model", "weights/none.onnx"],
      1,
      /^error: --model weights\/none\.onnx: no such file/,
    ],
    [
      "train/eval.ts",
      ["--guidance", "3"],
      2,
      /^error: --guidance applies to a class-conditional model; weights\/mnist\.onnx has no classes/,
    ],
    [
      "train/eval.ts",
      ["--reference", "fashion-mnist"],
      2,
      /^error: --reference: reference must be one of mnist, mnist-full for a model of mnist \(held-out images no model of it trained on\), got "fashion-mnist"/,
    ],
    ["train/eval.ts", ["--bogus"], 2, /^error: Unknown option '--bogus'/],
    ["train/export.ts", [], 2, /^error: --ckpt is required/],
    [
      "train/export.ts",
      ["--ckpt", "runs/none"],
      1,
      /^error: --ckpt runs\/none: no such file or directory/,
    ],
    [
      "train/export.ts",
      ["--ckpt", "x.ddpm", "--out", "x.bin"],
      2,
      /^error: --out must name a \.onnx file, got x\.bin/,
    ],
    [
      "train/export.ts",
      ["--refresh", "weights/mnist-cond.json"],
      2,
      /^error: --refresh must name a \.onnx file, got weights\/mnist-cond\.json/,
    ],
    [
      "train/export.ts",
      ["--refresh", "weights/mnist-cond.onnx", "--ckpt", "runs/x"],
      2,
      /^error: --refresh updates a model in place; it takes no --ckpt, --out or --raw/,
    ],
    [
      "train/export.ts",
      ["--refresh", "weights/none.onnx"],
      1,
      /^error: --refresh weights\/none\.onnx: no such file/,
    ],
    [
      "train/classifier.ts",
      ["--backend", "cuda"],
      2,
      /^error: --backend must be one of auto, webgpu, wasm, cpu, got cuda/,
    ],
  ];
  for (const [entry, args, expected, message] of cases) {
    const { code, stderr } = await tool(entry, args);
    assert.equal(code, expected, `${entry} ${args.join(" ")}: ${stderr}`);
    assertCleanError(stderr, message);
  }
});

Deno.test("export without --out writes beside the checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await runTinyTraining(dir);
    const { code, stdout, stderr } = await tool("train/export.ts", ["--ckpt", dir]);
    assert.equal(code, 0, stderr);
    const onnx = join(dir, "ckpt-00000001.onnx");
    assert.match(stdout, new RegExp(`^wrote ${onnx.replaceAll(".", "\\.")} `));
    assert.ok((await Deno.stat(onnx)).size > 0);
    assert.ok((await Deno.stat(join(dir, "ckpt-00000001.json"))).size > 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("export --refresh leaves an up-to-date card alone: the shipped models carry their class counts", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const name of ["mnist-cond", "fashion-cond", "mnist"]) {
      // A copy, so that a shipped model without its counts fails here without being changed.
      const copy = join(dir, `${name}.onnx`);
      await Deno.copyFile(new URL(`weights/${name}.onnx`, ROOT), copy);
      const before = await Deno.readFile(copy);
      const { code, stdout, stderr } = await tool("train/export.ts", ["--refresh", copy]);
      assert.equal(code, 0, stderr);
      assert.equal(stdout.trim(), `${copy}: its card is up to date; nothing written`);
      assert.deepEqual(await Deno.readFile(copy), before);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("evalWorkload() counts T per bound image and samples x steps per setting, twice when guided", () => {
  const samplers = [{ sampler: "ddim" as const, steps: 20 }, {
    sampler: "ddim" as const,
    steps: 50,
  }];
  // The defaults: 8 x 1000 for the bound, 300 x (20 + 50) for the samples.
  assert.equal(
    evalWorkload({ timesteps: 1000, samples: 300, samplers, nllImages: 8, guidance: [undefined] }),
    8000 + 21_000,
  );
  // Guidance none, 0 and 2: one, one and two evaluations per step.
  assert.equal(
    evalWorkload({ timesteps: 1000, samples: 10, samplers, nllImages: 0, guidance: [null, 0, 2] }),
    4 * 10 * 70,
  );
});
