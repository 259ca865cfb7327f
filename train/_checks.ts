/**
 * Checks for values read from outside (a checkpoint's bytes, a caller's object), each throwing
 * a built-in error that names the value's path and the allowed range. Shared by the checkpoint
 * format, its files and the run state it carries, so one field reads the same everywhere.
 *
 * @module
 */

/** An integer in `min..max`. */
export function checkInteger(value: unknown, what: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${what} must be an integer in ${min}..${max}, got ${describe(value)}`);
  }
  return value;
}

/** A finite number. */
export function checkNumber(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new RangeError(`${what} must be a finite number, got ${describe(value)}`);
  }
  return value;
}

/** A finite number in [0, 1). */
export function checkUnitInterval(value: unknown, what: string): number {
  const x = checkNumber(value, what);
  if (x < 0 || x >= 1) throw new RangeError(`${what} must be in [0, 1), got ${x}`);
  return x;
}

/** One of `choices`. */
export function checkOneOf<T extends string>(
  value: unknown,
  choices: readonly T[],
  what: string,
): T {
  if (typeof value !== "string" || !(choices as readonly string[]).includes(value)) {
    throw new RangeError(`${what} must be one of ${choices.join(", ")}, got ${describe(value)}`);
  }
  return value as T;
}

/** A string. */
export function checkString(value: unknown, what: string): string {
  if (typeof value !== "string") {
    throw new TypeError(`${what} must be a string, got ${describe(value)}`);
  }
  return value;
}

/** An array, its items still to check. */
export function checkArray(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) {
    throw new TypeError(`${what} must be an array, got ${describe(value)}`);
  }
  return value;
}

/** A plain object (not null, not an array). */
export function checkRecord(value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TypeError(`${what} must be an object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

/** A short description of a bad value for an error message. */
export function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === "string") {
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  }
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") {
    const name = Object.getPrototypeOf(value)?.constructor?.name;
    return name && name !== "Object" ? `a ${name}` : "an object";
  }
  return `a ${typeof value}`;
}
