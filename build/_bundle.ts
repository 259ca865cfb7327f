/**
 * One way to bundle TypeScript for this project: `deno bundle` (esbuild inside Deno), which
 * resolves `lib/`'s `npm:` imports from the same lock file and cache as every other command
 * here, so the code that ships is the code the tests ran, with no second resolver to set up.
 * Its `--declaration` flag rolls the types up into one `.d.ts` beside the bundle.
 *
 * @module
 */

/** Options of {@linkcode bundle}. */
export interface BundleOptions {
  /** Also write the types, `<out without .js>.d.ts`. Default false. */
  readonly declaration?: boolean;
}

/**
 * Bundles `entry` and everything it imports (npm packages included) into one ES module at
 * `out`, for browsers and any other ES module runtime (Node, Bun, Deno). The comments that
 * name each bundled npm file are rewritten from this machine's cache path to `npm:<name>@<v>/…`,
 * so the same sources give the same bytes on every machine.
 */
export async function bundle(
  entry: string,
  out: string,
  options: BundleOptions = {},
): Promise<void> {
  const args = ["bundle", "--quiet", "--platform", "browser", "--format", "esm", "-o", out];
  if (options.declaration) args.push("--declaration");
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [...args, entry],
    env: { NO_COLOR: "1" },
    stdout: "inherit",
    stderr: "piped",
  }).output();
  const log = new TextDecoder().decode(stderr);
  if (code !== 0) throw new Error(`deno bundle ${entry} failed:\n${log}`);
  const source = await Deno.readTextFile(out);
  await Deno.writeTextFile(
    out,
    source.replace(/^\/\/ \S*\/registry\.npmjs\.org\/(\S+?)\/(\d\S*?)\//gm, "// npm:$1@$2/"),
  );
}
