import { describe, expect, it } from "vitest";
import { closestName, editDistance } from "./suggest";

describe("closestName / editDistance", () => {
  it("measures Levenshtein distance", () => {
    expect(editDistance("kitten", "sitting")).toBe(3);
    expect(editDistance("", "abc")).toBe(3);
    expect(editDistance("same", "same")).toBe(0);
  });
  it("suggests the closest candidate within max(2, len/3) edits, case-insensitively, else nothing", () => {
    expect(closestName("numGeneration", ["beta", "numGenerations"])).toBe("numGenerations");
    expect(closestName("LOSSTYPE", ["lossType", "beta"])).toBe("lossType");
    expect(closestName("zzzzzz", ["beta"])).toBeUndefined();
    expect(closestName("dapoo", [])).toBeUndefined();
  });
});
