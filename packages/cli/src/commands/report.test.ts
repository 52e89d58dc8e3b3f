import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli } from "../program";
import { judgeResultsReport } from "./report";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-report-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, rows: object[]): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`);
  return f;
}
const row = (id: string, dataset: string, judge: string, p: 0 | 1 | null, r: 0 | 1 | null, status = "scored", error?: string) => ({
  id,
  dataset,
  judge,
  prediction_score: p,
  reasoning_score: r,
  evaluation: "",
  status,
  ...(error ? { error } : {}),
});

describe("rarl report", () => {
  const gpt = write("gpt.jsonl", [
    row("1", "Ours", "openai:gpt-4o-mini", 1, 1),
    row("2", "Ours", "openai:gpt-4o-mini", 0, 1),
    row("3", "VQA-RAD", "openai:gpt-4o-mini", 1, null),
    row("4", "VQA-RAD", "openai:gpt-4o-mini", null, null, "failed", "rate_limit: HTTP 429"),
  ]);
  const gem = write("gem.jsonl", [
    row("1", "Ours", "gemini:gemini-1.5-flash", 1, 0),
    row("2", "Ours", "gemini:gemini-1.5-flash", 0, 1),
    row("3", "VQA-RAD", "gemini:gemini-1.5-flash", 0, null),
    row("4", "VQA-RAD", "gemini:gemini-1.5-flash", 1, null),
  ]);

  it("prints a Table-3-style Markdown table for several results files", async () => {
    const md = judgeResultsReport([gpt, gem], { title: "RL + LoRA" });
    const l = md.split("\n");
    expect(l[0]).toBe("### RL + LoRA");
    expect(l[2]).toBe("| Dataset | GPT-4o mini Reasoning (%) | GPT-4o mini Final (%) | Gemini 1.5 Flash Reasoning (%) | Gemini 1.5 Flash Final (%) |");
    expect(l[4]).toBe("| Ours | 100.00% | 50.00% | 50.00% | 50.00% |");
    expect(l[5]).toBe("| VQA-RAD | _ | 100.00% | _ | 50.00% |");
    expect(md).toContain("| VQA-RAD | GPT-4o mini | 2 | 1 | 1 | rate_limit 1 | 0 |");
    // final scores on ids 1,2,3: 1,0,1 vs 1,0,0 -> 66.67 % agreement
    expect(md).toContain("| GPT-4o mini | Gemini 1.5 Flash | Final | 3 | 66.67 |");
  });

  it("--json prints the report object; a torn last line is ignored; a missing file is an error", async () => {
    fs.appendFileSync(gem, '{"id": "5", "dataset": "VQA-R');
    const json = JSON.parse(judgeResultsReport([gpt, gem], { json: true }));
    expect(json.judges).toEqual(["openai:gpt-4o-mini", "gemini:gemini-1.5-flash"]);
    expect(json.cells).toHaveLength(4);
    expect(json.agreement[0]).toMatchObject({ score: "prediction", n: 3 });
    expect(() => judgeResultsReport([path.join(dir, "nope.jsonl")])).toThrow(/cannot read results file .*nope\.jsonl/);
    const orig = process.stderr.write.bind(process.stderr);
    (process.stderr as any).write = () => true;
    try {
      expect(await runCli(["report", path.join(dir, "nope.jsonl")])).toBe(1);
    } finally {
      (process.stderr as any).write = orig;
    }
  });

  it("--section blocks: one shared header, a title row per experiment, as in Table 3", async () => {
    const rl = write("rl.jsonl", [row("1", "Ours", "openai:gpt-4o-mini", 1, 1), row("3", "VQA-RAD", "openai:gpt-4o-mini", 0, null)]);
    const labels = write("labels.jsonl", [{ id: "1", reasoning_score: 0, prediction_score: 1 }]);
    const outs: string[] = [];
    const orig = process.stdout.write.bind(process.stdout);
    (process.stdout as any).write = (s: string) => {
      outs.push(String(s));
      return true;
    };
    try {
      expect(await runCli(["report", "--section", `Our experiment using SFT=${gpt},${gem}`, "--section", `RL + LoRA=${rl},human:${labels}`])).toBe(0);
    } finally {
      (process.stdout as any).write = orig;
    }
    const l = outs.join("").split("\n");
    expect(l[0]).toBe(
      "| Dataset | GPT-4o mini Reasoning (%) | GPT-4o mini Final (%) | Gemini 1.5 Flash Reasoning (%) | Gemini 1.5 Flash Final (%) | Human Evaluation Reasoning (%) | Human Evaluation Final (%) |",
    );
    expect(l[2]).toBe("| **Our experiment using SFT** | | | | | | |");
    expect(l[3]).toBe("| Ours | 100.00% | 50.00% | 50.00% | 50.00% | _ | _ |");
    expect(l[5]).toBe("| **RL + LoRA** | | | | | | |");
    expect(l[6]).toBe("| Ours | 100.00% | 100.00% | _ | _ | 0.00% | 100.00% |");
    expect(l[7]).toBe("| VQA-RAD | _ | 0.00% | _ | _ | _ | _ |");
    expect(() => judgeResultsReport([], { sections: ["no-equals"] })).toThrow(/expected "<title>=<results.jsonl>/);
  });
});

