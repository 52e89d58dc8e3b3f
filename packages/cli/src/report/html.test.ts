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
    expect(specs.map((s) => s.id)).toEqual(["rewards", "kl", "length", "loss", "lr"]);
    expect(specs[0].keys).toEqual(["rewards/accuracy/mean", "rewards/format/mean"]);
  });
  it("draws every series with all its points and escapes text", () => {
    const html = buildReportHtml({
      metrics,
      samples: [{ step: 1, completion: "<think>a</think><answer>b</answer>", rewards: { format: 1 } }],
      evals: [{ model: "RARL", prompting: "reasoning", accuracy: 0.5, reasoning: 0.25, n: 4 }],
    });
    const pts = [...html.matchAll(/data-points="(\d+)"/g)].map((m) => Number(m[1]));
    expect(pts.length).toBe(7);
    expect(pts.every((n) => n === 5)).toBe(true);
    expect(html).toContain("&#60;think&#62;a");
    expect(html).toContain("50.0%");
    expect(html).not.toMatch(/<script|https?:\/\//);
  });
});
