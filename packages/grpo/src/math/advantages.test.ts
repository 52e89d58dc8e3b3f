import { describe, expect, it } from "vitest";
import { GrpoInputError } from "../errors";
import { aggregateAdvantages, combineRewards, computeAdvantages, summary, unbiasedStd } from "./advantages";

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

describe("aggregateAdvantages (TRL multi_objective_aggregation)", () => {
  // Two rewards, G = 2, two groups. a: [1, 0 | 1, 1], b: [0, 4 | 2, 0]; weights a 1, b 0.5.
  const comps = { a: [1, 0, 1, 1], b: [0, 4, 2, 0] };
  const w = { a: 1, b: 0.5 };

  it("sum_then_normalize = weighted sum, then computeAdvantages", () => {
    const r = aggregateAdvantages(comps, w, 2, "group", "sum_then_normalize");
    expect(Array.from(r.total)).toEqual([1, 2, 2, 1]);
    expect(Array.from(r.advantages)).toEqual(Array.from(computeAdvantages([1, 2, 2, 1], 2, "group").advantages));
  });

  it("normalize_then_sum (GDPO): each reward normalised in its group, weighted sum, then normalised over the batch (hand-worked)", () => {
    const e = 1e-4;
    // a: group 0 mean .5, std sqrt(.5) -> ±.5/(√.5+e); group 1 constant -> 0, 0.
    // b: group 0 mean 2, std sqrt(8) -> ∓2/(√8+e); group 1 mean 1, std √2 -> ±1/(√2+e).
    const za = 0.5 / (Math.sqrt(0.5) + e);
    const zb0 = 2 / (Math.sqrt(8) + e);
    const zb1 = 1 / (Math.sqrt(2) + e);
    const s = [za - 0.5 * zb0, -za + 0.5 * zb0, 0.5 * zb1, -0.5 * zb1];
    const mean = s.reduce((x, y) => x + y, 0) / 4;
    const sd = Math.sqrt(s.reduce((x, y) => x + (y - mean) ** 2, 0) / 3);
    const r = aggregateAdvantages(comps, w, 2, "group", "normalize_then_sum");
    for (const [i, x] of s.entries()) expect(r.advantages[i]).toBeCloseTo((x - mean) / (sd + e), 10);
    // scaleRewards is not used by normalize_then_sum
    expect(Array.from(aggregateAdvantages(comps, w, 2, "none", "normalize_then_sum").advantages)).toEqual(Array.from(r.advantages));
    expect(Array.from(r.total)).toEqual([1, 2, 2, 1]); // the logged reward stays the weighted sum
    expect(r.fracZeroStdGroups).toBe(0);
  });

  it("normalize_then_sum ignores NaN (not applicable) rewards in the group statistics", () => {
    const r = aggregateAdvantages({ a: [1, 0, Number.NaN, 1] }, {}, 2, "group", "normalize_then_sum");
    expect(r.advantages.every(Number.isFinite)).toBe(true);
    expect(r.advantages[2]).toBe(r.advantages[3]); // NaN counts 0, the lone value of its group normalises to 0
  });
});
