/** Sample statistics shared by the Monte Carlo tests. */

/** Mean, unbiased variance and the standard errors of both (normal-theory for the variance). */
export function moments(
  x: ArrayLike<number>,
): { mean: number; variance: number; meanSe: number; varianceSe: number } {
  const n = x.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += x[i];
  mean /= n;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (x[i] - mean) ** 2;
  const variance = ss / (n - 1);
  return {
    mean,
    variance,
    meanSe: Math.sqrt(variance / n),
    varianceSe: variance * Math.sqrt(2 / (n - 1)),
  };
}

/** Asserts |actual - expected| <= tolerance with a message that shows all three. */
export function assertClose(
  actual: number,
  expected: number,
  tolerance: number,
  what: string,
): void {
  if (!(Math.abs(actual - expected) <= tolerance)) {
    throw new Error(
      `${what}: expected ${expected} +- ${tolerance}, got ${actual} (off by ${
        Math.abs(actual - expected)
      })`,
    );
  }
}
