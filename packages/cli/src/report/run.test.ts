import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { runCli } from "../program";
import { ReportInputError } from "./io";
import { readEvals, samplesFromRun } from "./run";

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-run-report-"));
  const run = path.join(tmp, "run");
  fs.mkdirSync(run);
  const rows = [1, 2, 3].map((step) => ({ step, loss: 0.1 * step, reward: step, "rewards/format/mean": 0.5, kl: 0.01 * step, "completions/mean_length": 20 + step, lr: 0.001 }));
  fs.writeFileSync(path.join(run, "metrics.jsonl"), rows.map((r) => JSON.stringify(r)).join("\n"));
  fs.writeFileSync(
    path.join(run, "samples.jsonl"),
    `${JSON.stringify({ step: 3, samples: [{ example: "s1", completion: "<think>clear</think><answer>No</answer>", reward: 2.5, "reward/format": 1, "reward/accuracy": 1 }] })}\n`,
  );
  fs.writeFileSync(path.join(run, "config.json"), JSON.stringify({ trainer: "grpo", seed: 7 }));
  fs.writeFileSync(
    path.join(tmp, "results.json"),
    JSON.stringify({ seed: 1, evals: [{ model: "RARL (GRPO + LoRA)", prompting: "reasoning", accuracy: 0.425, reasoning: 0.6, n: 80 }] }),
  );
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("rarl report --run --html", () => {
  it("writes the HTML report of a RUN_DIR with the evals table and the sample completions with their rewards", async () => {
    const out = path.join(tmp, "report.html");
    const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      expect(await runCli(["report", "--run", path.join(tmp, "run"), "--evals", path.join(tmp, "results.json"), "--html", out])).toBe(0);
    } finally {
      err.mockRestore();
    }
    const html = fs.readFileSync(out, "utf8");
    expect(html).toContain("RARL (GRPO + LoRA)");
    expect(html).toMatch(/42\.5/);
    expect(html).toContain("&#60;answer&#62;No&#60;/answer&#62;");
    expect((html.match(/<svg/g) ?? []).length).toBeGreaterThanOrEqual(3);
    expect(samplesFromRun(path.join(tmp, "run", "samples.jsonl"))).toEqual([
      { step: 3, prompt: "s1", completion: "<think>clear</think><answer>No</answer>", rewards: { format: 1, accuracy: 1, total: 2.5 } },
    ]);
  });

  it("an experiment's results.json: split column, accuracy ± s.e. with an error bar, the headroom and the verdict", async () => {
    const res = path.join(tmp, "experiment.json");
    fs.writeFileSync(
      res,
      JSON.stringify({
        evals: [
          { model: "warmup (base)", split: "in-distribution", prompting: "reasoning", accuracy: 0.3, reasoning: 0.2, n: 100, se: 0.04 },
          { model: "rarl (GRPO + LoRA)", split: "out-of-distribution", prompting: "reasoning", accuracy: 0.61, reasoning: 0.5, n: 100, se: 0.02 },
        ],
        headroom: { greedy: 0.3, pass_at_1: 0.31, pass_at_g: 0.6, g: 4, maj_at_g: 0.33, flippable: 0.21 },
        paired: [{ difference: "rarl-sft", split: "out-of-distribution", prompting: "reasoning", mean: 0.05, ci95: [0.01, 0.09] }],
        seeds: [1, 2, 3],
        verdict: "consistent with Table 3",
        verdict_why: "because",
      }),
    );
    const out = path.join(tmp, "exp.html");
    const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      expect(await runCli(["report", "--run", path.join(tmp, "run"), "--evals", res, "--html", out])).toBe(0);
    } finally {
      err.mockRestore();
    }
    const html = fs.readFileSync(out, "utf8");
    expect(html).toContain("<th>split</th>");
    expect(html).toContain("out-of-distribution");
    expect(html).toContain("61.0% ± 2.0");
    expect(html).toContain('aria-label="61.0% ± 4.0"');
    expect(html).toMatch(/consistent with Table 3 \(because\)/);
    expect(html).toMatch(/pass@G 60\.0% \(G 4\)/);
    expect(html).toMatch(/flippable 21\.0%/);
    expect(html).toMatch(/RARL − SFT, out-of-distribution<\/dt><dd>5\.0 points, 95% CI \[1\.0, 9\.0\]/);
  });

  it("names the missing metrics file, a half-given option pair and a bad evals row", async () => {
    const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      expect(await runCli(["report", "--run", path.join(tmp, "nope"), "--html", path.join(tmp, "x.html")])).toBe(1);
      expect(err.mock.calls.map((c) => String(c[0])).join("")).toMatch(/nope: no metrics\.jsonl/);
      expect(await runCli(["report", "--run", path.join(tmp, "run")])).toBe(1);
    } finally {
      err.mockRestore();
    }
    fs.writeFileSync(path.join(tmp, "bad.json"), JSON.stringify([{ model: "m", prompting: "reasoning", accuracy: "high", reasoning: null, n: 1 }]));
    expect(() => readEvals(path.join(tmp, "bad.json"))).toThrow(ReportInputError);
    expect(() => readEvals(path.join(tmp, "bad.json"))).toThrow(/evals\[0\]/);
  });
});
