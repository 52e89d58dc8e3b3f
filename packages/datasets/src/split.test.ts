import { describe, expect, it } from "vitest";
import { largestRemainder, PAPER_MODALITY_COUNTS, PAPER_TEST_COUNTS, paperSplit, stratifiedSplit } from "./split";

function paperItems() {
  const items: Array<{ id: number; modality: string }> = [];
  let id = 0;
  for (const [m, n] of Object.entries(PAPER_MODALITY_COUNTS)) for (let i = 0; i < n; i++) items.push({ id: id++, modality: m });
  return items;
}

function count(xs: Array<{ modality: string }>): Record<string, number> {
  const o: Record<string, number> = {};
  for (const x of xs) o[x.modality] = (o[x.modality] ?? 0) + 1;
  return o;
}

describe("splits", () => {
  it("reproduces the paper's split exactly: 716 train (162/122/432) / 150 test (32/21/97)", () => {
    const items = paperItems();
    expect(items).toHaveLength(866);
    const { train, test } = paperSplit(items, 42);
    expect(train).toHaveLength(716);
    expect(test).toHaveLength(150);
    expect(count(test)).toEqual({ MRI: 32, CT: 21, "X-ray": 97 });
    expect(count(train)).toEqual({ MRI: 162, CT: 122, "X-ray": 432 });
    expect(new Set([...train, ...test].map((x) => x.id)).size).toBe(866);
  });

  it("no proportional rule gives the paper's counts: largest remainder gives 33/25/92, and no common fraction rounds to 32/21/97", () => {
    expect(largestRemainder({ ...PAPER_MODALITY_COUNTS }, 150)).toEqual({ MRI: 33, CT: 25, "X-ray": 92 });
    let hits = 0;
    for (let f = 0.1; f < 0.25; f += 1e-5) {
      if (Object.entries(PAPER_MODALITY_COUNTS).every(([m, n]) => Math.round(n * f) === PAPER_TEST_COUNTS[m as keyof typeof PAPER_TEST_COUNTS])) hits++;
    }
    expect(hits).toBe(0);
  });

  it("largest remainder sums to the total and stays within one of the exact quota", () => {
    const sizes = { a: 7, b: 13, c: 1, d: 29 };
    for (let t = 0; t <= 50; t++) {
      const r = largestRemainder(sizes, t);
      expect(Object.values(r).reduce((x, y) => x + y, 0)).toBe(t);
      for (const [k, n] of Object.entries(sizes)) expect(Math.abs(r[k] - (t * n) / 50)).toBeLessThan(1);
    }
  });

  it("is seeded: same seed same split, different seed different split; stratified fractions", () => {
    const items = paperItems();
    const a = stratifiedSplit(items, { seed: 1, stratifyBy: (x) => x.modality, testFraction: 0.2 });
    const b = stratifiedSplit(items, { seed: 1, stratifyBy: (x) => x.modality, testFraction: 0.2 });
    const c = stratifiedSplit(items, { seed: 2, stratifyBy: (x) => x.modality, testFraction: 0.2 });
    expect(a.test.map((x) => x.id)).toEqual(b.test.map((x) => x.id));
    expect(a.test.map((x) => x.id)).not.toEqual(c.test.map((x) => x.id));
    expect(a.test).toHaveLength(173);
    expect(a.testCounts).toEqual(largestRemainder({ ...PAPER_MODALITY_COUNTS }, 173));
  });

  it("rejects bad options", () => {
    expect(() => stratifiedSplit([1, 2], {})).toThrow(/exactly one/);
    expect(() => stratifiedSplit([1, 2], { testSize: 3 })).toThrow(/\[0, 2\]/);
    expect(() => paperSplit([{ modality: "MRI" }])).toThrow(/testCounts/);
  });
});
