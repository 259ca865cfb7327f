/**
 * The npm package as a Node user gets it: `build/npm.ts` writes it, `npm pack` makes the
 * tarball a registry would hold, `npm install` puts it in a fresh Node project, and Node
 * samples the reference PNG with it. TypeScript (`tsc`'s own API) then checks a consumer
 * against the package's `.d.ts` the way a Node TypeScript project resolves it.
 */

import assert from "node:assert/strict";
import ts from "typescript";
import { buildNpmPackage } from "../build/npm.ts";
import { referencePng } from "./_reference_png.ts";

/** Runs a command in `cwd`; throws with its output when it fails. */
async function run(command: string, args: string[], cwd: string): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command(command, {
    args,
    cwd,
    env: { NO_COLOR: "1", npm_config_update_notifier: "false" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  if (code !== 0) {
    throw new Error(`${command} ${args.join(" ")} failed (${code}):\n${decode(stderr)}`);
  }
  return decode(stdout);
}

async function has(command: string): Promise<boolean> {
  try {
    await new Deno.Command(command, { args: ["--version"], stdout: "null", stderr: "null" })
      .output();
    return true;
  } catch {
    return false;
  }
}

const SAMPLE_SCRIPT = `import { writeFileSync } from "node:fs";
import { encodePng, gaussianDenoiser, makeGrid, makeSchedule, sample, toUint8 }
  from "@ddpm/toolkit";

const schedule = makeSchedule({ kind: "linear", timesteps: 1000 });
const denoiser = gaussianDenoiser(schedule, { mean: 0, std: 0.5 });
const shape = [4, 1, 16, 16];
const x = await sample(denoiser, { schedule, shape, sampler: "ddpm", steps: 20, seed: 7 });
writeFileSync("out.png", encodePng(makeGrid(toUint8(x), shape)));
`;

/** A TypeScript consumer: right uses must check, the wrong one must be caught. */
const CONSUMER =
  `import { makeSchedule, sample, type Denoiser, type SampleOptions } from "@ddpm/toolkit";

const schedule = makeSchedule({ kind: "cosine", timesteps: 100 });
const zero: Denoiser = (x) => new Float32Array(x.length);
const options: SampleOptions = { schedule, shape: [1, 1, 4, 4], sampler: "ddim", steps: 5 };
const x: Promise<Float32Array> = sample(zero, options);
// @ts-expect-error: "euler" is not a SamplerKind
const bad: SampleOptions = { schedule, shape: [1, 1, 4, 4], sampler: "euler" };
export { bad, x };
`;

Deno.test("the npm package installs into a Node project, samples Deno's bytes, and type-checks", async (t) => {
  if (!(await has("node")) || !(await has("npm"))) {
    console.log("skipped: node and npm are not on PATH (install Node.js 18 or newer)");
    await t.step({ name: "skipped: no Node.js", ignore: true, fn: () => {} });
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "ddpm-npm-" });
  try {
    // 1. Build, pack and install, as a user installing from the registry would.
    const pkg = `${dir}/package`;
    await buildNpmPackage(pkg);
    const packed = await run("npm", ["pack", pkg, "--pack-destination", dir, "--silent"], dir);
    const tarball = packed.trim().split("\n").at(-1) ?? "";
    const project = `${dir}/project`;
    await Deno.mkdir(project);
    await Deno.writeTextFile(
      `${project}/package.json`,
      JSON.stringify({ name: "consumer", private: true, type: "module" }),
    );
    await run("npm", [
      "install",
      "--no-audit",
      "--no-fund",
      "--ignore-scripts",
      "--offline",
      `${dir}/${tarball}`,
    ], project);
    const installed = JSON.parse(
      await Deno.readTextFile(`${project}/node_modules/@ddpm/toolkit/package.json`),
    );
    assert.deepEqual(installed.exports, {
      ".": { types: "./index.d.ts", default: "./index.js" },
    });

    // 2. Node samples with the Gaussian denoiser: the same PNG bytes as Deno.
    await Deno.writeTextFile(`${project}/sample.mjs`, SAMPLE_SCRIPT);
    await run("node", ["sample.mjs"], project);
    assert.deepEqual(await Deno.readFile(`${project}/out.png`), await referencePng(7));

    // 3. The types, resolved as Node16 TypeScript resolves a package: one error, the one the
    // consumer expects (its @ts-expect-error would itself be an error were it not there).
    await Deno.writeTextFile(`${project}/consumer.ts`, CONSUMER);
    const program = ts.createProgram([`${project}/consumer.ts`], {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.Node16,
      moduleResolution: ts.ModuleResolutionKind.Node16,
      lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
      types: [],
    });
    const diagnostics = ts.getPreEmitDiagnostics(program).map((d) =>
      ts.flattenDiagnosticMessageText(d.messageText, "\n")
    );
    assert.deepEqual(diagnostics, []);
    const resolved = program.getSourceFiles().map((f) => f.fileName).filter((f) =>
      f.includes("@ddpm/toolkit")
    );
    assert.deepEqual(resolved, [`${project}/node_modules/@ddpm/toolkit/index.d.ts`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
