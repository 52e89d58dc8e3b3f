import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fixturesDir } from "@rarl/core";
import { afterAll, describe, expect, it, vi } from "vitest";
import { runCli } from "../program";

function fixtures(): string {
  return fixturesDir();
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-cli-reward-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("rarl reward", () => {
  it("scores a completions file and writes each component plus the total", async () => {
    const cfg = path.join(dir, "rewards.json");
    fs.writeFileSync(
      cfg,
      JSON.stringify({
        rewards: [{ use: "format", weight: 1 }, { use: "length", weight: 1 }, { use: "accuracy", weight: 2 }],
        tokenizer: path.join(fixtures(), "qwen2vl-tiny", "tokenizer.json"),
        scorer: "lexical-f1",
      }),
    );
    const input = path.join(dir, "in.jsonl");
    fs.writeFileSync(
      input,
      [
        { id: 1, completion: "<think>t</think><answer>no</answer>", answer: "No", answer_type: "closed" },
        { id: 2, completion: "the liver", answer: "liver", answer_type: "open" },
      ]
        .map((r) => JSON.stringify(r))
        .join("\n"),
    );
    const out = path.join(dir, "out.jsonl");
    const stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    const code = await runCli(["reward", "--config", cfg, "--input", input, "--out", out]);
    stderr.mockRestore();
    expect(code).toBe(0);
    const lines = fs.readFileSync(out, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(lines[0].rewards.format).toBe(1);
    expect(lines[0].rewards.accuracy).toBe(1);
    expect(lines[1].rewards.format).toBe(0);
    expect(lines[1].rewards.accuracy).toBe(1); // lexical F1 after article removal
    expect(lines[0].total).toBeCloseTo(1 + lines[0].rewards.length + 2, 12);
  });
  it("fails with a message naming the unknown config key", async () => {
    const cfg = path.join(dir, "bad.json");
    fs.writeFileSync(cfg, JSON.stringify({ rewards: [{ use: "format" }], weights: [1] }));
    const input = path.join(dir, "in2.jsonl");
    fs.writeFileSync(input, "");
    const errs: string[] = [];
    const stderr = vi.spyOn(process.stderr, "write").mockImplementation((s) => {
      errs.push(String(s));
      return true;
    });
    const code = await runCli(["reward", "--config", cfg, "--input", input]);
    stderr.mockRestore();
    expect(code).toBe(1);
    expect(errs.join("")).toMatch(/weights: unknown key/);
  });
});
