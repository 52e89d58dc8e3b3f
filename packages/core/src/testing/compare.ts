import { expect } from "vitest";

/** Test helper: max |a − b| / (1 + |b|) over two equal-length arrays (relative for large values, absolute near 0); a non-finite a counts as infinite. */
export function relErr(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Number.isFinite(a[i]) ? Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i])) : Number.POSITIVE_INFINITY);
  return m;
}
