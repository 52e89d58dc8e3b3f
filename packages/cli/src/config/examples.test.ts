import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { synthesize } from "@rarl/datasets";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readJsonl } from "../report/io";
import { captureCli } from "../testing/capture";
import { dryRun, estimateStep } from "./dry-run";
import { copyExampleConfig, REPO, writeCvBenchData, writeEncoder, writeMedicalData, writeSparseQwen2VL } from "./experiment-fixtures";
import { loadTrainConfig } from "./train-schema";

let tmp: string;
let params2b = 0;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-examples-"));
  // One 2B-shaped model folder (sparse weights) shared by the experiments, linked into each layout.
  params2b = writeSparseQwen2VL(path.join(tmp, "qwen2vl-2b"));
  writeEncoder(path.join(tmp, "roberta-large"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function linkModels(dir: string): void {
  fs.mkdirSync(path.join(dir, "models"), { recursive: true });
  fs.symlinkSync(path.join(tmp, "qwen2vl-2b"), path.join(dir, "models", "Qwen2-VL-2B-Instruct"));
  fs.symlinkSync(path.join(tmp, "roberta-large"), path.join(dir, "models", "roberta-large"));
}

/** Runs the CLI in-process, capturing stdout and stderr. */
const cli = captureCli;

// LoRA r = 8 on q/k/v/o of 28 layers: q, o are 1536x1536, k, v are 256x1536 (2 KV heads of 128).
const LORA_2B = 28 * 8 * (1536 + 1536 + (1536 + 256) * 2 + 1536 + 1536);

describe("examples/medical-rarl", () => {
  it("rarl train --dry-run passes on a 2B-shaped checkpoint folder and small files in every dataset's real layout", async () => {
    const dir = path.join(tmp, "medical");
    const cfg = copyExampleConfig("medical-rarl", "config.json", dir);
    linkModels(dir);
    await writeMedicalData(path.join(dir, "data"));
    // the training file's bad row (a missing image) would stop training: the dry run fails and names it
    const bad = await cli(["train", "--config", cfg, "--dry-run", "--gflops", "100", "--memory-gib", "1000"]);
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/problem data: 1 bad row\(s\) would stop training \(first: .*rarl-split\.jsonl:7: .*missing\.png/);
    const r = await cli(["train", "--config", cfg, "--dry-run", "--gflops", "100", "--memory-gib", "1000", "--set", 'data.onError="skip"']);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/config OK \(trainer grpo\)/);
    expect(r.out).toMatch(/\d+ BF16\) match config\.json/);
    expect(r.out).toMatch(/data {4}rarl .*rarl-split\.jsonl: 6 samples read \(train 4, test 2\), 4 used for training, 1 skipped/);
    expect(r.out).toMatch(/skipped .*rarl-split\.jsonl:7: .*missing\.png/);
    for (const [name, n, skipped] of [
      ["VQA-RAD", 1, 0],
      ["SLAKE", 2, 0],
      ["VQA-Med 2019", 2, 0],
      ["Path-VQA", 2, 0],
      ["Ours \\(Silvar-Med reasoning test\\)", 2, 1], // the same file as the training data (its bad row)
    ] as const) {
      expect(r.out).toMatch(new RegExp(`eval {4}${name} .* samples read, ${n} evaluated, ${skipped} skipped`));
    }
    expect(r.out).toMatch(/rewards format \+ length \+ accuracy \+ reasoning/);
    expect(r.out).toMatch(/peak +\d+\.\d+ GiB/);

    const { config, configDir } = loadTrainConfig(cfg);
    const rep = await dryRun({ config, configDir, gflops: 100 });
    expect(rep.model.params.total).toBe(params2b);
    expect(params2b).toBeGreaterThan(2.1e9);
    expect(params2b).toBeLessThan(2.3e9);
    expect(rep.model.loraParams).toBe(LORA_2B);
    expect(rep.model.loraModules).toBe(28 * 4);
    expect(rep.memory.weightsBf16).toBe(2 * params2b);
    expect(rep.memory.optimizer).toBe(8 * LORA_2B);
    // 4 samples x 5 epochs / 1 prompt per step
    expect(rep.time.steps).toBe(20);
    expect(rep.time.secondsPerStep).toBeCloseTo(rep.time.flopsPerStep / 100e9, 6);
    expect(rep.problems.join("\n")).toMatch(/1 bad row\(s\) would stop training/); // a problem now: the dry run fails
  });

  it("an incompatible checkpoint fails naming the tensor and the file; a missing data file names the field", async () => {
    const dir = path.join(tmp, "medical-bad");
    const cfg = copyExampleConfig("medical-rarl", "config.json", dir);
    // a checkpoint whose layer-3 q_proj is 1024 wide and whose layer-27 v_proj is missing
    writeSparseQwen2VL(path.join(dir, "models", "Qwen2-VL-2B-Instruct"), undefined, (s) => {
      s.set("model.layers.3.self_attn.q_proj.weight", [1024, 1536]);
    });
    fs.symlinkSync(path.join(tmp, "roberta-large"), path.join(dir, "models", "roberta-large"));
    await writeMedicalData(path.join(dir, "data"));
    let r = await cli(["train", "--config", cfg, "--dry-run", "--gflops", "1"]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/model\.safetensors: 1 tensor\(s\) do not match .*config\.json: model\.layers\.3\.self_attn\.q_proj\.weight: \[1024,1536\] in the file, \[1536,1536\] from config\.json/);
    writeSparseQwen2VL(path.join(dir, "models", "Qwen2-VL-2B-Instruct"), undefined, (s) => {
      s.delete("model.layers.27.self_attn.v_proj.weight");
    });
    r = await cli(["train", "--config", cfg, "--dry-run", "--gflops", "1"]);
    expect(r.err).toMatch(/1 tensor\(s\) that .*config\.json needs are missing: model\.layers\.27\.self_attn\.v_proj\.weight/);
    fs.rmSync(path.join(dir, "data", "vqa-rad"), { recursive: true });
    r = await cli(["train", "--config", cfg, "--dry-run"]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/evalData\[1\]\.path \(VQA-RAD\): .*data\/vqa-rad does not exist/);
  });

  it("the Table 3 configs (RL + LoRA, SFT) validate too", async () => {
    for (const f of ["rl-lora.json", "sft.json"]) {
      const dir = path.join(tmp, `medical-${f}`);
      const cfg = copyExampleConfig("medical-rarl", f, dir);
      linkModels(dir);
      await writeMedicalData(path.join(dir, "data"));
      const { config, configDir } = loadTrainConfig(cfg);
      const rep = await dryRun({ config, configDir, gflops: 100 });
      expect(rep.data.used).toBe(4);
      expect(rep.trainer).toBe(f === "sft.json" ? "sft" : "grpo");
      if (f === "sft.json") {
        expect(rep.memory.kvCache).toBe(0); // no generation in SFT
        // full fine-tuning: no LoRA weights, but gradients and AdamW state for every language-model weight but the embedding
        const full = await dryRun({ config: { ...config, finetune: "full" }, configDir, gflops: 100 });
        expect(full.memory.lora).toBe(0);
        expect(full.memory.optimizer).toBe(2 * full.memory.gradients);
        expect(full.memory.gradients).toBeGreaterThan(100 * rep.memory.gradients);
        expect(full.memory.gradients).toBeLessThan(4 * full.model.params.language);
      }
    }
  });
});

describe("examples/cv-bench", () => {
  it("the Table 2 configs dry-run at every sample size on CV-Bench-format files", async () => {
    const dir = path.join(tmp, "cvb");
    linkModels(dir);
    await writeCvBenchData(path.join(dir, "data"), 12);
    for (const f of ["rl-lora.json", "sft.json"]) {
      const cfg = copyExampleConfig("cv-bench", f, dir);
      for (const n of [5, 10]) {
        const r = await cli(["train", "--config", cfg, "--dry-run", "--gflops", "100", "--memory-gib", "1000", "--set", `data.limit=${n}`]);
        expect(r.err).toBe("");
        expect(r.out).toMatch(new RegExp(`cv-bench .*train\\.jsonl: 12 samples read .*, ${n} used for training, 0 skipped`));
        expect(r.out).toMatch(/eval {4}CV-Bench .* 4 samples read, 4 evaluated, 0 skipped/);
      }
    }
  });

  it("the sweep script lists the paper's six runs through the CLI", () => {
    const sweep = fs.readFileSync(path.join(REPO, "examples/cv-bench/sweep.mjs"), "utf8");
    for (const n of [500, 1000, 5000]) expect(sweep).toContain(String(n));
    expect(sweep).toMatch(/"train", "--config"/);
  });
});

describe("examples/custom-reward/train.json", () => {
  it("validates, and trains with the plugin loaded by its package name (toy policy, 2 steps)", async () => {
    const cfg = path.join(REPO, "examples/custom-reward/train.json");
    const { config, configDir } = loadTrainConfig(cfg);
    expect(config.rewards).toMatchObject({ rewards: expect.arrayContaining([{ use: "@acme/rarl-reward-x", weight: 0.5 }]) });
    await synthesize(path.join(tmp, "synth"), { n: 8, size: 32, seed: 3 });
    const data = path.join(tmp, "synth", "samples.jsonl");
    const dry = await dryRun({ config: { ...config, data: { ...config.data, path: data } }, configDir, gflops: 1 });
    expect(dry.rewards).toEqual(["format", "accuracy", "answer-brevity"]);
    const out = path.join(tmp, "custom-run");
    const r = await cli(["train", "--config", cfg, "--set", `data.path=${data}`, "--set", 'model={"type":"toy","vocab":16}', "--set", "maxCompletionLength=4", "--set", "progress=false", "--out", out, "--max-steps", "2"]);
    expect(r.err).not.toMatch(/rarl:/);
    expect(r.code).toBe(0);
    const rows = readJsonl(path.join(out, "metrics.jsonl"));
    expect(rows).toHaveLength(2);
    expect(rows[0]).toHaveProperty("rewards/answer-brevity/mean");
  });
});

describe("estimateStep", () => {
  it("counts GRPO work as generation + policy fwd/bwd + reference forward, and scales with G", async () => {
    const { parseQwen2VLConfig } = await import("@rarl/model");
    const { GRPO_DEFAULTS } = await import("@rarl/grpo");
    const { QWEN2_VL_2B_INSTRUCT_CONFIG } = await import("./experiment-fixtures");
    const cfg = parseQwen2VLConfig(QWEN2_VL_2B_INSTRUCT_CONFIG);
    const base = { cfg, params: { language: 1.5e9, vision: 0.6e9 }, loraParams: LORA_2B, imageTokens: 256, promptTextTokens: 96 };
    const a = estimateStep({ ...base, train: { ...GRPO_DEFAULTS, numGenerations: 4, gradientCheckpointing: false } });
    const b = estimateStep({ ...base, train: { ...GRPO_DEFAULTS, numGenerations: 8, gradientCheckpointing: false } });
    const noKl = estimateStep({ ...base, train: { ...GRPO_DEFAULTS, numGenerations: 8, beta: 0, gradientCheckpointing: false } });
    const N = 1.5e9; // tied embeddings: lm_head counted once as a matmul
    const S = 352 + 256;
    const vision = 2 * 0.6e9 * 4 * 256;
    expect(b.flopsPerStep).toBeCloseTo(vision + 2 * N * 352 + 2 * N * 256 * 8 + 4 * N * S * 8 + 2 * N * S * 8, -6);
    expect(b.flopsPerStep - noKl.flopsPerStep).toBeCloseTo(2 * N * S * 8, -6);
    expect(b.memory.kvCache).toBe(2 * a.memory.kvCache);
    expect(b.memory.activations).toBe(2 * a.memory.activations);
    const chunked = estimateStep({ ...base, train: { ...GRPO_DEFAULTS, numGenerations: 8, backwardBatchSize: 2, gradientCheckpointing: false } });
    expect(chunked.memory.activations).toBe(a.memory.activations / 2);
    // gradientCheckpointing (the default): one more forward pass of the decoder (lm_head excluded) per policy
    // backward, and activations of one layer plus every layer's input instead of every layer's intermediates
    const ck = estimateStep({ ...base, train: { ...GRPO_DEFAULTS, numGenerations: 8 } });
    const decoder = N - cfg.vocabSize * cfg.hiddenSize;
    expect(ck.flopsPerStep - b.flopsPerStep).toBeCloseTo(2 * decoder * S * 8, -6);
    const H = cfg.hiddenSize;
    const L = cfg.numHiddenLayers;
    const perLayer = (b.memory.activations / (4 * 8 * S) - 2 * H) / L;
    expect(ck.memory.activations).toBeCloseTo(4 * 8 * S * (L * H + perLayer + 2 * H), -3);
    expect(ck.memory.activations).toBeLessThan(b.memory.activations / 4);
  });
});
