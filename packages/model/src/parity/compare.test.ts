import { describe, expect, it } from "vitest";
import { maskedKeep, maxAbsDiff, toleranceFor, topIdMismatches } from "./compare";

describe("parity comparisons", () => {
  it("tolerances follow the issue: logits/log-probs 1e-4, hidden 1e-3, pixels 1e-5, integers exact", () => {
    expect(toleranceFor("logits_cols", false)).toBe(1e-4);
    expect(toleranceFor("completion_logprobs", false)).toBe(1e-4);
    expect(toleranceFor("hidden_states", false)).toBe(1e-3);
    expect(toleranceFor("vision.block0", false)).toBe(1e-3);
    expect(toleranceFor("pixel_values", false)).toBe(1e-5);
    expect(toleranceFor("generated_ids", true)).toBe(0);
  });

  it("max |Δ| honours the mask and never passes NaN or a length mismatch", () => {
    expect(maxAbsDiff([1, 2, 3], [1, 2.5, 0])).toBe(3);
    // [B=1, S=3] mask with the first position padded, inner 1
    expect(maxAbsDiff([9, 2, 3], [0, 2, 3], maskedKeep([[0, 1, 1]], 1))).toBe(0);
    expect(maxAbsDiff([1, Number.NaN], [1, 2])).toBe(Number.POSITIVE_INFINITY);
    expect(maxAbsDiff([1], [1, 2])).toBe(Number.POSITIVE_INFINITY);
  });

  it("masked positions repeat over a leading layer axis ([L, B, S, H] hidden states)", () => {
    const keep = maskedKeep([[0, 1]], 2); // B=1, S=2, H=2
    const kept = Array.from({ length: 8 }, (_, i) => keep(i));
    expect(kept).toEqual([false, false, true, true, false, false, true, true]);
  });

  it("top-k ids are compared only where the reference ranking is unambiguous", () => {
    const refVals = [5, 4, 3.99999, 1];
    const refIds = [10, 11, 12, 13];
    expect(topIdMismatches(refIds, refVals, [10, 11, 12, 13], 4, 2e-4)).toBe(0);
    // swapping the near-tied ranks 1 and 2 is tolerated, a wrong top-1 is not
    expect(topIdMismatches(refIds, refVals, [10, 12, 11, 13], 4, 2e-4)).toBe(0);
    expect(topIdMismatches(refIds, refVals, [99, 11, 12, 13], 4, 2e-4)).toBe(1);
  });
});
