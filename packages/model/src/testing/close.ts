import { expect } from "vitest";

/**
 * Test helper: for each pair of arrays, max |a − b| < rel · max |b| (the error relative to the reference's largest
 * magnitude, as gradients are compared). A reference that is all zeros fails: it would make the comparison vacuous.
 */
export function expectCloseToScale(a: ArrayLike<number>[], b: ArrayLike<number>[], rel: number): void {
  expect(a.length).toBe(b.length);
  for (let k = 0; k < a.length; k++) {
    expect(a[k].length).toBe(b[k].length);
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < b[k].length; i++) {
      scale = Math.max(scale, Math.abs(b[k][i]));
      diff = Math.max(diff, Math.abs(a[k][i] - b[k][i]));
    }
    expect(scale, `array ${k}: the reference is all zeros`).toBeGreaterThan(0);
    expect(diff, `array ${k}: max |a - b| against ${rel} x max |b| = ${rel * scale}`).toBeLessThan(rel * scale);
  }
}
