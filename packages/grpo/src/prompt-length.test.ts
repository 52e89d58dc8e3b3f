// A prompt longer than the model takes is refused when the data is loaded, naming the file, row and sample id.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { fixturesDir } from "@rarl/core";
import { type Sample, synthesize } from "@rarl/datasets";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TrainDataError } from "./errors";
import { checkPromptLengths, runTrain } from "./run";

const EXAMPLES = fileURLToPath(new URL("../examples", import.meta.url));
const FIXTURE = path.join(fixturesDir(), "qwen2vl-tiny");
let tmp: string;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "grpo-prompt-len-"));
  await synthesize(path.join(tmp, "synth"), { n: 6, size: 56, seed: 2 });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const sample = (id: string, question: string) => ({ id, question, answer: "yes", answer_type: "closed", image: { path: "a.png" } }) as unknown as Sample;

describe("checkPromptLengths", () => {
  it("names every row that does not fit; prompts whose bytes already fit are not tokenized", async () => {
    let encoded = 0;
    const encode = (t: string) => {
      encoded++;
      return Array.from(t, () => 1);
    };
    const origin = (id: string) => ({ a: { file: "d.jsonl", row: 1 }, b: { file: "d.jsonl", row: 2 }, c: { file: "d.jsonl", row: 3 } })[id];
    const o = { maxPositions: 100, maxCompletionLength: 8, render: (s: Sample) => s.question, encode, origin };
    await checkPromptLengths([sample("a", "short"), sample("b", "x".repeat(60))], o);
    expect(encoded).toBe(0);
    const err = await checkPromptLengths([sample("a", "ok"), sample("b", "x".repeat(61)), sample("c", "y".repeat(5000))], o).catch((e) => e);
    expect(err).toBeInstanceOf(TrainDataError);
    expect(err.code).toBe("DATA_PROMPT_TOO_LONG");
    expect(err.message).toContain("data: 2 prompt(s) do not fit the model: at most 60 prompt tokens (maxPositions 100");
    expect(err.message).toContain('d.jsonl, row 2, sample "b": prompt of 61 tokens');
    expect(err.message).toContain('d.jsonl, row 3, sample "c": prompt of more than 976 tokens (5000 characters)');
  });
});

describe("runTrain with a 2 MB question (tiny Qwen2-VL)", () => {
  it("fails when the data is loaded, before the model loads, with an error naming the file, row and sample id", async () => {
    const src = path.join(tmp, "synth", "samples.jsonl");
    const lines = fs.readFileSync(src, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const rows = lines.map((r, i) => ({ ...r, split: "train", ...(i === 2 ? { id: "huge-q", question: "Is there a lesion? ".repeat(110_000) } : {}) }));
    const file = path.join(tmp, "synth", "huge.jsonl");
    fs.writeFileSync(file, `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`);
    // the tiny model's config and tokenizer over a weights file that does not load: the check must come first
    const model = path.join(tmp, "model-bad-weights");
    fs.mkdirSync(model);
    for (const f of fs.readdirSync(FIXTURE)) if (f !== "model.safetensors") fs.symlinkSync(path.join(FIXTURE, f), path.join(model, f));
    fs.writeFileSync(path.join(model, "model.safetensors"), "not a safetensors file");
    const cfg = JSON.parse(fs.readFileSync(path.join(EXAMPLES, "grpo-tiny.json"), "utf8"));
    cfg.model.path = model;
    cfg.data = { format: "rarl", path: file };
    cfg.progress = false;
    if (cfg.rewards?.tokenizer) cfg.rewards.tokenizer = path.join(FIXTURE, "tokenizer.json");
    const out = path.join(tmp, "run");
    const err = await runTrain({ config: cfg, out, maxSteps: 1, handleSigint: false }).catch((e) => e);
    expect(err).toBeInstanceOf(TrainDataError);
    expect(err.message).toMatch(new RegExp(`huge\\.jsonl, row 3, sample "huge-q": prompt of more than \\d+ tokens \\(\\d+ characters\\)`));
    expect(err.message).toContain("maxPositions 32768");
    expect(fs.existsSync(path.join(out, "metrics.jsonl"))).toBe(false);
  }, 120_000);
});
