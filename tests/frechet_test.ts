import assert from "node:assert/strict";
import {
  featureStatistics,
  frechetDistance,
  frechetParts,
  symmetricEigen,
} from "../lib/frechet.ts";
import { createRng } from "../lib/rng.ts";
import { assertClose } from "./_stats.ts";

Deno.test("symmetricEigen reconstructs a random symmetric matrix as V diag(l) V^T", () => {
  const dim = 12;
  const rng = createRng(1);
  const m = new Float64Array(dim * dim);
  for (let i = 0; i < dim; i++) {
    for (let j = i; j < dim; j++) m[i * dim + j] = m[j * dim + i] = rng.nextNormal();
  }
  const { values, vectors } = symmetricEigen(m, dim);
  for (let i = 0; i < dim; i++) {
    for (let j = 0; j < dim; j++) {
      let sum = 0;
      for (let k = 0; k < dim; k++) sum += vectors[i * dim + k] * values[k] * vectors[j * dim + k];
      assertClose(sum, m[i * dim + j], 1e-10, `A[${i}][${j}]`);
    }
  }
});

Deno.test("Fréchet distance: 0 for identical statistics, closed forms for diagonal and 2x2 cases", () => {
  const rng = createRng(2);
  const dim = 6;
  const features = rng.normal64(200 * dim);
  const { mean, covariance } = featureStatistics(features, dim);
  assertClose(frechetDistance(mean, covariance, mean, covariance, dim), 0, 1e-9, "identical");
  // Diagonal: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
  const a = [1, 4, 0.25], b = [9, 1, 0.25];
  const diag = (d: number[]) =>
    Float64Array.from({ length: 9 }, (_, i) => (i % 4 === 0 ? d[i / 4] : 0));
  const expected = 1 + 4 + a.reduce((s, v, i) => s + (Math.sqrt(v) - Math.sqrt(b[i])) ** 2, 0);
  const got = frechetDistance(
    new Float64Array([0, 0, 0]),
    diag(a),
    new Float64Array([1, 2, 0]),
    diag(b),
    3,
  );
  assertClose(got, expected, 1e-10, "diagonal");
  // Non-commuting 2x2: Tr sqrt(S1 S2) = sqrt(tr(S1 S2) + 2 sqrt(det(S1 S2))).
  const s1 = new Float64Array([2, 0.5, 0.5, 1]), s2 = new Float64Array([1, -0.3, -0.3, 3]);
  const p = [
    s1[0] * s2[0] + s1[1] * s2[2],
    s1[0] * s2[1] + s1[1] * s2[3],
    s1[2] * s2[0] + s1[3] * s2[2],
    s1[2] * s2[1] + s1[3] * s2[3],
  ];
  const traceRoot = Math.sqrt(p[0] + p[3] + 2 * Math.sqrt(p[0] * p[3] - p[1] * p[2]));
  const zero = new Float64Array(2);
  assertClose(frechetDistance(zero, s1, zero, s2, 2), 2 + 1 + 1 + 3 - 2 * traceRoot, 1e-10, "2x2");
});

Deno.test("Fréchet parts: the squared mean gap and the covariance term, which sum to the distance", () => {
  const rng = createRng(3);
  const dim = 5;
  const draws = rng.normal64(300 * dim);
  const one = featureStatistics(draws, dim);
  // The same draws scaled by 1.5 and moved by `shift`: the mean becomes 1.5 m + shift and the
  // covariance exactly 2.25 S, so the means term is ||0.5 m + shift||^2 and the covariance term
  // tr(S + 2.25 S - 2 (2.25 S^2)^(1/2)) = 0.25 tr S.
  const shift = [1, -2, 0, 0, 0.5];
  const two = featureStatistics(draws.map((v, i) => 1.5 * v + shift[i % dim]), dim);
  const parts = frechetParts(one.mean, one.covariance, two.mean, two.covariance, dim);
  let gap = 0, trace = 0;
  for (let i = 0; i < dim; i++) {
    gap += (0.5 * one.mean[i] + shift[i]) ** 2;
    trace += one.covariance[i * dim + i];
  }
  assertClose(parts.means, gap, 1e-12, "means term");
  assertClose(parts.covariances, 0.25 * trace, 1e-9, "covariance term");
  assertClose(
    parts.means + parts.covariances,
    frechetDistance(one.mean, one.covariance, two.mean, two.covariance, dim),
    1e-12,
    "sum",
  );
  // Moving a set without changing its covariance leaves only the means term.
  const moved = frechetParts(one.mean, one.covariance, two.mean, one.covariance, dim);
  assertClose(moved.means, parts.means, 1e-15, "moved means");
  assertClose(moved.covariances, 0, 1e-9, "equal covariances");
  // Diagonal closed form: sum (sqrt(a) - sqrt(b))^2 = (2 - 1)^2 + (1 - 3)^2 = 5.
  const zero = new Float64Array(2);
  const diag = frechetParts(
    zero,
    new Float64Array([4, 0, 0, 1]),
    zero,
    new Float64Array([1, 0, 0, 9]),
    2,
  );
  assert.equal(diag.means, 0);
  assertClose(diag.covariances, 5, 1e-10, "diagonal");
});

Deno.test("featureStatistics gives the sample mean and the unbiased covariance", () => {
  const { mean, covariance, count } = featureStatistics([1, 2, 3, 6, 5, 10], 2);
  assert.equal(count, 3);
  assert.deepEqual(Array.from(mean), [3, 6]);
  assert.deepEqual(Array.from(covariance), [4, 8, 8, 16]);
  assert.throws(() => featureStatistics([1, 2, 3], 2), /do not split into vectors of 2/);
});
