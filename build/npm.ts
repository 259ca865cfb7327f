/**
 * `deno task build:npm`: the library as an npm package in `dist/npm/` (or the folder given as
 * the first argument), for Node, Bun and bundlers.
 *
 * - `index.js`: `mod.ts` and its two npm dependencies (fast-png and fflate, with iobuffer)
 *   bundled into one ES module by `deno bundle` (`build/_bundle.ts` says why). Bundling the
 *   dependencies pins them to the versions in `deno.lock`, the ones the tests ran, so a Node
 *   user gets byte for byte the PNGs Deno writes, and installing needs nothing from the
 *   registry.
 * - `index.d.ts`: the types, rolled up by the same `deno bundle --declaration`.
 * - `package.json` with `exports`, the README, the LICENSE, and the bundled packages' licences
 *   in `THIRD_PARTY_LICENSES.md`.
 *
 * @module
 */

import denoJson from "../deno.json" with { type: "json" };
import { bundle } from "./_bundle.ts";

const ROOT = new URL("../", import.meta.url);

/** Writes the package to `out` (emptied first). */
export async function buildNpmPackage(out: string): Promise<void> {
  await Deno.remove(out, { recursive: true }).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
  await Deno.mkdir(out, { recursive: true });

  // 1. Code and types.
  await bundle(new URL("mod.ts", ROOT).pathname, `${out}/index.js`, { declaration: true });

  // 2. package.json: one ES module entry with its types; no dependencies, they are bundled.
  const packageJson = {
    name: denoJson.name,
    version: denoJson.version,
    description: "Denoising diffusion (DDPM) in TypeScript: noise schedules, the forward " +
      "process, DDPM and DDIM samplers over any denoiser, guidance, interpolation, the " +
      "variational bound, a seeded generator identical on every runtime, and PNG helpers.",
    license: denoJson.license,
    type: "module",
    exports: { ".": { types: "./index.d.ts", default: "./index.js" } },
    types: "./index.d.ts",
    sideEffects: false,
    engines: { node: ">=18" },
    keywords: ["diffusion", "ddpm", "ddim", "generative-model", "deno", "typescript"],
  };
  await Deno.writeTextFile(`${out}/package.json`, JSON.stringify(packageJson, null, 2) + "\n");

  // 3. README, LICENSE, and the licences of what was bundled.
  await Deno.copyFile(new URL("README.md", ROOT), `${out}/README.md`);
  await Deno.copyFile(new URL("LICENSE", ROOT), `${out}/LICENSE`);
  const code = await Deno.readTextFile(`${out}/index.js`);
  await Deno.writeTextFile(`${out}/THIRD_PARTY_LICENSES.md`, await _thirdPartyLicenses(code));
}

/** The licence text of every npm package the bundle names (`// npm:<name>@<version>/...`). */
async function _thirdPartyLicenses(code: string): Promise<string> {
  const packages = [...new Set(code.match(/^\/\/ npm:(\S+?@\d[^/\s]*)\//gm) ?? [])]
    .map((line) => line.slice("// npm:".length, -1))
    .sort();
  const { stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stderr: "null",
  }).output();
  const npmCache: string = JSON.parse(new TextDecoder().decode(stdout)).npmCache;
  const sections = [];
  for (const id of packages) {
    const at = id.lastIndexOf("@");
    const dir = `${npmCache}/registry.npmjs.org/${id.slice(0, at)}/${id.slice(at + 1)}`;
    const text = await Deno.readTextFile(`${dir}/LICENSE`);
    sections.push(`## ${id}\n\n\`\`\`text\n${text.trim()}\n\`\`\``);
  }
  return `# Bundled packages\n\n\`index.js\` includes these npm packages.\n\n${
    sections.join("\n\n")
  }\n`;
}

if (import.meta.main) {
  const out = Deno.args[0] ?? new URL("dist/npm", ROOT).pathname;
  await buildNpmPackage(out);
  console.log(`wrote ${out}`);
}
