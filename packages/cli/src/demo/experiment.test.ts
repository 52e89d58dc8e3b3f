import { describe, expect, it } from "vitest";
import { type JudgedAnswer, summarizeExperiment } from "./experiment";

/** n questions on n/2 images; `right(i)` says whether question i is answered correctly (answer "Yes" if so, else "No"). */
function answers(split: string, prompting: string, n: number, right: (i: number) => boolean): JudgedAnswer[] {
  return Array.from({ length: n }, (_, i) => ({
    split,
    prompting,
    id: `img${i >> 1}-q${(i & 1) + 1}`,
    image: `img${i >> 1}`,
    answer: right(i) ? "Yes" : "No",
    correct: right(i) ? 1 : 0,
    reasoning: null,
  }));
}
const suite = (id: (i: number) => boolean, ood: (i: number) => boolean) => [
  ...answers("test-id", "reasoning", 40, id),
  ...answers("test-id", "non-reasoning", 40, id),
  ...answers("test-ood", "reasoning", 40, ood),
];

describe("summarizeExperiment", () => {
  it("rows in the issue's schema, movement against the base, paired differences and the verdict", () => {
    const base = suite((i) => i % 4 === 0, (i) => i % 2 === 0); // 25% in distribution, 50% OOD
    const arms = new Map([
      // SFT: 75% in distribution, forgets OOD (25%); RARL: 70% in distribution, keeps OOD (50%)
      [1, { sft: suite((i) => i % 4 !== 0, (i) => i % 4 === 0), rarl: suite((i) => i % 10 < 7, (i) => i % 2 === 0) }],
      [2, { sft: suite((i) => i % 4 !== 1, (i) => i % 4 === 1), rarl: suite((i) => i % 10 !== 3 && i % 10 !== 5 && i % 10 !== 9, (i) => i % 2 === 1) }],
      [3, { sft: suite((i) => i % 4 !== 2, (i) => i % 4 === 2), rarl: suite((i) => i % 10 < 7, (i) => i % 2 === 0) }],
    ]);
    const r = summarizeExperiment({ base, arms }, { pass_at_1: 0.3, pass_at_g: 0.6, g: 4, flippable: 0.2 }, { data_seed: 1 });
    expect(r.seeds).toEqual([1, 2, 3]);
    expect(r.data_seed).toBe(1);
    const row = (model: string, split: string, prompting = "reasoning") => r.evals.find((e) => e.model.startsWith(model) && e.split === split && e.prompting === prompting)!;
    expect(row("warmup", "in-distribution")).toMatchObject({ accuracy: 0.25, n: 40 });
    expect(row("sft (", "in-distribution").accuracy).toBeCloseTo(0.75, 12);
    expect(row("rarl (", "in-distribution").accuracy).toBeCloseTo(0.7, 12);
    expect(row("rarl (", "out-of-distribution").accuracy).toBeCloseTo(0.5, 12);
    expect(row("sft (", "out-of-distribution").accuracy).toBeCloseTo(0.25, 12);
    for (const e of r.evals) expect(Object.keys(e)).toEqual(expect.arrayContaining(["model", "split", "prompting", "accuracy", "reasoning", "n", "se"]));
    expect(r.evals.filter((e) => e.model === "rarl-seed2")).toHaveLength(3);
    const d = (name: string, split: string) => r.paired.find((p) => p.difference === name && p.split === split && p.prompting === "reasoning") as { mean: number; ci95: [number, number] };
    expect(d("rarl-sft", "out-of-distribution").mean).toBeCloseTo(0.25, 12);
    expect(d("rarl-sft", "in-distribution").mean).toBeCloseTo(-0.05, 12);
    expect(d("rarl-base", "in-distribution").mean).toBeCloseTo(0.45, 12);
    // movement: share of the base's answers an arm changed
    const mv = (r.movement.sft as Record<string, { mean: number }>)["in-distribution/reasoning"].mean;
    expect(mv).toBeGreaterThan(0.4);
    // OOD interval above 0 but in-distribution Δ −5 points (≤ −3): not reproduced by the pre-registered rule
    expect(d("rarl-sft", "out-of-distribution").ci95[0]).toBeGreaterThan(0);
    expect(r.verdict).toBe("not reproduced");
    expect(r.headroom).toMatchObject({ pass_at_1: 0.3, pass_at_g: 0.6, g: 4, flippable: 0.2 });
  });
});
