/**
 * The library as another project sees it: `mod.ts` and each `lib/` module imported by file
 * URL and by http URL from a script in a temporary folder that has no `deno.json`, so nothing
 * of this repository's configuration (its import map, its lock file) is in play.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import denoJson from "../deno.json" with { type: "json" };
import { referencePng } from "./_reference_png.ts";

const ROOT = new URL("../", import.meta.url);

/** Runs `deno run` on `script` in a fresh temporary folder; returns the bytes it wrote. */
async function runOutside(
  script: string,
  options: { flags?: string[] } = {},
): Promise<Uint8Array> {
  const dir = await Deno.makeTempDir({ prefix: "ddpm-outside-" });
  try {
    await Deno.writeTextFile(`${dir}/main.ts`, script);
    // Not --cached-only: with no lock file Deno resolves every npm package's version itself and
    // needs the registry's entry of each, which this repository's locked install never fetched
    // for the indirect ones (fast-png's iobuffer, on a fresh machine), so the first run fetches
    // them from npm as another project would; the tarballs come from the cache when they are there.
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-write=out.png",
        ...(options.flags ?? []),
        "main.ts",
      ],
      cwd: dir,
      env: { NO_COLOR: "1" },
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(code, 0, `deno run failed:\n${new TextDecoder().decode(stderr)}`);
    return await Deno.readFile(`${dir}/out.png`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The script of `tests/_reference_png.ts`'s sample, importing the library from `base`. */
function samplingScript(base: string): string {
  return `import { encodePng, gaussianDenoiser, makeGrid, makeSchedule, sample, toUint8 }
  from "${base}mod.ts";
const schedule = makeSchedule({ kind: "linear", timesteps: 1000 });
const denoiser = gaussianDenoiser(schedule, { mean: 0, std: 0.5 });
const shape = [4, 1, 16, 16] as const;
const x = await sample(denoiser, { schedule, shape, sampler: "ddpm", steps: 20, seed: 7 });
await Deno.writeFile("out.png", encodePng(makeGrid(toUint8(x), shape)));
`;
}

Deno.test("mod.ts imported by file URL from a folder with no config samples the same PNG", async () => {
  const png = await runOutside(samplingScript(ROOT.href));
  assert.deepEqual(png, await referencePng(7));
});

Deno.test("every lib/ module in deno.json's exports imports on its own from outside the project", async () => {
  const modules = Object.values(denoJson.exports);
  const imports = modules.map((path, i) =>
    `import * as m${i} from "${new URL(path, ROOT).href}";\nnames.push(...Object.keys(m${i}));`
  ).join("\n");
  // Each module is imported by itself and must export something; the script writes a PNG
  // with png.ts's encoder to prove the npm dependencies resolved.
  const script = `const names: string[] = [];\n${imports}
import { encodePng } from "${new URL("lib/png.ts", ROOT).href}";
if (names.length < ${modules.length}) throw new Error("a module exported nothing");
await Deno.writeFile("out.png", encodePng({ data: new Uint8Array([7]), width: 1, height: 1, channels: 1 }));
`;
  const png = await runOutside(script);
  assert.deepEqual(Array.from(png.subarray(0, 8)), [137, 80, 78, 71, 13, 10, 26, 10]);
});

Deno.test("mod.ts imported over http (as from a CDN or raw Git host) samples the same PNG", async () => {
  // A plain static file server over the repository, as a Git host serves raw files.
  const root = fileURLToPath(ROOT);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (r) => {
    const path = decodeURIComponent(new URL(r.url).pathname);
    if (path.includes("..")) return new Response("bad path", { status: 400 });
    try {
      const body = await Deno.readFile(`${root}${path.slice(1)}`);
      return new Response(body, { headers: { "Content-Type": "application/typescript" } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  try {
    const host = `127.0.0.1:${server.addr.port}`;
    const png = await runOutside(samplingScript(`http://${host}/`), {
      flags: [`--allow-import=${host}`],
    });
    assert.deepEqual(png, await referencePng(7));
  } finally {
    await server.shutdown();
  }
});
