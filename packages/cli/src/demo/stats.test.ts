import { describe, expect, it } from "vitest";
import { clusters, hierarchicalBootstrap, meanSe, verdict } from "./stats";

describe("meanSe", () => {
  it("mean and sample s.d./sqrt(n); one value has s.e. 0", () => {
    const r = meanSe([1, 2, 3, 4]);
    expect(r.mean).toBe(2.5);
    expect(r.se).toBeCloseTo(Math.sqrt(5 / 3 / 4), 12);
    expect(meanSe([7])).toEqual({ mean: 7, se: 0 });
  });
});

describe("hierarchicalBootstrap", () => {
  it("a constant difference has that mean and zero spread; deterministic per seed", () => {
    const c = clusters([
      { image: "a", value: 1 },
      { image: "a", value: 1 },
      { image: "b", value: 1 },
    ]);
    const r = hierarchicalBootstrap([c, c, c], { b: 200 });
    expect(r.mean).toBe(1);
    expect(r.se).toBe(0);
    expect(r.ci95).toEqual([1, 1]);
    const noisy = [0, 1, 2].map((s) => clusters(Array.from({ length: 40 }, (_, i) => ({ image: `i${i >> 1}`, value: (i * 7 + s) % 3 === 0 ? 1 : 0 }))));
    expect(hierarchicalBootstrap(noisy, { b: 300, seed: 3 })).toEqual(hierarchicalBootstrap(noisy, { b: 300, seed: 3 }));
  });
  it("resamples whole images: perfectly correlated pairs give a wider interval than independent questions", () => {
    // 30 images, 2 questions each with the same value (correlated) vs 60 images with one question each
    const vals = Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? 1 : 0));
    const paired = clusters(vals.flatMap((v, i) => [{ image: `p${i}`, value: v }, { image: `p${i}`, value: v }]));
    const single = clusters(vals.flatMap((v, i) => [{ image: `s${i}a`, value: v }, { image: `s${i}b`, value: v }]));
    const a = hierarchicalBootstrap([paired], { b: 2000 });
    const b = hierarchicalBootstrap([single], { b: 2000 });
    expect(a.mean).toBeCloseTo(0.5, 12);
    expect(a.se).toBeGreaterThan(b.se * 1.2);
    expect(a.ci95[0]).toBeLessThan(0.5);
    expect(a.ci95[1]).toBeGreaterThan(0.5);
  });
  it("seed-level spread counts: seeds that disagree widen the interval", () => {
    const flat = (v: number) => clusters(Array.from({ length: 50 }, (_, i) => ({ image: `i${i}`, value: v })));
    const r = hierarchicalBootstrap([flat(0), flat(0.2), flat(0.4)], { b: 1000 });
    expect(r.mean).toBeCloseTo(0.2, 12);
    expect(r.se).toBeGreaterThan(0.05);
  });
});

describe("verdict (pre-registered rule)", () => {
  const mv = { sft: 0.2, rarl: 0.2 };
  it("consistent / not reproduced / inconclusive", () => {
    expect(verdict({ oodDelta: { mean: 0.1, ci95: [0.02, 0.2] }, idDelta: { mean: -0.01 }, movement: mv }).verdict).toBe("consistent with Table 3");
    expect(verdict({ oodDelta: { mean: 0.1, ci95: [-0.01, 0.2] }, idDelta: { mean: 0 }, movement: mv }).verdict).toBe("not reproduced");
    expect(verdict({ oodDelta: { mean: 0.1, ci95: [0.02, 0.2] }, idDelta: { mean: -0.05 }, movement: mv }).verdict).toBe("not reproduced");
    const inc = verdict({ oodDelta: { mean: 0.1, ci95: [0.02, 0.2] }, idDelta: { mean: 0 }, movement: { sft: 0.2, rarl: 0.03 } });
    expect(inc.verdict).toBe("inconclusive");
    expect(inc.why).toMatch(/RARL 3\.0%/);
  });
});
