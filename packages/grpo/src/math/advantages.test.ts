import { describe, expect, it } from "vitest";
import { GrpoInputError } from "../errors";
import { combineRewards, computeAdvantages, summary, unbiasedStd } from "./advantages";

describe("computeAdvantages", () => {
  // Group 0: rewards 1, 0, 0, 1 -> mean 0.5, unbiased var = (4 * 0.25) / 3 = 1/3, std = 0.57735...
  // Group 1: rewards 2, 2, 2, 2 -> mean 2, std 0 -> advantages 0 (no signal).
  const r = [1, 0, 0, 1, 2, 2, 2, 2];

  it("group scaling divides by the Bessel-corrected group std + 1e-4 (hand-worked)", () => {
    const { advantages, groupMean, std, fracZeroStdGroups } = computeAdvantages(r, 4, "group");
    const s = Math.sqrt(1 / 3);
    expect(std[0]).toBeCloseTo(s, 12);
    expect(advantages[0]).toBeCloseTo(0.5 / (s + 1e-4), 12);
    expect(advantages[1]).toBeCloseTo(-0.5 / (s + 1e-4), 12);
    expect(advantages[0]).toBeCloseTo(0.86588, 4);
    expect(Array.from(advantages.slice(4))).toEqual([0, 0, 0, 0]);
    expect(groupMean[0]).toBe(0.5);
    expect(groupMean[5]).toBe(2);
    expect(fracZeroStdGroups).toBe(0.5);
  });

  it("batch scaling keeps the group mean but divides by the std of the whole batch", () => {
    const { advantages, std } = computeAdvantages(r, 4, "batch");
    // batch mean 1.25; deviations .25^2*2 + 1.25^2*2 + .75^2*4 = 0.125 + 3.125 + 2.25 = 5.5; /7
    const s = Math.sqrt(5.5 / 7);
    expect(std[0]).toBeCloseTo(s, 12);
    expect(std[7]).toBeCloseTo(s, 12);
    expect(advantages[0]).toBeCloseTo(0.5 / (s + 1e-4), 12);
    expect(advantages[4]).toBe(0);
  });

  it("none (Dr. GRPO) only subtracts the group mean", () => {
    const { advantages } = computeAdvantages(r, 4, "none");
    expect(Array.from(advantages)).toEqual([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]);
  });

  it("advantages of each group sum to zero", () => {
    const rr = [0.3, 1.7, -2, 0.1, 5, 6];
    for (const scale of ["group", "batch", "none"] as const) {
      const { advantages } = computeAdvantages(rr, 3, scale);
      expect(advantages[0] + advantages[1] + advantages[2]).toBeCloseTo(0, 12);
      expect(advantages[3] + advantages[4] + advantages[5]).toBeCloseTo(0, 12);
    }
  });

  it("rejects a length that is not a multiple of G, and non-finite rewards", () => {
    expect(() => computeAdvantages([1, 2, 3], 2)).toThrow(GrpoInputError);
    expect(() => computeAdvantages([1, Number.NaN], 2)).toThrow(/reward 1 is not finite/);
  });
});

describe("reward helpers", () => {
  it("unbiasedStd matches the n-1 formula and is 0 for one value", () => {
    expect(unbiasedStd([1, 2, 3, 4])).toBeCloseTo(Math.sqrt(5 / 3), 12);
    expect(unbiasedStd([7])).toBe(0);
  });
  it("combineRewards is a weighted nansum", () => {
    const out = combineRewards({ a: [1, 2], b: [Number.NaN, 10] }, { b: 0.5 });
    expect(Array.from(out)).toEqual([1, 7]);
    expect(() => combineRewards({ a: [1], b: [1, 2] })).toThrow(/"b" has 2 values, expected 1/);
  });
  it("summary ignores NaN", () => {
    expect(summary([1, 3, Number.NaN])).toEqual({ mean: 2, std: 1, min: 1, max: 3 });
  });
});
