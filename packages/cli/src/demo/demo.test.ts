import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { openSafetensors } from "@rarl/core";
import { synthesize } from "@rarl/datasets";
import { runTrain } from "@rarl/grpo";
import { runJudge } from "@rarl/judge";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEval } from "../eval/run-eval";
import { writeRunReport } from "../report/run";
import { compactReasoning, compactSamplesFile, DemoDataError } from "./data";
import { evalSuite } from "./experiment";
import { summarizeDemo } from "./summary";
import { writeDemoModel } from "./vocab";

const TOKENIZER = path.resolve(__dirname, "../../../../test-fixtures/qwen2vl-tokenizer");
let tmp: string;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-demo-"));
  await synthesize(path.join(tmp, "data"), { n: 12, size: 56, seed: 2 });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("compactReasoning", () => {
  it("states the finding and the radiological-convention side from the sample's ground truth", () => {
    expect(compactReasoning({ modality: "CT", extra: { lesion: true, side: "left", lesion_size: "large" } })).toBe(
      "CT. A large bright spot in the image's right half, the patient's left lung. Abnormal.",
    );
    expect(compactReasoning({ modality: "MRI", extra: { lesion: false } })).toMatch(/^MRI\. .*No lesion, normal\.$/);
    expect(compactReasoning({ modality: "MRI", extra: { lesion: true } })).toBeNull();
  });
  it("compactSamplesFile rejects a sample that is not synthetic, and a bad JSON line, naming the file and row", () => {
    const f = path.join(tmp, "bad.jsonl");
    fs.writeFileSync(f, `${JSON.stringify({ modality: "CT", extra: { lesion: false } })}\n${JSON.stringify({ modality: "CT", extra: { lesion: true } })}\n`);
    expect(() => compactSamplesFile(f, path.join(tmp, "out.jsonl"))).toThrow(DemoDataError);
    expect(() => compactSamplesFile(f, path.join(tmp, "out.jsonl"))).toThrow(`${f}: sample 2 is not a synthetic sample`);
    fs.writeFileSync(f, "{not json\n");
    expect(() => compactSamplesFile(f, path.join(tmp, "out.jsonl"))).toThrow(`${f}:1: not valid JSON`);
    expect(fs.existsSync(path.join(tmp, "out.jsonl"))).toBe(false);
  });
});

describe("demo pipeline (2-step smoke version)", () => {
  it("random model -> full-SFT warm-up -> GRPO+LoRA -> eval + offline judge -> table and HTML report", async () => {
    const d = (...p: string[]) => path.join(tmp, ...p);
    expect(compactSamplesFile(d("data/samples.jsonl"), d("data/compact.jsonl"))).toBe(12);
    // the demo's model: the Qwen2-VL tokenizer cut down to the demo's tokens, random weights over that vocabulary
    const trimmed = await writeDemoModel(d("init"), TOKENIZER, d("data/compact.jsonl"), 0);
    expect(JSON.parse(fs.readFileSync(d("init/config.json"), "utf8")).vocab_size).toBe(trimmed.size);

    // warm-up: full SFT (every LM weight but the tied embedding), through @rarl/grpo's own qwen2vl factory
    const warm = await runTrain({
      config: {
        trainer: "sft",
        finetune: "full",
        learningRate: 0.005,
        batchSize: 2,
        maxSteps: 2,
        maxCompletionLength: 40,
        progress: false,
        model: { type: "qwen2vl", path: "init" },
        data: { format: "rarl", path: "data/compact.jsonl", split: "train", limit: 4 },
      },
      configDir: tmp,
      out: d("warmup"),
      handleSigint: false,
    });
    expect(warm.reason).toBe("completed");
    const before = openSafetensors(d("init/model.safetensors"));
    const after = openSafetensors(d("warmup/adapter/model.safetensors"));
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    const diff = (k: string) => {
      const a = before.read(k).data as Float32Array;
      const b = after.read(k).data as Float32Array;
      return a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
    };
    expect(diff("model.layers.0.self_attn.q_proj.weight")).toBeGreaterThan(1e-4);
    expect(diff("model.norm.weight")).toBeGreaterThan(1e-4);
    expect(diff("model.embed_tokens.weight")).toBe(0); // frozen tied embedding
    expect(diff("visual.blocks.0.attn.qkv.weight")).toBe(0); // frozen vision tower
    before.close();
    after.close();

    // RARL: GRPO + LoRA with the four rewards (structured facts, as the demo) and the three templates
    const grpo = await runTrain({
      config: {
        trainer: "grpo",
        numGenerations: 2,
        maxSteps: 2,
        maxCompletionLength: 6,
        learningRate: 0.001,
        logCompletionsSteps: 1,
        progress: false,
        model: { type: "qwen2vl", path: "warmup/adapter", lora: { r: 8, alpha: 16 } },
        data: { format: "rarl", path: "data/compact.jsonl", split: "train", limit: 4 },
        rewards: { rewards: [{ use: "format" }, { use: "length" }, { use: "accuracy" }, { use: "reasoning" }], scorer: "structured-facts", tokenizer: path.join(TOKENIZER, "tokenizer.json") },
      },
      configDir: tmp,
      out: d("grpo"),
      handleSigint: false,
    });
    expect(grpo.reason).toBe("completed");
    expect(fs.existsSync(d("grpo/adapter/adapter_config.json"))).toBe(true);

    // eval of the GRPO adapter on the held-out split, offline judge, table, report
    fs.mkdirSync(d("eval"));
    await runEval({ model: d("warmup/adapter"), adapter: d("grpo/adapter"), data: `rarl:${d("data/compact.jsonl")}`, prompt: "reasoning", split: "test", limit: 2, maxNewTokens: 6, out: d("eval/grpo-reasoning.jsonl") });
    const s = await runJudge({ judge: "offline", predictions: d("eval/grpo-reasoning.jsonl"), out: d("eval/grpo-reasoning.judged.jsonl") });
    expect(s.scored).toBe(2);
    const table = summarizeDemo(d("eval"), d("results.json"), { seed: 2 });
    expect(table).toMatch(/\| RARL \(GRPO \+ LoRA\) \| reasoning \| \d+\.\d% \| (\d+\.\d%|n\/a) \| 2 \|/);
    const results = JSON.parse(fs.readFileSync(d("results.json"), "utf8"));
    expect(results.seed).toBe(2);
    expect(results.evals).toHaveLength(1);
    // the experiment's eval suite: one model load, several (split, prompting) runs, judged by structured facts
    const judged = await evalSuite({
      model: d("warmup/adapter"),
      adapter: d("grpo/adapter"),
      data: `rarl:${d("data/compact.jsonl")}`,
      runs: [
        ["test", "reasoning"],
        ["test", "explanation-required"],
      ],
      out: d("eval/rarl-seed1.json"),
      maxNewTokens: 6,
    });
    const nTest = fs.readFileSync(d("data/compact.jsonl"), "utf8").split("\n").filter((l) => l.includes('"split":"test"')).length;
    expect(judged).toHaveLength(2 * nTest);
    expect(JSON.parse(fs.readFileSync(d("eval/rarl-seed1.json"), "utf8")).answers).toEqual(judged);
    for (const a of judged) expect([0, 1]).toContain(a.correct);
    writeRunReport({ run: d("grpo"), html: d("report.html") });
    const html = fs.readFileSync(d("report.html"), "utf8");
    expect(html).toContain("<svg");
  });
});
