import { describe, expect, it } from "vitest";
import { buildReportHtml, flattenMetrics, planCharts } from "./html";

const metrics = Array.from({ length: 5 }, (_, i) => ({
  step: i + 1,
  loss: 1 / (i + 1),
  lr: 1e-4,
  kl: 0.01 * i,
  completion_length: { mean: 40 + i, max: 60 },
  rewards: { format: { mean: 0.1 * i, std: 0.1 }, accuracy: { mean: 0.2 * i, std: 0.1 } },
}));

describe("HTML report", () => {
  it("flattens nested metrics", () => {
    expect(flattenMetrics(metrics[1])).toMatchObject({ "rewards/format/mean": 0.1, "completion_length/max": 60, loss: 0.5 });
  });
  it("plans one chart per metric family found", () => {
    const specs = planCharts(metrics.map((m) => flattenMetrics(m)));
    expect(specs.map((s) => s.id)).toEqual(["rewards", "reward-std", "kl", "length", "loss", "lr"]);
    expect(specs[0].keys).toEqual(["rewards/accuracy/mean", "rewards/format/mean"]);
  });
  it("draws every series with all its points and escapes text", () => {
    const html = buildReportHtml({
      metrics,
      samples: [{ step: 1, completion: "<think>a</think><answer>b</answer>", rewards: { format: 1 } }],
      evals: [{ model: "RARL", prompting: "reasoning", accuracy: 0.5, reasoning: 0.25, n: 4 }],
    });
    const pts = [...html.matchAll(/data-points="(\d+)"/g)].map((m) => Number(m[1]));
    expect(pts.length).toBe(9);
    expect(pts.every((n) => n === 5)).toBe(true);
    expect(html).toContain("&#60;think&#62;a");
    expect(html).toContain("50.0%");
    expect(html).not.toMatch(/<script|https?:\/\//);
  });
  it("plots TRL's metric names and shows the completions table", () => {
    const rows = Array.from({ length: 3 }, (_, i) => ({
      step: i + 1,
      entropy: 1 - 0.1 * i,
      "clip_ratio/low_mean": 0.01,
      "clip_ratio/high_mean": 0.02,
      "clip_ratio/region_mean": 0.03,
      cispo_clip_ratio: 0.04,
      frac_reward_zero_std: 0.5,
      "completions/mean_length": 10,
      "completions/max_length": 12,
      "completions/clipped_ratio": 0.25,
      "rewards/format/mean": 0.5,
      "rewards/format/std": 0.1,
    }));
    const specs = planCharts(rows);
    expect(Object.fromEntries(specs.map((s) => [s.id, s.keys]))).toEqual({
      rewards: ["rewards/format/mean"],
      "reward-std": ["rewards/format/std"],
      entropy: ["entropy"],
      clip: ["cispo_clip_ratio", "clip_ratio/high_mean", "clip_ratio/low_mean", "clip_ratio/region_mean"],
      signal: ["completions/clipped_ratio", "frac_reward_zero_std"],
      length: ["completions/max_length", "completions/mean_length"],
    });
    const html = buildReportHtml({ metrics: rows, completions: [{ step: 3, prompt: "p<1>", completion: "c", rewards: { format: 1, accuracy: null }, reward: 1, advantage: -0.5 }] });
    expect(html).toMatch(/<table id="completions" data-rows="1"><thead><tr><th>step<\/th><th>prompt<\/th><th>completion<\/th><th>format<\/th><th>accuracy<\/th><th>reward<\/th><th>advantage<\/th>/);
    expect(html).toContain("<td>1.00</td><td>–</td><td>1.00</td><td>-0.500</td>");
    expect(html).toContain("p&#60;1&#62;");
  });
});
