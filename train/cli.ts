/**
 * The command-line conventions of the trainer's tools (`eval`, `export`, `train:classifier`),
 * as `deno task train` has them: one table of flags with defaults and help, `--help`, and
 * errors that name the flag, the value and what is allowed, printed as one `error:` line
 * (exit 2 for a bad flag, with the usage; exit 1 when the work fails) and never a stack trace.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** One flag: its default (none when absent), its help, and whether it takes no value. */
export interface Flag {
  readonly default?: string;
  readonly help: string;
  readonly boolean?: true;
}

/** Every flag of a command, by name (without `--`). */
export type FlagTable = Readonly<Record<string, Flag>>;

/** A flag the user got wrong: printed with the usage, exit 2. */
export class FlagError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = "FlagError";
  }
}

/**
 * The help text: the usage line, a description, and a line per flag with its default.
 *
 * @example
 * ```ts
 * import { usageText } from "./cli.ts";
 * const text = usageText("deno task x [flags]", "Does x.", { n: { default: "1", help: "count" } });
 * console.assert(text.includes("--n <value>"));
 * ```
 */
export function usageText(usage: string, description: string, flags: FlagTable): string {
  const lines = [`Usage: ${usage}`, "", description, ""];
  for (const [name, flag] of Object.entries(flags)) {
    const left = `  --${name}${flag.boolean ? "" : " <value>"}`;
    const help = flag.help.replaceAll("\n", `\n${" ".repeat(27)}`);
    lines.push(
      `${left.padEnd(26)} ${help}${flag.default !== undefined ? ` [${flag.default}]` : ""}`,
    );
  }
  return lines.join("\n");
}

/** The flags given, read against the table; typed readers that name a bad value. */
export class Flags {
  readonly #values: Record<string, string | boolean | undefined>;
  readonly #table: FlagTable;

  /** Throws {@linkcode FlagError} for an unknown flag, a missing value or a positional. */
  constructor(args: readonly string[], table: FlagTable) {
    this.#table = table;
    try {
      this.#values = parseArgs({
        args: [...args],
        options: Object.fromEntries(
          Object.entries(table).map((
            [name, f],
          ) => [name, { type: f.boolean ? "boolean" : "string" }]),
        ) as Record<string, { type: "string" | "boolean" }>,
        strict: true,
        allowPositionals: false,
      }).values;
    } catch (error) {
      throw new FlagError((error as Error).message);
    }
  }

  /** Whether the user gave the flag. */
  given(name: string): boolean {
    return this.#values[name] !== undefined;
  }

  /** A boolean flag. */
  boolean(name: string): boolean {
    return this.#values[name] === true;
  }

  /** A string flag's value, else its default, else "". */
  text(name: string): string {
    const value = this.#values[name];
    return typeof value === "string" ? value : this.#table[name]?.default ?? "";
  }

  /** A number that passes `ok`; otherwise a FlagError saying `range`. */
  number(name: string, ok: (value: number) => boolean, range: string): number {
    const text = this.text(name);
    const value = Number(text);
    if (text.trim() === "" || !Number.isFinite(value) || !ok(value)) {
      throw new FlagError(`--${name} must be ${range}, got ${JSON.stringify(text)}`);
    }
    return value;
  }

  /** An integer >= `min`. */
  integer(name: string, min: number): number {
    return this.number(name, (v) => Number.isInteger(v) && v >= min, `an integer >= ${min}`);
  }

  /** One of `choices`. */
  oneOf<T extends string>(name: string, choices: readonly T[]): T {
    const value = this.text(name) as T;
    if (!choices.includes(value)) {
      throw new FlagError(`--${name} must be one of ${choices.join(", ")}, got ${value}`);
    }
    return value;
  }
}

/**
 * Runs a command's body and exits: 0 (or what it returns) on success; on a
 * {@linkcode FlagError}, `error: <message>` and the usage, exit 2; on any other error, one
 * `error: <message>` line, exit 1.
 */
export async function runCommand(
  usage: string,
  body: () => Promise<number | void>,
): Promise<never> {
  try {
    Deno.exit((await body()) ?? 0);
  } catch (error) {
    if (error instanceof FlagError) {
      console.error(`error: ${error.message}\n\n${usage}`);
      Deno.exit(2);
    }
    console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
    Deno.exit(1);
  }
}

/**
 * {@linkcode runCommand} for a command with a flag table: parses `Deno.args` against `table`,
 * answers `--help` with `usage`, and otherwise runs `body` with the flags.
 */
export async function runFlagCommand(
  usage: string,
  table: FlagTable,
  body: (flags: Flags) => Promise<number | void>,
): Promise<never> {
  return await runCommand(usage, async () => {
    const flags = new Flags(Deno.args, table);
    if (flags.boolean("help")) {
      console.log(usage);
      return 0;
    }
    return await body(flags);
  });
}

/** Reads a file a flag names, with an error that says which flag and file. */
export async function readFlagFile(flag: string, path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? "no such file"
      : (error as Error).message;
    throw new Error(`--${flag} ${path}: ${reason}`);
  }
}
