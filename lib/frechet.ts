/**
 * The Fréchet distance between two sets of feature vectors, each summarised by its mean and
 * covariance (Heusel et al. 2017, the "F" of FID):
 * `||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`.
 *
 * `Tr((S1 S2)^(1/2))` is computed as the sum of the square roots of the eigenvalues of the
 * symmetric matrix `S1^(1/2) S2 S1^(1/2)` (similar to `S1 S2`), with a cyclic Jacobi
 * eigensolver in float64, so no complex square root is needed.
 *
 * @module
 */

/** Mean and covariance (unbiased) of `n` vectors of dimension `d`, stored row after row. */
export function featureStatistics(
  features: ArrayLike<number>,
  dim: number,
): { mean: Float64Array; covariance: Float64Array; count: number } {
  if (!Number.isInteger(dim) || dim < 1 || features.length % dim !== 0) {
    throw new RangeError(
      `features of length ${features.length} do not split into vectors of ${dim}`,
    );
  }
  const n = features.length / dim;
  if (n < 2) throw new RangeError(`a covariance needs at least 2 vectors, got ${n}`);
  const mean = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) mean[j] += features[i * dim + j];
  for (let j = 0; j < dim; j++) mean[j] /= n;
  const covariance = new Float64Array(dim * dim);
  const centred = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) centred[j] = features[i * dim + j] - mean[j];
    for (let a = 0; a < dim; a++) {
      const ca = centred[a];
      for (let b = a; b < dim; b++) covariance[a * dim + b] += ca * centred[b];
    }
  }
  for (let a = 0; a < dim; a++) {
    for (let b = a; b < dim; b++) {
      const v = covariance[a * dim + b] / (n - 1);
      covariance[a * dim + b] = v;
      covariance[b * dim + a] = v;
    }
  }
  return { mean, covariance, count: n };
}

/**
 * Eigenvalues and eigenvectors of a symmetric `d x d` matrix (row-major) by cyclic Jacobi
 * rotations; `vectors` holds the eigenvectors as columns.
 */
export function symmetricEigen(
  matrix: Float64Array,
  dim: number,
): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(matrix);
  const v = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) v[i * dim + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0, total = 0;
    for (let p = 0; p < dim; p++) {
      for (let q = 0; q < dim; q++) {
        const x = a[p * dim + q] ** 2;
        total += x;
        if (p !== q) off += x;
      }
    }
    if (off <= 1e-30 * total || off === 0) break;
    for (let p = 0; p < dim - 1; p++) {
      for (let q = p + 1; q < dim; q++) {
        const apq = a[p * dim + q];
        if (apq === 0) continue;
        // The rotation that zeroes a[p][q] (Golub & Van Loan, Algorithm 8.4.1).
        const tau = (a[q * dim + q] - a[p * dim + p]) / (2 * apq);
        const t = Math.sign(tau || 1) / (Math.abs(tau) + Math.sqrt(1 + tau * tau));
        const c = 1 / Math.sqrt(1 + t * t), s = t * c;
        for (let k = 0; k < dim; k++) {
          const akp = a[k * dim + p], akq = a[k * dim + q];
          a[k * dim + p] = c * akp - s * akq;
          a[k * dim + q] = s * akp + c * akq;
        }
        for (let k = 0; k < dim; k++) {
          const apk = a[p * dim + k], aqk = a[q * dim + k];
          a[p * dim + k] = c * apk - s * aqk;
          a[q * dim + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < dim; k++) {
          const vkp = v[k * dim + p], vkq = v[k * dim + q];
          v[k * dim + p] = c * vkp - s * vkq;
          v[k * dim + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  return { values: Float64Array.from({ length: dim }, (_, i) => a[i * dim + i]), vectors: v };
}

function _multiply(x: Float64Array, y: Float64Array, dim: number): Float64Array {
  const out = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) {
    for (let k = 0; k < dim; k++) {
      const xik = x[i * dim + k];
      if (xik === 0) continue;
      for (let j = 0; j < dim; j++) out[i * dim + j] += xik * y[k * dim + j];
    }
  }
  return out;
}

/**
 * The Fréchet distance between two Gaussians given by means and covariances of dimension `dim`.
 *
 * @example
 * ```ts
 * import { frechetDistance } from "./frechet.ts";
 * const identity = new Float64Array([1, 0, 0, 1]);
 * // Same covariance, means 3 apart: the distance is 3^2.
 * console.assert(Math.abs(frechetDistance(new Float64Array([0, 0]), identity, new Float64Array([3, 0]), identity, 2) - 9) < 1e-12);
 * ```
 */
export function frechetDistance(
  mean1: Float64Array,
  covariance1: Float64Array,
  mean2: Float64Array,
  covariance2: Float64Array,
  dim: number,
): number {
  const parts = frechetParts(mean1, covariance1, mean2, covariance2, dim);
  return parts.means + parts.covariances;
}

/** The Fréchet distance's two terms, which sum to it. */
export interface FrechetParts {
  /** `||mu1 - mu2||^2`: how far apart the two sets sit on average. */
  means: number;
  /** `Tr(S1 + S2 - 2 (S1 S2)^(1/2))`: how differently they spread (0 for equal covariances). */
  covariances: number;
}

/**
 * The two terms of {@linkcode frechetDistance}, which tell a shift of the whole set (means)
 * from a spread that is too narrow, too wide or differently shaped (covariances).
 *
 * @example
 * ```ts
 * import { frechetParts } from "./frechet.ts";
 * // Equal means; variances 4 and 1 on one axis: (sqrt 4 - sqrt 1)^2 = 1.
 * const parts = frechetParts(new Float64Array([0, 0]), new Float64Array([4, 0, 0, 1]), new Float64Array([0, 0]), new Float64Array([1, 0, 0, 1]), 2);
 * console.assert(parts.means === 0 && Math.abs(parts.covariances - 1) < 1e-12);
 * ```
 */
export function frechetParts(
  mean1: Float64Array,
  covariance1: Float64Array,
  mean2: Float64Array,
  covariance2: Float64Array,
  dim: number,
): FrechetParts {
  let meanTerm = 0;
  for (let i = 0; i < dim; i++) meanTerm += (mean1[i] - mean2[i]) ** 2;
  let trace = 0;
  for (let i = 0; i < dim; i++) trace += covariance1[i * dim + i] + covariance2[i * dim + i];
  // S1^(1/2) from the eigendecomposition S1 = V diag(l) V^T.
  const { values, vectors } = symmetricEigen(covariance1, dim);
  const root = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) {
    for (let j = 0; j < dim; j++) {
      let sum = 0;
      for (let k = 0; k < dim; k++) {
        sum += vectors[i * dim + k] * Math.sqrt(Math.max(values[k], 0)) * vectors[j * dim + k];
      }
      root[i * dim + j] = sum;
    }
  }
  const inner = _multiply(_multiply(root, covariance2, dim), root, dim);
  // Symmetrise against rounding before the eigensolver.
  for (let i = 0; i < dim; i++) {
    for (let j = i + 1; j < dim; j++) {
      const m = (inner[i * dim + j] + inner[j * dim + i]) / 2;
      inner[i * dim + j] = m;
      inner[j * dim + i] = m;
    }
  }
  const traceRoot = symmetricEigen(inner, dim).values.reduce(
    (sum, l) => sum + Math.sqrt(Math.max(l, 0)),
    0,
  );
  return { means: meanTerm, covariances: trace - 2 * traceRoot };
}
